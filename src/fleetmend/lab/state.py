"""The lab's record of its hosts: `lab.json` in the lab directory, written atomically.

The record is what `lab down` trusts least: it also looks for processes by the
marker every lab process carries, so a run that crashed before writing the
record still leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from fleetmend.fsutil import write_atomic


class Fault(StrEnum):
    """The faults `lab break` injects; see `faults.py` for what each does."""

    DOWN = "down"
    WIPE_DISK = "wipe-disk"
    CORRUPT_DATA = "corrupt-data"
    DRIFT_FILE = "drift-file"
    REMOVE_PACKAGE = "remove-package"
    STOP_SERVICE = "stop-service"
    HANG = "hang"


class FaultRecord(BaseModel):
    """An injected fault and what is needed to undo it."""

    model_config = ConfigDict(extra="forbid")

    fault: Fault
    at: float
    detail: dict[str, Any] = Field(default_factory=dict)


class LabVolume(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str
    owner: str = "root"
    group: str = "root"
    mode: str = "0750"


class LabHostRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    address: str
    port: int
    image: str | None
    groups: list[str] = Field(default_factory=list)
    vars: dict[str, Any] = Field(default_factory=dict)
    """Inventory variables carried into the lab inventory (fleetmend_*, app vars)."""
    volumes: dict[str, LabVolume] = Field(default_factory=dict)
    """The data volumes of the host's image."""
    files: list[str] = Field(default_factory=list)
    """Managed file paths from the host's image (targets for drift-file)."""
    packages: list[str] = Field(default_factory=list)
    services: list[str] = Field(default_factory=list)
    pid: int | None = None
    """PID of the host's `unshare` process (the namespace init is its child)."""
    host_key: str = ""
    """The host's public SSH host key line ("ssh-ed25519 AAAA...")."""
    faults: list[FaultRecord] = Field(default_factory=list)


class LabRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str = ""
    """The inventory the lab was started from, or 'generated'."""
    replica_sets: dict[str, Any] = Field(default_factory=dict)
    hosts: dict[str, LabHostRecord] = Field(default_factory=dict)


def read_record(path: Path) -> LabRecord:
    if not path.exists():
        return LabRecord()
    return LabRecord.model_validate_json(path.read_text())


def write_record(path: Path, record: LabRecord) -> None:
    write_atomic(path, json.dumps(record.model_dump(mode="json"), indent=2) + "\n")


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the lab for the duration of a change."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
