"""Providers: how a host gets a fresh OS from its image, and its new SSH host key.

One small interface: `reimage(host) -> public host key line`. The key comes from
the provider (the lab, or the user's reimage playbook), so trust in a rebuilt
host is never re-learned blindly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from fleetmend.errors import FleetmendError
from fleetmend.inventory import Host


class ProviderError(FleetmendError):
    """A provider could not give a host a fresh OS."""


class Provider(Protocol):
    def reimage(self, host: Host, work: Path) -> str:
        """Give `host` a fresh OS from its image; return its new public host key line."""
        ...


def provider_for(host: Host) -> Provider:
    if host.provider == "lab":
        from fleetmend.providers.lab import LabProvider

        return LabProvider()
    from fleetmend.providers.playbook import PlaybookProvider

    return PlaybookProvider()
