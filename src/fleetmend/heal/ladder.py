"""The repair ladder: for a broken host, the cheapest repair that may work. Pure: no I/O.

Rungs, cheapest first: retry the probe (a host that did not answer may only
have been slow), restart its stopped services, converge it, re-seed its data,
rebuild it (reimage + converge + re-seed). A host starts on the first rung its
verdict allows: an unreachable host can only be probed again or rebuilt; a
drifted host whose only drift is stopped services starts at a restart; a host
whose data is broken (a volume missing or unhealthy, or files that disagree with
the majority of its replica set) starts at a re-seed. Each rung has a retry
budget; a host never steps down the ladder within one heal, and one that has
used every budget it may use goes to a person.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum

from fleetmend.check import HostReport
from fleetmend.drift import DriftKind, Verdict
from fleetmend.plan import DEAD_REASONS, ActionKind


class Rung(StrEnum):
    RETRY_PROBE = "retry-probe"
    RESTART_SERVICE = "restart-service"
    CONVERGE = "converge"
    RESEED = "reseed"
    REBUILD = "rebuild"


LADDER = list(Rung)
ACTION = {
    Rung.RESTART_SERVICE: ActionKind.RESTART,
    Rung.CONVERGE: ActionKind.CONVERGE,
    Rung.RESEED: ActionKind.RESEED,
    Rung.REBUILD: ActionKind.REBUILD,
}
"""The journaled action each acting rung runs (retry-probe only checks again)."""

DEFAULT_BUDGETS = {
    Rung.RETRY_PROBE: 2,
    Rung.RESTART_SERVICE: 1,
    Rung.CONVERGE: 2,
    Rung.RESEED: 1,
    Rung.REBUILD: 1,
}

CORRUPT = "disagrees with the majority"
"""Marks the drift item heal adds for a volume whose files a scrub found corrupted."""


def first_rung(report: HostReport) -> Rung | None:
    """Where a host's repair starts; None when it needs none (or a person, not a repair)."""
    if report.verdict is Verdict.CONFORMANT:
        return None
    if report.verdict is Verdict.UNREACHABLE:
        return Rung.RETRY_PROBE if report.reason in DEAD_REASONS else None
    items = report.counted
    failures = [i for i in items if i.failure]
    if failures:
        if all(i.kind is DriftKind.VOLUME for i in failures):
            return Rung.RESEED
        return Rung.REBUILD
    if items and all(i.kind is DriftKind.SERVICE and i.actual == "stopped" for i in items):
        return Rung.RESTART_SERVICE
    return Rung.CONVERGE


def _allowed(rung: Rung, report: HostReport) -> bool:
    if report.verdict is Verdict.UNREACHABLE:  # nothing but a probe or a new OS reaches it
        return rung in (Rung.RETRY_PROBE, Rung.REBUILD)
    if any(i.failure and i.kind is not DriftKind.VOLUME for i in report.counted):
        return rung is Rung.REBUILD  # another image or OS: only a rebuild fixes that
    return True


@dataclass
class Ladder:
    """One host's climb within one heal."""

    host: str
    attempts: Counter[Rung] = field(default_factory=Counter)
    highest: Rung | None = None
    log: list[tuple[Rung, bool, str]] = field(default_factory=list)

    def next_rung(self, report: HostReport, budgets: dict[Rung, int]) -> Rung | None:
        """The rung to try now, or None when the ladder is used up for this host."""
        start = first_rung(report)
        if start is None:
            return None
        floor = LADDER.index(start)
        if self.highest is not None:
            floor = max(floor, LADDER.index(self.highest))
        for rung in LADDER[floor:]:
            if _allowed(rung, report) and self.attempts[rung] < budgets.get(rung, 0):
                return rung
        return None

    def record(self, rung: Rung, ok: bool, detail: str) -> None:
        self.attempts[rung] += 1
        if self.highest is None or LADDER.index(rung) > LADDER.index(self.highest):
            self.highest = rung
        self.log.append((rung, ok, detail))
