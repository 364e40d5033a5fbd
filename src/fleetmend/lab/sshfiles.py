"""SSH material of the lab: keys, and the files clients use to reach its hosts.

The lab writes three files next to its record, all with absolute paths so they
work from any directory: `ssh_config` (for `ssh -F`), `known_hosts` (each host's
real key: strict checking works from the first connection) and `inventory.yaml`
(the Ansible inventory the rest of fleetmend uses).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from fleetmend.errors import FleetmendError
from fleetmend.fsutil import write_atomic
from fleetmend.lab.state import LabRecord


def keygen(path: Path, comment: str) -> str:
    """Create a fresh Ed25519 key pair at `path` (replacing any); return the public line."""
    for old in (path, path.with_name(path.name + ".pub")):
        old.unlink(missing_ok=True)
    result = subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise FleetmendError(f"ssh-keygen failed for {path.name}: {result.stderr.strip()}")
    return public_key(path)


def public_key(path: Path) -> str:
    """'TYPE BASE64' of a key pair's public half (comment dropped)."""
    kind, b64 = path.with_name(path.name + ".pub").read_text().split()[:2]
    return f"{kind} {b64}"


def known_hosts_name(address: str, port: int) -> str:
    return address if port == 22 else f"[{address}]:{port}"


def known_hosts_entry(address: str, port: int, public_line: str) -> str:
    return f"{known_hosts_name(address, port)} {public_line}"


def write_client_files(lab_dir: Path, record: LabRecord) -> None:
    key = lab_dir / "id_ed25519"
    known = lab_dir / "known_hosts"
    hosts = sorted(record.hosts.values(), key=lambda h: h.name)
    write_atomic(
        known,
        "".join(
            known_hosts_entry(h.address, h.port, h.host_key) + "\n" for h in hosts if h.host_key
        ),
    )
    config = [f"# Written by `fleetmend lab up`; use with: ssh -F {lab_dir / 'ssh_config'} HOST\n"]
    for h in hosts:
        config.append(
            f"Host {h.name}\n"
            f"  HostName {h.address}\n"
            f"  Port {h.port}\n"
            "  User root\n"
            f"  IdentityFile {key}\n"
            "  IdentitiesOnly yes\n"
            f"  UserKnownHostsFile {known}\n"
            "  StrictHostKeyChecking yes\n"
            "  ConnectTimeout 5\n"
        )
    write_atomic(lab_dir / "ssh_config", "".join(config))
    groups: dict[str, dict[str, None]] = {}
    for h in hosts:
        for g in h.groups:
            groups.setdefault(g, {})[h.name] = None
    all_vars: dict[str, Any] = {
        "ansible_user": "root",
        "ansible_ssh_private_key_file": str(key),
        "ansible_ssh_common_args": (
            f"-o UserKnownHostsFile={known} -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes"
        ),
        "ansible_python_interpreter": "/usr/bin/python3",
        # how fleetmend rebuilds and converges lab hosts: the lab reimages them, and
        # they have no service manager and share the machine's kernel parameters
        "fleetmend_provider": "lab",
        "fleetmend_lab_dir": str(lab_dir),
        "fleetmend_manage_services": False,
        "fleetmend_apply_sysctls": False,
    }
    if record.replica_sets:
        all_vars["fleetmend_replica_sets"] = record.replica_sets
    inventory = {
        "all": {
            "vars": all_vars,
            "hosts": {
                h.name: {**h.vars, "ansible_host": h.address, "ansible_port": h.port} for h in hosts
            },
            "children": {g: {"hosts": members} for g, members in sorted(groups.items())},
        }
    }
    header = (
        "# Written by `fleetmend lab up` from "
        f"{record.source or 'generated hosts'}; rewritten on every lab change.\n"
    )
    write_atomic(
        lab_dir / "inventory.yaml", header + yaml.safe_dump(inventory, sort_keys=False, width=200)
    )
