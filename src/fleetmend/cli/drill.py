"""`fleetmend drill SCENARIO`, `drill report ID`, `drill list`."""

from __future__ import annotations

import sys
from contextlib import closing
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from fleetmend import statedb
from fleetmend.cli.act import Refused, Yes
from fleetmend.cli.common import FormatOption, SshConfigOption, check_options, settings
from fleetmend.console import OutputFormat, err, out, print_json, table
from fleetmend.drill import report as reports
from fleetmend.drill.runner import Drill
from fleetmend.drill.scenario import load_scenario
from fleetmend.errors import ExitCode, InputError
from fleetmend.fleet import Fleet
from fleetmend.settings import Settings


def drill_command(
    ctx: typer.Context,
    what: Annotated[
        str,
        typer.Argument(
            metavar="SCENARIO | report ID | list",
            help="A scenario file (drills/*.yaml) to run; `report ID` re-renders a past "
            "drill's report; `list` lists past drills.",
        ),
    ],
    drill_id: Annotated[str | None, typer.Argument(metavar="[ID]", show_default=False)] = None,
    yes: Yes = False,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Where to write report.json and report.html (a directory)."),
    ] = None,
    ssh_config: SshConfigOption = Path("~/.ssh/config"),
    fmt: FormatOption = None,
) -> None:
    """Break hosts on purpose, heal, and measure how fast and how completely the fleet comes back.

    The fleet in the scenario's scope must be healthy first. fleetmend records
    every replica's data manifest, injects the faults, runs heal (steps, locks,
    journal and safety rules as always), then compares every data volume with
    its pre-fault manifest (RPO: files and bytes lost), times each host from its
    fault to the check that found it conformant (RTO), and watches that no
    replica set went below its floor. Writes a JSON and an HTML report. Exit 0
    when every expectation held, 4 when one did not, 5 when refused.
    """
    s = settings(ctx)
    as_json = s.output(fmt) is OutputFormat.JSON
    if what == "list":
        _list(s, as_json)
        return
    if what == "report":
        if drill_id is None:
            raise InputError.one("drill report", "", "which drill?", "fleetmend drill list")
        with closing(statedb.connect(s.state_dir)) as db:
            report = reports.load(db, drill_id)
        where = out_dir or s.state_dir / "drills" / drill_id
        json_path, html_path = reports.write(report, where)
        _finish(report, json_path, html_path, as_json)
        return
    path = Path(what)
    scenario = load_scenario(path)
    fleet = Fleet.load(s.images, s.inventory)
    check = check_options(
        s, timeout=scenario.heal.timeout, command_timeout=120, ssh_config=ssh_config
    )
    drill = Drill(fleet, scenario, path, check, progress=lambda m: err.print(escape(m)))
    planned = "; ".join(
        f"{spec.fault.value if spec.fault else spec.playbook} on {', '.join(h.name for h in hosts)}"
        for spec, hosts in drill.faults
    )
    err.print(f"drill {escape(scenario.name)}: will inject {escape(planned)}", highlight=False)
    if not yes:
        if not sys.stdin.isatty():
            raise Refused(
                "refusing to break hosts on purpose without confirmation: not interactive",
                "pass --yes in scripts",
            )
        if not typer.confirm("Break these hosts now?", default=False):
            raise Refused("not confirmed; nothing was changed")
    report = drill.run()
    with closing(statedb.connect(s.state_dir)) as db:
        json_path, html_path = reports.save(db, report, out_dir or s.state_dir / "drills")
    _finish(report, json_path, html_path, as_json)
    raise typer.Exit(0 if report["passed"] else int(ExitCode.HOSTS_FAILED))


def _finish(report: dict[str, Any], json_path: Path, html_path: Path, as_json: bool) -> None:
    if as_json:
        print_json(report)
        return
    rows = [
        [e["what"], e["expected"], e["measured"], "held" if e["held"] else "NOT held"]
        for e in report["expectations"]
    ]
    out.print(table(None, ["EXPECTATION", "EXPECTED", "MEASURED", ""], rows))
    verdict = "passed" if report["passed"] else "FAILED"
    out.print(f"drill {report['id']} {verdict}", highlight=False)
    out.print(f"report: {html_path}", highlight=False, soft_wrap=True)
    out.print(f"json:   {json_path}", highlight=False, soft_wrap=True)


def _list(s: Settings, as_json: bool) -> None:
    with closing(statedb.connect(s.state_dir)) as db:
        rows = reports.listing(db)
    if as_json:
        print_json([{"id": i, "scenario": n, "started_at": t, "passed": p} for i, n, t, p in rows])
        return
    out.print(
        table(
            None,
            ["DRILL", "SCENARIO", "STARTED", "RESULT"],
            ([i, n, t, "passed" if p else "FAILED"] for i, n, t, p in rows),
        )
    )
