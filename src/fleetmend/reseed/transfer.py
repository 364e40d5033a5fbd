"""Re-seed one data volume from a source peer to a target, through fleetmend's own SSH.

The servers need no trust in each other: the source's stream comes to fleetmend
and goes on to the target. Only files the target does not already hold with the
right hash are sent (delta); what staging already holds verified is kept (an
interrupted re-seed resumes). The target verifies every file against the
source's manifest before one atomic swap; the old data stays until then.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from fleetmend.errors import FleetmendError
from fleetmend.images import VolumeSpec
from fleetmend.reseed.helpers import MANIFEST, RECEIVER, SENDER, SWAP
from fleetmend.transport.ssh import Connection, Result, Stream

Manifest = list[dict[str, Any]]


class ReseedError(FleetmendError):
    """A re-seed could not be done safely; the target's live data is as it was."""


@dataclass(frozen=True)
class VolumeResult:
    volume: str
    source: str
    files: int
    sent: int
    bytes: int
    copied_locally: int
    kept_from_staging: int
    seconds: float
    position: str | None


def staging_path(volume: VolumeSpec) -> str:
    path = PurePosixPath(volume.path)
    return str(path.parent / f".{path.name}.fleetmend-staging")


# The system's interpreter first, like Ansible's interpreter discovery: it is always
# there on a server, and starts without a version manager's shims in front of it.
PYTHON = '"$(command -v /usr/bin/python3 || command -v python3)"'

# Below this many bytes to send, the open paramiko channels carry the data: starting
# two OpenSSH clients (a key exchange each) costs more than paramiko's slower relay.
BULK_BYTES = 64 << 20


def _python(script: str, *args: str) -> str:
    return " ".join([PYTHON, "-c", shlex.quote(script), *(shlex.quote(a) for a in args)])


def manifest(conn: Connection, path: str, excludes: list[str]) -> Manifest:
    """The manifest of a volume (or staging directory) on a host; empty when it is absent."""
    result = conn.run(_python(MANIFEST, path, json.dumps(excludes)), timeout=3600)
    if result.exit_code != 0:
        raise ReseedError(
            f"{conn.target.name}: manifest of {path} failed: {result.stderr.strip()[-300:]}"
        )
    try:
        data = json.loads(result.stdout)
    except json.JSONDecodeError:
        raise ReseedError(f"{conn.target.name}: unreadable manifest of {path}") from None
    return list(data)


def content_digest(entries: Manifest) -> str:
    """What two copies must agree on: paths, types, sizes, hashes, link targets."""
    key = sorted((e["p"], e["t"], e.get("s"), e.get("h"), e.get("l")) for e in entries)
    return hashlib.sha256(json.dumps(key).encode()).hexdigest()


def _run_hook(conn: Connection, volume: VolumeSpec, hook: str | None, what: str) -> None:
    if not hook:
        return
    result = conn.run(f"cd {shlex.quote(volume.path)} 2>/dev/null; sh -c {shlex.quote(hook)}")
    if result.exit_code != 0:
        raise ReseedError(
            f"{conn.target.name}: {what} hook failed (exit {result.exit_code}): "
            f"{(result.stderr or result.stdout).strip()[-300:]}"
        )


def _position(conn: Connection, volume: VolumeSpec) -> str | None:
    if volume.position is None:
        return None
    result = conn.run(f"cd {shlex.quote(volume.path)} && sh -c {shlex.quote(volume.position)}")
    text = result.stdout.strip()
    return text if result.exit_code == 0 and text else None


def _openssh_pair(
    source: Connection, target: Connection, send_cmd: str, receive_cmd: str
) -> tuple[list[str], list[str]] | None:
    src, dst = source.openssh_argv(send_cmd), target.openssh_argv(receive_cmd)
    return (src, dst) if src and dst else None


def _relay_openssh(
    src_argv: list[str], dst_argv: list[str], plan: bytes, request: bytes
) -> tuple[Result, Result]:
    """The bulk path: two OpenSSH clients joined by a pipe on this machine.

    The target's receiver first reads the plan, then the source's stream; the
    hosts still never talk to each other.
    """
    read_fd, write_fd = os.pipe()
    receiver = subprocess.Popen(
        dst_argv, stdin=read_fd, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    os.close(read_fd)
    with os.fdopen(write_fd, "wb", buffering=0) as pipe:
        pipe.write(plan)
        sender = subprocess.Popen(
            src_argv, stdin=subprocess.PIPE, stdout=pipe, stderr=subprocess.PIPE
        )
        _, s_err = sender.communicate(request)
    r_out, r_err = receiver.communicate()
    return (
        Result("", s_err.decode(errors="replace"), sender.returncode, 0.0),  # stdout: the pipe
        Result(
            r_out.decode(errors="replace"), r_err.decode(errors="replace"), receiver.returncode, 0.0
        ),
    )


def _relay(
    source: Stream,
    target: Stream,
    max_rate: float | None,
    tamper: Callable[[bytes], bytes] | None = None,
) -> int:
    """Copy source's stdout to target's stdin, at most `max_rate` bytes a second."""
    start, total = time.monotonic(), 0
    while True:
        chunk = source.recv(1 << 20 if max_rate is None else max(4096, int(max_rate / 20)))
        if not chunk:
            return total
        target.send(tamper(chunk) if tamper else chunk)
        total += len(chunk)
        if max_rate:
            ahead = total / max_rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)


def _reseed_command(
    name: str, volume: VolumeSpec, source: Connection, target: Connection, max_rate: float | None
) -> VolumeResult:
    """The `command` strategy: `dump` on the source, relayed into `restore` on the target.

    `restore` writes into $FLEETMEND_STAGING; FLEETMEND_SOURCE (the source's
    name) and FLEETMEND_SOURCE_ADDRESS are set for it. The staging directory is
    swapped in only when restore succeeded and the volume's health command
    passes on it; the old data stays until then.
    """
    start = time.monotonic()
    assert volume.reseed.dump is not None and volume.reseed.restore is not None
    staging = staging_path(volume)
    env = (
        f"FLEETMEND_STAGING={shlex.quote(staging)} "
        f"FLEETMEND_SOURCE={shlex.quote(source.target.name)} "
        f"FLEETMEND_SOURCE_ADDRESS={shlex.quote(source.target.address)}"
    )
    prepare = target.run(f"rm -rf {shlex.quote(staging)} && mkdir -p {shlex.quote(staging)}")
    if prepare.exit_code != 0:
        raise ReseedError(f"{target.target.name}: cannot make {staging}: {prepare.stderr.strip()}")
    _run_hook(target, volume, volume.hooks.before_reseed, "before_reseed")
    restore = target.stream(
        f"cd {shlex.quote(staging)} && {env} sh -c {shlex.quote(volume.reseed.restore)}"
    )
    dump = source.stream(
        f"cd {shlex.quote(volume.path)} && sh -c {shlex.quote(volume.reseed.dump)}"
    )
    dump.close_input()
    moved = _relay(dump, restore, max_rate)
    dumped = dump.finish()
    restore.close_input()
    restored = restore.finish()
    if dumped.exit_code != 0 or restored.exit_code != 0:
        target.run(f"rm -rf {shlex.quote(staging)}")
        raise ReseedError(
            f"re-seed of {target.target.name}:{volume.path} from {source.target.name} stopped, "
            f"live data untouched: dump exited {dumped.exit_code}, restore exited "
            f"{restored.exit_code}: {(dumped.stderr + restored.stderr).strip()[-300:]}"
        )
    if volume.health:
        healthy = target.run(f"cd {shlex.quote(staging)} && sh -c {shlex.quote(volume.health)}")
        if healthy.exit_code != 0:
            target.run(f"rm -rf {shlex.quote(staging)}")
            raise ReseedError(
                f"{target.target.name}: restored data fails {name}'s health command; "
                "live data untouched"
            )
    swap = target.run(_python(SWAP, volume.path, staging))
    if swap.exit_code != 0:
        raise ReseedError(f"{target.target.name}: swap failed: {swap.stderr.strip()[-300:]}")
    _run_hook(target, volume, volume.hooks.after_reseed, "after_reseed")
    return VolumeResult(
        volume=name,
        source=source.target.name,
        files=0,
        sent=0,
        bytes=moved,
        copied_locally=0,
        kept_from_staging=0,
        seconds=time.monotonic() - start,
        position=_position(target, volume),
    )


def reseed_volume(
    name: str,
    volume: VolumeSpec,
    source: Connection,
    target: Connection,
    *,
    max_rate: float | None = None,
    tamper: Callable[[bytes], bytes] | None = None,
    source_manifest: Manifest | None = None,
) -> VolumeResult:
    """Copy `volume` from `source` to `target`, verified, swapped in atomically.

    `source_manifest`, when the caller already read it (choosing the source by
    majority), is not read again: the receiver still checks every byte against it.
    `max_rate` (bytes per second) bounds what the re-seed takes from its source.
    `tamper` alters the stream on its way (fault injection for drills and tests:
    a corrupted transfer must be caught before the swap).
    """
    if volume.reseed.strategy == "command":
        return _reseed_command(name, volume, source, target, max_rate)
    start = time.monotonic()
    # the three manifests are read at once: each host hashes its own data
    with ThreadPoolExecutor(max_workers=3) as pool:
        wanted_f = pool.submit(
            lambda: source_manifest or manifest(source, volume.path, volume.exclude)
        )
        live_f = pool.submit(manifest, target, volume.path, volume.exclude)
        staged_f = pool.submit(manifest, target, staging_path(volume), [])
        wanted = wanted_f.result()
        live_entries, staged_entries = live_f.result(), staged_f.result()
    odd = [e["p"] for e in wanted if e["t"] == "x"]
    if odd:
        raise ReseedError(
            f"{source.target.name}:{volume.path} holds device files, fifos or sockets "
            f"({', '.join(odd[:3])}): refusing to copy them"
        )
    source_position = _position(source, volume)
    live = {e["p"]: e.get("h") for e in live_entries if e["t"] == "f"}
    staged = {e["p"]: e.get("h") for e in staged_entries if e["t"] == "f"}
    # what the target's files were when hashed: the receiver re-reads only those changed since
    known = {e["p"]: [e["s"], e["mt"], e["h"]] for e in live_entries if e["t"] == "f"}
    send = [
        e["p"]
        for e in wanted
        if e["t"] == "f" and live.get(e["p"]) != e["h"] and staged.get(e["p"]) != e["h"]
    ]
    _run_hook(target, volume, volume.hooks.before_reseed, "before_reseed")
    receive = _python(RECEIVER, volume.path, staging_path(volume))
    plan = (json.dumps({"manifest": wanted, "send": send, "known": known}) + "\n").encode()
    send_cmd = f"cd {shlex.quote(volume.path)} && {_python(SENDER)}"
    size = {e["p"]: e["s"] for e in wanted if e["t"] == "f"}
    bulk = sum(size[p] for p in send) >= BULK_BYTES and not (max_rate or tamper)
    fast = _openssh_pair(source, target, send_cmd, receive) if bulk else None
    if fast is not None:
        sent, received = _relay_openssh(*fast, plan, (json.dumps(send) + "\n").encode())
    else:
        receiver = target.stream(receive)
        receiver.send(plan)
        sender = source.stream(send_cmd)
        sender.send((json.dumps(send) + "\n").encode())
        sender.close_input()
        _relay(sender, receiver, max_rate, tamper)
        sent = sender.finish()
        receiver.close_input()
        received = receiver.finish()
    try:
        outcome = json.loads(received.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        outcome = {"ok": False, "error": received.stderr.strip()[-300:] or "no answer"}
    if not outcome.get("ok"):
        raise ReseedError(
            f"re-seed of {target.target.name}:{volume.path} from {source.target.name} stopped, "
            f"live data untouched: {outcome.get('error')}"
            + (f" (source: {sent.stderr.strip()[-200:]})" if sent.exit_code else "")
        )
    _run_hook(target, volume, volume.hooks.after_reseed, "after_reseed")
    position = _position(target, volume)
    if volume.position is not None and position is None:
        raise ReseedError(
            f"{target.target.name}: {name}'s position command fails after the re-seed"
        )
    return VolumeResult(
        volume=name,
        source=source.target.name,
        files=sum(1 for e in wanted if e["t"] == "f"),
        sent=int(outcome["received"]),
        bytes=int(outcome["bytes"]),
        copied_locally=int(outcome["copied"]),
        kept_from_staging=int(outcome["kept"]),
        seconds=time.monotonic() - start,
        position=position or source_position,
    )
