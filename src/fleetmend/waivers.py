"""Waivers: known, accepted drift, each with a reason and an expiry date.

They live in a file next to the inventory (`lab.yaml` -> `lab.waivers.yaml`):

    waivers:
      - hosts: [web-1, kv]          # host or group names ("all" for every host)
        kind: sysctl                # a drift kind
        target: vm.swappiness       # the item's target; shell-style patterns allowed
        reason: tuned by the DBA team, INC-4211
        expires: 2026-12-31         # the item counts as drift again the day after

A waived item is shown as waived and does not count toward the verdict. There
are no permanent waivers: an expiry date makes someone look again.
"""

from __future__ import annotations

from datetime import date
from fnmatch import fnmatchcase
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from fleetmend.drift import DriftItem, DriftKind
from fleetmend.loading import load_model


class Waiver(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    hosts: list[str] = Field(min_length=1)
    kind: DriftKind
    target: str
    reason: str = Field(min_length=3)
    expires: date

    def matches(self, item: DriftItem, host: str, groups: list[str]) -> bool:
        names = {host, *groups, "all"}
        return (
            bool(names & set(self.hosts))
            and item.kind is self.kind
            and fnmatchcase(item.target, self.target)
        )


class WaiverFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    waivers: list[Waiver] = Field(default_factory=list)


def waivers_path(inventory: Path) -> Path:
    return inventory.with_name(f"{inventory.stem}.waivers.yaml")


def load_waivers(path: Path) -> list[Waiver]:
    """The waivers of `path`; none when the file does not exist. Bad input: `InputError`."""
    if not path.exists():
        return []
    return load_model(path, WaiverFile).waivers


def apply_waivers(
    items: list[DriftItem], host: str, groups: list[str], waivers: list[Waiver], today: date
) -> list[DriftItem]:
    """Mark the items an unexpired waiver covers; expired waivers cover nothing."""
    active = [w for w in waivers if w.expires >= today]
    out = []
    for item in items:
        waiver = next((w for w in active if w.matches(item, host, groups)), None)
        if waiver is not None:
            item = item.model_copy(update={"waived": f"{waiver.reason} (until {waiver.expires})"})
        out.append(item)
    return out


def expired(waivers: list[Waiver], today: date) -> list[Waiver]:
    return [w for w in waivers if w.expires < today]
