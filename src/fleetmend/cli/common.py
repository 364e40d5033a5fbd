"""Pieces every command module shares: the settings in the context, shared options."""

from __future__ import annotations

from pathlib import Path
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


ForksOption = Annotated[
    int,
    typer.Option("--forks", envvar="FLEETMEND_FORKS", min=1, max=500, help="Hosts probed at once."),
]
TimeoutOption = Annotated[
    float,
    typer.Option(
        "--timeout", help="Seconds to connect (TCP, SSH banner, key exchange, auth).", min=0.1
    ),
]
CommandTimeoutOption = Annotated[
    float, typer.Option("--command-timeout", help="Seconds the probe may run on a host.", min=0.1)
]
WaiversOption = Annotated[
    Path | None,
    typer.Option(
        "--waivers", help="Waivers file. Default: INVENTORY.waivers.yaml next to the inventory."
    ),
]
SshConfigOption = Annotated[
    Path,
    typer.Option(
        "--ssh-config", help="OpenSSH client config to read (HostName, User, ProxyJump...)."
    ),
]
