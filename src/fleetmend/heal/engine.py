"""Heal: check, plan each broken host's next rung under the safety rules, act, check again.

Rounds repeat until every host in scope is conformant or none can go further:
each round checks the hosts and their replica-set peers (and, with `scrub`,
compares the replicas' data), gives each broken host the next rung of its
ladder, lets `plan.make_plan` apply every safety rule (trip wire, floor,
protected, needs-person), and carries out the accepted actions as one
journaled, locked run. Hosts held for a person are refused, not repaired.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleetmend import history, locks, statedb
from fleetmend.check import CheckOptions, CheckReport, HostReport, run_check
from fleetmend.drift import DriftItem, DriftKind, Verdict
from fleetmend.errors import ExitCode
from fleetmend.execute import Context, execute, start
from fleetmend.fleet import Fleet
from fleetmend.heal import record
from fleetmend.heal.ladder import ACTION, CORRUPT, DEFAULT_BUDGETS, Ladder, Rung
from fleetmend.inventory import Host
from fleetmend.journal import Journal, RunStatus, StepStatus
from fleetmend.locks import LockHeld
from fleetmend.plan import ActionKind, Plan, Policy, Refusal, Rule, make_plan
from fleetmend.playbooks import TaskEvent
from fleetmend.reseed.scrub import scrub_fleet
from fleetmend.waivers import Waiver


@dataclass(frozen=True)
class HealOptions:
    policy: Policy = field(default_factory=Policy)
    budgets: dict[Rung, int] = field(default_factory=lambda: dict(DEFAULT_BUDGETS))
    max_failures: int = 3
    """Failed repairs of one host within `window` seconds before it waits for a person."""
    window: float = 24 * 3600.0
    scrub: bool = False
    """Also compare the replicas' data and repair files that disagree with the majority."""
    probe_pause: float = 2.0
    """Seconds before probing an unreachable host again (the retry-probe rung)."""
    max_rounds: int = 12


@dataclass
class Hooks:
    """Callbacks for progress displays and drill timelines; all optional."""

    on_check: Callable[[CheckReport], None] | None = None
    on_plan: Callable[[Plan, dict[str, Rung]], None] | None = None
    on_step: Callable[[str, str, str], None] | None = None
    on_event: Callable[[str, TaskEvent], None] | None = None


@dataclass
class HostOutcome:
    host: str
    state: str
    """healthy (nothing to do), healed, held (waits for a person), refused, failed."""
    detail: str = ""
    rungs: list[tuple[str, bool, str]] = field(default_factory=list)


@dataclass
class HealReport:
    hosts: dict[str, HostOutcome]
    runs: list[str]
    refused: list[Refusal]
    rounds: int
    tripped: bool
    seconds: float
    final: CheckReport | None = None

    @property
    def ok(self) -> bool:
        return all(h.state in ("healthy", "healed") for h in self.hosts.values())

    @property
    def exit_code(self) -> ExitCode:
        if self.ok:
            return ExitCode.OK
        if self.tripped or any(h.state == "refused" for h in self.hosts.values()):
            return ExitCode.REFUSED
        return ExitCode.HOSTS_FAILED

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "rounds": self.rounds,
            "seconds": round(self.seconds, 2),
            "tripped": self.tripped,
            "runs": self.runs,
            "hosts": {n: dataclasses.asdict(h) for n, h in sorted(self.hosts.items())},
            "refused": [r.model_dump(mode="json") for r in self.refused],
        }


def _with_scrub(fleet: Fleet, report: CheckReport, check: CheckOptions) -> CheckReport:
    """The check, with every reachable member whose data disagrees with the majority failed."""
    sets = sorted({h.replica_set for h in report.hosts if h.replica_set})
    if not sets:
        return report
    results, connections = scrub_fleet(fleet, check, sets)
    connections.close()
    bad: dict[str, list[DriftItem]] = {}
    for r in results:
        for member, paths in r.disagreements.items():
            bad.setdefault(member, []).append(
                DriftItem(
                    kind=DriftKind.VOLUME,
                    target=f"{r.volume} data",
                    expected="the majority's files",
                    actual=f"{len(paths)} file(s) {CORRUPT}: {', '.join(paths[:3])}",
                    failure=True,
                )
            )
    hosts = []
    for h in report.hosts:
        if h.host in bad and h.verdict in (Verdict.CONFORMANT, Verdict.DRIFTED):
            h = h.model_copy(update={"verdict": Verdict.FAILED, "items": [*h.items, *bad[h.host]]})
        hosts.append(h)
    return report.model_copy(update={"hosts": hosts})


def _host_ok(db: sqlite3.Connection, run_id: str, host: str) -> tuple[bool, str]:
    steps = [s for s in Journal(db).steps(run_id) if s.host == host]
    failed = [s for s in steps if s.status not in (StepStatus.DONE, StepStatus.SKIPPED)]
    if not failed:
        return True, steps[-1].detail if steps else ""
    return False, f"{failed[0].name}: {failed[0].detail}"


def heal(
    fleet: Fleet,
    targets: list[Host],
    check: CheckOptions,
    waivers: list[Waiver],
    options: HealOptions,
    hooks: Hooks | None = None,
    *,
    dry_run: bool = False,
) -> tuple[HealReport, Plan | None]:
    """Repair `targets` rung by rung; returns what happened (and, dry, the first plan)."""
    hooks = hooks or Hooks()
    started = time.monotonic()
    inventory = fleet.inventory
    names = {h.name for h in targets}
    scope = sorted(names | {p.name for t in targets for p in inventory.peers(t)})
    ladders = {n: Ladder(n) for n in names}
    outcomes: dict[str, HostOutcome] = {}
    runs: list[str] = []
    refused: list[Refusal] = []
    tripped = False
    report: CheckReport | None = None
    rounds = 0
    while rounds < options.max_rounds:
        rounds += 1
        report = run_check(fleet, [inventory.host(n) for n in scope], check, waivers)
        with closing(statedb.connect(check.state_dir)) as db:
            history.record(db, report)
        if options.scrub:
            report = _with_scrub(fleet, report, check)
        if hooks.on_check:
            hooks.on_check(report)
        by_host = {h.host: h for h in report.hosts}
        broken = sorted(n for n in names if by_host[n].verdict is not Verdict.CONFORMANT)
        for n in names - set(broken):
            state = "healed" if ladders[n].log else "healthy"
            outcomes[n] = HostOutcome(n, state, "conformant", _log(ladders[n]))
        if not broken:
            break
        rungs, refused = _choose(broken, by_host, ladders, options, check.state_dir, outcomes)
        acting = {n: ACTION[r] for n, r in rungs.items() if r is not Rung.RETRY_PROBE}
        plan = make_plan(
            report, inventory, options.policy, force=acting, targets=set(acting), forced_by="heal"
        )
        refused = refused + plan.refused
        if plan.tripped and options.policy.override is None:
            # the trip wire stops every rung, a probe included: a person looks first
            tripped = True
            down = [h for h in report.hosts if h.verdict in (Verdict.FAILED, Verdict.UNREACHABLE)]
            detail = (
                f"{len(down)} of {len(report.hosts)} hosts look failed (more than "
                f"{options.policy.trip_wire:.0%}): check the network and the checker, "
                "or override with a reason"
            )
            refused = [r for r in refused if r.host not in rungs] + [
                Refusal(host=n, kind=ACTION.get(r, ActionKind.NONE), rule=Rule.TRIP_WIRE,
                        detail=detail)
                for n, r in sorted(rungs.items())
            ]  # fmt: skip
            for n in rungs:
                outcomes[n] = HostOutcome(n, "refused", f"trip-wire: {detail}", _log(ladders[n]))
            if dry_run:
                return _final(outcomes, names, runs, refused, rounds, plan, started, report), plan
            break
        if hooks.on_plan:
            hooks.on_plan(plan, rungs)
        if dry_run:
            for n, next_rung in rungs.items():
                outcomes[n] = HostOutcome(n, "pending", f"next rung: {next_rung.value}")
            return _final(outcomes, names, runs, refused, rounds, plan, started, report), plan
        for refusal in plan.refused:
            if refusal.rule is not Rule.FLOOR:  # the floor may allow it once a peer is back
                outcomes[refusal.host] = HostOutcome(
                    refusal.host, "refused", f"{refusal.rule.value}: {refusal.detail}"
                )
        probing = [n for n, r in rungs.items() if r is Rung.RETRY_PROBE]
        for n in probing:
            ladders[n].record(Rung.RETRY_PROBE, False, by_host[n].detail)
        if plan.actions:
            runs.append(_act(fleet, check, plan, rungs, ladders, hooks))
        elif probing:
            time.sleep(options.probe_pause)
        else:  # nothing may act now: the refusals say why
            for refusal in plan.refused:
                outcomes[refusal.host] = HostOutcome(
                    refusal.host, "refused", f"{refusal.rule.value}: {refusal.detail}"
                )
            break
    return _final(outcomes, names, runs, refused, rounds, None, started, report, tripped), None


def _choose(
    broken: list[str],
    by_host: dict[str, HostReport],
    ladders: dict[str, Ladder],
    options: HealOptions,
    state_dir: Path,
    outcomes: dict[str, HostOutcome],
) -> tuple[dict[str, Rung], list[Refusal]]:
    rungs: dict[str, Rung] = {}
    refused: list[Refusal] = []
    with closing(statedb.connect(state_dir)) as db:
        for n in broken:
            why = record.held(db, n, options.max_failures, options.window)
            rung = None if why else ladders[n].next_rung(by_host[n], options.budgets)
            if why is None and rung is None and ladders[n].log:
                last = ladders[n].log[-1]
                why = f"every rung it may use failed (last: {last[0].value}: {last[2][:120]})"
                record.add(db, n, last[0].value, record.Outcome.EXHAUSTED, detail=why)
            if why is not None:
                refused.append(
                    Refusal(host=n, kind=ActionKind.NONE, rule=Rule.NEEDS_PERSON, detail=why)
                )
                outcomes[n] = HostOutcome(n, "held", why, _log(ladders[n]))
            elif rung is None:
                detail = f"{by_host[n].verdict.value} ({by_host[n].reason}): {by_host[n].detail}"
                refused.append(
                    Refusal(host=n, kind=ActionKind.NONE, rule=Rule.NEEDS_PERSON, detail=detail)
                )
                outcomes[n] = HostOutcome(n, "held", detail, _log(ladders[n]))
            else:
                rungs[n] = rung
    return rungs, refused


def _act(
    fleet: Fleet,
    check: CheckOptions,
    plan: Plan,
    rungs: dict[str, Rung],
    ladders: dict[str, Ladder],
    hooks: Hooks,
) -> str:
    run = start(check.state_dir, "heal", plan, {"rungs": {n: r.value for n, r in rungs.items()}})
    ctx = Context(
        fleet=fleet, state_dir=check.state_dir, check=check,
        on_event=hooks.on_event, on_step=hooks.on_step,
    )  # fmt: skip
    execute(run.id, ctx)
    with closing(statedb.connect(check.state_dir)) as db:
        for action in plan.actions:
            ok, detail = _host_ok(db, run.id, action.host)
            rung = rungs[action.host]
            ladders[action.host].record(rung, ok, detail)
            outcome = record.Outcome.OK if ok else record.Outcome.FAILED
            record.add(db, action.host, rung.value, outcome, run.id, detail)
    return run.id


def _log(ladder: Ladder) -> list[tuple[str, bool, str]]:
    return [(r.value, ok, d) for r, ok, d in ladder.log]


def _final(
    outcomes: dict[str, HostOutcome],
    names: set[str],
    runs: list[str],
    refused: list[Refusal],
    rounds: int,
    plan: Plan | None,
    started: float,
    report: CheckReport | None,
    tripped: bool = False,
) -> HealReport:
    for n in names:
        if n not in outcomes:
            outcomes[n] = HostOutcome(n, "pending" if plan is not None else "failed")
    return HealReport(
        hosts=outcomes,
        runs=runs,
        refused=refused,
        rounds=rounds,
        tripped=tripped or bool(plan and plan.tripped),
        seconds=time.monotonic() - started,
        final=report,
    )


def resume_interrupted(fleet: Fleet, check: CheckOptions, hooks: Hooks | None = None) -> list[str]:
    """Carry on heal runs a stopped heal left running (their holder gone); returns their ids.

    A run whose holder is still alive (another heal) is left to it.
    """
    hooks = hooks or Hooks()
    with closing(statedb.connect(check.state_dir)) as db:
        journal = Journal(db)
        pending = [
            r.id
            for r in journal.runs(200)
            if r.kind == "heal" and r.status is RunStatus.RUNNING and locks.abandoned(db, r.id)
        ]
        for run_id in pending:
            journal.reopen(run_id)
    resumed = []
    for run_id in reversed(pending):  # oldest first
        ctx = Context(
            fleet=fleet, state_dir=check.state_dir, check=check,
            on_event=hooks.on_event, on_step=hooks.on_step,
        )  # fmt: skip
        try:
            execute(run_id, ctx)
        except LockHeld:  # taken by another heal meanwhile: it is that one's now
            continue
        resumed.append(run_id)
        with closing(statedb.connect(check.state_dir)) as db:
            rungs = Journal(db).run(run_id).args.get("rungs", {})
            for host, rung in rungs.items():
                if rung == Rung.RETRY_PROBE.value:
                    continue
                ok, detail = _host_ok(db, run_id, host)
                outcome = record.Outcome.OK if ok else record.Outcome.FAILED
                record.add(db, host, rung, outcome, run_id, f"resumed: {detail}")
    return resumed
