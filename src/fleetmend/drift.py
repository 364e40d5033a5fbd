"""Desired state x facts -> drift items and a verdict per host. Pure: no I/O, no clock.

A host is `conformant` when nothing differs, `drifted` when something differs
that a converge can put right, `failed` when the probe ran but the host cannot
be trusted as it is (a data volume missing or unhealthy, another OS, built from
another image, probe output unreadable), and `unreachable` when no probe ran.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from fleetmend.facts.model import Facts
from fleetmend.render import DesiredState
from fleetmend.versions import Family, satisfies


class DriftKind(StrEnum):
    OS = "os"
    STAMP = "stamp"
    PACKAGE = "package"
    FILE = "file"
    SERVICE = "service"
    SYSCTL = "sysctl"
    USER = "user"
    GROUP = "group"
    VOLUME = "volume"
    PROBE = "probe"


class Verdict(StrEnum):
    CONFORMANT = "conformant"
    DRIFTED = "drifted"
    FAILED = "failed"
    UNREACHABLE = "unreachable"


class DriftItem(BaseModel):
    """One difference: what (kind, target), what was wanted, what was found."""

    model_config = ConfigDict(frozen=True)

    kind: DriftKind
    target: str
    expected: str
    actual: str
    failure: bool = False
    """True when this makes the host `failed` rather than `drifted`."""
    waived: str | None = None
    """The waiver's reason (and expiry) when this item is waived."""

    def key(self) -> str:
        return f"{self.kind.value}:{self.target}"


def _item(
    kind: DriftKind, target: str, expected: Any, actual: Any, failure: bool = False
) -> DriftItem:
    return DriftItem(
        kind=kind, target=target, expected=str(expected), actual=str(actual), failure=failure
    )


def _stamp_items(desired: DesiredState, facts: Facts) -> list[DriftItem]:
    want = f"{desired.image} {desired.version} ({desired.digest[:12]})"
    if facts.stamp_error:
        return [_item(DriftKind.STAMP, "/etc/fleetmend/stamp.json", want, facts.stamp_error)]
    stamp = facts.stamp
    if stamp is None:
        return [_item(DriftKind.STAMP, "/etc/fleetmend/stamp.json", want, "no stamp")]
    have = f"{stamp.image} {stamp.version} ({stamp.digest[:12]})"
    if stamp.image != desired.image:  # built from another image: a converge is not enough
        return [_item(DriftKind.STAMP, "image", want, have, failure=True)]
    if stamp.digest != desired.digest:
        return [_item(DriftKind.STAMP, "digest", want, have)]
    return []


def _package_items(desired: DesiredState, facts: Facts) -> list[DriftItem]:
    family = facts.family or Family.DPKG
    items = []
    for name, constraint in desired.packages.items():
        installed = facts.packages.get(name)
        if not satisfies(installed, constraint, family):
            items.append(_item(DriftKind.PACKAGE, name, constraint, installed or "not installed"))
    return items


def _file_items(desired: DesiredState, facts: Facts) -> list[DriftItem]:
    items = []
    for path, want in desired.files.items():
        have = facts.files.get(path)
        if have is None or not have.exists:
            items.append(_item(DriftKind.FILE, path, f"sha256:{want.sha256[:12]}", "missing"))
            continue
        if have.sha256 != want.sha256:
            actual = f"sha256:{have.sha256[:12]}" if have.sha256 else f"not a file ({have.kind})"
            items.append(_item(DriftKind.FILE, path, f"sha256:{want.sha256[:12]}", actual))
        if have.mode != want.mode:
            items.append(_item(DriftKind.FILE, f"{path} mode", want.mode, have.mode))
        if (have.owner, have.group) != (want.owner, want.group):
            items.append(
                _item(
                    DriftKind.FILE,
                    f"{path} owner",
                    f"{want.owner}:{want.group}",
                    f"{have.owner}:{have.group}",
                )
            )
    return items


def _service_items(desired: DesiredState, facts: Facts) -> list[DriftItem]:
    items = []
    for name, want in desired.services.items():
        have = facts.services.get(name)
        if have is None:
            continue
        running = want.state == "running"
        if have.running is not None and have.running != running:
            state = "running" if have.running else "stopped"
            items.append(_item(DriftKind.SERVICE, name, want.state, state))
        if have.enabled is not None and have.enabled != want.enabled:
            items.append(
                _item(
                    DriftKind.SERVICE,
                    f"{name} enabled",
                    "enabled" if want.enabled else "disabled",
                    "enabled" if have.enabled else "disabled",
                )
            )
    return items


def _sysctl_items(desired: DesiredState, facts: Facts) -> list[DriftItem]:
    items = []
    for key, value in desired.sysctls.items():
        want = " ".join(value.split())
        have = facts.sysctls.get(key)
        if have != want:
            items.append(
                _item(DriftKind.SYSCTL, key, want, have if have is not None else "missing")
            )
    return items


def _user_items(desired: DesiredState, facts: Facts) -> list[DriftItem]:
    items = []
    for name, want in desired.users.items():
        have = facts.users.get(name)
        if have is None:
            continue
        if want.state == "absent":
            if have.exists:
                items.append(_item(DriftKind.USER, name, "absent", "present"))
            continue
        if not have.exists:
            items.append(_item(DriftKind.USER, name, "present", "missing"))
            continue
        checks = {
            "uid": (want.uid, have.uid),
            "group": (want.group, have.group),
            "home": (want.home, have.home),
            "shell": (want.shell, have.shell),
        }
        for field, (w, h) in checks.items():
            if w is not None and w != h:
                items.append(_item(DriftKind.USER, f"{name} {field}", w, h))
        missing = sorted(set(want.groups) - set(have.groups))
        if missing:
            items.append(
                _item(
                    DriftKind.USER, f"{name} groups", ",".join(want.groups), ",".join(have.groups)
                )
            )
    for name, want_group in desired.groups.items():
        have_group = facts.groups.get(name)
        if have_group is None:
            continue
        if want_group.state == "absent" and have_group.exists:
            items.append(_item(DriftKind.GROUP, name, "absent", "present"))
        elif want_group.state == "present" and not have_group.exists:
            items.append(_item(DriftKind.GROUP, name, "present", "missing"))
        elif want_group.gid is not None and have_group.exists and want_group.gid != have_group.gid:
            items.append(_item(DriftKind.GROUP, f"{name} gid", want_group.gid, have_group.gid))
    return items


def _volume_items(desired: DesiredState, facts: Facts) -> list[DriftItem]:
    items = []
    for name, want in desired.volumes.items():
        have = facts.volumes.get(name)
        if have is None:
            continue
        if not have.exists:
            items.append(_item(DriftKind.VOLUME, name, want.path, "missing", failure=True))
            continue
        if want.health is not None and have.health_rc != 0:
            detail = f"health check exited {have.health_rc}"
            if have.health_output:
                detail += f": {have.health_output}"
            items.append(_item(DriftKind.VOLUME, f"{name} health", "healthy", detail, failure=True))
        if want.position is not None and have.position is None:
            detail = (
                "position command printed nothing"
                if have.position_rc == 0
                else f"position command exited {have.position_rc}"
            )
            items.append(
                _item(DriftKind.VOLUME, f"{name} position", "a position", detail, failure=True)
            )
    return items


def drift(desired: DesiredState, facts: Facts) -> list[DriftItem]:
    """Every difference between what a host must be and what its probe found."""
    items: list[DriftItem] = []
    if desired.os is not None and (facts.os_id, facts.os_version_id) != (
        desired.os.id,
        desired.os.version_id,
    ):
        items.append(
            _item(
                DriftKind.OS,
                "os-release",
                f"{desired.os.id} {desired.os.version_id}",
                f"{facts.os_id} {facts.os_version_id}",
                failure=True,
            )
        )
    for check in (
        _stamp_items,
        _package_items,
        _file_items,
        _service_items,
        _sysctl_items,
        _user_items,
        _volume_items,
    ):
        items.extend(check(desired, facts))
    return items


def verdict(items: list[DriftItem]) -> Verdict:
    """The verdict of a probed host from its items; waived items do not count."""
    counted = [i for i in items if i.waived is None]
    if any(i.failure for i in counted):
        return Verdict.FAILED
    if counted:
        return Verdict.DRIFTED
    return Verdict.CONFORMANT
