"""Faults the lab injects for drills and tests, and how each is undone.

- down: the host's namespaces end; connections are refused. Undo: start again, layer kept.
- wipe-disk: down, and its writable layer (data volumes too) is lost. Undo: none, reimage.
- corrupt-data: one byte flipped in some files of a data volume, size and mtime kept
  (silent corruption). Undo: the bytes are restored.
- drift-file: a managed file gets a line appended (or is created). Undo: content restored.
- remove-package: `dpkg --remove` of a declared package in the host. Undo: none, converge.
- stop-service: the processes of a declared service end. Undo: none, converge.
- hang: sshd is frozen (SIGSTOP): TCP connects, no SSH banner comes. Undo: resumed.

File faults run inside the host (`nsenter` into its namespaces and root), so
they change exactly what a process on the host would change.
"""

from __future__ import annotations

import json
import signal
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fleetmend.errors import FleetmendError
from fleetmend.lab import procs
from fleetmend.lab.state import Fault, FaultRecord, LabHostRecord

if TYPE_CHECKING:
    from fleetmend.lab.lab import Lab

UNDOABLE = frozenset({Fault.DOWN, Fault.CORRUPT_DATA, Fault.DRIFT_FILE, Fault.HANG})
NEEDS_RUNNING = frozenset(
    {Fault.CORRUPT_DATA, Fault.DRIFT_FILE, Fault.REMOVE_PACKAGE, Fault.STOP_SERVICE, Fault.HANG}
)
DRIFT_LINE = "# drift injected by fleetmend lab\n"


class FaultError(FleetmendError):
    """A fault cannot be injected or undone as asked."""


@dataclass(frozen=True)
class FaultOptions:
    volume: str | None = None
    path: str | None = None
    package: str | None = None
    service: str | None = None
    count: int = 3
    seed: int = 0


_CORRUPT = r"""
import json, os, random, sys
root, count, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
files = []
for d, _, names in os.walk(root):
    for n in names:
        p = os.path.join(d, n)
        if os.path.isfile(p) and not os.path.islink(p) and os.path.getsize(p) > 0:
            files.append(p)
rng = random.Random(seed)
out = []
for path in sorted(rng.sample(sorted(files), min(count, len(files)))):
    st = os.stat(path)
    offset = rng.randrange(st.st_size)
    with open(path, "r+b") as f:
        f.seek(offset)
        before = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([before ^ 0xFF]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    out.append({"path": path, "offset": offset, "before": before})
print(json.dumps(out))
"""

_UNCORRUPT = r"""
import json, os, sys
for item in json.load(sys.stdin):
    st = os.stat(item["path"])
    with open(item["path"], "r+b") as f:
        f.seek(item["offset"])
        f.write(bytes([item["before"]]))
    os.utime(item["path"], ns=(st.st_atime_ns, st.st_mtime_ns))
"""

_DRIFT = r"""
import base64, json, os, sys
path, line = sys.argv[1], sys.argv[2]
saved = {"path": path, "existed": os.path.exists(path)}
if saved["existed"]:
    st = os.stat(path)
    with open(path, "rb") as f:
        saved["content"] = base64.b64encode(f.read()).decode()
    saved.update(mode=st.st_mode & 0o7777, uid=st.st_uid, gid=st.st_gid, mtime=st.st_mtime_ns)
else:
    os.makedirs(os.path.dirname(path), exist_ok=True)
with open(path, "a") as f:
    f.write(line)
print(json.dumps(saved))
"""

_UNDRIFT = r"""
import base64, json, os, sys
saved = json.load(sys.stdin)
path = saved["path"]
if not saved["existed"]:
    os.unlink(path)
else:
    with open(path, "wb") as f:
        f.write(base64.b64decode(saved["content"]))
    os.chmod(path, saved["mode"])
    os.chown(path, saved["uid"], saved["gid"])
    os.utime(path, ns=(saved["mtime"], saved["mtime"]))
"""


def _python(init: int, code: str, *args: str, stdin: str | None = None) -> str:
    result = procs.run_in_host(init, ["python3", "-c", code, *args], stdin=stdin)
    if result.returncode != 0:
        raise FaultError(f"fault helper failed inside the host: {result.stderr.strip()[-300:]}")
    return result.stdout


def _pick(kind: str, given: str | None, declared: list[str], host: LabHostRecord) -> str:
    if given is not None:
        return given
    if not declared:
        raise FaultError(
            f"host {host.name}'s image ({host.image or 'none'}) declares no {kind}",
            f"name one with --{kind}",
        )
    return declared[0]


def inject(lab: Lab, host: LabHostRecord, fault: Fault, opts: FaultOptions) -> FaultRecord:
    """Inject `fault` into a running host and return what is needed to undo it."""
    init = lab.init_of(host)
    if fault in NEEDS_RUNNING and init is None:
        raise FaultError(
            f"host {host.name} is not running", "heal it first: fleetmend lab heal-fault"
        )
    detail: dict[str, Any] = {}
    if fault is Fault.DOWN:
        lab.stop_host(host)
    elif fault is Fault.WIPE_DISK:
        lab.stop_host(host)
        lab.wipe_layer(host.name)
    elif fault is Fault.HANG:
        assert init is not None
        procs.send_signal(init, signal.SIGSTOP)
        detail["pid"] = init
    elif fault is Fault.CORRUPT_DATA:
        assert init is not None
        name = _pick("volume", opts.volume, sorted(host.volumes), host)
        if name not in host.volumes:
            raise FaultError(
                f"host {host.name} has no volume {name!r}",
                f"its volumes: {', '.join(sorted(host.volumes)) or 'none'}",
            )
        path = host.volumes[name].path
        flipped = json.loads(_python(init, _CORRUPT, path, str(opts.count), str(opts.seed)))
        if not flipped:
            raise FaultError(
                f"volume {name} ({path}) on {host.name} has no files to corrupt",
                "write some data into it first",
            )
        detail = {"volume": name, "flipped": flipped}
    elif fault is Fault.DRIFT_FILE:
        assert init is not None
        path = _pick("path", opts.path, host.files, host)
        detail = json.loads(_python(init, _DRIFT, path, DRIFT_LINE))
    elif fault is Fault.REMOVE_PACKAGE:
        assert init is not None
        detail = {"package": _remove_package(init, host, opts.package)}
    elif fault is Fault.STOP_SERVICE:
        assert init is not None
        detail = _stop_service(init, host, opts.service)
    return FaultRecord(fault=fault, at=time.time(), detail=detail)


def undo(lab: Lab, host: LabHostRecord, record: FaultRecord) -> None:
    """Undo one injected fault, or raise `FaultError` saying how to recover instead."""
    fault = record.fault
    if fault is Fault.WIPE_DISK:
        raise FaultError(
            f"{host.name}'s disk was wiped; nothing to restore",
            f"rebuild it: fleetmend lab reimage {host.name}",
        )
    if fault is Fault.REMOVE_PACKAGE:
        raise FaultError(
            f"package {record.detail['package']} was removed from {host.name}",
            "converge the host to reinstall it, or fleetmend lab reimage",
        )
    if fault is Fault.STOP_SERVICE:
        raise FaultError(
            f"service {record.detail['service']} was stopped on {host.name}",
            "converge the host to start it again",
        )
    if fault is Fault.DOWN:
        lab.start_host(host)
        return
    init = lab.init_of(host)
    if init is None:
        raise FaultError(f"host {host.name} is not running", "heal its 'down' fault first")
    if fault is Fault.HANG:
        procs.send_signal(init, signal.SIGCONT)
    elif fault is Fault.CORRUPT_DATA:
        _python(init, _UNCORRUPT, stdin=json.dumps(record.detail["flipped"]))
    elif fault is Fault.DRIFT_FILE:
        _python(init, _UNDRIFT, stdin=json.dumps(record.detail))


def _remove_package(init: int, host: LabHostRecord, given: str | None) -> str:
    candidates = [given] if given else [p for p in host.packages if not p.startswith("openssh")]
    for package in candidates:
        query = procs.run_in_host(init, ["dpkg-query", "-W", "-f", "${Status}", package])
        if query.returncode == 0 and "install ok installed" in query.stdout:
            removed = procs.run_in_host(init, ["dpkg", "--remove", "--force-depends", package])
            if removed.returncode != 0:
                raise FaultError(
                    f"dpkg could not remove {package} on {host.name}: "
                    f"{removed.stderr.strip()[-300:]}"
                )
            return package
    raise FaultError(
        f"none of {', '.join(candidates) or 'the declared packages'} is installed on {host.name}",
        "name an installed package with --package",
    )


def _stop_service(init: int, host: LabHostRecord, given: str | None) -> dict[str, Any]:
    service = _pick("service", given, [s for s in host.services if s not in ("ssh", "sshd")], host)
    if service in ("ssh", "sshd"):
        raise FaultError("sshd is the host's first process", "use --fault down or --fault hang")
    victims = [
        p for p in procs.in_namespace(init) if p != init and service in procs.process_names(p)
    ]
    if not victims:
        raise FaultError(f"no process named {service!r} runs on {host.name}")
    for pid in victims:
        procs.send_signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and any(procs.alive(p) for p in victims):
        time.sleep(0.02)
    for pid in victims:
        if procs.alive(pid):
            procs.send_signal(pid, signal.SIGKILL)
    return {"service": service, "pids": victims}
