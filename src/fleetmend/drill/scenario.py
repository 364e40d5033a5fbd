"""A drill scenario (`drills/*.yaml`): the faults to inject, where, and what must hold.

```yaml
name: lose-one-host
description: web-1 loses its disk; heal rebuilds it and re-seeds its content.
scope: [web, blobs]        # hosts or groups the drill heals and measures (default: all)
faults:
  - fault: wipe-disk       # a lab fault by name (lab fleets)
    hosts: [web-1]
  - playbook: faults/stop-service.yml  # any fleet: a playbook run against the hosts
    vars: {service: nginx}             # its variables
    site: dc-2                         # or every host of a site in scope
heal:
  scrub: true              # also compare replicas' data (finds silent corruption)
  timeout: 3               # seconds to connect during the drill's checks
expect:
  rto_seconds: 120         # every host healthy again within this
  data_loss_files: 0       # files lost or changed, against the pre-fault manifests
  floor_held: true         # no replica set below min_live at any moment
```
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from fleetmend.lab.state import Fault
from fleetmend.loading import load_model


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FaultSpec(_Strict):
    fault: Fault | None = None
    """A lab fault by name: down, wipe-disk, corrupt-data, drift-file, hang, ..."""
    playbook: str | None = None
    """For fleets that are not a lab: a playbook (relative to the scenario) that injects it."""
    vars: dict[str, str | int | bool] = {}
    """Extra variables for the playbook."""
    hosts: list[str] = []
    site: str | None = None
    count: int = Field(default=2, ge=1)
    """corrupt-data: how many files get a flipped byte."""
    volume: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> FaultSpec:
        if (self.fault is None) == (self.playbook is None):
            raise ValueError("give exactly one of `fault` (a lab fault) or `playbook`")
        if not self.hosts and self.site is None:
            raise ValueError("say where: `hosts` (names, groups, patterns) or `site`")
        return self


class HealSpec(_Strict):
    scrub: bool = False
    timeout: float = Field(default=3.0, gt=0)


class Expect(_Strict):
    rto_seconds: float = Field(gt=0)
    data_loss_files: int = Field(default=0, ge=0)
    floor_held: bool = True


class Scenario(_Strict):
    name: str
    description: str = ""
    scope: list[str] = []
    faults: list[FaultSpec] = Field(min_length=1)
    heal: HealSpec = HealSpec()
    expect: Expect


def load_scenario(path: Path) -> Scenario:
    return load_model(path, Scenario)
