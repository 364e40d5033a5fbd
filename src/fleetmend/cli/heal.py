"""`fleetmend heal`: find what is broken and bring it back, once or as a controller loop."""

from __future__ import annotations

import signal
import sys
from contextlib import closing
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from fleetmend import statedb
from fleetmend.check import DEFAULT_FORKS, CheckOptions
from fleetmend.cli.act import (
    MaxParallel,
    MaxPerSite,
    Override,
    Refused,
    TripWire,
    Yes,
    _policy,
    _show,
)
from fleetmend.cli.common import (
    CommandTimeoutOption,
    ForksOption,
    FormatOption,
    SshConfigOption,
    TimeoutOption,
    WaiversOption,
    check_options,
    settings,
)
from fleetmend.console import OutputFormat, err, out, print_json, table
from fleetmend.errors import ExitCode, FleetmendError, InputError
from fleetmend.fleet import Fleet
from fleetmend.heal import record
from fleetmend.heal.engine import HealOptions, HealReport, Hooks, heal
from fleetmend.heal.ladder import DEFAULT_BUDGETS, LADDER, Rung
from fleetmend.heal.watch import Controller, State, WatchOptions
from fleetmend.inventory import Host
from fleetmend.playbooks import TaskEvent
from fleetmend.waivers import Waiver, load_waivers, waivers_path


def _hooks() -> Hooks:
    def on_step(host: str, step: str, state: str) -> None:
        if state != "running":
            err.print(f"{escape(host)}: {step} {escape(state)}", highlight=False)

    def on_event(host: str, event: TaskEvent) -> None:
        if event.status in ("changed", "failed", "unreachable"):
            err.print(f"  {escape(host)}: {escape(event.task)}: {event.status}", highlight=False)

    def on_plan(plan: object, rungs: dict[str, Rung]) -> None:
        for host, rung in sorted(rungs.items()):
            err.print(f"{escape(host)}: next rung {rung.value}", highlight=False)

    return Hooks(on_step=on_step, on_event=on_event, on_plan=on_plan)


def _show_report(report: HealReport, *, dry: bool = False) -> None:
    rows = [
        [
            name,
            o.state,
            " -> ".join(f"{r}{'' if ok else ' (failed)'}" for r, ok, _ in o.rungs) or "-",
            escape(o.detail[:100]),
        ]
        for name, o in sorted(report.hosts.items())
    ]
    out.print(table(None, ["HOST", "STATE", "RUNGS", "DETAIL"], rows))
    if dry:
        return
    done = "healed" if report.ok else "not healed"
    runs = f"; runs: {', '.join(report.runs)}" if report.runs else ""
    out.print(f"{done} in {report.seconds:.1f}s, {report.rounds} round(s){runs}")


def heal_command(
    ctx: typer.Context,
    hosts: Annotated[
        list[str] | None, typer.Argument(help="Hosts or groups (shell patterns); default all.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check and show the first round's plan only.")
    ] = False,
    yes: Yes = False,
    scrub: Annotated[
        bool,
        typer.Option(
            "--scrub",
            help="Also compare the replicas' data (reads every file) and repair what disagrees.",
        ),
    ] = False,
    max_rung: Annotated[
        Rung,
        typer.Option(
            "--max-rung", help="Never climb above this rung (e.g. converge: never rebuild)."
        ),
    ] = Rung.REBUILD,
    max_failures: Annotated[
        int,
        typer.Option(
            "--max-failures",
            min=1,
            help="Failed repairs of a host in 24h before it waits for a person.",
        ),
    ] = 3,
    release: Annotated[
        list[str] | None,
        typer.Option(
            "--release",
            metavar="HOST",
            help="A person looked at HOST: let heal act on it again (needs --reason).",
        ),
    ] = None,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why, for --release (audited).")
    ] = None,
    watch: Annotated[
        float | None,
        typer.Option(
            "--watch",
            metavar="SECONDS",
            min=1.0,
            help="Keep checking and healing every SECONDS (a controller; needs --yes).",
        ),
    ] = None,
    max_repairs_per_hour: Annotated[
        int, typer.Option("--max-repairs-per-hour", min=1, help="With --watch: repair budget.")
    ] = 10,
    metrics_file: Annotated[
        Path | None,
        typer.Option("--metrics-file", help="With --watch: Prometheus textfile to keep current."),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port", min=1, max=65535, help="With --watch: serve /metrics on 127.0.0.1."
        ),
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
    """Find what is broken and bring it back with the cheapest repair that works.

    Per broken host, escalating: retry the probe -> restart its stopped services
    -> converge -> re-seed its data -> rebuild (reimage + converge + re-seed),
    then a final check. Each rung has a retry budget; a host that uses up its
    ladder, or had --max-failures failed repairs in 24h, waits for a person
    (`--release HOST --reason ...` after looking). Every safety rule, lock and
    the journal apply; --dry-run shows the plan only. Exit 0 healed, 4 hosts
    left broken, 5 refused by a safety rule (trip wire, floor, protected).
    """
    s = settings(ctx)
    if release:
        if not reason:
            raise InputError.one(
                "heal", "--release", "--release needs --reason", 'e.g. --reason "replaced the disk"'
            )
        inventory = Fleet.load(s.images, s.inventory).inventory
        for host in release:
            inventory.host(host)  # an unknown name is an input error, not a silent no-op
        with closing(statedb.connect(s.state_dir)) as db:
            for host in release:
                record.release(db, host, reason)
                out.print(f"released {host}: heal may act on it again")
        return
    fleet = Fleet.load(s.images, s.inventory)
    targets = fleet.inventory.select(hosts or [])
    check = check_options(
        s, forks=forks, timeout=timeout, command_timeout=command_timeout, ssh_config=ssh_config
    )
    top = LADDER.index(max_rung)
    options = HealOptions(
        policy=_policy(max_parallel, max_parallel_per_site, trip_wire, override),
        budgets={r: n for r, n in DEFAULT_BUDGETS.items() if LADDER.index(r) <= top},
        max_failures=max_failures,
        scrub=scrub,
    )
    loaded = load_waivers(waivers or waivers_path(s.inventory))
    as_json = s.output(fmt) is OutputFormat.JSON
    if watch is not None:
        _watch(fleet, targets, check, loaded, options, watch, yes, as_json,
               WatchOptions(watch, max_repairs_per_hour, metrics_file=metrics_file,
                            metrics_port=metrics_port))  # fmt: skip
        return
    if not dry_run and not yes:
        if not sys.stdin.isatty():
            raise Refused(
                "refusing to heal without confirmation: this run is not interactive",
                "review with: fleetmend heal --dry-run; then pass --yes in scripts",
            )
        first, plan = heal(fleet, targets, check, loaded, options, dry_run=True)
        if plan is not None:
            _show(plan)
        if not plan or not plan.actions:
            _finish(first, as_json, dry=True)
            return
        top_rung = max_rung.value
        if not typer.confirm(f"Proceed (rungs may climb up to {top_rung})?", default=False):
            raise Refused("not confirmed; nothing was changed")
    with err.status("healing ..."):
        report, plan = heal(fleet, targets, check, loaded, options, _hooks(), dry_run=dry_run)
    if plan is not None and not as_json:
        _show(plan)
    _finish(report, as_json, dry=dry_run)


def _finish(report: HealReport, as_json: bool, *, dry: bool) -> None:
    if as_json:
        print_json(report.as_dict())
    else:
        _show_report(report, dry=dry)
    if report.tripped:
        err.print(
            "[red]the trip wire tripped: most hosts in scope look broken, which is more "
            "likely the network or the checker than the hosts. Nothing was repaired.[/red]"
        )
    if dry:
        raise typer.Exit(int(ExitCode.REFUSED) if report.refused else 0)
    raise typer.Exit(int(report.exit_code))


def _watch(
    fleet: Fleet,
    targets: list[Host],
    check: CheckOptions,
    waivers: list[Waiver],
    options: HealOptions,
    interval: float,
    yes: bool,
    as_json: bool,
    watch: WatchOptions,
) -> None:
    if not yes:
        raise Refused(
            "heal --watch repairs without asking: pass --yes to run it",
            "try one round first: fleetmend heal --dry-run",
        )

    def on_tick(state: State, report: HealReport) -> None:
        if as_json:
            print_json({"tick": state.ticks, **report.as_dict()})
            return
        broken = {n: o.state for n, o in report.hosts.items() if o.state != "healthy"}
        what = ", ".join(f"{n}: {st}" for n, st in sorted(broken.items())) or "all healthy"
        err.print(f"tick {state.ticks} ({state.last_seconds:.1f}s): {what}", highlight=False)

    def on_error(exc: FleetmendError) -> None:
        err.print(f"[red]tick failed, next one in {interval:g}s:[/red] {escape(exc.message)}")

    controller = Controller(
        fleet, targets, check, waivers, options, watch, _hooks(), on_tick, on_error
    )

    def stop(*_: object) -> None:
        controller.stop.set()

    # SIGTERM ends the loop after the current tick; a controller killed mid-repair
    # (SIGKILL, a crash) leaves the run in the journal and the next start resumes it
    signal.signal(signal.SIGTERM, stop)
    err.print(f"watching {len(targets)} hosts every {interval:g}s (Ctrl-C stops)")
    try:
        controller.run()
    except KeyboardInterrupt:
        err.print("stopped; an unfinished repair resumes when heal runs again")
        raise typer.Exit(130) from None
    if controller.state.resumed:
        err.print(f"resumed: {', '.join(controller.state.resumed)}")
