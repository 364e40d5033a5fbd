"""Where and how to reach a host: inventory vars, the user's ~/.ssh/config, ProxyJump.

Precedence follows Ansible's: what the inventory says (ansible_host, ansible_port,
ansible_user, ansible_ssh_private_key_file, and `-o` options in
ansible_ssh_common_args) wins over ~/.ssh/config, which wins over defaults.
"""

from __future__ import annotations

import getpass
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from fleetmend.errors import InputError
from fleetmend.inventory import Host


@dataclass(frozen=True)
class Target:
    """A resolved SSH destination (a host, or a jump host on the way to one)."""

    name: str
    address: str
    port: int = 22
    user: str = field(default_factory=getpass.getuser)
    key_files: tuple[str, ...] = ()
    identities_only: bool = False
    known_hosts: tuple[str, ...] = ()
    """Extra known_hosts files to trust (UserKnownHostsFile)."""
    jump: Target | None = None

    @property
    def known_hosts_name(self) -> str:
        """How known_hosts names this host: `addr`, or `[addr]:port` off port 22."""
        return self.address if self.port == 22 else f"[{self.address}]:{self.port}"


def _options(args: str | None, source: str, host: str) -> dict[str, str]:
    """`-o Key=Value`, `-o Key Value`, `-J jump`, `-i key`, `-p port` from ssh arguments."""
    if not args:
        return {}
    try:
        words = shlex.split(args)
    except ValueError as exc:
        raise InputError.one(source, f"host {host}: ansible_ssh_common_args", str(exc)) from None
    out: dict[str, str] = {}
    flags = {"-J": "proxyjump", "-i": "identityfile", "-p": "port", "-l": "user"}
    i = 0
    while i < len(words):
        word = words[i]
        if word.startswith("-o"):
            option = word[2:] or (words[i + 1] if i + 1 < len(words) else "")
            i += 1 if word[2:] else 2
            key, sep, value = option.partition("=")
            if not sep:
                key, _, value = option.partition(" ")
            out[key.strip().lower()] = value.strip()
            continue
        if word[:2] in flags:
            value = word[2:] or (words[i + 1] if i + 1 < len(words) else "")
            i += 1 if word[2:] else 2
            out[flags[word[:2]]] = value
            continue
        i += 1
    return out


def _ssh_config(path: Path | None) -> object | None:
    if path is None or not path.is_file():
        return None
    import paramiko  # only for its ssh_config parser; connections live in ssh.py

    return paramiko.SSHConfig.from_path(str(path))


def _lookup(config: object | None, name: str) -> dict[str, object]:
    if config is None:
        return {}
    return dict(config.lookup(name))  # type: ignore[attr-defined]


def _expand(path: str) -> str:
    return str(Path(os.path.expandvars(path)).expanduser())


def _jump(
    spec: str, config: object | None, known: tuple[str, ...], keys: tuple[str, ...]
) -> Target | None:
    """A ProxyJump value (`[user@]host[:port][,next...]`) as a chain of targets.

    A jump host without an IdentityFile of its own in ssh_config uses the
    target's keys (the inventory's ansible_ssh_private_key_file).
    """
    if not spec or spec.lower() == "none":
        return None
    hops = [h.strip() for h in spec.split(",") if h.strip()]
    previous: Target | None = None
    for hop in hops:
        user, _, rest = hop.rpartition("@")
        hostname, _, port = rest.partition(":")
        cfg = _lookup(config, hostname)
        own = tuple(_expand(str(k)) for k in cfg.get("identityfile", []))  # type: ignore[attr-defined]
        previous = Target(
            name=hostname,
            address=str(cfg.get("hostname", hostname)),
            port=int(port or cfg.get("port", 22)),  # type: ignore[call-overload]
            user=user or str(cfg.get("user", getpass.getuser())),
            key_files=own or keys,
            known_hosts=known,
            jump=previous,
        )
    return previous


def target_for(host: Host, source: str, ssh_config: Path | None) -> Target:
    """How to reach `host`, from its inventory vars and `ssh_config` (e.g. ~/.ssh/config)."""
    config = _ssh_config(ssh_config)
    opts = _options(host.ssh_common_args, source, host.name)
    cfg = _lookup(config, host.address)
    known = tuple(_expand(p) for p in opts.get("userknownhostsfile", "").split() if p)
    cfg_known = cfg.get("userknownhostsfile")
    if isinstance(cfg_known, str):
        known += tuple(_expand(p) for p in cfg_known.split())
    keys: list[str] = []
    if host.key_file:
        keys.append(_expand(host.key_file))
    if "identityfile" in opts:
        keys.append(_expand(opts["identityfile"]))
    keys += [_expand(str(k)) for k in cfg.get("identityfile", [])]  # type: ignore[attr-defined]
    identities_only = (opts.get("identitiesonly") or str(cfg.get("identitiesonly", "no"))).lower()
    jump_spec = opts.get("proxyjump") or str(cfg.get("proxyjump", ""))
    key_files = tuple(dict.fromkeys(keys))
    return Target(
        name=host.name,
        address=str(cfg.get("hostname", host.address))
        if host.address == host.name
        else host.address,
        port=host.port if host.port_given else int(str(cfg.get("port", 22))),
        user=host.user or opts.get("user") or str(cfg.get("user", getpass.getuser())),
        key_files=key_files,
        identities_only=identities_only == "yes",
        known_hosts=known,
        jump=_jump(jump_spec, config, known, key_files),
    )
