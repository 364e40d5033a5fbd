"""Inventories: Ansible's own loader, fleetmend's variables validated with pydantic.

Users already have Ansible inventories and the playbooks read the same files, so
fleetmend never parses them itself: ansible-core loads them (YAML or INI, with
group_vars/ and host_vars/), and only the variables fleetmend reads are checked.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from collections.abc import Iterable
from difflib import get_close_matches
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fleetmend.errors import InputError, Problem, display_path
from fleetmend.images import Name
from fleetmend.loading import format_loc, parse_yaml

MAGIC_VARS = frozenset(
    {
        "ansible_config_file",
        "ansible_facts",
        "ansible_playbook_python",
        "ansible_version",
        "group_names",
        "groups",
        "inventory_dir",
        "inventory_file",
        "inventory_hostname",
        "inventory_hostname_short",
        "omit",
        "playbook_dir",
    }
)
"""Variables Ansible adds to every host; not the user's, so not passed to templates."""


class ReplicaSetSpec(BaseModel):
    """One entry of `fleetmend_replica_sets`: hosts holding copies of the same data."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_live: int = Field(ge=1, description="floor of healthy copies")
    description: str = ""


class HostVars(BaseModel):
    """The variables fleetmend reads from a host's merged inventory vars."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    fleetmend_image: Name | None = None
    fleetmend_managed: bool = True
    fleetmend_replica_set: Name | None = None
    fleetmend_site: Name | None = None
    fleetmend_protected: bool = False
    fleetmend_replica_sets: dict[Name, ReplicaSetSpec] = Field(default_factory=dict)
    fleetmend_provider: Literal["playbook", "lab"] = "playbook"
    fleetmend_lab_dir: str | None = None
    fleetmend_manage_services: bool = True
    fleetmend_apply_sysctls: bool = True
    ansible_host: str | None = None
    ansible_port: int | None = Field(default=None, ge=1, le=65535)
    ansible_user: str | None = None
    ansible_ssh_private_key_file: str | None = None
    ansible_ssh_common_args: str | None = None


KNOWN_FLEETMEND_VARS = frozenset(k for k in HostVars.model_fields if k.startswith("fleetmend_"))


class Host(BaseModel):
    """A host of the inventory, as fleetmend sees it."""

    model_config = ConfigDict(frozen=True)

    name: str
    managed: bool
    image: str | None
    replica_set: str | None
    site: str | None
    protected: bool
    address: str
    port: int
    """The SSH port: the inventory's, else 22 (see `port_given`)."""
    port_given: bool = Field(default=True, exclude=True, repr=False)
    """False when the inventory sets no port, so ~/.ssh/config may choose it."""
    user: str | None
    key_file: str | None
    ssh_common_args: str | None
    groups: list[str]
    provider: str = "playbook"
    """How the host gets a fresh OS: `playbook` (playbooks/reimage.yml) or `lab`."""
    manage_services: bool = True
    apply_sysctls: bool = True
    vars: dict[str, Any]
    """The host's merged inventory variables (Ansible's magic variables left out)."""
    origins: dict[str, tuple[str, str]] = Field(default_factory=dict, exclude=True, repr=False)
    """Where each variable was read: (file, line); for error messages only."""

    def problem(self, source: str, var: str, message: str, hint: str = "") -> Problem:
        """A problem with one of this host's variables, placed where it was set."""
        return _Placer(source, self.name, self.origins).problem(var, message, hint)


class ReplicaSet(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    min_live: int
    description: str
    members: list[str]


class Inventory(BaseModel):
    """Hosts and replica sets of one inventory source."""

    model_config = ConfigDict(frozen=True)

    source: str
    hosts: dict[str, Host]
    replica_sets: dict[str, ReplicaSet]

    def managed(self) -> list[Host]:
        return [h for h in self.hosts.values() if h.managed]

    def peers(self, host: Host) -> list[Host]:
        """The other members of `host`'s replica set."""
        if host.replica_set is None:
            return []
        members = self.replica_sets[host.replica_set].members
        return [self.hosts[m] for m in members if m != host.name]

    def select(self, patterns: list[str]) -> list[Host]:
        """Managed hosts matching any pattern (host or group name, shell-style); all if none.

        A pattern that matches nothing is an error, so a typo never checks zero hosts.
        """
        hosts = self.managed()
        if not patterns:
            return hosts
        chosen: dict[str, Host] = {}
        for pattern in patterns:
            matched = [
                h
                for h in hosts
                if fnmatchcase(h.name, pattern) or any(fnmatchcase(g, pattern) for g in h.groups)
            ]
            if not matched:
                raise InputError.one(
                    self.source,
                    "",
                    f"no managed host or group matches {pattern!r}",
                    f"hosts: {_sample(h.name for h in hosts)}",
                )
            chosen.update((h.name, h) for h in matched)
        return [chosen[n] for n in sorted(chosen)]

    def host(self, name: str) -> Host:
        if name not in self.hosts:
            raise InputError.one(
                self.source,
                "",
                f"unknown host {name!r}",
                f"hosts in this inventory: {_sample(self.hosts)}",
            )
        return self.hosts[name]


def _sample(names: Iterable[str], limit: int = 8) -> str:
    items = sorted(names)
    more = f", ... ({len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more or "none"


def load_inventory(path: Path) -> Inventory:
    """Load one inventory through ansible-core and validate fleetmend's variables.

    Raises `InputError` listing every problem found.
    """
    inventory, problems = scan_inventory(path)
    if problems:
        raise InputError(problems)
    return inventory


def scan_inventory(path: Path) -> tuple[Inventory, list[Problem]]:
    """The inventory with the hosts whose variables are valid, and every problem found.

    Raises `InputError` only when Ansible cannot read the source at all.
    """
    source = display_path(path)
    if not path.exists():
        raise InputError.one(
            source, "", "inventory not found", "pass -i FILE or set FLEETMEND_INVENTORY"
        )
    if path.suffix in (".yaml", ".yml"):
        parse_yaml(path)  # our loader: duplicate keys and syntax errors with the line
    raw = _ansible_hosts(path)
    problems: list[Problem] = []
    hosts: dict[str, Host] = {}
    declared: dict[str, tuple[ReplicaSetSpec, str]] = {}
    for name, (variables, groups, origins) in raw.items():
        place = _Placer(source, name, origins)
        try:
            hv = HostVars.model_validate(variables)
        except ValidationError as exc:
            bad = set()
            for err in exc.errors(include_url=False):
                bad.add(err["loc"][0])
                problems.append(place.problem(format_loc(tuple(err["loc"])), str(err["msg"])))
            # Go on without the bad variables, so the host's other problems are found too.
            hv = HostVars.model_validate({k: v for k, v in variables.items() if k not in bad})
        for key in variables:
            if key.startswith("fleetmend_") and key not in KNOWN_FLEETMEND_VARS:
                close = get_close_matches(key, KNOWN_FLEETMEND_VARS, n=1)
                hint = (
                    f"did you mean {close[0]}?"
                    if close
                    else f"known: {', '.join(sorted(KNOWN_FLEETMEND_VARS))}"
                )
                problems.append(place.problem(key, "unknown fleetmend variable", hint))
        if hv.fleetmend_managed and hv.fleetmend_image is None:
            problems.append(
                place.problem(
                    "fleetmend_image",
                    "managed host has no image",
                    "set fleetmend_image on the host or its group, "
                    "or fleetmend_managed: false for hosts fleetmend must leave alone",
                )
            )
        for rs_name, spec in hv.fleetmend_replica_sets.items():
            seen = declared.get(rs_name)
            if seen and seen[0] != spec:
                problems.append(
                    place.problem(
                        f"fleetmend_replica_sets.{rs_name}",
                        f"replica set declared differently for host {seen[1]}",
                        "declare each replica set once, in the 'all' group's vars",
                    )
                )
            declared.setdefault(rs_name, (spec, name))
        hosts[name] = Host(
            name=name,
            managed=hv.fleetmend_managed,
            image=hv.fleetmend_image,
            replica_set=hv.fleetmend_replica_set,
            site=hv.fleetmend_site,
            protected=hv.fleetmend_protected,
            address=hv.ansible_host or name,
            port=hv.ansible_port or 22,
            port_given=hv.ansible_port is not None,
            user=hv.ansible_user,
            key_file=hv.ansible_ssh_private_key_file,
            ssh_common_args=hv.ansible_ssh_common_args,
            groups=groups,
            provider=hv.fleetmend_provider,
            manage_services=hv.fleetmend_manage_services,
            apply_sysctls=hv.fleetmend_apply_sysctls,
            vars={k: v for k, v in variables.items() if k not in MAGIC_VARS},
            origins=origins,
        )
    replica_sets = {
        rs: ReplicaSet(
            name=rs,
            min_live=spec.min_live,
            description=spec.description,
            members=sorted(h.name for h in hosts.values() if h.replica_set == rs),
        )
        for rs, (spec, _) in sorted(declared.items())
    }
    for host in hosts.values():
        if host.replica_set is not None and host.replica_set not in replica_sets:
            problems.append(
                host.problem(
                    source,
                    "fleetmend_replica_set",
                    f"unknown replica set {host.replica_set!r}",
                    f"declare it under fleetmend_replica_sets (declared: {_sample(replica_sets)})",
                )
            )
    for rs in replica_sets.values():
        if len(rs.members) < rs.min_live:
            problems.append(
                Problem(
                    source,
                    f"fleetmend_replica_sets.{rs.name}",
                    f"replica set has {len(rs.members)} member(s) but min_live {rs.min_live}: "
                    "it can never be healthy",
                    "add members (fleetmend_replica_set on the hosts) or lower min_live",
                )
            )
    inventory = Inventory(
        source=source, hosts=dict(sorted(hosts.items())), replica_sets=replica_sets
    )
    return inventory, problems


class _Placer:
    """Names the place of a host variable: file and line from Ansible's origin tags."""

    def __init__(self, source: str, host: str, origins: dict[str, tuple[str, str]]) -> None:
        self.source = source
        self.host = host
        self.origins = origins

    def problem(self, field: str, message: str, hint: str = "") -> Problem:
        top = re.split(r"[.\[]", field, maxsplit=1)[0]
        file, line = self.source, ""
        origin = self.origins.get(top)
        if origin:
            file, line = origin
        place = f"{line}: host {self.host}: {field}" if line else f"host {self.host}: {field}"
        return Problem(file, place, message, hint)


_RawHost = tuple[dict[str, Any], list[str], dict[str, tuple[str, str]]]
"""A host's merged plain variables, its groups, and each variable's (file, line)."""


def _ansible_hosts(path: Path) -> dict[str, _RawHost]:
    """Every host of the source with its variables, groups and their origins, via ansible-core."""
    # Only the static plugins, and a source that cannot be parsed is an error rather
    # than a warning and an empty inventory. Set before ansible reads its constants.
    os.environ.setdefault("ANSIBLE_INVENTORY_ENABLED", "yaml,ini")
    os.environ["ANSIBLE_INVENTORY_UNPARSED_FAILED"] = "True"
    from ansible.errors import AnsibleError
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.vars.manager import VariableManager

    source = display_path(path)
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured), contextlib.redirect_stdout(captured):
            loader = DataLoader()
            manager = InventoryManager(loader=loader, sources=[str(path)])
            variables = VariableManager(loader=loader, inventory=manager)
            hosts = {
                h.name: (
                    variables.get_vars(host=h, include_hostvars=False),
                    sorted(g.name for g in h.get_groups() if g.name != "all"),
                )
                for h in manager.get_hosts()
            }
    except AnsibleError as exc:
        reason = _ansible_reason(captured.getvalue()) or str(getattr(exc, "message", exc))
        raise InputError.one(
            source,
            "",
            f"Ansible cannot read this inventory: {reason}",
            "see Ansible's inventory docs",
        ) from None
    result: dict[str, _RawHost] = {}
    for name, (raw, groups) in hosts.items():
        origins = {k: o for k, v in raw.items() if (o := _origin(v)) is not None}
        result[name] = ({k: _plain(v) for k, v in raw.items()}, groups, origins)
    return result


def _ansible_reason(text: str) -> str:
    match = re.search(r"Failed to parse inventory with '\w+' plugin: (.+)", text)
    return match.group(1).strip() if match else ""


def _origin(value: Any) -> tuple[str, str] | None:
    """(file, line) where Ansible read `value`, when this ansible-core tags its data."""
    try:
        from ansible._internal._datatag._tags import Origin
    except ImportError:  # ansible-core < 2.19 has no data tags
        return None
    tag = Origin.get_tag(value)
    if tag is None or tag.path is None:
        return None
    return display_path(tag.path), str(tag.line_num or "")


def _plain(value: Any) -> Any:
    """Ansible's tagged str/dict/list values as plain Python ones."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
