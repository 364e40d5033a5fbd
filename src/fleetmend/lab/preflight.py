"""What the lab needs from the machine, checked before anything is started."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from fleetmend.errors import FleetmendError

TOOLS = {
    "unshare": "util-linux",
    "nsenter": "util-linux",
    "mount": "mount",
    "sshd": "openssh-server",
    "ssh-keygen": "openssh-client",
    "ssh": "openssh-client",
}


class LabUnavailable(FleetmendError):
    """This machine cannot run the lab; says what is missing. Nothing was started."""


def require_lab_support() -> None:
    """Raise `LabUnavailable` naming everything missing: Linux, root, namespaces, tools."""
    if sys.platform != "linux":
        raise LabUnavailable(
            f"the lab needs Linux (namespaces and overlayfs); this is {sys.platform}",
            "run the lab on a Linux machine or VM",
        )
    if os.geteuid() != 0:
        raise LabUnavailable(
            "the lab needs root: it creates namespaces, overlay mounts and sshd processes",
            "run it as root, e.g. sudo fleetmend lab up",
        )
    missing = []
    for ns in ("mnt", "uts", "pid"):
        if not Path(f"/proc/self/ns/{ns}").exists():
            missing.append(f"{ns} namespaces (kernel support)")
    filesystems = (
        Path("/proc/filesystems").read_text() if Path("/proc/filesystems").exists() else ""
    )
    if "overlay" not in filesystems:
        missing.append("overlayfs (modprobe overlay)")
    for tool, package in TOOLS.items():
        path = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin:/usr/bin:/bin")
        if path is None:
            missing.append(f"{tool} (Debian package {package})")
    if missing:
        raise LabUnavailable(
            "the lab cannot start here; missing: " + "; ".join(missing),
            "`make demo` installs the packages on Debian",
        )
