"""`fleetmend validate`: check every input and list every problem."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from fleetmend.cli.common import FormatOption, settings
from fleetmend.console import OutputFormat, err, out, print_json, short, table
from fleetmend.errors import ExitCode
from fleetmend.validate import inventory_files, validate


def validate_command(
    ctx: typer.Context,
    inventories: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Inventories to check. Default: -i if given, else every inventory "
            "file in the directory of the default inventory.",
            show_default=False,
        ),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="List every host rendered.")
    ] = False,
    fmt: FormatOption = None,
) -> None:
    """Load every image, template and inventory, render every host; list every problem.

    Nothing is contacted: this reads files only. Exit code 0 when all is well,
    2 when anything is wrong (each problem names its file and place).
    """
    s = settings(ctx)
    if inventories:
        paths = inventories
    elif s.inventory_given:
        paths = [s.inventory]
    else:
        directory = s.inventory.parent
        paths = inventory_files(directory) if directory.is_dir() else [s.inventory]
    report = validate(s.images, paths)
    if s.output(fmt) is OutputFormat.JSON:
        print_json(
            {
                "ok": report.ok,
                "images": report.images,
                "inventories": report.inventories,
                "rendered": [vars(r) for r in report.rendered],
                "problems": [
                    {**vars(p), "hosts": list(p.hosts), "text": str(p)} for p in report.problems
                ],
            }
        )
    else:
        if verbose:
            for source in report.inventories:
                rows = [r for r in report.rendered if r.inventory == source]
                out.print(
                    table(
                        f"{source}: {len(rows)} hosts rendered",
                        ["HOST", "IMAGE", "VERSION", "DIGEST", "FILES", "BYTES"],
                        (
                            [r.host, r.image, r.version, short(r.digest), r.files, r.bytes]
                            for r in rows
                        ),
                    )
                )
                out.print()
        for problem in report.problems:
            err.print(f"[red]error:[/red] {escape(str(problem))}", highlight=False)
        summary = (
            f"{len(report.images)} images, {len(report.inventories)} inventories, "
            f"{len(report.rendered)} hosts rendered"
        )
        if report.ok:
            out.print(f"[green]ok[/green]: {summary}", highlight=False)
        else:
            err.print(f"{len(report.problems)} problem(s); {summary}", highlight=False)
    if not report.ok:
        raise typer.Exit(int(ExitCode.INPUT))
