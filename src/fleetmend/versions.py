"""Package versions: dpkg's and rpm's ordering, and whether a version meets a constraint.

Constraints are the ones images declare (see `images.py`): `any`, `absent`, or
comma-separated clauses `OP VERSION` with OP in == = >= <= > < != (a bare
version means ==), where a trailing `*` matches a prefix (`1.22.*`).
"""

from __future__ import annotations

import re
from enum import StrEnum

_OPS = ("==", ">=", "<=", "!=", ">", "<", "=")


class Family(StrEnum):
    DPKG = "dpkg"
    RPM = "rpm"


def _dpkg_order(c: str) -> int:
    if c == "~":
        return -1
    if c.isdigit():
        return 0
    if c.isalpha():
        return ord(c)
    return ord(c) + 256


def _dpkg_part(a: str, b: str) -> int:
    """dpkg's verrevcmp: alternate non-digit runs (with ~ first) and numeric runs."""
    i = j = 0
    while i < len(a) or j < len(b):
        first_diff = 0
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ac = _dpkg_order(a[i]) if i < len(a) else 0
            bc = _dpkg_order(b[j]) if j < len(b) else 0
            if ac != bc:
                return ac - bc
            i += 1
            j += 1
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        while i < len(a) and a[i].isdigit() and j < len(b) and b[j].isdigit():
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i += 1
            j += 1
        if i < len(a) and a[i].isdigit():
            return 1
        if j < len(b) and b[j].isdigit():
            return -1
        if first_diff:
            return first_diff
    return 0


def _split_dpkg(version: str) -> tuple[int, str, str]:
    epoch, _, rest = version.rpartition(":") if ":" in version else ("0", "", version)
    upstream, _, revision = rest.rpartition("-") if "-" in rest else (rest, "", "")
    return int(epoch or 0) if epoch.isdigit() else 0, upstream, revision


def _rpm_segments(v: str) -> list[str]:
    return re.findall(r"~|\^|[0-9]+|[A-Za-z]+", v)


def _rpm_part(a: str, b: str) -> int:
    """rpmvercmp: alphanumeric segments; numbers beat letters; ~ sorts before anything."""
    sa, sb = _rpm_segments(a), _rpm_segments(b)
    while sa or sb:
        if (sa and sa[0] == "~") or (sb and sb[0] == "~"):
            if not (sa and sa[0] == "~"):
                return 1
            if not (sb and sb[0] == "~"):
                return -1
            sa, sb = sa[1:], sb[1:]
            continue
        if not sa or not sb:
            return 1 if sa else -1
        x, y = sa.pop(0), sb.pop(0)
        if x.isdigit() != y.isdigit():
            return 1 if x.isdigit() else -1
        if x.isdigit():
            xi, yi = int(x), int(y)
            if xi != yi:
                return 1 if xi > yi else -1
        elif x != y:
            return 1 if x > y else -1
    return 0


def compare(a: str, b: str, family: Family = Family.DPKG) -> int:
    """Negative, zero or positive as version `a` sorts before, with or after `b`."""
    ea, ua, ra = _split_dpkg(a)
    eb, ub, rb = _split_dpkg(b)
    if ea != eb:
        return ea - eb
    part = _dpkg_part if family is Family.DPKG else _rpm_part
    return part(ua, ub) or part(ra, rb)


def _clauses(constraint: str) -> list[tuple[str, str]]:
    out = []
    for clause in (c.strip() for c in constraint.split(",")):
        for op in _OPS:
            if clause.startswith(op):
                out.append((op, clause[len(op) :].strip()))
                break
        else:
            out.append(("==", clause))
    return out


def satisfies(installed: str | None, constraint: str, family: Family = Family.DPKG) -> bool:
    """Whether an installed version (None: not installed) meets an image's constraint."""
    if constraint == "absent":
        return installed is None
    if installed is None:
        return False
    if constraint == "any":
        return True
    for op, wanted in _clauses(constraint):
        if wanted.endswith("*"):
            prefix = wanted[:-1]
            bare = (
                installed.split(":", 1)[1] if ":" in installed and ":" not in prefix else installed
            )
            match = bare.startswith(prefix)
            if (op in ("==", "=") and not match) or (op == "!=" and match):
                return False
            continue
        order = compare(installed, wanted, family)
        ok = {
            "==": order == 0 or _same_upstream(installed, wanted, family),
            "=": order == 0 or _same_upstream(installed, wanted, family),
            "!=": order != 0,
            ">=": order >= 0,
            "<=": order <= 0,
            ">": order > 0,
            "<": order < 0,
        }[op]
        if not ok:
            return False
    return True


def _same_upstream(installed: str, wanted: str, family: Family) -> bool:
    """`== 1.22.1` matches 1.22.1-1 too: a version without revision names every revision."""
    if "-" in wanted.split(":")[-1]:
        return False
    e1, u1, _ = _split_dpkg(installed)
    e2, u2, _ = _split_dpkg(wanted)
    has_epoch = ":" in wanted
    return (e1 == e2 or not has_epoch) and compare(u1, u2, family) == 0
