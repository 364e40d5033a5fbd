"""`fleetmend plan`, `apply`, `converge`, `rebuild`, `resume`, `runs`, `audit`.

The acting commands walk the same stages: check -> plan (safety rules) -> show
the plan -> confirm (`--yes` in scripts; a non-interactive run without it
refuses) -> record the run in the journal -> carry it out step by step.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from contextlib import closing
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from fleetmend import audit, locks, statedb
from fleetmend import history as history_db
from fleetmend.check import DEFAULT_FORKS, CheckOptions, CheckReport, run_check
from fleetmend.cli.common import (
    CommandTimeoutOption,
    ForksOption,
    FormatOption,
    MaxRateOption,
    SshConfigOption,
    TimeoutOption,
    WaiversOption,
    check_options,
    settings,
)
from fleetmend.console import OutputFormat, err, out, print_json, table
from fleetmend.errors import ExitCode, FleetmendError, InputError
from fleetmend.execute import Context, execute, start
from fleetmend.fleet import Fleet
from fleetmend.fsutil import write_atomic
from fleetmend.journal import Journal, RunStatus
from fleetmend.loading import load_model
from fleetmend.plan import ActionKind, Plan, Policy, fingerprint, make_plan
from fleetmend.playbooks import TaskEvent
from fleetmend.reseed.run import ReseedOptions
from fleetmend.reseed.scrub import repair, scrub_fleet
from fleetmend.reseed.transfer import VolumeResult
from fleetmend.settings import Settings
from fleetmend.waivers import load_waivers, waivers_path


class Refused(FleetmendError):
    """A safety rule or a missing confirmation stopped the command. Exit code 5."""

    exit_code = ExitCode.REFUSED


MaxParallel = Annotated[int, typer.Option("--max-parallel", min=1, help="Actions at once.")]
MaxPerSite = Annotated[
    int, typer.Option("--max-parallel-per-site", min=1, help="Actions at once in one site.")
]
TripWire = Annotated[
    float,
    typer.Option(
        "--trip-wire",
        min=0.01,
        max=1.0,
        help="Share of hosts in scope that may look failed before automatic action stops.",
    ),
]
Override = Annotated[
    str | None,
    typer.Option(
        "--override-trip-wire",
        metavar="REASON",
        help="Act although the trip wire tripped; the reason is audited.",
    ),
]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation (scripts).")]


def _check(
    s: Settings,
    patterns: list[str],
    forks: int,
    timeout: float,
    command_timeout: float,
    waivers: Path | None,
    ssh_config: Path,
    fleet: Fleet | None = None,
) -> tuple[Fleet, CheckReport, CheckOptions]:
    fleet = fleet or Fleet.load(s.images, s.inventory)
    scope = fleet.inventory.select(patterns)
    options = check_options(
        s, forks=forks, timeout=timeout, command_timeout=command_timeout, ssh_config=ssh_config
    )
    with err.status(f"checking {len(scope)} hosts ..."):
        report = run_check(
            fleet, scope, options, load_waivers(waivers or waivers_path(s.inventory))
        )
    with closing(statedb.connect(s.state_dir)) as db:
        history_db.record(db, report)
    return fleet, report, options


def _show(plan: Plan) -> None:
    if plan.actions:
        out.print(
            table(
                f"plan for {escape(plan.source)}",
                ["WAVE", "HOST", "ACTION", "REASON"],
                ([a.wave + 1, a.host, a.kind.value, escape(a.reason)] for a in plan.actions),
            )
        )
    else:
        out.print(f"nothing to do for {escape(plan.source)}")
    if plan.refused:
        out.print(
            table(
                "\nrefused",
                ["HOST", "ACTION", "RULE", "WHY"],
                ([r.host, r.kind.value, r.rule.value, escape(r.detail)] for r in plan.refused),
            )
        )
    if plan.unchanged:
        out.print(f"no action: {', '.join(plan.unchanged)}", highlight=False)


def _confirm(plan: Plan, yes: bool) -> None:
    if yes:
        return
    rebuilds = [a.host for a in plan.actions if a.kind is ActionKind.REBUILD]
    reseeds = [a.host for a in plan.actions if a.kind is ActionKind.RESEED]
    if rebuilds:
        what = f"rebuild {', '.join(rebuilds)} (their disks are wiped)"
    elif reseeds:
        what = f"re-seed {', '.join(reseeds)} (their data is replaced by a peer's)"
    else:
        what = "converge"
    if not sys.stdin.isatty():
        raise Refused(
            f"refusing to {what} without confirmation: this run is not interactive",
            "pass --yes in scripts, after reviewing the plan (fleetmend plan)",
        )
    if not typer.confirm(f"Proceed to {what}?", default=False):
        raise Refused("not confirmed; nothing was changed")


def _carry_out(
    s: Settings,
    fleet: Fleet,
    options: CheckOptions,
    kind: str,
    plan: Plan,
    reseed: ReseedOptions | None = None,
) -> None:
    args: dict[str, object] = {
        "images": str(s.images.resolve()),
        "inventory": str(s.inventory.resolve()),
        "reseed": dataclasses.asdict(reseed or ReseedOptions()),
        "connect": options.saved(),
    }
    run = start(s.state_dir, kind, plan, args)
    _execute(s, fleet, options, run.id)


def _execute(s: Settings, fleet: Fleet, options: CheckOptions, run_id: str) -> None:
    err.print(f"run {run_id} (fleetmend runs show {run_id})", highlight=False)
    with err.status("starting ...") as status:
        current: dict[str, str] = {}

        def show() -> None:
            status.update(" | ".join(f"{h}: {t}" for h, t in sorted(current.items())) or "...")

        def on_step(host: str, step: str, state: str) -> None:
            if state == "running":
                current[host] = step
                show()
            else:
                err.print(f"{escape(host)}: {step} {escape(state)}", highlight=False)

        def on_event(host: str, event: TaskEvent) -> None:
            current[host] = f"converge: {event.task}"
            show()
            if event.status in ("changed", "failed", "unreachable"):
                err.print(
                    f"  {escape(host)}: {escape(event.task)}: {event.status}", highlight=False
                )

        with closing(statedb.connect(s.state_dir)) as db:
            saved = Journal(db).run(run_id).args.get("reseed") or {}
        reseed = ReseedOptions(
            volumes=tuple(saved.get("volumes", ())),
            source=saved.get("source"),
            override=saved.get("override"),
            max_rate=saved.get("max_rate"),
            rehash=bool(saved.get("rehash")),
        )
        ctx = Context(
            fleet=fleet,
            state_dir=s.state_dir,
            check=options,
            on_event=on_event,
            on_step=on_step,
            reseed=reseed,
        )
        result = execute(run_id, ctx)
    if result is RunStatus.DONE:
        out.print(f"run {run_id} done")
        return
    out.print(f"run {run_id} {result.value}: fix the cause, then: fleetmend resume {run_id}")
    raise typer.Exit(int(ExitCode.HOSTS_FAILED))


def _policy(max_parallel: int, per_site: int, trip_wire: float, override: str | None) -> Policy:
    return Policy(
        max_parallel=max_parallel,
        max_parallel_per_site=per_site,
        trip_wire=trip_wire,
        override=override,
    )


def _refusal_exit(plan: Plan) -> None:
    if plan.refused:
        raise typer.Exit(int(ExitCode.REFUSED))


def plan_command(
    ctx: typer.Context,
    hosts: Annotated[
        list[str] | None, typer.Argument(help="Hosts or groups (shell patterns).")
    ] = None,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Save the plan as JSON for `fleetmend apply`.")
    ] = None,
    max_parallel: MaxParallel = 5,
    max_parallel_per_site: MaxPerSite = 2,
    trip_wire: TripWire = 0.5,
    override: Override = None,
    forks: ForksOption = DEFAULT_FORKS,
    timeout: TimeoutOption = 10.0,
    command_timeout: CommandTimeoutOption = 60.0,
    waivers: WaiversOption = None,
    ssh_config: SshConfigOption = Path("~/.ssh/config"),
    fmt: FormatOption = None,
) -> None:
    """Check, then show what fleetmend would do per host and every action a rule refuses.

    Nothing is changed. Exit 0 when every wanted action is planned, 5 when a
    safety rule refused one (floor, trip wire, protected host).
    """
    s = settings(ctx)
    fleet, report, _ = _check(s, hosts or [], forks, timeout, command_timeout, waivers, ssh_config)
    plan = make_plan(
        report, fleet.inventory, _policy(max_parallel, max_parallel_per_site, trip_wire, override)
    )
    if out_file is not None:
        write_atomic(out_file, plan.model_dump_json(indent=2) + "\n")
    if s.output(fmt) is OutputFormat.JSON:
        print_json(plan.model_dump(mode="json"))
    else:
        _show(plan)
        if out_file is not None:
            saved = escape(str(out_file))
            out.print(f"saved: {saved} (carry it out with: fleetmend apply {saved})")
    _refusal_exit(plan)


def apply_command(
    ctx: typer.Context,
    plan_file: Annotated[Path, typer.Argument(help="A plan saved by `fleetmend plan --out`.")],
    yes: Yes = False,
    forks: ForksOption = DEFAULT_FORKS,
    timeout: TimeoutOption = 10.0,
    command_timeout: CommandTimeoutOption = 60.0,
    waivers: WaiversOption = None,
    ssh_config: SshConfigOption = Path("~/.ssh/config"),
) -> None:
    """Carry out a saved plan, after checking that the fleet still matches it.

    A plan whose fleet has changed since it was made (a stale plan) is refused:
    make a new one. Exit 0 done, 4 a step failed (resume it), 5 refused.
    """
    s = settings(ctx)
    plan = load_model(plan_file, Plan)
    scope = sorted(
        {a.host for a in plan.actions} | {r.host for r in plan.refused} | set(plan.unchanged)
    )
    fleet, report, options = _check(s, scope, forks, timeout, command_timeout, waivers, ssh_config)
    if fingerprint(report) != plan.fingerprint:
        raise Refused(
            f"the plan in {plan_file} is stale: the fleet changed since it was made",
            "make a new plan: fleetmend plan --out FILE",
        )
    _show(plan)
    if not plan.actions:
        return
    _confirm(plan, yes)
    _carry_out(s, fleet, options, "apply", plan)


def _act_on(
    ctx: typer.Context,
    kind: ActionKind,
    hosts: list[str],
    yes: bool,
    policy: Policy,
    forks: int,
    timeout: float,
    command_timeout: float,
    waivers: Path | None,
    ssh_config: Path,
    reseed: ReseedOptions | None = None,
) -> None:
    s = settings(ctx)
    fleet = Fleet.load(s.images, s.inventory)
    inventory = fleet.inventory
    targets = {h.name for h in inventory.select(hosts)}
    # the check covers the targets' replica-set peers too: the floor and the trip
    # wire must see the copies an action would leave, not assume them healthy
    peers = {p.name for t in targets for p in inventory.peers(inventory.host(t))}
    fleet, report, options = _check(
        s, sorted(targets | peers), forks, timeout, command_timeout, waivers, ssh_config, fleet
    )
    if kind in (ActionKind.REBUILD, ActionKind.RESEED):
        force: dict[str, ActionKind] = dict.fromkeys(targets, kind)
        plan = make_plan(report, fleet.inventory, policy, force=force, targets=targets)
    else:
        plan = make_plan(report, fleet.inventory, policy, targets=targets)
        wrong = [a for a in plan.actions if a.kind is not kind]
        if wrong:
            names = ", ".join(a.host for a in wrong)
            raise Refused(
                f"{names} need a rebuild, not a converge: {wrong[0].reason}",
                f"fleetmend rebuild {names}",
            )
    _show(plan)
    if plan.refused:
        raise Refused(
            f"{len(plan.refused)} action(s) refused by safety rules (see above); "
            "nothing was changed",
            "fix what the rules name, or act on fewer hosts",
        )
    if not plan.actions:
        return
    _confirm(plan, yes)
    _carry_out(s, fleet, options, kind.value, plan, reseed)


def converge_command(
    ctx: typer.Context,
    hosts: Annotated[
        list[str] | None, typer.Argument(help="Hosts or groups (shell patterns); default all.")
    ] = None,
    yes: Yes = False,
    max_parallel: MaxParallel = 5,
    max_parallel_per_site: MaxPerSite = 2,
    trip_wire: TripWire = 0.5,
    override: Override = None,
    forks: ForksOption = DEFAULT_FORKS,
    timeout: TimeoutOption = 10.0,
    command_timeout: CommandTimeoutOption = 60.0,
    waivers: WaiversOption = None,
    ssh_config: SshConfigOption = Path("~/.ssh/config"),
) -> None:
    """Converge drifted hosts in place with playbooks/converge.yml (through ansible-runner).

    Checks first, plans under the safety rules, shows the plan and asks. After
    it, `fleetmend check` reports the hosts conformant. Exit 0 done, 4 a step
    failed (resume the run), 5 refused.
    """
    _act_on(
        ctx, ActionKind.CONVERGE, hosts or [], yes,
        _policy(max_parallel, max_parallel_per_site, trip_wire, override),
        forks, timeout, command_timeout, waivers, ssh_config,
    )  # fmt: skip


def rebuild_command(
    ctx: typer.Context,
    hosts: Annotated[
        list[str], typer.Argument(help="Hosts or groups to rebuild (shell patterns).")
    ],
    yes: Yes = False,
    max_parallel: MaxParallel = 5,
    max_parallel_per_site: MaxPerSite = 2,
    trip_wire: TripWire = 0.5,
    override: Override = None,
    forks: ForksOption = DEFAULT_FORKS,
    timeout: TimeoutOption = 10.0,
    command_timeout: CommandTimeoutOption = 60.0,
    waivers: WaiversOption = None,
    ssh_config: SshConfigOption = Path("~/.ssh/config"),
) -> None:
    """Rebuild hosts from their image: reimage -> wait for SSH -> converge -> reseed -> verify.

    The provider (lab, or playbooks/reimage.yml) gives the host a fresh OS and
    its new host key. Never below a replica set's floor; protected hosts and a
    tripped trip wire refuse. Destructive: shows the plan and asks (`--yes`).
    The reseed step brings every data volume back from a healthy peer, as
    `fleetmend reseed` does; an interrupted rebuild goes on with `resume`.
    """
    _act_on(
        ctx, ActionKind.REBUILD, hosts, yes,
        _policy(max_parallel, max_parallel_per_site, trip_wire, override),
        forks, timeout, command_timeout, waivers, ssh_config,
    )  # fmt: skip


def reseed_command(
    ctx: typer.Context,
    host: Annotated[str, typer.Argument(help="The host whose data to re-seed from a peer.")],
    volume: Annotated[
        list[str] | None, typer.Option("--volume", help="Only this volume (repeatable).")
    ] = None,
    source: Annotated[
        str | None,
        typer.Option("--from", help="Use this peer as the source; still refused if unsafe."),
    ] = None,
    override_source: Annotated[
        str | None,
        typer.Option(
            "--override-source",
            metavar="REASON",
            help="Use the --from peer although it is stale or disagrees; audited.",
        ),
    ] = None,
    max_rate: MaxRateOption = None,
    rehash: Annotated[
        bool,
        typer.Option(
            "--rehash",
            help="Hash every file of the source, not only those changed since fleetmend "
            "last hashed them.",
        ),
    ] = False,
    trip_wire: TripWire = 0.5,
    override: Override = None,
    yes: Yes = False,
    forks: ForksOption = DEFAULT_FORKS,
    timeout: TimeoutOption = 10.0,
    command_timeout: CommandTimeoutOption = 60.0,
    waivers: WaiversOption = None,
    ssh_config: SshConfigOption = Path("~/.ssh/config"),
) -> None:
    """Replace a host's data volumes with a verified copy from a healthy, fresh peer.

    The source is reachable, healthy, at the freshest position, agrees with the
    majority of manifests (three or more copies; not for `compare: position`
    volumes) and, among equals, is in the same site. Only files that differ are
    sent; everything is verified against the source's manifest before one atomic
    swap, so the old data stays until the new copy is whole (the `command`
    strategy: the volume's restore, checked by its health command). When most
    of the replica set looks failed (the trip wire), it stops unless
    `--override-trip-wire REASON` (audited). Destructive: shows the plan and
    asks (`--yes`).

    Where no majority is read (two copies, `compare: position`), the source
    hashes only the files changed (size, times or inode) since fleetmend last
    hashed them; the target hashes every file it keeps or receives, so a
    source file rotted since cannot reach it. `--rehash` hashes the source
    whole.
    """
    options = ReseedOptions(
        volumes=tuple(volume or ()),
        source=source,
        override=override_source,
        max_rate=max_rate * 1e6 if max_rate else None,
        rehash=rehash,
    )
    _act_on(
        ctx, ActionKind.RESEED, [host], yes, Policy(trip_wire=trip_wire, override=override),
        forks, timeout, command_timeout, waivers, ssh_config, options,
    )  # fmt: skip


def resume_command(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="The run to continue (see `fleetmend runs`).")],
) -> None:
    """Continue an interrupted or failed run from its first unfinished step.

    Steps already done are not run again; a step that was running when the run
    stopped is run again (steps are idempotent). Hosts are reached as the run
    started (forks, timeouts, SSH config, --accept-new).
    """
    s = settings(ctx)
    with closing(statedb.connect(s.state_dir)) as db:
        journal = Journal(db)
        run = journal.run(run_id)
        if run.status is RunStatus.DONE:
            out.print(f"run {run_id} is already done")
            return
        journal.reopen(run_id)
    images = Path(run.args.get("images", str(s.images)))
    inventory = Path(run.args.get("inventory", str(s.inventory)))
    fleet = Fleet.load(images, inventory)
    options = CheckOptions.restored(s.state_dir, run.args.get("connect") or {})
    err.print(
        f"resuming as started: --forks {options.forks} --timeout {options.timeouts.connect:g} "
        f"--command-timeout {options.timeouts.command:g}"
        + (f" --ssh-config {options.ssh_config}" if options.ssh_config else "")
        + (" --accept-new" if options.accept_new else ""),
        highlight=False,
    )
    _execute(s, fleet, options, run_id)


runs_app = typer.Typer(help="Runs recorded in the journal.", invoke_without_command=True)


@runs_app.callback()
def runs_list(ctx: typer.Context, fmt: FormatOption = None) -> None:
    """List recent runs (newest first); `fleetmend runs show ID` for one run's steps."""
    if ctx.invoked_subcommand is not None:
        return
    s = settings(ctx)
    with closing(statedb.connect(s.state_dir)) as db:
        runs = Journal(db).runs()
    if s.output(fmt) is OutputFormat.JSON:
        print_json([vars(r) for r in runs])
        return
    out.print(
        table(
            None,
            ["RUN", "KIND", "STATUS", "CREATED", "BY", "HOSTS"],
            (
                [
                    r.id,
                    r.kind,
                    r.status.value,
                    r.created_at,
                    r.actor,
                    ", ".join(a["host"] for a in r.args.get("plan", {}).get("actions", [])),
                ]
                for r in runs
            ),
        )
    )


@runs_app.command("show")
def runs_show(ctx: typer.Context, run_id: str, fmt: FormatOption = None) -> None:
    """Show a run's steps with their status, attempts, timings and details."""
    s = settings(ctx)
    with closing(statedb.connect(s.state_dir)) as db:
        journal = Journal(db)
        run = journal.run(run_id)
        steps = journal.steps(run_id)
    if s.output(fmt) is OutputFormat.JSON:
        print_json({"run": vars(run), "steps": [vars(st) for st in steps]})
        return
    out.print(f"run {run.id}: {run.kind} by {run.actor}, {run.status.value}", highlight=False)
    out.print(
        table(
            None,
            ["#", "HOST", "STEP", "STATUS", "TRIES", "STARTED", "FINISHED", "DETAIL"],
            (
                [
                    st.seq,
                    st.host,
                    st.name,
                    st.status.value,
                    st.attempts,
                    st.started_at or "-",
                    st.finished_at or "-",
                    escape(st.detail),
                ]
                for st in steps
            ),
        )
    )


audit_app = typer.Typer(help="The append-only, hash-chained audit log.", no_args_is_help=True)


@audit_app.command("verify")
def audit_verify(ctx: typer.Context) -> None:
    """Check the audit chain: exit 0 when whole, 1 naming the first edited or missing entry."""
    with closing(statedb.connect(settings(ctx).state_dir)) as db:
        count, problem = audit.verify(db)
    if problem is None:
        out.print(f"audit log intact: {count} entries")
        return
    err.print(f"[red]audit log broken:[/] {escape(problem)} ({count} entries verified before it)")
    raise typer.Exit(int(ExitCode.FAILED))


@audit_app.command("show")
def audit_show(ctx: typer.Context, limit: int = 50, fmt: FormatOption = None) -> None:
    """The newest audit entries: who did what to which host, why, when."""
    s = settings(ctx)
    with closing(statedb.connect(s.state_dir)) as db:
        entries = audit.entries(db, limit)
    if s.output(fmt) is OutputFormat.JSON:
        print_json([vars(e) for e in entries])
        return
    out.print(
        table(
            None,
            ["#", "AT", "WHO", "ACTION", "TARGET", "REASON", "DETAIL"],
            (
                [e.seq, e.at, e.actor, e.action, e.target, escape(e.reason), escape(e.detail)]
                for e in entries
            ),
        )
    )


def scrub_command(
    ctx: typer.Context,
    replica_set: Annotated[
        list[str] | None,
        typer.Option("--replica-set", help="Only this replica set (repeatable); default all."),
    ] = None,
    repair_: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="Re-seed the disagreeing files from a replica that agrees with the majority.",
        ),
    ] = False,
    max_rate: MaxRateOption = None,
    yes: Yes = False,
    timeout: TimeoutOption = 10.0,
    ssh_config: SshConfigOption = Path("~/.ssh/config"),
    fmt: FormatOption = None,
) -> None:
    """Compare every replica's data with the majority: find silent corruption.

    Reads a manifest (hash of every file) of each member's data volumes. A
    replica's files that differ from what most replicas hold are listed; with
    `--repair` exactly those are re-seeded from a replica that agrees with the
    majority everywhere, verified against what the majority holds (asks first;
    `--yes` in scripts). Exit 0 when every replica agrees (or was repaired), 4
    when disagreements remain. `--format json` lists each volume's findings,
    and with `--repair` what was repaired.
    """
    s = settings(ctx)
    fleet = Fleet.load(s.images, s.inventory)
    sets = replica_set or sorted(fleet.inventory.replica_sets)
    for name in sets:
        if name not in fleet.inventory.replica_sets:
            raise InputError.one(
                fleet.inventory.source,
                "",
                f"unknown replica set {name!r}",
                f"replica sets: {', '.join(sorted(fleet.inventory.replica_sets)) or 'none'}",
            )
    options = check_options(s, timeout=timeout, command_timeout=3600, ssh_config=ssh_config)
    with err.status("reading manifests ..."):
        results, connections = scrub_fleet(fleet, options, sets)
    as_json = s.output(fmt) is OutputFormat.JSON
    repaired: dict[tuple[str, str], list[VolumeResult]] = {}
    try:
        if not as_json:  # JSON is printed last, with what was repaired
            rows = []
            for r in results:
                for member in r.members + r.unreachable:
                    paths = r.disagreements.get(member, [])
                    state = "unreachable" if member in r.unreachable else (
                        f"{len(paths)} file(s) disagree" if paths else "agrees"
                    )  # fmt: skip
                    rows.append([r.replica_set, r.volume, member, state, ", ".join(paths[:5])])
            out.print(table(None, ["REPLICA SET", "VOLUME", "HOST", "DATA", "FILES"], rows))
            for r in results:
                if r.undecided:
                    out.print(
                        f"[yellow]{r.replica_set}/{r.volume}: no majority for "
                        f"{len(r.undecided)} path(s): {', '.join(r.undecided[:5])}[/]"
                    )
        broken = [r for r in results if r.disagreements or r.undecided]
        if not broken or not repair_:
            if as_json:
                print_json([r.summary() for r in results])
            if broken:
                raise typer.Exit(int(ExitCode.HOSTS_FAILED))
            return
        members = sorted({m for r in broken for m in r.disagreements})
        if not yes:
            if not sys.stdin.isatty():
                raise Refused(
                    f"refusing to repair {', '.join(members)} without confirmation",
                    "pass --yes in scripts",
                )
            question = f"Re-seed the disagreeing files of {', '.join(members)}?"
            if not typer.confirm(question, err=as_json):  # stdout holds only the JSON
                raise Refused("not confirmed; nothing was changed")
        owner = f"scrub-{os.getpid()}"
        with closing(statedb.connect(s.state_dir)) as db:
            locks.acquire(db, [f"replica-set:{r.replica_set}" for r in broken], owner)
        try:
            rate = max_rate * 1e6 if max_rate else None
            for r in broken:
                repaired[(r.replica_set, r.volume)] = done = repair(
                    fleet, options, r, connections, max_rate=rate
                )
                for result in [] if as_json else done:
                    out.print(
                        f"repaired {r.replica_set}/{r.volume}: {result.sent} file(s) from "
                        f"{result.source}",
                        highlight=False,
                    )
        finally:
            with closing(statedb.connect(s.state_dir)) as db:
                locks.release(db, owner)
        if as_json:
            print_json(
                [
                    dict(
                        r.summary(),
                        repaired=[
                            dataclasses.asdict(v)
                            for v in repaired.get((r.replica_set, r.volume), [])
                        ],
                    )
                    for r in results
                ]
            )
    finally:
        connections.close()
