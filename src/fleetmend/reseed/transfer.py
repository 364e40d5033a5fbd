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
import shlex
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from fleetmend.errors import FleetmendError
from fleetmend.images import VolumeSpec
from fleetmend.reseed import memory
from fleetmend.reseed.exchange import (
    Manifest,
    Tamper,
    exchange_openssh,
    exchange_paramiko,
    failure,
    lines,
    messages,
    relay,
)
from fleetmend.reseed.helpers import MANIFEST, RECEIVER, SENDER, SWAP
from fleetmend.reseed.memory import Known
from fleetmend.transport.ssh import Connection, Result, Unreachable


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
    strategy: str = "files"
    remembered: int = 0
    """Files whose hash the source took from fleetmend's memory instead of hashing."""

    def describe(self) -> str:
        """One line for a person: what came from where, and where the copy stands."""
        if self.strategy == "command":
            relayed = f"{self.bytes} bytes relayed" if self.bytes else "fetched by the target"
            how = f"restored by its command ({relayed})"
        else:
            how = (
                f"{self.sent} of {self.files} files sent ({self.bytes} bytes), "
                f"{self.copied_locally} kept locally"
            )
            if self.kept_from_staging:
                how += f", {self.kept_from_staging} resumed from staging"
            if self.remembered:
                how += f", {self.remembered} unchanged at the source (hashes remembered)"
        where = f"position {self.position}, {self.seconds:.1f}s"
        return f"{self.volume} from {self.source}: {how}, {where}"


# The system's interpreter first, like Ansible's interpreter discovery: it is always
# there on a server, and starts without a version manager's shims in front of it.
PYTHON = '"$(command -v /usr/bin/python3 || command -v python3)"'

# Up to this many bytes ride the open paramiko channels while both hosts hash; the
# rest (a wiped host, a big change) comes afterwards over two OpenSSH clients, whose
# start (a key exchange each) costs more than paramiko's slower relay of a little.
BUDGET = 32 << 20


def _python(script: str, *args: str) -> str:
    return " ".join([PYTHON, "-c", shlex.quote(script), *(shlex.quote(a) for a in args)])


def manifest(conn: Connection, path: str, excludes: list[str]) -> Manifest:
    """The manifest of a volume (or staging directory) on a host; empty when it is absent."""
    result = conn.run(
        _python(MANIFEST, path, json.dumps(excludes), str(memory.SETTLE)), timeout=3600
    )
    if result.exit_code != 0:
        raise ReseedError(
            f"{conn.target.name}: manifest of {path} failed: {failure(result.stderr)}"
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


def _reseed_command(
    name: str, volume: VolumeSpec, source: Connection, target: Connection, max_rate: float | None
) -> VolumeResult:
    """The `command` strategy: `dump` on the source, relayed into `restore` on the
    target; without `dump`, `restore` alone, fetching from the source itself.

    The commands come rendered (`Fleet.reseed_volume`). `restore` writes into
    $FLEETMEND_STAGING; FLEETMEND_SOURCE (the source's name) and
    FLEETMEND_SOURCE_ADDRESS are set for it. The staging directory is swapped in
    only when restore succeeded and the volume's health command passes on it;
    the old data stays until then.
    """
    start = time.monotonic()
    assert volume.reseed.restore is not None
    staging = volume.staging
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
    moved, dumped = 0, Result("", "", 0, 0.0)
    if volume.reseed.dump is not None:  # else restore fetches from the source itself
        dump = source.stream(
            f"cd {shlex.quote(volume.path)} && sh -c {shlex.quote(volume.reseed.dump)}"
        )
        dump.close_input()
        moved = relay(dump, restore, max_rate)
        dumped = dump.finish()
    restore.close_input()
    restored = restore.wait()  # however long it takes after its input ends, while it answers
    if dumped.exit_code != 0 or restored.exit_code != 0:
        target.run(f"rm -rf {shlex.quote(staging)}")
        exits = f"restore exited {restored.exit_code}"
        if volume.reseed.dump is not None:
            exits = f"dump exited {dumped.exit_code}, {exits}"
        raise ReseedError(
            f"re-seed of {target.target.name}:{volume.path} from {source.target.name} stopped, "
            f"live data untouched: {exits}: "
            f"{(dumped.stderr + restored.stderr).strip()[-300:]}"
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
        strategy="command",
    )


def reseed_volume(
    name: str,
    volume: VolumeSpec,
    source: Connection,
    target: Connection,
    *,
    max_rate: float | None = None,
    tamper: Tamper | None = None,
    source_manifest: Manifest | None = None,
    known: Known | None = None,
    on_manifest: Callable[[Manifest], None] | None = None,
) -> VolumeResult:
    """Copy `volume` from `source` to `target`, verified, swapped in atomically.

    Both hosts work at once: the source hashes its files and streams the
    manifest as it goes (or only serves, when the caller already read
    `source_manifest` choosing the source by majority); the target hashes its
    own copy meanwhile, links each file that matches, and asks for the rest,
    which the source sends while it is still hashing. A wiped target gets
    everything over OpenSSH from the start; on a target that holds data, what
    is over BUDGET comes afterwards over OpenSSH.
    `max_rate` (bytes per second) bounds what the re-seed takes from its source.
    `tamper` alters the stream on its way (fault injection for drills and tests:
    a corrupted transfer must be caught before the swap).
    `known` is what fleetmend remembers of the source's hashes (see memory.py):
    the source hashes only the files changed since. `on_manifest` gets the
    source's manifest when fleetmend followed it whole, to remember.
    """
    if volume.reseed.strategy == "command":
        return _reseed_command(name, volume, source, target, max_rate)
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=1) as pool:
        source_position = pool.submit(_position, source, volume)
        _run_hook(target, volume, volume.hooks.before_reseed, "before_reseed")
        receive = _python(RECEIVER, volume.path, volume.staging)
        send = _sender(volume, "serve" if source_manifest is not None else "manifest")
        # a walking sender reads first what fleetmend remembers of its hashes
        first = (
            [] if source_manifest is not None else [{"known": known or {}, "settle": memory.SETTLE}]
        )
        fast = None
        if not (max_rate or tamper):
            src_argv, dst_argv = source.openssh_argv(send), target.openssh_argv(receive)
            fast = (src_argv, dst_argv) if src_argv and dst_argv else None
        # both start at once (their interpreters start side by side); the receiver says
        # first whether the target holds any data. On a wiped target this sender is
        # dropped for OpenSSH ones before it is told anything.
        sender, receiver = source.stream(send), target.stream(receive)
        said = messages(receiver)
        wiped = next(said, {}).get("live") == "empty"
        entries: Manifest | None = None
        plan: dict[str, Any]
        if fast is not None and wiped:  # everything must be sent: the faster pipe from the start
            receiver.close_input()  # it leaves without a plan, having changed nothing
            sender.channel.close()
            receiver.finish()
            plan = {"manifest": source_manifest, "budget": None}
            outcome, sent = exchange_openssh(*fast, plan, first)
            totals = dict(outcome)
        else:
            if first:  # only to the sender that goes on: the map may be large
                with suppress(Unreachable):  # a sender gone at once says why on stderr, below
                    sender.send(lines(first))
            plan = {"manifest": source_manifest, "budget": BUDGET if fast else None}
            outcome, entries, sent = exchange_paramiko(
                sender, receiver, said, plan, max_rate, tamper
            )
            totals = dict(outcome)
            if outcome.get("defer") and fast is not None:
                # the rest is large: over OpenSSH, the receiver told up front what comes
                wanted = source_manifest if source_manifest is not None else entries
                if wanted is None:
                    raise ReseedError(f"{source.target.name}: its manifest could not be followed")
                plan = {"manifest": wanted, "send": outcome["defer"], "staged": outcome["staged"]}
                serve = (_sender_argv(source, volume), fast[1])
                asks = [{"want": outcome["defer"]}, {"done": True}]
                outcome, sent = exchange_openssh(*serve, plan, asks)
                for key in ("received", "bytes"):
                    totals[key] = int(totals[key]) + int(outcome.get(key, 0))
        if not outcome.get("ok"):
            said_by_source = failure(sent.stderr) if sent.exit_code else ""
            raise ReseedError(
                f"re-seed of {target.target.name}:{volume.path} from {source.target.name} "
                f"stopped, live data untouched: {outcome.get('error')}"
                + (f" (source: {said_by_source})" if said_by_source else ""),
                "`fleetmend scrub` shows which copy is right; `fleetmend reseed --rehash` "
                "hashes the source afresh"
                if outcome.get("remembered")
                else "",
            )
        if entries is not None and on_manifest is not None:
            on_manifest(entries)
        _run_hook(target, volume, volume.hooks.after_reseed, "after_reseed")
        position = _position(target, volume)
        if volume.position is not None and position is None:
            raise ReseedError(
                f"{target.target.name}: {name}'s position command fails after the re-seed"
            )
        return VolumeResult(
            volume=name,
            source=source.target.name,
            files=int(totals["files"]),
            sent=int(totals["received"]),
            bytes=int(totals["bytes"]),
            copied_locally=int(totals["copied"]),
            kept_from_staging=int(totals["kept"]),
            seconds=time.monotonic() - start,
            position=position or source_position.result(),
            remembered=int(totals.get("remembered", 0)),
        )


def _sender(volume: VolumeSpec, mode: str) -> str:
    return f"cd {shlex.quote(volume.path)} && {_python(SENDER, json.dumps(volume.exclude), mode)}"


def _sender_argv(source: Connection, volume: VolumeSpec) -> list[str]:
    argv = source.openssh_argv(_sender(volume, "serve"))
    assert argv is not None  # the same client started the first part
    return argv
