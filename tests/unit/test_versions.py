"""Version ordering (dpkg and rpm) and constraints, as tables of cases."""

from __future__ import annotations

import pytest

from fleetmend.versions import Family, compare, satisfies

DPKG_ORDER = [
    ("1.0", "1.0", 0),
    ("1.0", "1.1", -1),
    ("1.10", "1.9", 1),
    ("1.0~rc1", "1.0", -1),
    ("1.0", "1.0+b1", -1),
    ("1:1.0", "2.0", 1),
    ("1.22.1-1", "1.22.1-2", -1),
    ("1.22.1-1~deb12u1", "1.22.1-1", -1),
    ("7.0.15-1~deb12u1", "5:7.0.15-1~deb12u1", -1),
    ("2.3a", "2.3", 1),
    ("0001.0", "1.0", 0),
]


@pytest.mark.parametrize(("a", "b", "sign"), DPKG_ORDER)
def test_dpkg_order(a: str, b: str, sign: int) -> None:
    result = compare(a, b)
    assert (result > 0) - (result < 0) == sign
    back = compare(b, a)
    assert (back > 0) - (back < 0) == -sign


RPM_ORDER = [
    ("1.0-1", "1.0-2", -1),
    ("1.10", "1.9", 1),
    ("1.0~rc1", "1.0", -1),
    ("2.0a", "2.0", 1),
    ("1:1.0-1.el9", "1.5-1.el9", 1),
]


@pytest.mark.parametrize(("a", "b", "sign"), RPM_ORDER)
def test_rpm_order(a: str, b: str, sign: int) -> None:
    result = compare(a, b, Family.RPM)
    assert (result > 0) - (result < 0) == sign


CONSTRAINTS = [
    (None, "absent", True),
    ("1.0", "absent", False),
    (None, "any", False),
    ("1.0", "any", True),
    ("1.22.1-1~deb12u1", ">=1.22, <1.23", True),
    ("1.24.0-1", ">=1.22, <1.23", False),
    ("3.2.7-1+deb12u2", ">=3.2", True),
    ("5:7.0.15-1~deb12u1", ">=5:7.0", True),
    ("7.0.15-1~deb12u1", ">=5:7.0", False),
    ("1.22.1-1", "1.22.1", True),
    ("1.22.1-1", "==1.22.1-1", True),
    ("1.22.1-2", "==1.22.1-1", False),
    ("1.22.1-2", "1.22.*", True),
    ("1.23.0-1", "1.22.*", False),
    ("1.23.0-1", "!=1.22.*", True),
    ("2.0", "!=2.0", False),
    (None, ">=1.0", False),
]


@pytest.mark.parametrize(("installed", "constraint", "ok"), CONSTRAINTS)
def test_constraints(installed: str | None, constraint: str, ok: bool) -> None:
    assert satisfies(installed, constraint) is ok
