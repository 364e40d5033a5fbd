"""`fleetmend inventory`: what fleetmend reads from an Ansible inventory."""

from __future__ import annotations

import typer

from fleetmend.cli.common import FormatOption, settings
from fleetmend.console import OutputFormat, out, print_json, table
from fleetmend.fleet import Fleet

app = typer.Typer(help="Show hosts and replica sets as fleetmend reads them.", no_args_is_help=True)


@app.command("show")
def show(ctx: typer.Context, fmt: FormatOption = None) -> None:
    """Show every host with its image, replica set and site, then the replica sets.

    The inventory is read by Ansible's own loader (YAML or INI, with group_vars/
    and host_vars/); fleetmend's variables are checked and every problem listed.
    """
    s = settings(ctx)
    fleet = Fleet.load(s.images, s.inventory)
    inv = fleet.inventory
    if s.output(fmt) is OutputFormat.JSON:
        print_json(
            {
                "source": inv.source,
                "hosts": [h.model_dump(mode="json", exclude={"vars"}) for h in inv.hosts.values()],
                "replica_sets": [rs.model_dump(mode="json") for rs in inv.replica_sets.values()],
            }
        )
        return
    out.print(
        table(
            f"{inv.source}: {len(inv.hosts)} hosts",
            ["HOST", "ADDRESS", "IMAGE", "REPLICA SET", "SITE", "NOTES"],
            (
                [
                    h.name,
                    f"{h.address}:{h.port}",
                    h.image or "-",
                    h.replica_set or "-",
                    h.site or "-",
                    ", ".join(
                        n
                        for n, on in (("protected", h.protected), ("unmanaged", not h.managed))
                        if on
                    ),
                ]
                for h in inv.hosts.values()
            ),
        )
    )
    if inv.replica_sets:
        out.print()
        out.print(
            table(
                "replica sets",
                ["REPLICA SET", "MIN_LIVE", "MEMBERS", "DESCRIPTION"],
                (
                    [rs.name, rs.min_live, ", ".join(rs.members), rs.description]
                    for rs in inv.replica_sets.values()
                ),
            )
        )
