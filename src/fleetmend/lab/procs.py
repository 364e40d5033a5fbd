"""Lab processes: start a host's namespaces, find them again by marker, end them.

Every lab host is started as `unshare ... /bin/sh hostinit.sh MARKER ...`, where
MARKER is `fleetmend-lab:<lab dir>:<host>`. The `unshare` process keeps that
marker in its command line for its whole life, so the lab can find exactly the
processes it started, by PID, even when its own record is lost.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from importlib.resources import files
from pathlib import Path

from fleetmend.fsutil import write_atomic

MARKER_PREFIX = "fleetmend-lab:"


def marker(lab_dir: Path, host: str) -> str:
    return f"{MARKER_PREFIX}{lab_dir}:{host}"


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def _stat(pid: int) -> tuple[str, int] | None:
    """(state letter, parent PID) of a process, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1])


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    st = _stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def stopped(pid: int) -> bool:
    st = _stat(pid)
    return st is not None and st[0] in ("T", "t")


def _pids() -> list[int]:
    return [int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit()]


def marked(lab_dir: Path, host: str | None = None) -> dict[int, str]:
    """PID -> host of every live process carrying this lab's marker (for `host`, if given)."""
    prefix = f"{MARKER_PREFIX}{lab_dir}:"
    found = {}
    for pid in _pids():
        for arg in _cmdline(pid):
            if arg.startswith(prefix):
                name = arg[len(prefix) :]
                if (host is None or name == host) and alive(pid):
                    found[pid] = name
                break
    return found


def is_ours(pid: int, lab_dir: Path, host: str) -> bool:
    return marker(lab_dir, host) in _cmdline(pid) and alive(pid)


def children(pid: int) -> list[int]:
    return [p for p in _pids() if (st := _stat(p)) is not None and st[1] == pid]


def init_pid(unshare_pid: int) -> int | None:
    """The host's namespace init (its sshd): the `unshare` process's only child."""
    kids = [p for p in children(unshare_pid) if alive(p)]
    return kids[0] if kids else None


def pid_namespace(pid: int) -> str | None:
    try:
        return str(Path(f"/proc/{pid}/ns/pid").readlink())
    except OSError:
        return None


def in_namespace(init: int) -> list[int]:
    """Every live process in the PID namespace whose init is `init`."""
    ns = pid_namespace(init)
    if ns is None:
        return []
    return [p for p in _pids() if pid_namespace(p) == ns and alive(p)]


def process_names(pid: int) -> set[str]:
    """The names a process goes by: its comm and the base name of its argv[0]."""
    names = set()
    with contextlib.suppress(OSError):
        names.add(Path(f"/proc/{pid}/comm").read_text().strip())
    argv = _cmdline(pid)
    if argv and argv[0].split():
        names.add(Path(argv[0].split()[0]).name)
    return names - {""}


def start_host(
    lab_dir: Path, name: str, host_dir: Path, hide: list[Path], log: Path
) -> subprocess.Popen[bytes]:
    """Start a host: new mount, UTS and PID namespaces, whose first process becomes sshd.

    `--kill-child` ties the namespace to the `unshare` process: if it dies, the
    host's init gets SIGKILL and the namespace, with its mounts, goes with it.
    """
    script = lab_dir / "hostinit.sh"
    text = files("fleetmend.lab").joinpath("hostinit.sh").read_text()
    if not script.is_file() or script.read_text() != text:
        # sh reads its script as it runs: replace the file, never rewrite it in place
        write_atomic(script, text)
    argv = [
        "unshare",
        "--mount",
        "--uts",
        "--pid",
        "--fork",
        "--kill-child",
        "--",
        "/bin/sh",
        str(script),
        marker(lab_dir, name),
        name,
        str(host_dir),
        str(lab_dir),
        *(str(h) for h in hide),
    ]
    with log.open("ab") as out:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
            close_fds=True,
        )


def kill_host(unshare_pid: int, timeout: float = 5.0) -> bool:
    """End a host: SIGKILL its namespace init, which ends the namespace and its mounts.

    `unshare` then reaps the init and exits by itself; it is killed only if it
    does not. Returns True when every process is gone within `timeout`.
    """
    init = init_pid(unshare_pid)
    send_signal(init if init is not None else unshare_pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(unshare_pid)
        if not alive(unshare_pid) and (init is None or not alive(init)):
            return True
        if time.monotonic() > deadline - timeout / 2:
            send_signal(unshare_pid, signal.SIGKILL)
        time.sleep(0.01)
    return False


def send_signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def run_in_host(
    init: int, argv: list[str], *, stdin: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run a command inside a host (its mount, UTS and PID namespaces and its root)."""
    return subprocess.run(
        ["nsenter", "-t", str(init), "-m", "-u", "-p", "-r", "-w", "--", *argv],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive"},
    )


def _reap(pid: int) -> None:
    """Collect the exit status when the process is our child (tests, long-lived callers)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
