# ruff: noqa: E501  -- the helpers are scripts shipped to hosts verbatim; they keep their own shape
"""The helpers fleetmend sends to hosts over SSH: stdlib-only Python, nothing installed.

- MANIFEST walks a volume and prints, per entry, its path, type, size, mode,
  owner, mtime and sha256 (files) or target (links).
- SENDER (on the source, in the volume) either walks and hashes the volume,
  streaming the manifest in batches as it goes (`manifest` mode: its first
  line of input is {"known": {...}}, the hashes fleetmend remembers, taken for
  files whose stat key is unchanged; see memory.py), or only serves (`serve`
  mode, when fleetmend already holds the manifest). Either way it sends the
  files the receiver asks for, while it hashes. Files whose times stood still
  for `settle` seconds before the walk and while hashed carry their stat key
  ("k") so fleetmend may remember them; those taken from memory are marked "r".
- RECEIVER (on the target) is the safety boundary. It takes the source's
  manifest (up front, or as it streams in), and for each file keeps what
  staging already holds verified, links what the live volume already holds
  with the right hash (hashed now, on the target: the delta), and asks for the
  rest. Every received file is verified against the manifest; nothing is
  swapped in until every file is verified and on disk, then staging and live
  data change places with one atomic rename (RENAME_EXCHANGE) and the old data
  is removed. Any unsafe path (absolute, `..`, a link leaving the volume, a
  device file), a file nobody asked for, or any hash mismatch stops it before
  the swap: the live data is never touched.

The stream from the sender is framed: a 4-byte big-endian length, a JSON header,
and for files the bytes. Headers: {"entries": [...]}, {"manifest_end": true},
{"path", "size"} + bytes, {"beat": 1} (idle), {"end": true}. The receiver
writes JSON lines: first {"live": "data" | "empty"} (before it reads its plan, so
fleetmend can choose the carrier), then {"want": [paths]}, {"done": true} (no more asks),
{"progress": [files, bytes]}, and last its outcome: {"ok": true, ...},
{"ok": false, "error": ...} (with "remembered": true when the file that failed
verification had a remembered hash), or {"ok": false, "defer": [...], ...} when the
rest is bigger than its budget and should come over a faster pipe.
"""

from __future__ import annotations

HASH = r"""
import faulthandler, hashlib, mmap, os
faulthandler.enable()  # a file truncated under its mmap kills with SIGBUS: say so on stderr
def tick(): pass  # a helper that must show life during long hashes replaces it
def sha_fd(fd):
    # large files straight from the page cache (no copy), in slices so life shows
    h = hashlib.sha256()
    if os.fstat(fd).st_size >= 1 << 16:
        try:
            with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as m, memoryview(m) as mv:
                for i in range(0, len(mv), 64 << 20):
                    h.update(mv[i:i + (64 << 20)]); tick()
            return h.hexdigest()
        except (OSError, ValueError):
            h = hashlib.sha256(); os.lseek(fd, 0, os.SEEK_SET)
    while True:
        b = os.read(fd, 1 << 16)  # small reads: no large allocation per file
        if not b: return h.hexdigest()
        h.update(b)
def sha(path):
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try: return sha_fd(fd)
    finally: os.close(fd)
"""

WALK = r"""
import fnmatch, grp, pwd, stat, time
known = {}  # rel -> [dev, inode, size, mtime_ns, ctime_ns, sha256]: hashes fleetmend remembered
settled = {"before": 0}  # files changed since (ns) get no stat key: never remembered
def settle(seconds): settled["before"] = time.time_ns() - int(seconds * 1e9)
def stat_key(st): return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
def excluded(rel, is_dir, excludes):
    name = os.path.basename(rel)
    for pat in excludes:
        if pat.endswith("/"):
            if is_dir and (fnmatch.fnmatchcase(rel, pat[:-1]) or fnmatch.fnmatchcase(name, pat[:-1])):
                return True
        elif fnmatch.fnmatchcase(rel, pat) or fnmatch.fnmatchcase(name, pat):
            return True
    return False
names = {}
def owner(st):
    key = (st.st_uid, st.st_gid)
    if key not in names:
        try: u = pwd.getpwuid(st.st_uid).pw_name
        except KeyError: u = str(st.st_uid)
        try: g = grp.getgrgid(st.st_gid).gr_name
        except KeyError: g = str(st.st_gid)
        names[key] = (u, g)
    return names[key]
def walk(root, excludes):
    # every entry, parents before children, in sorted order; what vanishes meanwhile is left out
    if not os.path.isdir(root): return
    for d, dirs, files in os.walk(root):
        reld = os.path.relpath(d, root)
        keep = []
        for n in sorted(dirs):
            rel = os.path.normpath(os.path.join(reld, n))
            if excluded(rel, True, excludes): continue
            try: st = os.lstat(os.path.join(d, n))
            except FileNotFoundError: continue
            if stat.S_ISLNK(st.st_mode):
                files.append(n); continue
            keep.append(n)
            u, g = owner(st)
            yield {"p": rel, "t": "d", "m": stat.S_IMODE(st.st_mode), "u": u, "g": g}
        dirs[:] = keep
        for n in sorted(files):
            rel = os.path.normpath(os.path.join(reld, n))
            if excluded(rel, False, excludes): continue
            p = os.path.join(d, n)
            try:
                st = os.lstat(p); u, g = owner(st)
                e = {"p": rel, "m": stat.S_IMODE(st.st_mode), "u": u, "g": g, "mt": st.st_mtime_ns}
                if stat.S_ISLNK(st.st_mode):
                    e.update(t="l", l=os.readlink(p))
                elif stat.S_ISREG(st.st_mode):
                    key, k = stat_key(st), known.get(rel)
                    if k is not None and k[:5] == key:  # not written since it was hashed
                        e.update(t="f", s=st.st_size, h=k[5], k=key, r=1)
                    else:
                        e.update(t="f", s=st.st_size, h=sha(p))
                        # rememberable if its times stood still long enough before the walk
                        # (a write within the clock's tick, or to a page of a shared map
                        # not yet written back, does not show in them) and while hashed
                        if st.st_ctime_ns < settled["before"] and stat_key(os.lstat(p)) == key:
                            e["k"] = key
                else:
                    e.update(t="x")
            except FileNotFoundError:
                continue
            yield e
"""

MANIFEST = (
    HASH
    + WALK
    + r"""
import json, sys
settle(float(sys.argv[3]))
json.dump(list(walk(sys.argv[1], json.loads(sys.argv[2]))), sys.stdout)
"""
)

SENDER = (
    HASH
    + WALK
    + r"""
import fcntl, json, queue, struct, sys, threading, time, traceback
excludes, mode = json.loads(sys.argv[1]), sys.argv[2]
try: fcntl.fcntl(1, 1031, 1 << 20)  # F_SETPIPE_SZ: fewer, larger writes into sshd
except OSError: pass
def write(b):
    while b: b = b[os.write(1, b):]
def frame(head):
    b = json.dumps(head).encode()
    return struct.pack(">I", len(b)) + b
def die():
    traceback.print_exc(); sys.stderr.flush(); os._exit(1)
work = queue.Queue(256)  # the receiver's asks and the manifest's batches
def read_asks():
    try:
        for line in sys.stdin.buffer:
            msg = json.loads(line); work.put(msg)
            if msg.get("done"): return
        work.put({"done": True})  # nobody can ask any more
    except BaseException: die()
zero_copy = hasattr(os, "sendfile")
def send(rel):
    global zero_copy
    if os.path.isabs(rel) or ".." in rel.split("/"):
        sys.exit("refusing to send " + rel)
    try: fd = os.open(rel, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError: sys.exit("file vanished at the source: " + rel)
    size = os.fstat(fd).st_size
    write(frame({"path": rel, "size": size}))
    off = 0
    while off < size:
        if zero_copy:
            try: n = os.sendfile(1, fd, off, min(size - off, 1 << 24))  # page cache to pipe, no copy
            except OSError: zero_copy = False; continue
        else:
            b = os.pread(fd, min(size - off, 1 << 20), off); write(b); n = len(b)
        if not n: sys.exit("file shrank while sending: " + rel)
        off += n
    os.close(fd)
def serve():
    # the only writer: manifest batches and asked-for files in the order they come, so
    # the hashing never waits for a file to go out; it ends when no more asks can come
    # and the walk is over (None)
    try:
        asking = walking = True
        while asking or walking:
            try: msg = work.get(timeout=2)
            except queue.Empty:
                write(frame({"beat": 1}))  # idle, not gone
                continue
            if msg is None: walking = False
            elif isinstance(msg, bytes): write(msg)
            elif msg.get("done"): asking = False
            else:
                for rel in msg.get("want", ()): send(rel)
        write(frame({"end": True}))
    except BaseException: die()
if mode == "manifest":  # first line: {"known": the hashes fleetmend remembers, "settle": seconds}
    first = json.loads(sys.stdin.buffer.readline() or b"{}")
    known.update(first.get("known") or {}); settle(first.get("settle", 1e9))
threading.Thread(target=read_asks, daemon=True).start()
server = threading.Thread(target=serve); server.start()
try:
    if mode == "manifest":
        batch, nbytes, last = [], 0, time.monotonic()
        for e in walk(".", excludes):
            batch.append(e); nbytes += e.get("s", 0)
            if nbytes >= 4 << 20 or len(batch) >= 100 or time.monotonic() - last > 0.1:
                work.put(frame({"entries": batch}))
                batch, nbytes, last = [], 0, time.monotonic()
        work.put(frame({"entries": batch}) + frame({"manifest_end": True}))
    work.put(None)
    server.join()
except BaseException: die()
"""
)

RECEIVER = (
    HASH
    + r"""
import ctypes, fcntl, grp, json, pwd, shutil, stat, struct, sys, threading, time
live, staging = sys.argv[1], sys.argv[2]
sys.excepthook = lambda kind, value, tb: fail("%s: %s" % (kind.__name__, value))
try: fcntl.fcntl(0, 1031, 1 << 20)  # F_SETPIPE_SZ: fewer, larger reads
except OSError: pass
libc = ctypes.CDLL(None, use_errno=True)
buf = bytearray(1 << 20); view = memoryview(buf); pending = bytearray()  # the stream's buffer
def read_exact(n):
    global pending
    while len(pending) < n:
        b = os.read(0, max(n - len(pending), 1 << 16))
        if not b: break
        pending += b
    out, pending = bytes(pending[:n]), pending[n:]
    return out
def read_line():
    global pending
    while b"\n" not in pending:
        b = os.read(0, 1 << 16)
        if not b: break
        pending += b
    i = pending.find(b"\n") + 1 or len(pending)
    out, pending = bytes(pending[:i]), pending[i:]
    return out
def read_into(n):
    if pending:
        k = min(n, len(pending)); view[:k] = pending[:k]; del pending[:k]; return k
    return os.readv(0, [view[:n]])
say_lock = threading.Lock()
def say(msg):
    b = (json.dumps(msg) + "\n").encode()
    with say_lock:
        while b: b = b[os.write(1, b):]
def fail(msg, **why):
    say(dict(why, ok=False, error=msg)); os._exit(3)
def safe(rel):
    if not isinstance(rel, str) or not rel or rel.startswith("/") or "\0" in rel or os.path.normpath(rel) != rel or rel.split("/")[0] == "..":
        fail("unsafe path from the source: %r" % (rel,))
    return rel
def read_frame():
    raw = read_exact(4)
    if len(raw) < 4: fail("stream from the source ended early")
    try:
        size = struct.unpack(">I", raw)[0]
        if size > 1 << 24: raise ValueError
        head = json.loads(read_exact(size))
        assert isinstance(head, dict)
    except (ValueError, AssertionError, MemoryError, OverflowError):
        fail("garbled stream from the source (corrupted in transit?)")
    return head
by_path, verified, deferred, asks = {}, {}, [], []
live_root = os.path.realpath(live)
count = {"copied": 0, "kept": 0, "received": 0, "bytes": 0, "remembered": 0}
asked, progress_at, done_files, done_bytes = 0, time.monotonic(), 0, 0
def tick():  # a line at least every second or so: fleetmend knows the receiver is alive
    global progress_at
    if time.monotonic() - progress_at > 1:
        progress_at = time.monotonic(); say({"progress": [done_files, done_bytes]})
def progress(nbytes):
    global done_files, done_bytes
    done_files += 1; done_bytes += nbytes; tick()
def clear(p):
    if os.path.isdir(p) and not os.path.islink(p): shutil.rmtree(p)
    elif os.path.lexists(p): os.unlink(p)
made, inside = set(), {}
def parent(p):
    d = os.path.dirname(p)
    if d not in made:
        if not os.path.isdir(d) or os.path.islink(d): clear(d); os.makedirs(d, exist_ok=True)
        made.add(d)
# the target hashes its own copy while the source hashes its, in the same order, on
# threads (the target is being repaired: its cores are free); a file the receiver
# needs before a hasher gets there, it hashes itself
def live_files():
    for d, dirs, files in os.walk(live):
        dirs.sort(); reld = os.path.relpath(d, live)
        for n in sorted(files): yield os.path.normpath(os.path.join(reld, n)), os.path.join(d, n)
to_hash, hashed, taken, busy, hashed_cv = live_files(), {}, set(), set(), threading.Condition()
hashing = {"on": True}
def hash_live():
    while True:
        with hashed_cv:  # the walk advances under the lock: one hasher per file
            if not hashing["on"]: return
            for rel, path in to_hash:
                if rel not in taken: break
            else: return
            busy.add(rel)
        done = None
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            try:
                before = os.fstat(fd)
                if stat.S_ISREG(before.st_mode):
                    digest, after = sha_fd(fd), os.fstat(fd)
                    key = (before.st_ino, before.st_size, before.st_mtime_ns, before.st_ctime_ns)
                    if key == (after.st_ino, after.st_size, after.st_mtime_ns, after.st_ctime_ns):
                        done = (key, digest)
            finally: os.close(fd)
        except OSError: pass
        finally:
            with hashed_cv:
                busy.discard(rel)
                if done: hashed[rel] = done
                hashed_cv.notify_all()
def live_hash(rel, src, st):
    # the hash of this very version of the live file: a hasher's, or hashed now
    key = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    with hashed_cv:
        while rel in busy: hashed_cv.wait(1); tick()
        known = hashed.pop(rel, None)
        if known is None: taken.add(rel)
    if known is not None and known[0] == key: return known[1]
    try: fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError: return None
    try:
        f = os.fstat(fd)
        if (f.st_ino, f.st_size, f.st_mtime_ns, f.st_ctime_ns) != key: return None
        h = sha_fd(fd); f = os.fstat(fd)
        return h if (f.st_ino, f.st_size, f.st_mtime_ns, f.st_ctime_ns) == key else None
    finally: os.close(fd)
def keep_staged(rel, e, dst):
    try: st = os.lstat(dst)
    except FileNotFoundError: return False
    if stat.S_ISREG(st.st_mode) and st.st_size == e["s"]:
        seen = [st.st_size, st.st_mtime_ns, st.st_ino]
        if trusted.get(rel) == seen or sha(dst) == e["h"]:
            verified[rel] = seen; return True
    clear(dst); return False
def link_live(rel, e, dst):
    # what the target already holds with the right hash is linked, not sent
    src, d = os.path.join(live, rel), os.path.dirname(rel)
    if d not in inside:  # never through a link out of the volume
        inside[d] = (os.path.realpath(os.path.join(live, d)) + "/").startswith(live_root + "/")
    if not inside[d]: return False
    try: before = os.lstat(src)
    except OSError: return False
    if not stat.S_ISREG(before.st_mode) or before.st_size != e["s"]: return False
    if live_hash(rel, src, before) != e["h"]: return False  # differs, or changed while hashed
    parent(dst)
    try:
        os.link(src, dst)  # same filesystem: no copy; the old name goes at the swap
        st = os.lstat(dst)  # the very file that was hashed
        ok = (st.st_ino, st.st_size, st.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)
    except OSError:
        shutil.copyfile(src, dst, follow_symlinks=False)
        st = os.lstat(dst); ok = sha(dst) == e["h"]
    if not ok: os.unlink(dst); return False
    verified[rel] = [st.st_size, st.st_mtime_ns, st.st_ino]; return True
def admit(e):
    global asked
    if not isinstance(e, dict): fail("garbled manifest from the source")
    rel = safe(e.get("p"))
    if rel in by_path: fail("the source lists %r twice" % rel)
    t = e.get("t")
    if t == "x": fail("refusing a device, fifo or socket: %r" % rel)
    if t == "l":
        target = e["l"]
        if target.startswith("/") or os.path.normpath(os.path.join(os.path.dirname(rel), target)).split("/")[0] == "..":
            fail("refusing a link leaving the volume: %r -> %r" % (rel, target))
    elif t not in ("d", "f"): fail("garbled manifest from the source: %r" % rel)
    by_path[rel] = e
    if e.get("r"): count["remembered"] += 1
    if t == "d":
        p = os.path.join(staging, rel)
        if not os.path.isdir(p) or os.path.islink(p): clear(p); os.makedirs(p, exist_ok=True)
        made.add(p); return
    if t != "f": return
    if rel in expect:  # listed up front: it comes
        need(e["s"]); return
    dst = os.path.join(staging, rel)
    if not fresh and keep_staged(rel, e, dst): count["kept"] += 1
    elif link_live(rel, e, dst): count["copied"] += 1
    elif listed: fail("local copy missing: %r" % rel)
    elif budget is None or asked + e["s"] <= budget:
        need(e["s"]); expect.add(rel); asks.append(rel); asked += e["s"]
    else:
        need(e["s"]); deferred.append(rel)
    progress(e["s"])
needed = {"bytes": 0, "files": 0}
def need(size):  # what comes from the source must fit: refused before it comes, not at ENOSPC
    needed["bytes"] += -(-size // room["block"]) * room["block"]; needed["files"] += 1
    what = None
    if needed["bytes"] > room["bytes"]:
        what = "%.1f MB, its filesystem has %.1f MB free" % (needed["bytes"] / 1e6, room["bytes"] / 1e6)
    elif room["inodes"] is not None and needed["files"] > room["inodes"]:
        what = "%d inodes, its filesystem has %d free" % (needed["files"], room["inodes"])
    if what:
        fail("no room for the copy next to %s: what must come from the source needs at least %s "
             "(free space or grow it, then re-run)" % (live, what))
def ask():
    global asks
    if asks: say({"want": asks}); asks = []
def receive(head):
    rel = safe(head.get("path"))
    e = by_path.get(rel)
    if e is None or e["t"] != "f" or rel not in expect or rel in verified:
        fail("the source sent a file nobody asked for: %r" % rel)
    if head.get("size") != e["s"]:
        fail("%r does not match the source's manifest (its size changed at the source?)" % rel)
    dst = os.path.join(staging, rel); part = dst + ".part"; parent(dst); clear(part)
    h, left = hashlib.sha256(), e["s"]
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    while left:
        n = read_into(min(left, len(buf)))
        if not n: fail("stream from the source ended inside %r" % rel)
        chunk = view[:n]; h.update(chunk)
        while chunk: chunk = chunk[os.write(fd, chunk):]
        left -= n; tick()
    libc.sync_file_range(fd, ctypes.c_longlong(0), ctypes.c_longlong(0), 2)  # start writing it out now
    os.close(fd)
    if h.hexdigest() != e["h"]:
        os.unlink(part)
        if e.get("r"):
            fail("%r does not match the hash remembered for it at the source: corrupted in transit, "
                 "or the source's copy changed with its size, times and inode as they were "
                 "(silent corruption at the source?)" % rel, remembered=True)
        fail("%r does not match the source's manifest (corrupted in transit or changed at the source)" % rel)
    os.replace(part, dst); st = os.lstat(dst); verified[rel] = [st.st_size, st.st_mtime_ns, st.st_ino]
    count["received"] += 1; count["bytes"] += e["s"]; progress(e["s"])
# first, whether the target holds any data (a wiped one is better served over a faster pipe)
holds = os.path.isdir(live) and bool(os.listdir(live))
say({"live": "data" if holds else "empty"})
def spinning(path):  # a rotating disk reads one file at a time fastest: no seeking between
    try: st = os.stat(path)
    except OSError: return False
    base = "/sys/dev/block/%d:%d" % (os.major(st.st_dev), os.minor(st.st_dev))
    for q in (base + "/queue/rotational", base + "/../queue/rotational"):  # a disk, a partition
        try:
            with open(q) as f: return f.read().strip() == "1"
        except OSError: pass
    return False
for _ in range(1 if spinning(live) else max(1, min(4, os.cpu_count() or 1))):
    threading.Thread(target=hash_live, daemon=True).start()
line = read_line()
if not line: os._exit(0)  # no plan: fleetmend chose another pipe; nothing was changed
plan = json.loads(line)
listed = "send" in plan            # the files to expect are listed up front: nothing is asked for
if listed: hashing["on"] = False   # what is not sent is in staging already, or hashed when met
expect = set(plan.get("send") or ())
trusted = plan.get("staged") or {}  # verified into staging by an earlier pass: [size, mtime, inode]
budget = plan.get("budget")
fresh = not os.path.lexists(staging)
os.makedirs(staging, exist_ok=True)
os.chmod(staging, 0o700)
vfs = os.statvfs(staging)
room = {"bytes": vfs.f_bavail * vfs.f_frsize, "block": vfs.f_frsize or 4096,
        "inodes": vfs.f_favail if vfs.f_files else None}  # no inode limit (btrfs): None
manifest_done = plan.get("manifest") is not None
for i, e in enumerate(plan.get("manifest") or ()):
    admit(e)
    if i % 64 == 63: ask()  # the source starts sending while the rest is compared
ask()
if manifest_done and not listed: say({"done": True})
while True:
    head = read_frame()
    if head.get("end"): break
    if "entries" in head:
        if manifest_done: fail("the source sent a second manifest")
        for e in head["entries"]: admit(e)
        ask()
    elif head.get("manifest_end"):
        if manifest_done: fail("the source sent a second manifest")
        manifest_done = True; say({"done": True})
    elif "path" in head: receive(head)
    elif head.get("beat"): tick()
    else: fail("garbled stream from the source (corrupted in transit?)")
if not manifest_done: fail("stream from the source ended before its manifest did")
missing = sorted(expect - set(verified))
if missing: fail("the source did not send %r" % missing[0])
count["files"] = sum(1 for e in by_path.values() if e["t"] == "f")
if deferred:
    say(dict(count, ok=False, defer=deferred, staged=verified)); sys.exit(0)
if not fresh:  # what an earlier attempt left in staging and the manifest does not list
    for d, dirs, files in os.walk(staging, topdown=False):
        for n in files + dirs:
            p = os.path.join(d, n)
            if os.path.relpath(p, staging) not in by_path: clear(p)
id_cache = {}
def ids(e):
    key = (e["u"], e["g"])
    if key not in id_cache:
        try: u = pwd.getpwnam(e["u"]).pw_uid
        except KeyError: u = int(e["u"]) if e["u"].isdigit() else 0
        try: g = grp.getgrnam(e["g"]).gr_gid
        except KeyError: g = int(e["g"]) if e["g"].isdigit() else 0
        id_cache[key] = (u, g)
    return id_cache[key]
for rel, e in sorted(by_path.items(), key=lambda kv: -kv[0].count("/")):
    p = os.path.join(staging, rel); tick()
    if e["t"] == "l":
        if os.path.isdir(p) and not os.path.islink(p): fail("the source lists %r as a link and as a directory" % rel)
        if os.path.lexists(p): os.unlink(p)
        os.symlink(e["l"], p)
        os.lchown(p, *ids(e)); continue
    if e["t"] == "f" and (rel not in verified or os.path.getsize(p) != e["s"]):
        fail("verification failed for %r" % rel)
    st, (u, g) = os.lstat(p), ids(e)  # linked files mostly have theirs already
    if (st.st_uid, st.st_gid) != (u, g): os.chown(p, u, g, follow_symlinks=False)
    if stat.S_IMODE(st.st_mode) != e["m"]: os.chmod(p, e["m"])
    if e["t"] == "f" and st.st_mtime_ns != e["mt"]: os.utime(p, ns=(e["mt"], e["mt"]), follow_symlinks=False)
fs = os.open(staging, os.O_RDONLY)  # every staged file and directory on disk before the swap
flush = threading.Thread(target=lambda: libc.syncfs(fs) == 0 or os.sync())
flush.start()
while flush.is_alive(): flush.join(1); tick()  # a long writeback is not a hang
os.close(fs)
if os.path.isdir(live):
    st = os.stat(live); os.chown(staging, st.st_uid, st.st_gid); os.chmod(staging, stat.S_IMODE(st.st_mode))
    AT_FDCWD, RENAME_EXCHANGE = -100, 2
    if libc.renameat2(AT_FDCWD, staging.encode(), AT_FDCWD, live.encode(), RENAME_EXCHANGE) != 0:
        fail("atomic swap failed: " + os.strerror(ctypes.get_errno()))
    old = "%s.old-%d" % (staging, os.getpid())  # the replaced data, removed once fleetmend knows
    os.rename(staging, old)
else:
    os.makedirs(os.path.dirname(live), exist_ok=True)
    os.rename(staging, live); old = None
parent_fd = os.open(os.path.dirname(live) or "/", os.O_RDONLY); os.fsync(parent_fd); os.close(parent_fd)
say(dict(count, ok=True))
os.close(1)  # done: fleetmend goes on while the replaced data (and any an earlier run left) is removed
top = os.path.dirname(staging) or "/"
for n in os.listdir(top):
    if n.startswith(os.path.basename(staging) + ".old-"): shutil.rmtree(os.path.join(top, n), ignore_errors=True)
"""
)

SWAP = r"""
# swap a staging directory in for a volume, atomically (the command strategy)
import ctypes, os, shutil, sys
live, staging = sys.argv[1], sys.argv[2]
if os.path.isdir(live):
    st = os.stat(live); os.chown(staging, st.st_uid, st.st_gid); os.chmod(staging, st.st_mode & 0o7777)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.renameat2(-100, staging.encode(), -100, live.encode(), 2) != 0:
        sys.exit("atomic swap failed: " + os.strerror(ctypes.get_errno()))
    shutil.rmtree(staging)
else:
    os.makedirs(os.path.dirname(live), exist_ok=True); os.rename(staging, live)
"""
