"""The repair ladder and heal's memory: which rung comes next, and who waits for a person."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

import pytest

from fleetmend import statedb
from fleetmend.check import HostReport
from fleetmend.drift import DriftItem, DriftKind, Verdict
from fleetmend.heal import record
from fleetmend.heal.ladder import DEFAULT_BUDGETS, Ladder, Rung, first_rung


def report(verdict: Verdict, *items: DriftItem, reason: str | None = None) -> HostReport:
    return HostReport(
        host="h", image="i", replica_set=None, site=None, verdict=verdict, reason=reason,
        items=list(items),
    )  # fmt: skip


def item(kind: DriftKind, actual: str = "x", *, failure: bool = False) -> DriftItem:
    return DriftItem(kind=kind, target="t", expected="e", actual=actual, failure=failure)


STOPPED = item(DriftKind.SERVICE, "stopped")
FILE = item(DriftKind.FILE)
VOLUME = item(DriftKind.VOLUME, "missing", failure=True)
STAMP = item(DriftKind.STAMP, "other image", failure=True)


@pytest.mark.parametrize(
    ("host", "rung"),
    [
        (report(Verdict.CONFORMANT), None),
        (report(Verdict.UNREACHABLE, reason="timeout"), Rung.RETRY_PROBE),
        (report(Verdict.UNREACHABLE, reason="refused"), Rung.RETRY_PROBE),
        (report(Verdict.UNREACHABLE, reason="auth"), None),  # a person: access, not a dead host
        (report(Verdict.DRIFTED, STOPPED), Rung.RESTART_SERVICE),
        (report(Verdict.DRIFTED, STOPPED, FILE), Rung.CONVERGE),
        (report(Verdict.FAILED, VOLUME), Rung.RESEED),
        (report(Verdict.FAILED, VOLUME, STAMP), Rung.REBUILD),
    ],
)
def test_first_rung_is_the_cheapest_that_may_work(host: HostReport, rung: Rung | None) -> None:
    assert first_rung(host) is rung


def test_an_unreachable_host_climbs_from_probes_straight_to_a_rebuild() -> None:
    ladder, host = Ladder("h"), report(Verdict.UNREACHABLE, reason="timeout")
    seen = []
    while (rung := ladder.next_rung(host, DEFAULT_BUDGETS)) is not None:
        seen.append(rung)
        ladder.record(rung, False, "still down")
    assert seen == [Rung.RETRY_PROBE, Rung.RETRY_PROBE, Rung.REBUILD]


def test_a_host_never_steps_down_and_each_budget_holds() -> None:
    ladder = Ladder("h")
    drifted = report(Verdict.DRIFTED, STOPPED)
    seen = []
    while (rung := ladder.next_rung(drifted, DEFAULT_BUDGETS)) is not None:
        seen.append(rung)
        ladder.record(rung, False, "no luck")
    assert seen == [
        Rung.RESTART_SERVICE, Rung.CONVERGE, Rung.CONVERGE, Rung.RESEED, Rung.REBUILD,
    ]  # fmt: skip
    ladder = Ladder("h")
    ladder.record(Rung.REBUILD, False, "converge failed")
    # drifted after a failed rebuild: not back to a converge, and no rebuild left
    assert ladder.next_rung(report(Verdict.DRIFTED, FILE), DEFAULT_BUDGETS) is None


def test_a_lower_max_rung_never_rebuilds() -> None:
    budgets: dict[Rung, int] = {r: n for r, n in DEFAULT_BUDGETS.items() if r is not Rung.REBUILD}
    ladder = Ladder("h")
    host = report(Verdict.UNREACHABLE, reason="timeout")
    for _ in range(2):
        rung = ladder.next_rung(host, budgets)
        assert rung is Rung.RETRY_PROBE
        ladder.record(rung, False, "")
    assert ladder.next_rung(host, budgets) is None


def test_held_after_too_many_failures_or_a_used_up_ladder_until_released(tmp_path: Path) -> None:
    with closing(statedb.connect(tmp_path)) as db:
        for _ in range(2):
            record.add(db, "h", "converge", record.Outcome.FAILED, detail="apt broke")
        assert record.held(db, "h", max_failures=3, window=3600) is None
        record.add(db, "h", "rebuild", record.Outcome.FAILED, detail="no ssh")
        why = record.held(db, "h", max_failures=3, window=3600)
        assert why is not None and "3 repairs failed" in why and "rebuild" in why
        record.release(db, "h", "replaced the disk")
        assert record.held(db, "h", max_failures=3, window=3600) is None
        record.add(db, "h", "rebuild", record.Outcome.EXHAUSTED, detail="every rung failed")
        assert "used up" in (record.held(db, "h", max_failures=3, window=3600) or "")
        assert record.held(db, "other", max_failures=3, window=3600) is None
        actions = [r[0] for r in db.execute("SELECT action FROM audit")]
        assert "heal-release" in actions


def test_metrics_say_how_the_controller_is_doing() -> None:
    from collections import Counter

    from fleetmend.heal.watch import State, metrics

    state = State(ticks=3, limited=True, repairs_last_hour=10)
    state.hosts = {"a": "healthy", "b": "held", "c": "backoff"}
    state.repairs = Counter({("rebuild", "failed"): 1, ("converge", "ok"): 2})
    state.not_before = {"c": 160.0, "gone": 50.0}
    text = metrics(state, now=100.0)
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert "fleetmend_heal_ticks_total 3" in lines
    assert "fleetmend_heal_rate_limited 1" in lines
    assert 'fleetmend_heal_hosts{state="held"} 1' in lines
    assert 'fleetmend_heal_repairs_total{rung="rebuild",outcome="failed"} 1' in lines
    assert 'fleetmend_heal_backoff_seconds{host="c"} 60.0' in lines
    assert not any("gone" in line for line in lines)  # a back-off that ended is not shown
    for line in lines:
        assert line.startswith("fleetmend_heal_") and len(line.rsplit(" ", 1)) == 2
