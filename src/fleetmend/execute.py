"""Carry out a plan step by step through the journal, under locks, with an audit trail.

Every action becomes steps (`converge`: converge, verify; `rebuild`: reimage,
wait-ssh, converge, reseed, verify), recorded before and after each one, so a
run killed at any point resumes at its first unfinished step. Each step is
idempotent. Waves run one after another; the actions of a wave in parallel.
"""

from __future__ import annotations

import base64
import shlex
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleetmend import audit, locks, statedb
from fleetmend.check import CheckOptions, run_check
from fleetmend.drift import DriftKind, Verdict
from fleetmend.errors import FleetmendError, InputError
from fleetmend.fleet import Fleet
from fleetmend.hostkeys import fingerprint
from fleetmend.inventory import Host
from fleetmend.journal import Journal, Run, RunStatus, StepStatus
from fleetmend.plan import Action, ActionKind, Plan
from fleetmend.playbooks import Outcome, TaskEvent, playbook_path, run_playbook
from fleetmend.providers import provider_for
from fleetmend.reseed.run import ReseedOptions, reseed_host
from fleetmend.transport.ssh import Connection, KnownHosts, Unreachable, record_host_key
from fleetmend.transport.target import target_for

STEPS: dict[ActionKind, list[str]] = {
    ActionKind.CONVERGE: ["converge", "verify"],
    ActionKind.REBUILD: ["reimage", "wait-ssh", "converge", "reseed", "verify"],
    ActionKind.RESEED: ["reseed", "verify-data"],
    ActionKind.RESTART: ["restart-service", "verify"],
}
SSH_WAIT = 90.0
"""Seconds a rebuilt host has to answer on SSH with its new key."""


class StepFailed(FleetmendError):
    """A step of a run failed; the run stops for that host and can be resumed."""


@dataclass
class Context:
    fleet: Fleet
    state_dir: Path
    check: CheckOptions
    on_event: Callable[[str, TaskEvent], None] | None = None
    on_step: Callable[[str, str, str], None] | None = None
    """(host, step, status) as steps start and end: for progress displays."""
    reseed: ReseedOptions = field(default_factory=ReseedOptions)


def lock_names(plan: Plan) -> list[str]:
    names = [f"host:{a.host}" for a in plan.actions]
    names += [f"replica-set:{a.replica_set}" for a in plan.actions if a.replica_set]
    return sorted(set(names))


def start(db_dir: Path, kind: str, plan: Plan, args: dict[str, Any]) -> Run:
    """Record a new run of `plan` in the journal; nothing is done yet."""
    steps = [(a.host, name) for a in plan.actions for name in STEPS[a.kind]]
    with closing(statedb.connect(db_dir)) as db:
        return Journal(db).create(kind, {**args, "plan": plan.model_dump(mode="json")}, steps)


def execute(run_id: str, ctx: Context) -> RunStatus:
    """Run (or resume) a recorded run to its end; returns how it ended."""
    with closing(statedb.connect(ctx.state_dir)) as db:
        journal = Journal(db)
        run = journal.run(run_id)
        plan = Plan.model_validate(run.args["plan"])
        problems = [
            p
            for a in plan.actions
            if a.kind in (ActionKind.REBUILD, ActionKind.RESEED)
            for p in ctx.fleet.reseed_problems(ctx.fleet.inventory.host(a.host))
        ]
        if problems:  # before a rebuild wipes a host it could not fill again
            journal.finish_run(run_id, RunStatus.FAILED)
            raise InputError(problems)
        try:
            locks.acquire(db, lock_names(plan), run_id)
        except locks.LockHeld as exc:
            journal.finish_run(run_id, RunStatus.FAILED)
            exc.message = f"run {run_id} refused: {exc.message}"
            raise
        fresh = all(st.attempts == 0 for st in journal.steps(run_id))  # not a resume
        for action in plan.actions if fresh else []:
            if action.kind in (ActionKind.REBUILD, ActionKind.RESEED):  # data is replaced
                audit.append(
                    db, action.kind.value, action.host, reason=action.reason, detail=f"run {run_id}"
                )
        if fresh and plan.policy.override and plan.tripped:
            audit.append(
                db,
                "override-trip-wire",
                plan.source,
                reason=plan.policy.override,
                detail=f"run {run_id}",
            )
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(ctx.state_dir, run_id, stop), daemon=True)
    beat.start()
    try:
        ok = True
        for wave in plan.waves:
            with ThreadPoolExecutor(max_workers=max(1, len(wave))) as pool:
                outcomes = list(pool.map(lambda a: _run_action(run_id, a, ctx), wave))
            ok = ok and all(outcomes)
        status = RunStatus.DONE if ok else RunStatus.FAILED
    finally:
        stop.set()
        beat.join()
    with closing(statedb.connect(ctx.state_dir)) as db:
        Journal(db).finish_run(run_id, status)
        locks.release(db, run_id)
    return status


def _heartbeat(state_dir: Path, owner: str, stop: threading.Event) -> None:
    with closing(statedb.connect(state_dir)) as db:
        while not stop.wait(10):
            locks.heartbeat(db, owner)


def _run_action(run_id: str, action: Action, ctx: Context) -> bool:
    """The host's remaining steps in order; stops at the first failure."""
    with closing(statedb.connect(ctx.state_dir)) as db:
        journal = Journal(db)
        host = ctx.fleet.inventory.host(action.host)
        for step in [s for s in journal.steps(run_id) if s.host == action.host]:
            if step.status in (StepStatus.DONE, StepStatus.SKIPPED):
                continue
            journal.start_step(run_id, step.seq)
            if ctx.on_step:
                ctx.on_step(host.name, step.name, "running")
            try:
                detail, skipped = _STEP_FUNCS[step.name](host, ctx, run_id, step.seq)
            except FleetmendError as exc:
                said = "; ".join(exc.lines())  # the hint too: what to do about it
                journal.finish_step(run_id, step.seq, said, failed=True)
                if ctx.on_step:
                    ctx.on_step(host.name, step.name, f"failed: {said}")
                return False
            journal.finish_step(run_id, step.seq, detail, skipped=skipped)
            if ctx.on_step:
                ctx.on_step(host.name, step.name, f"{'skipped' if skipped else 'done'}: {detail}")
    return True


StepResult = tuple[str, bool]
"""(detail, skipped)"""


def _work_dir(ctx: Context, run_id: str, seq: int, host: str, name: str) -> Path:
    return ctx.state_dir / "runs" / run_id / f"{seq:03d}-{host}-{name}"


def _reimage(host: Host, ctx: Context, run_id: str, seq: int) -> StepResult:
    key = provider_for(host).reimage(host, _work_dir(ctx, run_id, seq, host.name, "reimage"))
    target = target_for(host, ctx.fleet.inventory.source, ctx.check.ssh_config)
    record_host_key(ctx.check.own_known_hosts, target.known_hosts_name, key)
    return f"new host key {fingerprint(key)}", False


def _wait_ssh(host: Host, ctx: Context, run_id: str, seq: int) -> StepResult:
    target = target_for(host, ctx.fleet.inventory.source, ctx.check.ssh_config)
    known = KnownHosts(ctx.check.own_known_hosts, ctx.check.user_known_hosts)
    deadline = time.monotonic() + SSH_WAIT
    last = ""
    while time.monotonic() < deadline:
        try:
            with Connection(target, known, ctx.check.timeouts) as connection:
                connection.run("true", timeout=10)
            return "answers on SSH with its new key", False
        except Unreachable as exc:
            if exc.reason.value == "host-key":
                raise StepFailed(f"{host.name}: {exc.detail}") from None
            last = exc.detail
            time.sleep(1)
    raise StepFailed(f"{host.name} did not answer on SSH within {SSH_WAIT:.0f}s: {last}")


def converge_inventory(ctx: Context, hosts: list[Host]) -> dict[str, Any]:
    """An inventory of just `hosts`, each with its desired state as `fleetmend_desired`."""
    own = ctx.check.own_known_hosts
    entries = {}
    for host in hosts:
        variables = {k: v for k, v in host.vars.items() if k != "fleetmend_replica_sets"}
        args = str(variables.get("ansible_ssh_common_args", ""))
        # keys recorded from providers live in fleetmend's own known_hosts
        variables["ansible_ssh_common_args"] = f"{args} -o UserKnownHostsFile={own}".strip()
        variables.setdefault("ansible_host", host.address)
        desired = ctx.fleet.desired(host).model_dump(mode="json")
        for spec in desired["files"].values():  # byte for byte: Ansible must not template it
            spec["content_b64"] = base64.b64encode(spec.pop("content").encode()).decode()
        variables["fleetmend_desired"] = desired
        entries[host.name] = variables
    return {"all": {"hosts": entries}}


def _converge(host: Host, ctx: Context, run_id: str, seq: int) -> StepResult:
    work = _work_dir(ctx, run_id, seq, host.name, "converge")
    report = ctx.on_event

    def forward(event: TaskEvent) -> None:
        if report is not None:
            report(host.name, event)

    result = run_playbook(
        playbook_path("converge.yml"), converge_inventory(ctx, [host]), work, on_event=forward
    )
    if result.outcome is not Outcome.SUCCESSFUL:
        failures = "; ".join(f"{f.task}: {f.message}" for f in result.failures[:3])
        raise StepFailed(
            f"converge of {host.name} {result.outcome.value}: {failures or 'see ' + str(work)}"
        )
    changed = result.changed.get(host.name, 0)
    return f"{changed} changed, {result.ok.get(host.name, 0)} ok (artifacts: {work})", False


def _reseed(host: Host, ctx: Context, run_id: str, seq: int) -> StepResult:
    results = reseed_host(ctx.fleet, host, ctx.check, ctx.reseed)
    if not results:
        return "no data volumes", False
    return "; ".join(r.describe() for r in results), False


def _restart_service(host: Host, ctx: Context, run_id: str, seq: int) -> StepResult:
    """Start again the declared services the check finds stopped (idempotent)."""
    report = run_check(ctx.fleet, [host], ctx.check, [])
    (result,) = report.hosts
    stopped = [
        i.target for i in result.counted if i.kind is DriftKind.SERVICE and i.actual == "stopped"
    ]
    if not stopped:
        return "no declared service is stopped", True
    target = target_for(host, ctx.fleet.inventory.source, ctx.check.ssh_config)
    known = KnownHosts(ctx.check.own_known_hosts, ctx.check.user_known_hosts)
    with Connection(target, known, ctx.check.timeouts) as connection:
        for name in stopped:
            quoted = shlex.quote(name)
            done = connection.run(
                f"systemctl restart {quoted} 2>/dev/null || service {quoted} restart"
            )
            if done.exit_code != 0:
                raise StepFailed(
                    f"{host.name}: restarting {name} failed (exit {done.exit_code}): "
                    f"{(done.stderr or done.stdout).strip()[-200:]}"
                )
    return f"restarted {', '.join(stopped)}", False


def _verify(host: Host, ctx: Context, run_id: str, seq: int) -> StepResult:
    report = run_check(ctx.fleet, [host], ctx.check, [])
    (result,) = report.hosts
    if result.verdict is not Verdict.CONFORMANT:
        items = ", ".join(f"{i.kind.value} {i.target}" for i in result.counted[:5])
        raise StepFailed(
            f"{host.name} is {result.verdict.value} after the run: {items or result.detail}"
        )
    return "conformant", False


def _verify_data(host: Host, ctx: Context, run_id: str, seq: int) -> StepResult:
    """After a re-seed alone: the data volumes are healthy (configuration drift may remain)."""
    report = run_check(ctx.fleet, [host], ctx.check, [])
    (result,) = report.hosts
    bad = [i for i in result.counted if i.failure]
    if result.verdict is Verdict.UNREACHABLE or bad:
        what = ", ".join(f"{i.kind.value} {i.target}: {i.actual}" for i in bad) or result.detail
        raise StepFailed(f"{host.name}'s data is not healthy after the re-seed: {what}")
    return f"data volumes healthy ({result.verdict.value})", False


_STEP_FUNCS: dict[str, Callable[[Host, Context, str, int], StepResult]] = {
    "reimage": _reimage,
    "wait-ssh": _wait_ssh,
    "converge": _converge,
    "reseed": _reseed,
    "restart-service": _restart_service,
    "verify": _verify,
    "verify-data": _verify_data,
}
