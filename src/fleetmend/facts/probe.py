"""The probe: one POSIX sh script per host that gathers every fact in one round trip.

It needs no Python on the host, only what a minimal server has (sh, coreutils,
getent, and dpkg-query or rpm; pgrep when there is no systemd). Each fact goes
in its own section, keyed by an index rather than by the path or name, so no
file name can break the framing. Every value built into the script is quoted
with `shlex.quote`.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator

from pydantic import ValidationError

from fleetmend.facts.model import (
    Facts,
    FileFact,
    GroupFact,
    ServiceFact,
    Stamp,
    UserFact,
    VolumeFact,
)
from fleetmend.render import DesiredState
from fleetmend.versions import Family

HEADER = "@@fleetmend-probe 1"
END = "@@end"
STAMP_PATH = "/etc/fleetmend/stamp.json"
COMMAND_TIMEOUT = 10
"""Seconds a volume's position or health command may run on the host."""


class ProbeError(Exception):
    """The probe ran but its output cannot be read: a per-host failure, not a crash."""


_PRELUDE = f"""\
exec 2>/dev/null
_run() {{ if command -v timeout >/dev/null; then timeout {COMMAND_TIMEOUT} sh -c "$1"; \
else sh -c "$1"; fi; }}
_line() {{ tr '\\n\\t' '  ' | head -c 300; echo; }}
echo '{HEADER}'
echo '@@os'; cat /etc/os-release /usr/lib/os-release 2>/dev/null | head -n 40
echo '@@stamp'; cat {STAMP_PATH} 2>/dev/null; echo  # a stamp may lack its last newline
"""


_DPKG_FORMAT = "${Package}\t${Version}\t${db:Status-Abbrev}\n"
_RPM_FORMAT = "%{NAME}\t%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}\tii\n"


def _q(value: str) -> str:
    return shlex.quote(value)


def probe_script(state: DesiredState) -> str:
    """The script that gathers every fact `state` needs, for `sh -s` on the host."""
    out = [_PRELUDE]
    names = " ".join(_q(p) for p in state.packages)
    dpkg = f"dpkg-query -W -f={_q(_DPKG_FORMAT)} {names}; " if names else ""
    rpm = f"rpm -q --qf {_q(_RPM_FORMAT)} {names}; " if names else ""
    out.append(
        "echo '@@packages'\n"
        f"if command -v dpkg-query >/dev/null; then echo dpkg; {dpkg}"
        f"elif command -v rpm >/dev/null; then echo rpm; {rpm}"
        "else echo none; fi\n"
    )
    if state.files:
        # Batched: one stat and one sha256sum for all files, however many there are.
        # Presence comes first, one line per declared file; stat lines follow for
        # the present ones and checksums for the regular ones, in declared order.
        paths = " ".join(_q(p) for p in state.files)
        out.append(
            "echo '@@files'\n"
            f'for f in {paths}; do if [ -e "$f" ] || [ -L "$f" ]; then echo 1; '
            "else echo 0; fi; done\n"
            f'set --; for f in {paths}; do if [ -e "$f" ] || [ -L "$f" ]; then '
            'set -- "$@" "$f"; fi; done\n'
            "echo '@@stat'; [ $# -gt 0 ] && stat -c '%a\t%U\t%G\t%F' -- \"$@\"\n"
            f'set --; for f in {paths}; do if [ -f "$f" ]; then set -- "$@" "$f"; fi; done\n'
            "echo '@@sums'; [ $# -gt 0 ] && sha256sum -- \"$@\" | while read -r h _; do "
            'echo "${h#\\\\}"; done\n'
        )
    for i, (name, spec) in enumerate(state.services.items()):
        process = spec.process or name
        out.append(
            f"echo '@@service {i}'; s={_q(name)}; p={_q(process)}\n"
            'if [ -d /run/systemd/system ]; then printf "systemd\\t%s\\t%s\\n" '
            '"$(systemctl is-active "$s")" "$(systemctl is-enabled "$s")"; else '
            "if ! command -v pgrep >/dev/null; then r=unknown; "
            'elif pgrep -x "$p" >/dev/null; then r=active; else r=inactive; fi; '
            'if ls /etc/systemd/system/*.wants/"$s".service /etc/rc[2345].d/S??"$s" '
            ">/dev/null 2>&1; then e=enabled; else e=disabled; fi; "
            'printf "process\\t%s\\t%s\\n" "$r" "$e"; fi\n'
        )
    if state.sysctls:
        # One grep for all: "path:value" lines (a missing key prints nothing). Not the
        # shell's `read`: /proc/sys answers byte-sized reads with the first byte only.
        paths = " ".join(_q(_sysctl_path(k)) for k in state.sysctls)
        out.append(f"echo '@@sysctls'; grep -sH '' {paths}\n")
    for i, user in enumerate(state.users):
        out.append(
            f"echo '@@user {i}'; u={_q(user)}\n"
            'if getent passwd "$u"; then id -gn "$u"; id -Gn "$u"; fi\n'
        )
    for i, group in enumerate(state.groups):
        out.append(f"echo '@@group {i}'; getent group {_q(group)}\n")
    for i, volume in enumerate(state.volumes.values()):
        d = _q(volume.path)
        out.append(f"echo '@@volume {i}'\nif [ -d {d} ]; then echo yes; else echo no; fi\n")
        # position: its stdout only; health: stdout and stderr, to say why it failed
        for label, command, err in (
            ("position", volume.position, "2>/dev/null"),
            ("health", volume.health, "2>&1"),
        ):
            if command is None:
                out.append(f"printf '{label}\\t-\\t\\n'\n")
            else:
                out.append(
                    f"o=$(cd {d} && _run {_q(command)} {err}); r=$?; "
                    f"printf '{label}\\t%s\\t' \"$r\"; printf '%s' \"$o\" | _line\n"
                )
        out.append(f"df -Pk {d} | awk 'NR==2{{print $2\"\\t\"$4}}'\n")
    out.append(f"echo '{END}'\n")
    return "".join(out)


def _sections(output: str) -> dict[str, list[str]]:
    lines = output.splitlines()
    if not lines or lines[0] != HEADER:
        head = output.strip().splitlines()[:1]
        raise ProbeError(f"probe output does not start with its header (got {head or 'nothing'})")
    if END not in lines:
        raise ProbeError("probe output ends early (no end marker): the probe was cut off")
    sections: dict[str, list[str]] = {}
    current = ""
    for line in lines[1 : lines.index(END)]:
        if line.startswith("@@"):
            current = line[2:]
            sections[current] = []
        elif current:
            sections[current].append(line)
    return sections


def _os_release(lines: list[str]) -> tuple[str | None, str | None]:
    values: dict[str, str] = {}
    for line in lines:
        key, sep, value = line.partition("=")
        if sep and key not in values:
            values[key.strip()] = value.strip().strip("\"'")
    return values.get("ID"), values.get("VERSION_ID")


def _stamp(lines: list[str]) -> tuple[Stamp | None, str | None]:
    text = "\n".join(lines).strip()
    if not text:
        return None, None
    try:
        return Stamp.model_validate(json.loads(text)), None
    except (json.JSONDecodeError, ValidationError) as exc:
        return None, f"unreadable {STAMP_PATH}: {str(exc).splitlines()[0]}"


def _packages(lines: list[str], wanted: list[str]) -> tuple[Family | None, dict[str, str | None]]:
    if not lines:
        raise ProbeError("probe output has no package manager line")
    family = {"dpkg": Family.DPKG, "rpm": Family.RPM}.get(lines[0])
    installed: dict[str, str | None] = dict.fromkeys(wanted)
    for line in lines[1:]:
        parts = line.split("\t")
        if len(parts) == 3 and parts[0] in installed and parts[2].strip()[:2] in ("ii", "hi"):
            installed[parts[0]] = parts[1]
    return family, installed


def _files(sections: dict[str, list[str]], paths: list[str]) -> dict[str, FileFact]:
    """Files from the batched sections: presence per path, then stat, then checksums."""
    if not paths:
        return {}
    for name in ("files", "stat", "sums"):
        if name not in sections:
            raise ProbeError(f"probe output lacks its {name} section")
    present = sections["files"]
    if len(present) != len(paths) or set(present) - {"0", "1"}:
        raise ProbeError(f"unreadable file presence lines: {present[:3]}")
    stats = iter(sections["stat"])
    sums = iter(sections["sums"])
    out = {}
    for path, flag in zip(paths, present, strict=True):
        if flag == "0":
            out[path] = FileFact(exists=False)
            continue
        parts = next(stats, "").split("\t")
        if len(parts) != 4:
            raise ProbeError(f"unreadable file facts for {path!r}: {parts}")
        digest = next(sums, None) if parts[3].startswith("regular") else None
        if parts[3].startswith("regular") and not digest:
            raise ProbeError(f"no checksum for {path!r}")
        out[path] = FileFact(
            exists=True,
            mode=parts[0].zfill(4),
            owner=parts[1],
            group=parts[2],
            kind=parts[3],
            sha256=digest,
        )
    return out


def _service(lines: list[str]) -> ServiceFact:
    parts = lines[0].split("\t") if lines else []
    if len(parts) != 3:
        raise ProbeError(f"unreadable service facts: {lines[:1]}")
    manager, active, enabled = parts
    running = {"active": True, "inactive": False, "failed": False}.get(active)
    enabled_state = {"enabled": True, "disabled": False, "masked": False}.get(enabled)
    return ServiceFact(manager=manager, running=running, enabled=enabled_state)


def _user(lines: list[str]) -> UserFact:
    if not lines:
        return UserFact(exists=False)
    fields = lines[0].split(":")
    if len(fields) != 7:
        raise ProbeError(f"unreadable passwd entry: {lines[0]!r}")
    return UserFact(
        exists=True,
        uid=int(fields[2]),
        home=fields[5],
        shell=fields[6],
        group=lines[1] if len(lines) > 1 else None,
        groups=lines[2].split() if len(lines) > 2 else [],
    )


def _group(lines: list[str]) -> GroupFact:
    if not lines or not lines[0]:
        return GroupFact(exists=False)
    fields = lines[0].split(":")
    if len(fields) != 4:
        raise ProbeError(f"unreadable group entry: {lines[0]!r}")
    return GroupFact(exists=True, gid=int(fields[2]))


def _command(line: str, label: str) -> tuple[int | None, str]:
    parts = line.split("\t", 2)
    if len(parts) != 3 or parts[0] != label:
        raise ProbeError(f"unreadable volume {label} line: {line!r}")
    return (None if parts[1] == "-" else int(parts[1])), parts[2].strip()


def _volume(lines: list[str]) -> VolumeFact:
    if len(lines) < 3:
        raise ProbeError(f"volume facts cut short: {lines}")
    position_rc, position = _command(lines[1], "position")
    health_rc, health = _command(lines[2], "health")
    size = free = None
    if len(lines) > 3 and "\t" in lines[3]:
        size, free = (int(x) for x in lines[3].split("\t"))
    return VolumeFact(
        exists=lines[0] == "yes",
        position=position if position_rc == 0 and position else None,
        position_rc=position_rc,
        health_rc=health_rc,
        health_output=health,
        size_kb=size,
        free_kb=free,
    )


def _indexed(
    sections: dict[str, list[str]], kind: str, names: list[str]
) -> Iterator[tuple[str, list[str]]]:
    for i, name in enumerate(names):
        key = f"{kind} {i}"
        if key not in sections:
            raise ProbeError(f"probe output lacks the {kind} section for {name!r}")
        yield name, sections[key]


def _sysctl_path(key: str) -> str:
    return "/proc/sys/" + key.replace(".", "/")


def _sysctls(sections: dict[str, list[str]], keys: list[str]) -> dict[str, str | None]:
    if not keys:
        return {}
    if "sysctls" not in sections:
        raise ProbeError("probe output lacks its sysctls section")
    found: dict[str, str] = {}
    for line in sections["sysctls"]:
        path, sep, value = line.partition(":")
        if not sep:
            raise ProbeError(f"unreadable sysctl line: {line!r}")
        found[path] = " ".join(value.split())
    return {k: found.get(_sysctl_path(k)) for k in keys}


def parse_probe(host: str, state: DesiredState, output: str) -> Facts:
    """Typed facts from the probe's output; `ProbeError` when it cannot be read."""
    sections = _sections(output)
    for required in ("os", "stamp", "packages"):
        if required not in sections:
            raise ProbeError(f"probe output lacks its {required} section")
    os_id, version_id = _os_release(sections["os"])
    stamp, stamp_error = _stamp(sections["stamp"])
    family, packages = _packages(sections["packages"], list(state.packages))
    try:
        return Facts(
            host=host,
            os_id=os_id,
            os_version_id=version_id,
            stamp=stamp,
            stamp_error=stamp_error,
            family=family,
            packages=packages,
            files=_files(sections, list(state.files)),
            services={
                s: _service(lines)
                for s, lines in _indexed(sections, "service", list(state.services))
            },
            sysctls=_sysctls(sections, list(state.sysctls)),
            users={u: _user(lines) for u, lines in _indexed(sections, "user", list(state.users))},
            groups={
                g: _group(lines) for g, lines in _indexed(sections, "group", list(state.groups))
            },
            volumes={
                v: _volume(lines) for v, lines in _indexed(sections, "volume", list(state.volumes))
            },
        )
    except ValueError as exc:  # int() of a garbled number
        raise ProbeError(f"unreadable probe output: {exc}") from None
