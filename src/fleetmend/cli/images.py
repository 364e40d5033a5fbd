"""`fleetmend images`: list, show, render and compare standard images."""

from __future__ import annotations

from typing import Annotated, Any

import typer
import yaml
from rich.markup import escape
from rich.syntax import Syntax

from fleetmend.catalog import Catalog, resolve_ref
from fleetmend.cli.common import FormatOption, settings
from fleetmend.console import OutputFormat, out, print_json, short, table
from fleetmend.errors import InputError
from fleetmend.fleet import Fleet
from fleetmend.imagediff import diff_images

app = typer.Typer(help="List, show, render and compare standard images.", no_args_is_help=True)


@app.command("list")
def list_images(ctx: typer.Context, fmt: FormatOption = None) -> None:
    """List the images of the images directory with version, parent and digest.

    An image with errors is listed without a digest; `fleetmend validate` says why.
    """
    s = settings(ctx)
    catalog = Catalog.scan(s.images)
    rows: list[dict[str, Any]] = []
    for name in catalog.names():
        spec = catalog.spec(name)
        try:
            digest: str | None = catalog.resolve(name).digest
        except InputError:
            digest = None
        rows.append(
            {
                "name": name,
                "version": spec.version,
                "extends": spec.extends,
                "digest": digest,
                "description": spec.description,
                "file": catalog.source(name),
            }
        )
    if s.output(fmt) is OutputFormat.JSON:
        print_json({"images": rows, "problems": [str(p) for p in catalog.problems]})
        return
    out.print(
        table(
            None,
            ["IMAGE", "VERSION", "EXTENDS", "DIGEST", "DESCRIPTION"],
            (
                [
                    r["name"],
                    r["version"],
                    r["extends"] or "-",
                    short(r["digest"]) if r["digest"] else "(errors)",
                    r["description"],
                ]
                for r in rows
            ),
        )
    )
    if catalog.problems:
        out.print(
            f"[yellow]{len(catalog.problems)} problem(s) in {escape(str(s.images))}; "
            "run `fleetmend validate` to list them[/]"
        )


@app.command("show")
def show_image(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Image name, or the path of an image file.")],
    fmt: FormatOption = None,
) -> None:
    """Show an image resolved along `extends`, with its digest.

    Templates are listed with the hash of their source; `images render` shows
    them rendered for a host.
    """
    s = settings(ctx)
    _, image = resolve_ref(name, s.images)
    data = image.model_dump(mode="json", exclude={"templates"}, exclude_none=True)
    data["templates"] = sorted(image.templates)
    if s.output(fmt) is OutputFormat.JSON:
        print_json(data)
        return
    out.print(
        f"[bold]{escape(image.name)}[/] {escape(image.version)}  "
        f"digest {image.digest}\n{escape(image.description)}\n"
        f"lineage: {' -> '.join(image.lineage)}",
        highlight=False,
    )
    header = ("name", "version", "description", "digest", "lineage")
    body = {k: v for k, v in data.items() if k not in header}
    out.print(Syntax(yaml.safe_dump(body, sort_keys=False, width=100), "yaml", theme="ansi_dark"))


@app.command("render")
def render_image(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Image to render (any image, to preview a change).")],
    host: Annotated[str, typer.Option("--host", "-H", help="Inventory host to render for.")],
    file: Annotated[
        str | None,
        typer.Option("--file", help="Print only this file's content, raw (for diff or less)."),
    ] = None,
    fmt: FormatOption = None,
) -> None:
    """Render an image's files for one host with the host's inventory variables.

    The result is the host's desired state. An undefined variable is an error
    naming the template, line and variable, never an empty string.
    """
    s = settings(ctx)
    fleet = Fleet.load(s.images, s.inventory)
    target = fleet.inventory.host(host)
    _, image = resolve_ref(name, s.images)
    state = fleet.desired(target, image)
    if file is not None:
        if file not in state.files:
            raise InputError.one(
                f"image {image.name}",
                "files",
                f"no file {file!r} in the image",
                f"its files: {', '.join(sorted(state.files))}",
            )
        typer.echo(state.files[file].content, nl=False)
        return
    if s.output(fmt) is OutputFormat.JSON:
        print_json(state.model_dump(mode="json"))
        return
    out.print(
        f"[bold]{escape(image.name)}[/] {escape(image.version)} for "
        f"[bold]{escape(host)}[/]  digest {short(image.digest)}",
        highlight=False,
    )
    for path, rendered in state.files.items():
        out.rule(
            f"{escape(path)}  {rendered.mode} {escape(rendered.owner)}:{escape(rendered.group)}"
            f"  {escape(rendered.source)}  sha256:{short(rendered.sha256)}",
            align="left",
        )
        out.print(rendered.content, markup=False, highlight=False, end="")
        if not rendered.content.endswith("\n"):
            out.print()


@app.command("diff")
def diff_command(
    ctx: typer.Context,
    a: Annotated[str, typer.Argument(help="Image name, or the path of an image file.")],
    b: Annotated[str, typer.Argument(help="Image name, or the path of an image file.")],
    fmt: FormatOption = None,
) -> None:
    """Show what changes from image A to image B, section by section.

    To compare two versions of one image, give the older one as a path, e.g.
    `fleetmend images diff /tmp/release-41/images/web.yaml web`: a path is
    resolved with its own directory's images and templates. Exit code 0 when
    the digests are equal, 3 when they differ.
    """
    s = settings(ctx)
    _, image_a = resolve_ref(a, s.images)
    _, image_b = resolve_ref(b, s.images)
    result = diff_images(
        image_a,
        image_b,
        label_a=_label(image_a.name, image_a.version, a),
        label_b=_label(image_b.name, image_b.version, b),
    )
    if s.output(fmt) is OutputFormat.JSON:
        print_json(
            {
                "a": result.a,
                "b": result.b,
                "digest_a": result.digest_a,
                "digest_b": result.digest_b,
                "same": result.same,
                "changes": [
                    {
                        "section": c.section,
                        "key": c.key,
                        "kind": str(c.kind),
                        "before": c.before,
                        "after": c.after,
                    }
                    for c in result.changes
                ],
                "template_diffs": result.template_diffs,
            }
        )
    else:
        out.print(
            f"a: {escape(result.a)}  digest {short(result.digest_a)}\n"
            f"b: {escape(result.b)}  digest {short(result.digest_b)}",
            highlight=False,
        )
        if result.same:
            out.print("same digest: the images are identical")
        else:
            out.print(
                table(
                    None,
                    ["SECTION", "KEY", "CHANGE", "A", "B"],
                    (
                        [c.section, c.key, c.kind, _brief(c.before), _brief(c.after)]
                        for c in result.changes
                    ),
                )
            )
            for patch in result.template_diffs.values():
                out.print(Syntax(patch, "diff", theme="ansi_dark"))
    if not result.same:
        raise typer.Exit(3)


def _label(name: str, version: str, ref: str) -> str:
    return f"{name} {version}" + (f" ({ref})" if ref != name else "")


def _brief(value: Any) -> str:
    """A one-line summary of a section entry: nested fields flattened, text summarised."""
    if value is None or value == "":
        return "-"
    if isinstance(value, dict):
        briefs = ((k, _brief(v)) for k, v in value.items() if v not in (None, [], {}))
        return ", ".join(f"{k}={b}" for k, b in briefs if b)
    if isinstance(value, list):
        return "[" + ", ".join(_brief(v) for v in value) + "]"
    if isinstance(value, str) and "\n" in value.rstrip("\n"):
        return f"<{len(value.splitlines())} lines>"
    return str(value).rstrip("\n")
