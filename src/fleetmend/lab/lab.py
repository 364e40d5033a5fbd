"""The lab as a whole: start, stop, reimage and inspect its hosts.

`Lab` is what the CLI, the tests and (later) the `lab` provider use. Its state
lives in one directory (`<state dir>/lab`): the record (`lab.json`), the client
key, the files clients use (`ssh_config`, `known_hosts`, `inventory.yaml`) and
one directory per host with its writable layer, host key and sshd log.
"""

from __future__ import annotations

import grp
import ipaddress
import os
import pwd
import shutil
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import fleetmend
from fleetmend.errors import FleetmendError, InputError
from fleetmend.fleet import Fleet
from fleetmend.hostkeys import fingerprint
from fleetmend.images import Image
from fleetmend.lab import faults, procs
from fleetmend.lab.faults import FaultError, FaultOptions
from fleetmend.lab.preflight import require_lab_support
from fleetmend.lab.sshfiles import keygen, known_hosts_name, public_key, write_client_files
from fleetmend.lab.state import (
    Fault,
    FaultRecord,
    LabHostRecord,
    LabRecord,
    LabVolume,
    locked,
    read_record,
    write_record,
)
from fleetmend.transport.ssh import answers_ssh, own_known_hosts, record_host_key

READY_TIMEOUT = 15.0
"""Seconds a started host has to answer with an SSH banner."""


class LabError(FleetmendError):
    """The lab could not do what was asked (a host failed to start, an unknown host)."""


class HostState(StrEnum):
    RUNNING = "running"
    HUNG = "hung"
    STOPPED = "stopped"


@dataclass(frozen=True)
class LabHostSpec:
    """A host the lab should run: where it listens and what its image declares."""

    name: str
    address: str
    port: int
    image: str | None = None
    groups: tuple[str, ...] = ()
    vars: dict[str, Any] = field(default_factory=dict)
    volumes: dict[str, LabVolume] = field(default_factory=dict)
    files: tuple[str, ...] = ()
    packages: tuple[str, ...] = ()
    services: tuple[str, ...] = ()


@dataclass(frozen=True)
class HostStatus:
    name: str
    address: str
    port: int
    state: HostState
    pid: int | None
    image: str | None
    faults: list[str]
    host_key: str


def _loopback(name: str, address: str, where: str) -> None:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise InputError.one(
            where,
            f"host {name}",
            f"ansible_host {address!r} is not an IP address",
            "lab hosts need a literal loopback address such as 127.77.0.11",
        ) from None
    if ip.version != 4 or not ip.is_loopback:
        raise InputError.one(
            where,
            f"host {name}",
            f"ansible_host {address} is not in 127.0.0.0/8",
            "lab hosts listen on loopback addresses only",
        )


def _spec_from_image(
    name: str, address: str, port: int, image: Image | None, **extra: Any
) -> LabHostSpec:
    return LabHostSpec(
        name=name,
        address=address,
        port=port,
        image=image.name if image else None,
        volumes={
            v: LabVolume(path=spec.path, owner=spec.owner, group=spec.group, mode=spec.mode)
            for v, spec in (image.volumes.items() if image else [])
        },
        files=tuple(image.files) if image else (),
        packages=tuple(p for p, c in image.packages.items() if c != "absent") if image else (),
        services=tuple(s for s, spec in image.services.items() if spec.state == "running")
        if image
        else (),
        **extra,
    )


def hosts_from_fleet(fleet: Fleet) -> list[LabHostSpec]:
    """Lab hosts for every host of an inventory (which must all be on loopback)."""
    specs = []
    for host in fleet.inventory.hosts.values():
        _loopback(host.name, host.address, fleet.inventory.source)
        image = fleet.image_of(host) if host.managed else None
        # Everything but how to connect (the lab decides that) and the replica-set
        # declarations (written once, in the lab inventory's `all` vars).
        carried = {
            k: v
            for k, v in host.vars.items()
            if not k.startswith("ansible_") and k != "fleetmend_replica_sets"
        }
        specs.append(
            _spec_from_image(
                host.name,
                host.address,
                host.port,
                image,
                groups=tuple(host.groups),
                vars=carried,
            )
        )
    return specs


def generated_hosts(count: int, image: Image, port: int = 2200) -> list[LabHostSpec]:
    """`count` hosts named lab-01... on 127.78.x.y, all built from `image`."""
    if not 1 <= count <= 2000:
        raise InputError.one("--hosts", "", f"{count} hosts: give between 1 and 2000")
    width = max(2, len(str(count)))
    return [
        _spec_from_image(
            f"lab-{i:0{width}d}",
            f"127.78.{i // 200}.{i % 200 + 10}",
            port,
            image,
            groups=("generated",),
            vars={"fleetmend_image": image.name, "fleetmend_site": "lab"},
        )
        for i in range(1, count + 1)
    ]


def checkout_root() -> Path | None:
    """The project checkout fleetmend runs from, if any (hidden inside lab hosts)."""
    root = Path(fleetmend.__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() else None


Progress = Callable[[str], None]


class Lab:
    """A local fleet under `state_dir/lab`."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = (state_dir / "lab").resolve()
        self.record_path = self.dir / "lab.json"
        self.lock_path = self.dir / ".lock"

    @classmethod
    def at(cls, lab_dir: Path) -> Lab:
        """The lab whose directory is `lab_dir` (as its inventory's fleetmend_lab_dir says)."""
        return cls(lab_dir.parent)

    # -- paths and record ------------------------------------------------------

    def host_dir(self, name: str) -> Path:
        return self.dir / "hosts" / name

    @property
    def inventory_path(self) -> Path:
        return self.dir / "inventory.yaml"

    @property
    def ssh_config_path(self) -> Path:
        return self.dir / "ssh_config"

    @property
    def known_hosts_path(self) -> Path:
        return self.dir / "known_hosts"

    @property
    def key_path(self) -> Path:
        return self.dir / "id_ed25519"

    def record(self) -> LabRecord:
        return read_record(self.record_path)

    def _host(self, record: LabRecord, name: str) -> LabHostRecord:
        if name not in record.hosts:
            known = ", ".join(sorted(record.hosts)) or "none (run `fleetmend lab up`)"
            raise InputError.one(str(self.dir), "", f"no lab host {name!r}", f"lab hosts: {known}")
        return record.hosts[name]

    def _hidden(self) -> list[Path]:
        hide = [self.dir.parent]
        root = checkout_root()
        if root is not None:
            hide.append(root)
        return hide

    # -- lifecycle -------------------------------------------------------------

    def up(
        self,
        specs: list[LabHostSpec],
        *,
        source: str = "generated",
        replica_sets: dict[str, Any] | None = None,
        progress: Progress | None = None,
    ) -> list[HostStatus]:
        """Start every host not already running; leave running ones alone. Idempotent."""
        require_lab_support()
        _check_unique(specs)
        with locked(self.lock_path):
            record = self.record()
            if record.hosts and record.source != source:
                raise LabError(
                    f"the lab is already up from {record.source}",
                    "run `fleetmend lab down` first to start it from another inventory",
                )
            record.source = source
            record.replica_sets = replica_sets or {}
            if not self.key_path.exists():
                keygen(self.key_path, "fleetmend-lab-client")
            started: list[str] = []
            try:
                for spec in specs:
                    host = record.hosts.get(spec.name) or LabHostRecord(
                        name=spec.name, address=spec.address, port=spec.port, image=spec.image
                    )
                    _apply_spec(host, spec)
                    record.hosts[spec.name] = host
                    if self._running(host):
                        continue
                    self._start(host)
                    started.append(spec.name)
                    write_record(self.record_path, record)
                    if progress:
                        progress(f"started {spec.name} on {spec.address}:{spec.port}")
                self._wait_ready([record.hosts[n] for n in started])
            finally:
                write_record(self.record_path, record)
                write_client_files(self.dir, record)
        return self.status()

    def up_fleet(self, fleet: Fleet, *, progress: Progress | None = None) -> list[HostStatus]:
        """Start the hosts of an inventory, with its replica sets, as `lab up` does."""
        replica_sets = {
            name: {"min_live": rs.min_live, "description": rs.description}
            for name, rs in fleet.inventory.replica_sets.items()
        }
        return self.up(
            hosts_from_fleet(fleet),
            source=fleet.inventory.source,
            replica_sets=replica_sets,
            progress=progress,
        )

    def down(self, *, progress: Progress | None = None) -> list[str]:
        """Stop every host of this lab and remove its state. Returns the hosts stopped.

        Also ends processes a crashed run left behind, found by their marker.
        """
        with locked(self.lock_path):
            record = self.record()
            stopped = []
            pids = {h.pid: h.name for h in record.hosts.values() if h.pid is not None}
            pids.update(procs.marked(self.dir))
            for pid, name in sorted(pids.items()):
                if procs.is_ours(pid, self.dir, name):
                    if not procs.kill_host(pid):
                        raise LabError(f"host {name} (pid {pid}) did not stop")
                    stopped.append(name)
                    if progress:
                        progress(f"stopped {name}")
            left = procs.marked(self.dir)
            if left:
                raise LabError(f"lab processes still running: {sorted(left)}")
            shutil.rmtree(self.dir / "hosts", ignore_errors=True)
            for name in ("lab.json", "ssh_config", "known_hosts", "inventory.yaml", "hostinit.sh"):
                (self.dir / name).unlink(missing_ok=True)
        return sorted(set(stopped))

    def status(self) -> list[HostStatus]:
        record = self.record()
        hosts = sorted(record.hosts.values(), key=lambda h: h.name)
        with ThreadPoolExecutor(max_workers=16) as pool:
            states = list(pool.map(self._state, hosts))
        return [
            HostStatus(
                name=h.name,
                address=h.address,
                port=h.port,
                state=state,
                pid=procs.init_pid(h.pid) if h.pid and state is not HostState.STOPPED else None,
                image=h.image,
                faults=[f.fault.value for f in h.faults],
                host_key=h.host_key,
            )
            for h, state in zip(hosts, states, strict=True)
        ]

    def reimage(self, name: str) -> str:
        """Give a host a fresh OS: stop it, drop its writable layer, new host key, start.

        Returns the new public host key line; known_hosts is updated with it.
        """
        require_lab_support()
        with locked(self.lock_path):
            record = self.record()
            host = self._host(record, name)
            self.stop_host(host)
            self.wipe_layer(name)
            keygen(self.host_dir(name) / "ssh_host_ed25519_key", name)
            host.faults = []
            self._start(host)
            write_record(self.record_path, record)
            write_client_files(self.dir, record)
            self._wait_ready([host])
            return host.host_key

    # -- one host --------------------------------------------------------------

    def _running(self, host: LabHostRecord) -> bool:
        return host.pid is not None and procs.is_ours(host.pid, self.dir, host.name)

    def _state(self, host: LabHostRecord) -> HostState:
        if not self._running(host) or host.pid is None:
            return HostState.STOPPED
        init = procs.init_pid(host.pid)
        if init is None:
            return HostState.STOPPED
        if procs.stopped(init) or not answers_ssh(host.address, host.port, timeout=1.0):
            return HostState.HUNG
        return HostState.RUNNING

    def _start(self, host: LabHostRecord) -> None:
        if _answers(host.address, host.port):
            # another process (a lab of another state directory, a crashed run's
            # host) holds the address: starting now would only seem to work
            raise LabError(
                f"{host.address}:{host.port} is already in use, so lab host {host.name} "
                "cannot listen there",
                "stop what holds it (fleetmend lab down with that lab's --state-dir), "
                "or give the host another address",
            )
        hdir = self.host_dir(host.name)
        for sub in ("upper", "work", "root"):
            (hdir / sub).mkdir(parents=True, exist_ok=True)
        key = hdir / "ssh_host_ed25519_key"
        if not key.exists():
            # a new host key: one that a rebuild of an earlier lab pinned in fleetmend's
            # own known_hosts is stale now
            name = known_hosts_name(host.address, host.port)
            record_host_key(own_known_hosts(self.dir.parent), name, None)
        host.host_key = public_key(key) if key.exists() else keygen(key, host.name)
        (hdir / "sshd_config").write_text(_sshd_config(host.address, host.port))
        self._make_volumes(host)
        proc = procs.start_host(self.dir, host.name, hdir, self._hidden(), hdir / "log")
        host.pid = proc.pid

    def break_host(self, name: str, fault: Fault, opts: FaultOptions | None = None) -> FaultRecord:
        """Inject `fault` into host `name` (see `faults.py`); the record keeps the undo data."""
        require_lab_support()
        with locked(self.lock_path):
            record = self.record()
            host = self._host(record, name)
            injected = faults.inject(self, host, fault, opts or FaultOptions())
            host.faults.append(injected)
            write_record(self.record_path, record)
            return injected

    def heal_fault(self, name: str, fault: Fault | None = None) -> list[Fault]:
        """Undo the host's faults (only `fault`, if given), newest first. Returns those undone.

        A fault that cannot be undone (wipe-disk, remove-package, stop-service)
        raises `FaultError` saying how to recover; faults undone before it stay undone.
        """
        require_lab_support()
        with locked(self.lock_path):
            record = self.record()
            host = self._host(record, name)
            targets = [f for f in host.faults if fault is None or f.fault is fault]
            if not targets:
                active = ", ".join(f.fault.value for f in host.faults) or "none"
                raise FaultError(
                    f"host {name} has no {fault.value + ' ' if fault else ''}fault to heal",
                    f"its faults: {active}",
                )
            undone: list[Fault] = []
            try:
                for injected in reversed(targets):
                    faults.undo(self, host, injected)
                    host.faults.remove(injected)
                    undone.append(injected.fault)
            finally:
                write_record(self.record_path, record)
            return undone

    def init_of(self, host: LabHostRecord) -> int | None:
        """PID (machine's view) of the host's first process, its sshd; None when down."""
        if host.pid is None or not procs.is_ours(host.pid, self.dir, host.name):
            return None
        return procs.init_pid(host.pid)

    def start_host(self, host: LabHostRecord) -> None:
        """Start a stopped host with its writable layer as it was, and wait for its sshd."""
        self._start(host)
        self._wait_ready([host])

    def stop_host(self, host: LabHostRecord) -> None:
        ours = host.pid is not None and procs.is_ours(host.pid, self.dir, host.name)
        if ours and host.pid is not None and not procs.kill_host(host.pid):
            raise LabError(f"host {host.name} (pid {host.pid}) did not stop")
        for pid in procs.marked(self.dir, host.name):
            procs.kill_host(pid)
        host.pid = None

    def wipe_layer(self, name: str) -> None:
        hdir = self.host_dir(name)
        for sub in ("upper", "work"):
            shutil.rmtree(hdir / sub, ignore_errors=True)

    def _make_volumes(self, host: LabHostRecord) -> None:
        """Data volumes live in the writable layer: made at first start, kept until reimage."""
        upper = self.host_dir(host.name) / "upper"
        for volume in host.volumes.values():
            target = upper / volume.path.lstrip("/")
            if target.exists():
                continue
            target.mkdir(parents=True)
            target.chmod(int(volume.mode, 8))
            os.chown(target, _uid(volume.owner), _gid(volume.group))

    def _wait_ready(self, hosts: list[LabHostRecord]) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        pending = list(hosts)
        while pending:
            still = []
            for host in pending:
                if host.pid is None or not procs.alive(host.pid):
                    raise LabError(
                        f"lab host {host.name} exited while starting: {self._log_tail(host.name)}",
                        f"full log: {self.host_dir(host.name) / 'log'}",
                    )
                if not answers_ssh(host.address, host.port, timeout=0.5):
                    still.append(host)
            pending = still
            if pending and time.monotonic() > deadline:
                names = ", ".join(h.name for h in pending)
                raise LabError(
                    f"lab hosts did not answer on SSH within {READY_TIMEOUT:.0f}s: {names}",
                    f"see {self.dir / 'hosts'}/HOST/log",
                )
            if pending:
                time.sleep(0.05)

    def _log_tail(self, name: str) -> str:
        log = self.host_dir(name) / "log"
        text = log.read_text(errors="replace") if log.exists() else ""
        return " | ".join(text.strip().splitlines()[-3:]) or "(no output)"

    def fingerprint(self, name: str) -> str:
        return fingerprint(self._host(self.record(), name).host_key)


def _apply_spec(host: LabHostRecord, spec: LabHostSpec) -> None:
    host.address, host.port, host.image = spec.address, spec.port, spec.image
    host.groups = list(spec.groups)
    host.vars = dict(spec.vars)
    host.volumes = dict(spec.volumes)
    host.files = list(spec.files)
    host.packages = list(spec.packages)
    host.services = list(spec.services)


def _check_unique(specs: list[LabHostSpec]) -> None:
    seen: dict[tuple[str, int], str] = {}
    for spec in specs:
        key = (spec.address, spec.port)
        if key in seen:
            raise InputError.one(
                "lab",
                f"host {spec.name}",
                f"{spec.address}:{spec.port} is also used by host {seen[key]}",
                "give each lab host its own loopback address",
            )
        seen[key] = spec.name


def _uid(user: str) -> int:
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        return 0  # the user comes with a package the host does not have yet


def _gid(group: str) -> int:
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        return 0


def _answers(address: str, port: int) -> bool:
    """True when something accepts TCP connections at address:port."""
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


def _sshd_config(address: str, port: int) -> str:
    return (
        "# Written by fleetmend lab for this host only.\n"
        f"ListenAddress {address}:{port}\n"
        "HostKey /etc/ssh/ssh_host_ed25519_key\n"
        "PermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "UsePAM no\n"
        "PidFile none\n"
        "UseDNS no\n"
        "AcceptEnv LANG LC_*\n"
        "Subsystem sftp internal-sftp\n"
        "MaxStartups 200:30:400\n"
        "MaxSessions 50\n"
    )
