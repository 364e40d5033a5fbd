"""`fleetmend check`: probe every host in scope once, in parallel, and judge it.

The walk: desired state per host (render) -> one probe per host over SSH ->
facts -> drift items -> waivers -> verdict; then replica sets against their
floors. Nothing on any host is changed: the probe only reads.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from fleetmend.drift import DriftItem, DriftKind, Verdict, drift, verdict
from fleetmend.errors import ExitCode
from fleetmend.facts import Facts, ProbeError, parse_probe, probe_script
from fleetmend.fleet import Fleet
from fleetmend.inventory import Host, Inventory
from fleetmend.render import DesiredState
from fleetmend.transport.ssh import (
    Connections,
    KnownHosts,
    Timeouts,
    Unreachable,
    own_known_hosts,
)
from fleetmend.transport.target import target_for
from fleetmend.waivers import Waiver, apply_waivers

DEFAULT_FORKS = 20


class HostReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    host: str
    image: str
    replica_set: str | None
    site: str | None
    verdict: Verdict
    reason: str | None = None
    """Why a host is unreachable (timeout, refused, auth, host-key, dns, error)."""
    detail: str = ""
    items: list[DriftItem] = []
    volumes: dict[str, dict[str, Any]] = {}
    """Per data volume: position, health exit code, size and free space (KiB)."""
    seconds: float = 0.0

    @property
    def counted(self) -> list[DriftItem]:
        return [i for i in self.items if i.waived is None]

    @property
    def waived(self) -> list[DriftItem]:
        return [i for i in self.items if i.waived is not None]


class ReplicaSetReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    min_live: int
    members: list[str]
    checked: list[str]
    healthy: list[str]

    @property
    def under_floor(self) -> bool:
        """Certainly under the floor: even every unchecked member healthy would not be enough."""
        unchecked = len(self.members) - len(self.checked)
        return len(self.healthy) + unchecked < self.min_live


class CheckReport(BaseModel):
    source: str
    started_at: str
    seconds: float
    hosts: list[HostReport]
    replica_sets: list[ReplicaSetReport]
    expired_waivers: list[str] = []

    def counts(self) -> dict[Verdict, int]:
        return {v: sum(1 for h in self.hosts if h.verdict is v) for v in Verdict}

    def exit_code(self) -> ExitCode:
        counts = self.counts()
        if counts[Verdict.FAILED] or counts[Verdict.UNREACHABLE]:
            return ExitCode.HOSTS_FAILED
        if counts[Verdict.DRIFTED]:
            return ExitCode.DRIFT
        return ExitCode.OK


def judge(
    host: Host, desired: DesiredState, facts: Facts, waivers: list[Waiver], today: date
) -> tuple[Verdict, list[DriftItem]]:
    """Pure: the verdict and items of one probed host."""
    items = apply_waivers(drift(desired, facts), host.name, host.groups, waivers, today)
    return verdict(items), items


def replica_sets(inventory: Inventory, reports: list[HostReport]) -> list[ReplicaSetReport]:
    """Pure: each replica set with members in scope, its healthy copies against its floor.

    A copy is healthy when its host was probed and is not failed: a drifted
    host still holds good data.
    """
    by_host = {r.host: r for r in reports}
    out = []
    for rs in inventory.replica_sets.values():
        checked = [m for m in rs.members if m in by_host]
        if not checked:
            continue
        healthy = [
            m for m in checked if by_host[m].verdict in (Verdict.CONFORMANT, Verdict.DRIFTED)
        ]
        out.append(
            ReplicaSetReport(
                name=rs.name,
                min_live=rs.min_live,
                members=rs.members,
                checked=checked,
                healthy=healthy,
            )
        )
    return out


@dataclass
class CheckOptions:
    state_dir: Path
    forks: int = DEFAULT_FORKS
    timeouts: Timeouts = field(default_factory=Timeouts)
    accept_new: bool = False
    ssh_config: Path | None = field(default_factory=lambda: Path.home() / ".ssh" / "config")
    user_known_hosts: list[Path] = field(
        default_factory=lambda: [Path.home() / ".ssh" / "known_hosts"]
    )

    @property
    def own_known_hosts(self) -> Path:
        return own_known_hosts(self.state_dir)

    def saved(self) -> dict[str, Any]:
        """How hosts were reached, kept with a journaled run so `resume` reaches them alike."""
        return {
            "forks": self.forks,
            "timeout": self.timeouts.connect,
            "command_timeout": self.timeouts.command,
            "accept_new": self.accept_new,
            "ssh_config": None if self.ssh_config is None else str(self.ssh_config.absolute()),
        }

    @classmethod
    def restored(cls, state_dir: Path, saved: dict[str, Any]) -> CheckOptions:
        """The options `saved` kept; the defaults for a run recorded without them."""
        options = cls(state_dir=state_dir)
        if not saved:
            return options
        config = saved.get("ssh_config")
        return cls(
            state_dir=state_dir,
            forks=int(saved.get("forks", options.forks)),
            timeouts=Timeouts(
                connect=float(saved.get("timeout", options.timeouts.connect)),
                command=float(saved.get("command_timeout", options.timeouts.command)),
            ),
            accept_new=bool(saved.get("accept_new", False)),
            ssh_config=None if config is None else Path(config),
        )


def _volume_summary(facts: Facts) -> dict[str, dict[str, Any]]:
    return {
        name: {
            "position": v.position,
            "health_rc": v.health_rc,
            "size_kb": v.size_kb,
            "free_kb": v.free_kb,
        }
        for name, v in facts.volumes.items()
    }


def _check_host(
    host: Host,
    desired: DesiredState,
    script: str,
    connections: Connections,
    source: str,
    options: CheckOptions,
    waivers: list[Waiver],
    today: date,
) -> HostReport:
    base = {
        "host": host.name,
        "image": desired.image,
        "replica_set": host.replica_set,
        "site": host.site,
    }
    start = time.monotonic()
    try:
        target = target_for(host, source, options.ssh_config)
        result = connections.get(target).run("sh -s", stdin=script)
    except Unreachable as exc:
        return HostReport(
            **base,
            verdict=Verdict.UNREACHABLE,
            reason=exc.reason.value,
            detail=exc.detail,
            seconds=time.monotonic() - start,
        )
    try:
        facts = parse_probe(host.name, desired, result.stdout)
    except ProbeError as exc:
        item = DriftItem(
            kind=DriftKind.PROBE,
            target="probe",
            expected="readable output",
            actual=str(exc),
            failure=True,
        )
        return HostReport(
            **base,
            verdict=Verdict.FAILED,
            detail=f"{exc} (exit {result.exit_code}; stderr: {result.stderr.strip()[-200:]})",
            items=[item],
            seconds=time.monotonic() - start,
        )
    host_verdict, items = judge(host, desired, facts, waivers, today)
    return HostReport(
        **base,
        verdict=host_verdict,
        items=items,
        volumes=_volume_summary(facts),
        seconds=time.monotonic() - start,
    )


def run_check(
    fleet: Fleet,
    hosts: list[Host],
    options: CheckOptions,
    waivers: list[Waiver],
    *,
    on_host: Any = None,
) -> CheckReport:
    """Check `hosts` of `fleet`. Bad input (templates) raises before any host is contacted."""
    started = datetime.now(UTC)
    today = started.date()
    work = [(h, fleet.desired(h)) for h in hosts]  # render all first: bad input stops here
    scripts = {h.name: probe_script(d) for h, d in work}
    known = KnownHosts(
        options.own_known_hosts, options.user_known_hosts, accept_new=options.accept_new
    )
    clock = time.monotonic()
    reports: list[HostReport] = []
    with (
        Connections(known, options.timeouts) as connections,
        ThreadPoolExecutor(max_workers=max(1, options.forks)) as pool,
    ):
        futures = [
            pool.submit(
                _check_host,
                h,
                d,
                scripts[h.name],
                connections,
                fleet.inventory.source,
                options,
                waivers,
                today,
            )
            for h, d in work
        ]
        for future in futures:
            report = future.result()
            reports.append(report)
            if on_host is not None:
                on_host(report)
    return CheckReport(
        source=fleet.inventory.source,
        started_at=started.isoformat(timespec="seconds"),
        seconds=round(time.monotonic() - clock, 3),
        hosts=sorted(reports, key=lambda r: r.host),
        replica_sets=replica_sets(fleet.inventory, reports),
        expired_waivers=[
            f"{', '.join(w.hosts)} {w.kind.value} {w.target} (expired {w.expires})"
            for w in waivers
            if w.expires < today
        ],
    )
