"""A fleet: one inventory and the images its hosts are declared to be.

Joins the two inputs and answers what every later stage asks first: which image
is this host, and what must it be (its desired state)?
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fleetmend.catalog import Catalog
from fleetmend.errors import InputError, Problem, display_path
from fleetmend.images import Image, VolumeSpec
from fleetmend.inventory import Host, Inventory, load_inventory
from fleetmend.render import DesiredState, command_context, desired_state, render_command


def image_problems(inventory: Inventory, catalog: Catalog) -> list[Problem]:
    """Managed hosts that name an image the catalog does not have."""
    known = catalog.names()
    return [
        host.problem(
            inventory.source,
            "fleetmend_image",
            f"unknown image {host.image!r}",
            f"images in {display_path(catalog.root)}: {', '.join(known) or 'none'}",
        )
        for host in inventory.managed()
        if host.image is not None and not catalog.has(host.image)
    ]


@dataclass(frozen=True)
class Fleet:
    catalog: Catalog
    inventory: Inventory

    @classmethod
    def load(cls, images_dir: Path, inventory_path: Path) -> Fleet:
        """Load both inputs; raise one `InputError` listing every problem of the inventory.

        Images are checked as they are used: a broken image fails only the hosts
        built from it (`fleetmend validate` lists every problem at once).
        """
        catalog = Catalog.scan(images_dir)
        inventory = load_inventory(inventory_path)
        problems = image_problems(inventory, catalog)
        if problems:
            raise InputError(problems)
        return cls(catalog, inventory)

    @property
    def template_dir(self) -> str:
        return display_path(self.catalog.templates.root)

    def image_of(self, host: Host) -> Image:
        if host.image is None:
            raise InputError.one(
                self.inventory.source,
                f"host {host.name}",
                "host is not managed by fleetmend (fleetmend_managed: false)",
            )
        return self.catalog.resolve(host.image)

    def desired(self, host: Host, image: Image | None = None) -> DesiredState:
        """What `host` must be: its image (or `image`, to preview another) rendered for it.

        A host whose inventory says `fleetmend_manage_services: false` (no service
        manager, as in the lab) or `fleetmend_apply_sysctls: false` (kernel
        parameters not its own) has those sections left out: fleetmend neither
        checks nor converges what it cannot set there.
        """
        chosen = image or self.image_of(host)
        state = desired_state(
            chosen, host, self.inventory.peers(host), template_dir=self.template_dir
        )
        left_out: dict[str, dict[str, object]] = {}
        if not host.manage_services:
            left_out["services"] = {}
        if not host.apply_sysctls:
            left_out["sysctls"] = {}
        return state.model_copy(update=left_out) if left_out else state

    def reseed_volume(self, host: Host, name: str, source: Host) -> VolumeSpec:
        """`host`'s volume `name`, its `command` strategy's templates rendered for a
        re-seed from `source`; as declared for the `files` strategy."""
        image = self.image_of(host)
        volume = image.volumes[name]
        if volume.reseed.strategy != "command":
            return volume
        peers = self.inventory.peers(host)
        context = command_context(image, host, peers, source, volume)
        rendered: dict[str, str] = {}
        for field in ("dump", "restore"):
            text = getattr(volume.reseed, field)
            if text is not None:
                file, place = self.catalog.where(image, ("volumes", name, "reseed", field))
                rendered[field] = render_command(
                    text, context, file=file, place=place, host=host.name
                )
        return volume.model_copy(update={"reseed": volume.reseed.model_copy(update=rendered)})

    def reseed_problems(self, host: Host) -> list[Problem]:
        """What keeps `host`'s re-seed commands from rendering, with any peer as the
        source: found before a rebuild wipes the host, not after."""
        problems: list[Problem] = []
        for name in sorted(self.image_of(host).volumes):
            for peer in self.inventory.peers(host):
                try:
                    self.reseed_volume(host, name, peer)
                except InputError as exc:
                    problems.extend(p for p in exc.problems if p not in problems)
        return problems
