# ruff: noqa: E501  -- the helpers are scripts shipped to hosts verbatim; they keep their own shape
"""The helpers fleetmend sends to hosts over SSH: stdlib-only Python, nothing installed.

- MANIFEST walks a volume and prints, per entry, its path, type, size, mode,
  owner, mtime and sha256 (files) or target (links).
- SENDER (on the source) streams the files it is asked for, framed: a 4-byte
  length, a JSON header {"path", "size"}, then the bytes.
- RECEIVER (on the target) takes the source's manifest, copies locally what the
  target already holds with the right hash (delta), writes the rest from the
  stream into a staging directory next to the volume, verifies every file
  against the manifest, fsyncs, and only then swaps staging and live data with
  one atomic rename (RENAME_EXCHANGE); the old data is removed after the swap.
  Any unsafe path (absolute, `..`, a link leaving the volume, a device file) or
  any hash mismatch stops it before the swap: the live data is never touched.
"""

from __future__ import annotations

MANIFEST = r"""
import fnmatch, grp, hashlib, json, os, pwd, stat, sys
root, excludes = sys.argv[1], json.loads(sys.argv[2])
def excluded(rel, is_dir):
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
buf = bytearray(1 << 20); view = memoryview(buf)
def sha(p):
    h = hashlib.sha256()
    with open(p, "rb", buffering=0) as f:
        while True:
            n = f.readinto(buf)
            if not n: return h.hexdigest()
            h.update(view[:n])
out = []
if os.path.isdir(root):
    for d, dirs, files in os.walk(root):
        reld = os.path.relpath(d, root)
        keep = []
        for n in sorted(dirs):
            rel = os.path.normpath(os.path.join(reld, n))
            if excluded(rel, True): continue
            p = os.path.join(d, n); st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                files.append(n); continue
            keep.append(n)
            u, g = owner(st)
            out.append({"p": rel, "t": "d", "m": stat.S_IMODE(st.st_mode), "u": u, "g": g})
        dirs[:] = keep
        for n in sorted(files):
            rel = os.path.normpath(os.path.join(reld, n))
            if excluded(rel, False): continue
            p = os.path.join(d, n); st = os.lstat(p); u, g = owner(st)
            e = {"p": rel, "m": stat.S_IMODE(st.st_mode), "u": u, "g": g, "mt": st.st_mtime_ns}
            if stat.S_ISLNK(st.st_mode):
                e.update(t="l", l=os.readlink(p))
            elif stat.S_ISREG(st.st_mode):
                e.update(t="f", s=st.st_size, h=sha(p))
            else:
                e.update(t="x")
            out.append(e)
json.dump(out, sys.stdout)
"""

SENDER = r"""
import fcntl, json, os, struct, sys
paths = json.loads(sys.stdin.readline())
try: fcntl.fcntl(1, 1031, 1 << 20)  # F_SETPIPE_SZ: fewer, larger writes into sshd
except OSError: pass
def write(b):
    while b: b = b[os.write(1, b):]
zero_copy = hasattr(os, "sendfile")
for rel in paths:
    if os.path.isabs(rel) or ".." in rel.split("/"):
        sys.exit("refusing to send " + rel)
    fd = os.open(rel, os.O_RDONLY)
    size = os.fstat(fd).st_size
    head = json.dumps({"path": rel, "size": size}).encode()
    write(struct.pack(">I", len(head)) + head)
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
head = json.dumps({"end": True}).encode()
write(struct.pack(">I", len(head)) + head)
"""

RECEIVER = r"""
import ctypes, fcntl, grp, hashlib, json, os, pwd, shutil, stat, struct, sys
live, staging = sys.argv[1], sys.argv[2]
try: fcntl.fcntl(0, 1031, 1 << 20)  # F_SETPIPE_SZ: fewer, larger reads
except OSError: pass
libc = ctypes.CDLL(None, use_errno=True)
buf = bytearray(1 << 20); view = memoryview(buf); pending = bytearray()
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
    global pending
    if pending:
        k = min(n, len(pending)); view[:k] = pending[:k]; del pending[:k]; return k
    return os.readv(0, [view[:n]])
def fail(msg):
    print(json.dumps({"ok": False, "error": msg})); sys.stdout.flush(); os._exit(3)
def safe(rel):
    if not rel or rel.startswith("/") or "\0" in rel or os.path.normpath(rel) != rel or rel.split("/")[0] == "..":
        fail("unsafe path from the source: %r" % rel)
    return rel
plan = json.loads(read_line())
manifest, send, known = plan["manifest"], set(plan["send"]), plan.get("known", {})
by_path = {}
for e in manifest:
    rel = safe(e["p"])
    if e["t"] == "x": fail("refusing a device, fifo or socket: %r" % rel)
    if e["t"] == "l":
        target = e["l"]
        if target.startswith("/") or os.path.normpath(os.path.join(os.path.dirname(rel), target)).split("/")[0] == "..":
            fail("refusing a link leaving the volume: %r -> %r" % (rel, target))
    by_path[rel] = e
os.makedirs(staging, exist_ok=True)
os.chmod(staging, 0o700)
def sha(path):
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while True:
            n = f.readinto(buf)
            if not n: return h.hexdigest()
            h.update(view[:n])
for rel, e in sorted(by_path.items()):
    if e["t"] == "d": os.makedirs(os.path.join(staging, rel), exist_ok=True)
copied = kept = 0
verified = set()
for rel, e in sorted(by_path.items()):
    if e["t"] != "f" or rel in send: continue
    dst = os.path.join(staging, rel)
    if os.path.isfile(dst) and not os.path.islink(dst) and sha(dst) == e["h"]:
        kept += 1; verified.add(rel); continue
    src = os.path.join(live, rel)
    if not (os.path.isfile(src) and not os.path.islink(src)): fail("local copy missing: %r" % rel)
    os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
    if os.path.lexists(dst + ".part"): os.unlink(dst + ".part")
    try:
        os.link(src, dst + ".part")  # same filesystem: no copy; the old name goes at the swap
    except OSError:
        shutil.copyfile(src, dst + ".part")
    k, st = known.get(rel), os.stat(dst + ".part")
    unchanged = k is not None and k[2] == e["h"] and k[0] == st.st_size and k[1] == st.st_mtime_ns
    if not unchanged and sha(dst + ".part") != e["h"]:  # hashed moments ago, unless it changed
        fail("local copy changed under us: %r" % rel)
    os.replace(dst + ".part", dst); copied += 1; verified.add(rel)
received = nbytes = 0
while True:
    raw = read_exact(4)
    if len(raw) < 4: fail("stream from the source ended early")
    try:
        size = struct.unpack(">I", raw)[0]
        if size > 1 << 16: raise ValueError
        head = json.loads(read_exact(size))
        assert isinstance(head, dict)
    except (ValueError, AssertionError, MemoryError, OverflowError):
        fail("garbled stream from the source (corrupted in transit?)")
    if head.get("end"): break
    rel = safe(head["path"])
    e = by_path.get(rel)
    if e is None or e["t"] != "f" or rel not in send: fail("the source sent a file nobody asked for: %r" % rel)
    dst = os.path.join(staging, rel)
    if head.get("size") != e["s"]: fail("%r does not match the source's manifest (its size changed at the source?)" % rel)
    h, left = hashlib.sha256(), head["size"]
    fd = os.open(dst + ".part", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    while left:
        n = read_into(min(left, len(buf)))
        if not n: fail("stream from the source ended inside %r" % rel)
        chunk = view[:n]; h.update(chunk)
        while chunk: chunk = chunk[os.write(fd, chunk):]
        left -= n
    libc.sync_file_range(fd, ctypes.c_longlong(0), ctypes.c_longlong(0), 2)  # start writing it out now
    os.close(fd)
    if head["size"] != e["s"] or h.hexdigest() != e["h"]:
        os.unlink(dst + ".part")
        fail("%r does not match the source's manifest (corrupted in transit or changed at the source)" % rel)
    os.replace(dst + ".part", dst); received += 1; nbytes += head["size"]; verified.add(rel)
for d, dirs, files in os.walk(staging, topdown=False):
    for n in files + dirs:
        p = os.path.join(d, n); rel = os.path.relpath(p, staging)
        if rel not in by_path:
            if os.path.isdir(p) and not os.path.islink(p): shutil.rmtree(p)
            else: os.unlink(p)
def ids(e):
    try: u = pwd.getpwnam(e["u"]).pw_uid
    except KeyError: u = int(e["u"]) if e["u"].isdigit() else 0
    try: g = grp.getgrnam(e["g"]).gr_gid
    except KeyError: g = int(e["g"]) if e["g"].isdigit() else 0
    return u, g
for rel, e in sorted(by_path.items(), key=lambda kv: -kv[0].count("/")):
    p = os.path.join(staging, rel)
    if e["t"] == "l":
        if os.path.lexists(p): os.unlink(p)
        os.symlink(e["l"], p)
        os.lchown(p, *ids(e)); continue
    if e["t"] == "f":
        if rel not in verified or not os.path.isfile(p) or os.path.getsize(p) != e["s"]:
            fail("verification failed for %r" % rel)
    os.chown(p, *ids(e)); os.chmod(p, e["m"])
    if e["t"] == "f": os.utime(p, ns=(e["mt"], e["mt"]))
fs = os.open(staging, os.O_RDONLY)  # every staged file and directory on disk before the swap
if libc.syncfs(fs) != 0: os.sync()
os.close(fs)
if os.path.isdir(live):
    st = os.stat(live); os.chown(staging, st.st_uid, st.st_gid); os.chmod(staging, stat.S_IMODE(st.st_mode))
    AT_FDCWD, RENAME_EXCHANGE = -100, 2
    if libc.renameat2(AT_FDCWD, staging.encode(), AT_FDCWD, live.encode(), RENAME_EXCHANGE) != 0:
        fail("atomic swap failed: " + os.strerror(ctypes.get_errno()))
    shutil.rmtree(staging)
else:
    os.makedirs(os.path.dirname(live), exist_ok=True)
    os.rename(staging, live)
parent = os.open(os.path.dirname(live) or "/", os.O_RDONLY); os.fsync(parent); os.close(parent)
print(json.dumps({"ok": True, "received": received, "bytes": nbytes, "copied": copied, "kept": kept}))
"""

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
