"""`fleetmend check` and `fleetmend history`: drift, for people, schedulers and CI."""

from __future__ import annotations

from contextlib import closing
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from fleetmend import history as history_db
from fleetmend import reports, statedb
from fleetmend.check import DEFAULT_FORKS, CheckReport, HostReport, run_check
from fleetmend.cli.common import (
    CommandTimeoutOption,
    ForksOption,
    SshConfigOption,
    TimeoutOption,
    WaiversOption,
    check_options,
    settings,
)
from fleetmend.console import OutputFormat, err, out, print_json, table
from fleetmend.drift import Verdict
from fleetmend.fleet import Fleet
from fleetmend.fsutil import write_atomic
from fleetmend.waivers import load_waivers, waivers_path


class CheckFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    JUNIT = "junit"
    PROMETHEUS = "prometheus"


_COLOURS = {
    Verdict.CONFORMANT: "green",
    Verdict.DRIFTED: "yellow",
    Verdict.FAILED: "red",
    Verdict.UNREACHABLE: "red",
}


def _verdict(v: Verdict) -> str:
    return f"[{_COLOURS[v]}]{v.value}[/]"


def _summary(report: CheckReport, verbose: bool) -> None:
    counts = report.counts()
    out.print(
        f"checked {len(report.hosts)} hosts of {escape(report.source)} in {report.seconds:.1f}s: "
        + ", ".join(f"{_verdict(v)} {n}" for v, n in counts.items()),
        highlight=False,
    )
    shown = (
        report.hosts
        if verbose
        else [h for h in report.hosts if h.verdict is not Verdict.CONFORMANT]
    )
    if shown:
        out.print(
            table(
                None,
                ["HOST", "IMAGE", "VERDICT", "ITEMS", "WHAT"],
                (
                    [h.host, h.image, _verdict(h.verdict), len(h.counted), escape(_what(h))]
                    for h in shown
                ),
            )
        )
    if verbose:
        for h in shown:
            if not h.items:
                continue
            out.print(f"\n[bold]{escape(h.host)}[/] ({h.verdict.value})")
            out.print(
                table(
                    None,
                    ["KIND", "TARGET", "EXPECTED", "FOUND", "NOTE"],
                    (
                        [
                            i.kind.value,
                            escape(i.target),
                            escape(i.expected),
                            escape(i.actual),
                            escape(f"waived: {i.waived}")
                            if i.waived
                            else ("failure" if i.failure else ""),
                        ]
                        for i in h.items
                    ),
                )
            )
    if report.replica_sets:
        out.print(
            table(
                "\nreplica sets",
                ["REPLICA SET", "HEALTHY", "MIN_LIVE", "CHECKED", "STATE"],
                (
                    [
                        rs.name,
                        len(rs.healthy),
                        rs.min_live,
                        f"{len(rs.checked)}/{len(rs.members)}",
                        "[red]UNDER FLOOR[/]" if rs.under_floor else "[green]ok[/]",
                    ]
                    for rs in report.replica_sets
                ),
            )
        )
    for note in report.expired_waivers:
        err.print(f"[yellow]waiver expired:[/] {escape(note)}", highlight=False)


def _what(h: HostReport) -> str:
    if h.verdict is Verdict.UNREACHABLE:
        return f"{h.reason}: {h.detail}"
    if h.verdict is Verdict.FAILED and h.detail:
        return h.detail
    counted = sorted(h.counted, key=lambda i: not i.failure)  # what makes it fail, first
    first = ", ".join(f"{i.kind.value} {i.target}" for i in counted[:3])
    more = f" (+{len(counted) - 3} more)" if len(counted) > 3 else ""
    waived = f"; {len(h.waived)} waived" if h.waived else ""
    return (first + more + waived) if counted or waived else ""


def check_command(
    ctx: typer.Context,
    hosts: Annotated[
        list[str] | None,
        typer.Argument(
            help="Hosts or groups to check (shell patterns). Default: every managed host."
        ),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Every host, every item.")
    ] = False,
    fmt: Annotated[
        CheckFormat | None,
        typer.Option(
            "--format", "-f", case_sensitive=False, help="table, json, junit or prometheus."
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Write the report to FILE (atomically) instead of stdout."
        ),
    ] = None,
    forks: ForksOption = DEFAULT_FORKS,
    timeout: TimeoutOption = 10.0,
    command_timeout: CommandTimeoutOption = 60.0,
    accept_new: Annotated[
        bool,
        typer.Option(
            "--accept-new",
            help="Trust unknown host keys on first use, recording them in the state "
            "directory's known_hosts (a changed key is still refused).",
        ),
    ] = False,
    waivers: WaiversOption = None,
    ssh_config: SshConfigOption = Path("~/.ssh/config"),
) -> None:
    """Probe every host in scope once and report drift from its image and data health.

    Read-only: nothing on any host is changed. Exit codes: 0 all conformant,
    3 drift found, 4 a host failed (data volume unhealthy, another OS or image)
    or is unreachable, 2 bad input. Results are kept for `fleetmend history`.
    """
    s = settings(ctx)
    chosen = fmt or CheckFormat(s.format.value)
    fleet = Fleet.load(s.images, s.inventory)
    scope = fleet.inventory.select(hosts or [])
    accepted = load_waivers(waivers or waivers_path(s.inventory))
    options = check_options(
        s, forks=forks, timeout=timeout, command_timeout=command_timeout,
        ssh_config=ssh_config, accept_new=accept_new,
    )  # fmt: skip
    with Progress(
        TextColumn("checking"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    ) as progress:
        task = progress.add_task("check", total=len(scope))
        report = run_check(
            fleet, scope, options, accepted, on_host=lambda _: progress.advance(task)
        )
    with closing(statedb.connect(s.state_dir)) as db:
        history_db.record(db, report)
    text = {
        CheckFormat.JSON: reports.to_json,
        CheckFormat.JUNIT: reports.to_junit,
        CheckFormat.PROMETHEUS: reports.to_prometheus,
    }.get(chosen)
    if output is not None:
        write_atomic(output, text(report) if text else reports.to_json(report))
        _summary(report, verbose)
    elif text is not None:
        typer.echo(text(report), nl=False)
    else:
        _summary(report, verbose)
    raise typer.Exit(int(report.exit_code()))


def history_command(
    ctx: typer.Context,
    host: Annotated[str, typer.Argument(help="Host whose check results to show.")],
    limit: Annotated[int, typer.Option(help="How many checks back.", min=1)] = 20,
    fmt: Annotated[
        OutputFormat | None, typer.Option("--format", "-f", case_sensitive=False)
    ] = None,
) -> None:
    """Show a host's verdict in past checks, and since when it is as it is now."""
    s = settings(ctx)
    with closing(statedb.connect(s.state_dir)) as db:
        entries = history_db.host_history(db, host, limit)
    first = history_db.since(entries)
    if s.output(fmt) is OutputFormat.JSON:
        print_json(
            {
                "host": host,
                "since": first.at if first else None,
                "checks": [
                    {
                        "check": e.check_id,
                        "at": e.at,
                        "verdict": e.verdict.value,
                        "reason": e.reason,
                        "items": e.items,
                    }
                    for e in entries
                ],
            }
        )
        return
    if not entries:
        out.print(f"no check has recorded {escape(host)} yet (run: fleetmend check {escape(host)})")
        return
    out.print(
        table(
            None,
            ["CHECK", "AT", "VERDICT", "ITEMS", "WHAT"],
            (
                [
                    e.check_id,
                    e.at,
                    _verdict(e.verdict),
                    len(e.counted),
                    escape(
                        f"{e.reason}: {e.detail}"
                        if e.reason
                        else ", ".join(
                            f"{i['kind']} {i['target']}"
                            for i in sorted(e.counted, key=lambda i: not i.get("failure"))[:3]
                        )
                    ),
                ]
                for e in entries
            ),
        )
    )
    assert first is not None
    out.print(
        f"{escape(host)} is {_verdict(entries[0].verdict)} since {first.at} "
        f"(check {first.check_id})",
        highlight=False,
    )
