"""Typed facts about one host, as parsed from its probe output."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from fleetmend.versions import Family


class _Fact(BaseModel):
    model_config = ConfigDict(frozen=True)


class Stamp(_Fact):
    """`/etc/fleetmend/stamp.json`: the image a host was last built or converged from."""

    image: str
    version: str
    digest: str
    time: str = ""


class FileFact(_Fact):
    """A declared file on the host. Example: exists, sha256 'e3b0…', mode '0644', root:root."""

    exists: bool
    kind: str = ""
    sha256: str | None = None
    mode: str | None = None
    owner: str | None = None
    group: str | None = None


class ServiceFact(_Fact):
    """How a declared service looks. `manager` is 'systemd' or 'process' (no init system)."""

    manager: str
    running: bool | None
    enabled: bool | None


class UserFact(_Fact):
    exists: bool
    uid: int | None = None
    group: str | None = None
    groups: list[str] = Field(default_factory=list)
    home: str | None = None
    shell: str | None = None


class GroupFact(_Fact):
    exists: bool
    gid: int | None = None


class VolumeFact(_Fact):
    """A data volume: its replication position and health as its own commands report them."""

    exists: bool
    position: str | None = None
    position_rc: int | None = None
    health_rc: int | None = None
    health_output: str = ""
    size_kb: int | None = None
    free_kb: int | None = None


class Facts(_Fact):
    host: str
    os_id: str | None
    os_version_id: str | None
    stamp: Stamp | None
    stamp_error: str | None = None
    """Set when a stamp file exists but cannot be read."""
    family: Family | None
    """Package manager found: dpkg or rpm; None when neither."""
    packages: dict[str, str | None]
    """Declared package -> installed version, None when not installed."""
    files: dict[str, FileFact]
    services: dict[str, ServiceFact]
    sysctls: dict[str, str | None]
    users: dict[str, UserFact]
    groups: dict[str, GroupFact]
    volumes: dict[str, VolumeFact]
