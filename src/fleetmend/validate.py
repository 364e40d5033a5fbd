"""`fleetmend validate`: load every image, template and inventory; report every problem.

Unlike the other commands, which stop at the first bad input, this goes on
after each problem so one run lists everything to fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fleetmend.catalog import Catalog
from fleetmend.errors import InputError, Problem, display_path, merge_hosts
from fleetmend.fleet import Fleet, image_problems
from fleetmend.inventory import scan_inventory
from fleetmend.render import desired_state

INVENTORY_SUFFIXES = (".yaml", ".yml", ".ini")


@dataclass(frozen=True)
class Rendered:
    """One host's image rendered for it: what `make demo` and `validate -v` summarise."""

    inventory: str
    host: str
    image: str
    version: str
    digest: str
    files: int
    bytes: int


@dataclass
class Report:
    images: list[str] = field(default_factory=list)
    inventories: list[str] = field(default_factory=list)
    rendered: list[Rendered] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def inventory_files(directory: Path) -> list[Path]:
    """The inventory files of a directory (group_vars/ and host_vars/ are read by Ansible)."""
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in INVENTORY_SUFFIXES)


def validate(images_dir: Path, inventories: list[Path]) -> Report:
    report = Report()
    try:
        catalog = Catalog.scan(images_dir)
    except InputError as exc:  # no images directory at all
        report.problems.extend(exc.problems)
        return report
    report.problems.extend(catalog.problems)
    report.images = catalog.names()
    for path in inventories:
        try:
            inventory, problems = scan_inventory(path)
        except InputError as exc:  # Ansible could not read it at all
            report.problems.extend(exc.problems)
            continue
        report.problems.extend(problems)
        report.inventories.append(inventory.source)
        report.problems.extend(image_problems(inventory, catalog))
        template_dir = display_path(catalog.templates.root)
        fleet = Fleet(catalog, inventory)
        for host in inventory.managed():
            if host.image not in report.images:
                continue  # a broken or unknown image: already reported
            try:
                image = catalog.resolve(host.image)
                state = desired_state(image, host, inventory.peers(host), template_dir=template_dir)
            except InputError as exc:
                report.problems.extend(exc.problems)
                continue
            reseed = fleet.reseed_problems(host)
            if reseed:
                report.problems.extend(reseed)
                continue
            report.rendered.append(
                Rendered(
                    inventory=inventory.source,
                    host=host.name,
                    image=image.name,
                    version=image.version,
                    digest=image.digest,
                    files=len(state.files),
                    bytes=sum(len(f.content.encode()) for f in state.files.values()),
                )
            )
    report.problems = merge_hosts(report.problems)
    return report
