"""Pieces every command module shares: the settings in the context, shared options."""

from __future__ import annotations

from typing import Annotated, cast

import typer

from fleetmend.console import OutputFormat
from fleetmend.settings import Settings

FormatOption = Annotated[
    OutputFormat | None,
    typer.Option(
        "--format",
        "-f",
        help="Output format for this command (overrides the global --format).",
        case_sensitive=False,
        show_default=False,
    ),
]


def settings(ctx: typer.Context) -> Settings:
    """The settings the top-level callback parsed."""
    root = ctx.find_root()
    if root.obj is None:
        root.obj = Settings()
    return cast(Settings, root.obj)
