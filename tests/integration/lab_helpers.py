"""Helpers for tests against a real lab: root check and a strict SSH client."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko
import pytest
import yaml
from typer.testing import CliRunner

from fleetmend.cli.app import app
from fleetmend.lab import Lab


def os_release() -> tuple[str, str]:
    """This machine's ID and VERSION_ID: what a lab host's os-release says."""
    lines = Path("/etc/os-release").read_text().splitlines()
    values = dict(line.split("=", 1) for line in lines if "=" in line)
    return values["ID"].strip('"'), values["VERSION_ID"].strip('"')


def write_replica_set(
    root: Path, image: dict[str, Any], net: str, hosts: Sequence[str], **host_vars: Any
) -> tuple[Path, Path]:
    """`root/images/` holding `image` (on this machine's OS, as lab hosts are) and an
    inventory of `hosts` at `net`.11 and up, all built from it in one replica set `rs`."""
    os_id, version_id = os_release()
    images = root / "images"
    (images / "templates").mkdir(parents=True)
    pinned = {**image, "os": {"id": os_id, "version_id": version_id}}
    (images / f"{image['name']}.yaml").write_text(yaml.safe_dump(pinned))
    inventory = {
        "all": {
            "vars": {
                "ansible_port": 2200,
                "fleetmend_image": image["name"],
                "fleetmend_replica_set": "rs",
                "fleetmend_replica_sets": {"rs": {"min_live": 1}},
                **host_vars,
            },
            "hosts": {h: {"ansible_host": f"{net}{i}"} for i, h in enumerate(hosts, start=11)},
        }
    }
    (root / "fleet.yaml").write_text(yaml.safe_dump(inventory))
    return images, root / "fleet.yaml"


def require_root() -> None:
    """Lab tests never skip silently: without root they fail saying what they need."""
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.fail(
            "lab tests need root on Linux (namespaces, overlay mounts, sshd); "
            "run `make test` as root, as CI does",
            pytrace=False,
        )


def client(
    lab: Lab, name: str, *, timeout: float = 5.0, known_hosts: Path | None = None
) -> paramiko.SSHClient:
    """An SSH connection to a lab host that trusts only the lab's known_hosts (or `known_hosts`)."""
    host = lab.record().hosts[name]
    ssh = paramiko.SSHClient()
    ssh.load_host_keys(str(known_hosts or lab.known_hosts_path))
    ssh.set_missing_host_key_policy(paramiko.RejectPolicy())
    ssh.connect(
        host.address,
        port=host.port,
        username="root",
        key_filename=str(lab.key_path),
        look_for_keys=False,
        allow_agent=False,
        timeout=timeout,
        banner_timeout=timeout,
        auth_timeout=timeout,
    )
    return ssh


def run(lab: Lab, name: str, command: str) -> str:
    """Run `command` on a lab host; fail the test on a non-zero exit."""
    with client(lab, name) as ssh:
        _, stdout, stderr = ssh.exec_command(command, timeout=30)
        out = stdout.read().decode()
        code = stdout.channel.recv_exit_status()
        assert code == 0, f"{name}: {command!r} exited {code}: {stderr.read().decode()}"
        return out


def tcp_refused(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


def banner_within(address: str, port: int, seconds: float) -> bool:
    """True when the port answers with an SSH banner within `seconds`."""
    with socket.create_connection((address, port), timeout=2) as sock:
        sock.settimeout(seconds)
        try:
            return sock.recv(16).startswith(b"SSH-")
        except TimeoutError:
            return False


def host_mounts_mention(path: Path) -> list[str]:
    """Mount table lines of this (the machine's) namespace that mention `path`."""
    return [
        line for line in Path("/proc/self/mounts").read_text().splitlines() if str(path) in line
    ]


@dataclass
class CliLab:
    """A lab with images and a state dir: the CLI run in-process, or as a process."""

    lab: Lab
    images: Path
    state: Path

    def argv(self, *args: str) -> list[str]:
        return [
            "--images", str(self.images), "-i", str(self.lab.inventory_path),
            "--state-dir", str(self.state), *args,
        ]  # fmt: skip

    def cli(self, *args: str) -> tuple[int, str, str]:
        result = CliRunner().invoke(app, self.argv(*args))
        return result.exit_code, result.stdout, result.stderr

    def spawn(self, *args: str, new_session: bool = False) -> subprocess.Popen[str]:
        """`fleetmend ARGS` as its own process (stderr piped); with `new_session`, in its own
        process group, so a test can kill it with every child (ansible) at once."""
        bin_dir = Path(sys.executable).parent
        env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
        return subprocess.Popen(
            [sys.executable, "-m", "fleetmend", *self.argv(*args)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            text=True, env=env, start_new_session=new_session,
        )  # fmt: skip

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.state / "state.db")
