"""Pieces every command module shares: the settings in the context, shared options."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, cast

import typer

from fleetmend.check import DEFAULT_FORKS, CheckOptions
from fleetmend.console import OutputFormat
from fleetmend.settings import Settings
from fleetmend.transport.ssh import Timeouts

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
    float,
    typer.Option(
        "--command-timeout",
        help="Seconds the probe may run on a host; a host silent this long mid-transfer "
        "is given up.",
        min=0.1,
    ),
]
WaiversOption = Annotated[
    Path | None,
    typer.Option(
        "--waivers", help="Waivers file. Default: INVENTORY.waivers.yaml next to the inventory."
    ),
]
MaxRateOption = Annotated[
    float | None,
    typer.Option(
        "--max-rate",
        metavar="MB/S",
        min=0.1,
        help="Bandwidth a re-seed may take from its source (a busy primary keeps serving).",
    ),
]
SshConfigOption = Annotated[
    Path,
    typer.Option(
        "--ssh-config", help="OpenSSH client config to read (HostName, User, ProxyJump...)."
    ),
]


def check_options(
    s: Settings,
    *,
    forks: int = DEFAULT_FORKS,
    timeout: float = 10.0,
    command_timeout: float = 60.0,
    ssh_config: Path = Path("~/.ssh/config"),
    accept_new: bool = False,
) -> CheckOptions:
    """How every command reaches hosts, from the options it parsed."""
    return CheckOptions(
        state_dir=s.state_dir,
        forks=forks,
        timeouts=Timeouts(connect=timeout, command=command_timeout),
        accept_new=accept_new,
        ssh_config=ssh_config.expanduser(),
    )
