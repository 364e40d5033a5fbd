"""The `fleetmend` command: global options, command groups, and the one error handler."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from typer.core import TyperGroup

from fleetmend import __version__
from fleetmend.cli import act, check, drill, heal, images, inventory, lab, validate
from fleetmend.console import OutputFormat, err
from fleetmend.errors import ExitCode, FleetmendError
from fleetmend.settings import DEFAULT_IMAGES, DEFAULT_INVENTORY, DEFAULT_STATE_DIR, Settings


class _Group(TyperGroup):
    """Turns a `FleetmendError` from any command into its lines and exit code."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except FleetmendError as exc:
            if isinstance(ctx.obj, Settings) and ctx.obj.debug:
                raise
            for line in exc.lines():
                err.print(f"[red]error:[/red] {escape(line)}", highlight=False)
            if len(exc.lines()) > 1:
                err.print(f"{len(exc.lines())} problems found", highlight=False)
            raise typer.Exit(int(exc.exit_code)) from None
        except OSError as exc:  # a file we must read or write: say which and why
            if isinstance(ctx.obj, Settings) and ctx.obj.debug:
                raise
            where = f"{exc.filename}: " if exc.filename else ""
            err.print(
                f"[red]error:[/red] {escape(where + (exc.strerror or str(exc)))}", highlight=False
            )
            raise typer.Exit(int(ExitCode.FAILED)) from None


app = typer.Typer(
    cls=_Group,
    name="fleetmend",
    help=(
        "Keep a fleet cast from its standard images: reconcile images against live "
        "servers, rebuild lost hosts, re-seed their data from replicated peers.\n\n"
        "Exit codes: 0 ok, 1 an operation failed, 2 usage or invalid input, "
        "3 drift found, 4 hosts failed or unreachable, 5 refused by a safety rule."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,  # tracebacks only with --debug, never with locals
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(images.app, name="images")
app.add_typer(inventory.app, name="inventory")
app.add_typer(lab.app, name="lab")
app.command("validate")(validate.validate_command)
app.command("check")(check.check_command)
app.command("history")(check.history_command)
app.command("plan")(act.plan_command)
app.command("apply")(act.apply_command)
app.command("converge")(act.converge_command)
app.command("rebuild")(act.rebuild_command)
app.command("reseed")(act.reseed_command)
app.command("scrub")(act.scrub_command)
app.command("heal")(heal.heal_command)
app.command("drill")(drill.drill_command)
app.command("resume")(act.resume_command)
app.add_typer(act.runs_app, name="runs")
app.add_typer(act.audit_app, name="audit")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fleetmend {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    ctx: typer.Context,
    images_dir: Annotated[
        Path,
        typer.Option(
            "--images",
            envvar="FLEETMEND_IMAGES",
            help="Directory of image files (NAME.yaml) and their templates/.",
        ),
    ] = DEFAULT_IMAGES,
    inventory_path: Annotated[
        Path | None,
        typer.Option(
            "--inventory",
            "-i",
            envvar="FLEETMEND_INVENTORY",
            help=f"Ansible inventory (YAML or INI). [default: {DEFAULT_INVENTORY}]",
            show_default=False,
        ),
    ] = None,
    state_dir: Annotated[
        Path,
        typer.Option(
            "--state-dir",
            envvar="FLEETMEND_STATE_DIR",
            help="Where fleetmend keeps its state (the lab fleet, later the journal).",
        ),
    ] = DEFAULT_STATE_DIR,
    output: Annotated[
        OutputFormat,
        typer.Option("--format", "-f", case_sensitive=False, help="Output format."),
    ] = OutputFormat.TABLE,
    debug: Annotated[
        bool, typer.Option("--debug", envvar="FLEETMEND_DEBUG", help="Show tracebacks.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    ctx.obj = Settings(
        images=images_dir,
        inventory=inventory_path or DEFAULT_INVENTORY,
        inventory_given=inventory_path is not None,
        state_dir=state_dir,
        format=output,
        debug=debug,
    )


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        raise SystemExit(130) from None
    except FleetmendError:
        raise  # only reached with --debug: the traceback is what was asked for
    except Exception as exc:  # a bug in fleetmend, not bad input
        if _debug_requested():
            raise
        err.print(
            f"[red]internal error:[/red] {type(exc).__name__}: {escape(str(exc))}\n"
            "this is a bug in fleetmend; run again with --debug for the traceback and report it",
            highlight=False,
        )
        raise SystemExit(int(ExitCode.FAILED)) from None


def _debug_requested() -> bool:
    import os
    import sys

    return "--debug" in sys.argv or os.environ.get("FLEETMEND_DEBUG", "") not in ("", "0")
