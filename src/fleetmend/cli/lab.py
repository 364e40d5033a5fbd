"""`fleetmend lab`: a local fleet of real SSH hosts, and faults to inject into it."""

from __future__ import annotations

import os
from typing import Annotated

import typer
from rich.markup import escape

from fleetmend.catalog import Catalog
from fleetmend.cli.common import FormatOption, settings
from fleetmend.console import OutputFormat, err, out, print_json, table
from fleetmend.errors import ExitCode
from fleetmend.fleet import Fleet
from fleetmend.hostkeys import fingerprint
from fleetmend.lab import Fault, Lab, generated_hosts
from fleetmend.lab.faults import FaultOptions
from fleetmend.lab.lab import HostState, HostStatus

app = typer.Typer(
    help=(
        "A local fleet of real SSH hosts on this machine (needs root and Linux): each host "
        "has its own namespaces, an overlay root and its own sshd on a loopback address."
    ),
    no_args_is_help=True,
)


def _lab(ctx: typer.Context) -> Lab:
    return Lab(settings(ctx).state_dir)


def _print_status(lab: Lab, hosts: list[HostStatus], fmt: OutputFormat) -> None:
    if fmt is OutputFormat.JSON:
        print_json(
            {
                "lab": str(lab.dir),
                "inventory": str(lab.inventory_path),
                "ssh_config": str(lab.ssh_config_path),
                "hosts": [
                    {
                        "name": h.name,
                        "address": h.address,
                        "port": h.port,
                        "state": h.state.value,
                        "pid": h.pid,
                        "image": h.image,
                        "faults": h.faults,
                        "host_key_fingerprint": fingerprint(h.host_key) if h.host_key else None,
                    }
                    for h in hosts
                ],
            }
        )
        return
    if not hosts:
        out.print("the lab is not up (start it with: fleetmend lab up)")
        return
    colours = {HostState.RUNNING: "green", HostState.HUNG: "yellow", HostState.STOPPED: "red"}
    out.print(
        table(
            None,
            ["HOST", "ADDRESS", "STATE", "PID", "IMAGE", "FAULTS"],
            (
                [
                    h.name,
                    f"{h.address}:{h.port}",
                    f"[{colours[h.state]}]{h.state.value}[/]",
                    h.pid or "-",
                    h.image or "-",
                    ", ".join(h.faults) or "-",
                ]
                for h in hosts
            ),
        )
    )
    counts = {s: sum(1 for h in hosts if h.state is s) for s in HostState}
    out.print(
        f"{len(hosts)} hosts: "
        + ", ".join(f"{n} {s.value}" for s, n in counts.items() if n)
        + f"\ninventory: {escape(str(lab.inventory_path))}"
        + f"\nssh: ssh -F {escape(str(lab.ssh_config_path))} HOST   (or: fleetmend lab ssh HOST)",
        highlight=False,
    )


@app.command("up")
def up(
    ctx: typer.Context,
    hosts: Annotated[
        int | None,
        typer.Option(
            "--hosts",
            "-n",
            help="Start N generated hosts (lab-01...) instead of the inventory's.",
            min=1,
            max=2000,
        ),
    ] = None,
    image: Annotated[
        str, typer.Option(help="Image of the generated hosts (with --hosts).")
    ] = "base",
    fmt: FormatOption = None,
) -> None:
    """Start the lab hosts of the inventory (default inventories/lab.yaml), or N generated ones.

    Idempotent: running hosts are left alone. Writes an SSH config, a
    known_hosts with each host's real key, and the Ansible inventory the rest
    of fleetmend uses, under the state directory (.fleetmend/lab/).
    """
    s = settings(ctx)
    lab = Lab(s.state_dir)
    with err.status("starting lab hosts ...") as status:
        if hosts is not None:
            specs = generated_hosts(hosts, Catalog.load(s.images).resolve(image))
            result = lab.up(specs, progress=lambda line: status.update(line))
        else:
            fleet = Fleet.load(s.images, s.inventory)
            result = lab.up_fleet(fleet, progress=lambda line: status.update(line))
    _print_status(lab, result, s.output(fmt))


@app.command("down")
def down(ctx: typer.Context) -> None:
    """Stop every lab host and remove the lab's hosts and files.

    Leaves no process, mount or address behind, also after a crashed run
    (processes are found by the marker the lab gives them). The lab's data is
    throwaway: there is no confirmation.
    """
    lab = _lab(ctx)
    stopped = lab.down()
    out.print(
        f"lab down: {len(stopped)} hosts stopped" + (f" ({', '.join(stopped)})" if stopped else "")
    )


@app.command("status")
def status(ctx: typer.Context, fmt: FormatOption = None) -> None:
    """Show each lab host: address, state (running, hung, stopped), PID, image, faults.

    Exit code 4 when any host is not running.
    """
    lab = _lab(ctx)
    hosts = lab.status()
    _print_status(lab, hosts, settings(ctx).output(fmt))
    if any(h.state is not HostState.RUNNING for h in hosts):
        raise typer.Exit(int(ExitCode.HOSTS_FAILED))


@app.command("ssh", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def ssh(
    ctx: typer.Context,
    host: Annotated[str, typer.Argument(help="Lab host to open a shell on.")],
    command: Annotated[
        list[str] | None, typer.Argument(help="Command to run instead of a shell.")
    ] = None,
) -> None:
    """Open a shell on a lab host (or run COMMAND there), with strict host-key checking."""
    lab = _lab(ctx)
    lab.fingerprint(host)  # unknown host: a clear error before ssh runs
    argv = ["ssh", "-F", str(lab.ssh_config_path), host, *(command or [])]
    os.execvp("ssh", argv)


@app.command("break")
def break_host(
    ctx: typer.Context,
    host: Annotated[str, typer.Argument(help="Lab host to break.")],
    fault: Annotated[
        Fault,
        typer.Option(
            "--fault",
            "-F",
            help=(
                "down: stop answering; wipe-disk: down and writable layer lost; "
                "corrupt-data: flip bytes in a data volume, size and mtime kept; "
                "drift-file: change a managed file; remove-package: dpkg --remove a "
                "declared package; stop-service: end a declared service's processes; "
                "hang: sshd accepts but never answers."
            ),
        ),
    ],
    volume: Annotated[
        str | None, typer.Option(help="corrupt-data: volume (default: the first).")
    ] = None,
    path: Annotated[
        str | None, typer.Option(help="drift-file: file (default: the first managed).")
    ] = None,
    package: Annotated[str | None, typer.Option(help="remove-package: package.")] = None,
    service: Annotated[str | None, typer.Option(help="stop-service: service.")] = None,
    count: Annotated[int, typer.Option(help="corrupt-data: files to corrupt.", min=1)] = 3,
    seed: Annotated[int, typer.Option(help="corrupt-data: choice of files and bytes.")] = 0,
    fmt: FormatOption = None,
) -> None:
    """Inject a fault into a lab host, for drills and tests. `heal-fault` undoes it."""
    lab = _lab(ctx)
    opts = FaultOptions(
        volume=volume, path=path, package=package, service=service, count=count, seed=seed
    )
    injected = lab.break_host(host, fault, opts)
    if settings(ctx).output(fmt) is OutputFormat.JSON:
        print_json({"host": host, **injected.model_dump(mode="json")})
        return
    out.print(
        f"{escape(host)}: injected {fault.value} {_describe(injected.detail)}", highlight=False
    )


def _describe(detail: dict[str, object]) -> str:
    if "flipped" in detail and isinstance(detail["flipped"], list):
        paths = ", ".join(str(f["path"]) for f in detail["flipped"])
        return f"(volume {detail['volume']}: {paths})"
    for key in ("path", "package", "service"):
        if key in detail:
            return f"({key} {detail[key]})"
    return ""


@app.command("heal-fault")
def heal_fault(
    ctx: typer.Context,
    host: Annotated[str, typer.Argument(help="Lab host to heal.")],
    fault: Annotated[
        Fault | None, typer.Option("--fault", "-F", help="Only this fault (default: all).")
    ] = None,
) -> None:
    """Undo the faults injected into a host, newest first, where that makes sense.

    down, hang, corrupt-data and drift-file are undone; wipe-disk needs
    `lab reimage`, remove-package and stop-service need a converge.
    """
    undone = _lab(ctx).heal_fault(host, fault)
    out.print(f"{escape(host)}: undone {', '.join(f.value for f in undone)}")


@app.command("reimage")
def reimage(
    ctx: typer.Context,
    host: Annotated[str, typer.Argument(help="Lab host to give a fresh OS.")],
    fmt: FormatOption = None,
) -> None:
    """Give a lab host a fresh OS: stop it, discard its writable layer, new host keys, start.

    Prints the new host key, which is also written to the lab's known_hosts.
    """
    key = _lab(ctx).reimage(host)
    if settings(ctx).output(fmt) is OutputFormat.JSON:
        print_json({"host": host, "host_key": key, "fingerprint": fingerprint(key)})
        return
    out.print(f"{escape(host)} reimaged; new host key {fingerprint(key)}\n{key}", highlight=False)
