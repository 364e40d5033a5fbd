"""Desired state x facts -> items and verdicts; waivers; replica-set floors. Pure tables."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from fleetmend.check import HostReport, judge, replica_sets
from fleetmend.drift import DriftKind, Verdict, drift, verdict
from fleetmend.facts.model import (
    Facts,
    FileFact,
    GroupFact,
    ServiceFact,
    Stamp,
    UserFact,
    VolumeFact,
)
from fleetmend.fleet import Fleet
from fleetmend.render import DesiredState
from fleetmend.versions import Family
from fleetmend.waivers import Waiver, apply_waivers


@pytest.fixture
def lab(repo: Path) -> Fleet:
    return Fleet.load(repo / "images", repo / "inventories" / "lab.yaml")


@pytest.fixture
def kv(lab: Fleet) -> DesiredState:
    return lab.desired(lab.inventory.host("kv-1"))


def matching(state: DesiredState) -> Facts:
    """Facts of a host that is exactly what `state` says."""
    return Facts(
        host=state.host,
        os_id=state.os.id if state.os else None,
        os_version_id=state.os.version_id if state.os else None,
        stamp=Stamp(image=state.image, version=state.version, digest=state.digest),
        family=Family.DPKG,
        packages={p: (None if c == "absent" else "7.0.15-1") for p, c in state.packages.items()}
        | {"redis-server": "5:7.0.15-1~deb12u1"},
        files={
            p: FileFact(exists=True, sha256=f.sha256, mode=f.mode, owner=f.owner, group=f.group)
            for p, f in state.files.items()
        },
        services={
            s: ServiceFact(manager="systemd", running=spec.state == "running", enabled=spec.enabled)
            for s, spec in state.services.items()
        },
        sysctls=dict(state.sysctls),
        users={
            u: UserFact(
                exists=True,
                uid=spec.uid,
                group=spec.group,
                groups=spec.groups,
                home=spec.home,
                shell=spec.shell,
            )
            for u, spec in state.users.items()
        },
        groups={g: GroupFact(exists=True, gid=spec.gid) for g, spec in state.groups.items()},
        volumes={
            v: VolumeFact(exists=True, position="42", position_rc=0, health_rc=0)
            for v in state.volumes
        },
    )


def test_a_host_matching_its_image_is_conformant(kv: DesiredState) -> None:
    assert drift(kv, matching(kv)) == []
    assert verdict([]) is Verdict.CONFORMANT


def _with(facts: Facts, **changes: object) -> Facts:
    return facts.model_copy(update=changes)


CASES = [
    # (change to the facts, kind, target, verdict)
    (lambda f: _with(f, stamp=None), DriftKind.STAMP, "/etc/fleetmend/stamp.json", Verdict.DRIFTED),
    (
        lambda f: _with(f, stamp=Stamp(image="kv", version="3.1", digest="old")),
        DriftKind.STAMP,
        "digest",
        Verdict.DRIFTED,
    ),
    (
        lambda f: _with(f, stamp=Stamp(image="web", version="2.10", digest="x")),
        DriftKind.STAMP,
        "image",
        Verdict.FAILED,
    ),
    (lambda f: _with(f, os_version_id="11"), DriftKind.OS, "os-release", Verdict.FAILED),
    (
        lambda f: _with(f, packages={**f.packages, "redis-server": None}),
        DriftKind.PACKAGE,
        "redis-server",
        Verdict.DRIFTED,
    ),
    (
        lambda f: _with(f, packages={**f.packages, "redis-server": "6.0.16-1"}),
        DriftKind.PACKAGE,
        "redis-server",
        Verdict.DRIFTED,
    ),
    (
        lambda f: _with(f, packages={**f.packages, "telnetd": "0.17-44"}),
        DriftKind.PACKAGE,
        "telnetd",
        Verdict.DRIFTED,
    ),
    (
        lambda f: _with(f, files={**f.files, "/etc/motd": FileFact(exists=False)}),
        DriftKind.FILE,
        "/etc/motd",
        Verdict.DRIFTED,
    ),
    (
        lambda f: _with(
            f,
            files={
                **f.files,
                "/etc/motd": f.files["/etc/motd"].model_copy(update={"sha256": "0" * 64}),
            },
        ),
        DriftKind.FILE,
        "/etc/motd",
        Verdict.DRIFTED,
    ),
    (
        lambda f: _with(
            f,
            files={
                **f.files,
                "/etc/motd": f.files["/etc/motd"].model_copy(update={"mode": "0666"}),
            },
        ),
        DriftKind.FILE,
        "/etc/motd mode",
        Verdict.DRIFTED,
    ),
    (
        lambda f: _with(
            f,
            services={
                **f.services,
                "redis-server": ServiceFact(manager="systemd", running=False, enabled=True),
            },
        ),
        DriftKind.SERVICE,
        "redis-server",
        Verdict.DRIFTED,
    ),
    (
        lambda f: _with(f, sysctls={**f.sysctls, "vm.swappiness": "60"}),
        DriftKind.SYSCTL,
        "vm.swappiness",
        Verdict.DRIFTED,
    ),
    (
        lambda f: _with(f, users={"ops": UserFact(exists=False)}),
        DriftKind.USER,
        "ops",
        Verdict.DRIFTED,
    ),
    (
        lambda f: _with(
            f, volumes={"data": VolumeFact(exists=True, position="1", position_rc=0, health_rc=1)}
        ),
        DriftKind.VOLUME,
        "data health",
        Verdict.FAILED,
    ),
    (
        lambda f: _with(f, volumes={"data": VolumeFact(exists=False)}),
        DriftKind.VOLUME,
        "data",
        Verdict.FAILED,
    ),
]


@pytest.mark.parametrize(("change", "kind", "target", "expected"), CASES)
def test_each_kind_of_drift(
    kv: DesiredState, change: object, kind: DriftKind, target: str, expected: Verdict
) -> None:
    facts = change(matching(kv))  # type: ignore[operator]
    items = drift(kv, facts)
    assert [(i.kind, i.target) for i in items] == [(kind, target)]
    assert verdict(items) is expected


def test_unknown_service_state_is_not_drift(kv: DesiredState) -> None:
    facts = matching(kv)
    unknown = ServiceFact(manager="process", running=None, enabled=None)
    assert drift(kv, _with(facts, services={"redis-server": unknown, "ssh": unknown})) == []


def test_waivers_cover_items_until_they_expire(lab: Fleet, kv: DesiredState) -> None:
    host = lab.inventory.host("kv-1")
    facts = _with(matching(kv), sysctls={**kv.sysctls, "vm.swappiness": "60"})
    waiver = Waiver(
        hosts=["kv"],
        kind=DriftKind.SYSCTL,
        target="vm.*",
        reason="DBA tuning",
        expires=date(2026, 12, 31),
    )
    result, items = judge(host, kv, facts, [waiver], date(2026, 12, 31))
    assert result is Verdict.CONFORMANT
    assert items[0].waived == "DBA tuning (until 2026-12-31)"
    result, items = judge(host, kv, facts, [waiver], date(2027, 1, 1))
    assert result is Verdict.DRIFTED and items[0].waived is None
    other = waiver.model_copy(update={"hosts": ["web"]})
    assert apply_waivers(items, "kv-1", host.groups, [other], date(2026, 1, 1))[0].waived is None


def _report(host: str, v: Verdict) -> HostReport:
    return HostReport(host=host, image="kv", replica_set="kv-lab", site="lab", verdict=v)


def test_replica_set_floor(lab: Fleet) -> None:
    reports = [
        _report("kv-1", Verdict.CONFORMANT),
        _report("kv-2", Verdict.UNREACHABLE),
        _report("kv-3", Verdict.FAILED),
    ]
    (rs,) = [r for r in replica_sets(lab.inventory, reports) if r.name == "kv-lab"]
    assert rs.healthy == ["kv-1"] and rs.under_floor
    reports[1] = _report("kv-2", Verdict.DRIFTED)  # drifted config, healthy data
    (rs,) = [r for r in replica_sets(lab.inventory, reports) if r.name == "kv-lab"]
    assert rs.healthy == ["kv-1", "kv-2"] and not rs.under_floor


def test_partial_scope_is_not_called_under_floor(lab: Fleet) -> None:
    (rs,) = replica_sets(lab.inventory, [_report("kv-1", Verdict.CONFORMANT)])
    assert rs.checked == ["kv-1"] and not rs.under_floor
    (rs,) = replica_sets(lab.inventory, [_report("kv-1", Verdict.FAILED)])
    assert not rs.under_floor  # two unchecked members could still be healthy
    reports = [_report("kv-1", Verdict.FAILED), _report("kv-2", Verdict.FAILED)]
    (rs,) = replica_sets(lab.inventory, reports)
    assert rs.under_floor  # at most one healthy copy is left
