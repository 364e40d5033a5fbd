"""The `lab` provider: a lab host's reimage is the lab's (fresh layer, new host key)."""

from __future__ import annotations

from pathlib import Path

from fleetmend.inventory import Host
from fleetmend.lab import Lab
from fleetmend.providers import ProviderError


class LabProvider:
    def reimage(self, host: Host, work: Path) -> str:
        lab_dir = host.vars.get("fleetmend_lab_dir")
        if not lab_dir:
            raise ProviderError(
                f"host {host.name} uses the lab provider but has no fleetmend_lab_dir",
                "use the inventory `fleetmend lab up` writes",
            )
        return Lab.at(Path(str(lab_dir))).reimage(host.name)
