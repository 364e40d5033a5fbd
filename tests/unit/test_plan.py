"""The planner: tables of cases, and hypothesis for the safety properties."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from fleetmend.check import CheckReport, HostReport
from fleetmend.drift import DriftItem, DriftKind, Verdict
from fleetmend.inventory import Host, Inventory, ReplicaSet
from fleetmend.plan import ActionKind, Policy, Rule, fingerprint, make_plan

ITEM = DriftItem(kind=DriftKind.FILE, target="/etc/motd", expected="a", actual="b")
BROKEN = DriftItem(
    kind=DriftKind.VOLUME, target="data health", expected="healthy", actual="exit 1", failure=True
)


def host(
    name: str, rs: str | None = None, site: str | None = None, protected: bool = False
) -> Host:
    return Host(
        name=name, managed=True, image="kv", replica_set=rs, site=site, protected=protected,
        address="127.0.0.1", port=22, user=None, key_file=None, ssh_common_args=None,
        groups=[], vars={},
    )  # fmt: skip


def report_for(verdicts: dict[str, Verdict], reasons: dict[str, str] | None = None) -> CheckReport:
    reasons = reasons or {}
    hosts = [
        HostReport(
            host=name,
            image="kv",
            replica_set=None,
            site=None,
            verdict=v,
            reason=reasons.get(name, "timeout") if v is Verdict.UNREACHABLE else None,
            items=[ITEM] if v is Verdict.DRIFTED else [BROKEN] if v is Verdict.FAILED else [],
        )
        for name, v in verdicts.items()
    ]
    return CheckReport(
        source="t", started_at="2026-11-25T00:00:00+00:00", seconds=1, hosts=hosts, replica_sets=[]
    )


def inventory(hosts: list[Host], floors: dict[str, int]) -> Inventory:
    sets = {
        rs: ReplicaSet(
            name=rs,
            min_live=n,
            description="",
            members=sorted(h.name for h in hosts if h.replica_set == rs),
        )
        for rs, n in floors.items()
    }
    return Inventory(source="t", hosts={h.name: h for h in hosts}, replica_sets=sets)


def test_actions_follow_verdicts() -> None:
    inv = inventory([host("a"), host("b"), host("c"), host("d")], {})
    plan = make_plan(
        report_for(
            {
                "a": Verdict.CONFORMANT,
                "b": Verdict.DRIFTED,
                "c": Verdict.FAILED,
                "d": Verdict.CONFORMANT,
            }
        ),
        inv,
        Policy(),
    )
    assert {a.host: a.kind for a in plan.actions} == {
        "b": ActionKind.CONVERGE,
        "c": ActionKind.REBUILD,
    }
    assert plan.unchanged == ["a", "d"]
    assert plan.actions[0].host == "c"  # repairs come first


def test_protected_hosts_are_refused() -> None:
    inv = inventory([host("a", protected=True), host("b")], {})
    plan = make_plan(report_for({"a": Verdict.FAILED, "b": Verdict.CONFORMANT}), inv, Policy())
    assert plan.actions == []
    assert [(r.host, r.rule) for r in plan.refused] == [("a", Rule.PROTECTED)]


def test_trip_wire_and_its_override() -> None:
    inv = inventory([host(n) for n in "abcd"], {})
    verdicts = {
        "a": Verdict.UNREACHABLE,
        "b": Verdict.UNREACHABLE,
        "c": Verdict.UNREACHABLE,
        "d": Verdict.DRIFTED,
    }
    plan = make_plan(report_for(verdicts), inv, Policy(trip_wire=0.5))
    assert plan.tripped and plan.actions == []
    assert {r.rule for r in plan.refused} == {Rule.TRIP_WIRE}
    plan = make_plan(
        report_for(verdicts), inv, Policy(trip_wire=0.5, override="switch replaced, INC-9")
    )
    assert len(plan.actions) == 4


def test_unreachable_for_auth_needs_a_person() -> None:
    inv = inventory([host("a"), host("b"), host("c")], {})
    plan = make_plan(
        report_for(
            {"a": Verdict.UNREACHABLE, "b": Verdict.CONFORMANT, "c": Verdict.CONFORMANT},
            {"a": "host-key"},
        ),
        inv,
        Policy(),
    )
    assert [(r.host, r.rule) for r in plan.refused] == [("a", Rule.NEEDS_PERSON)]


def test_floor_refuses_taking_the_last_copies_offline() -> None:
    inv = inventory([host("a", "rs"), host("b", "rs"), host("c", "rs")], {"rs": 2})
    plan = make_plan(
        report_for({"a": Verdict.FAILED, "b": Verdict.DRIFTED, "c": Verdict.CONFORMANT}),
        inv,
        Policy(),
    )
    assert [(a.host, a.kind) for a in plan.actions] == [("a", ActionKind.REBUILD)]
    assert [(r.host, r.rule) for r in plan.refused] == [("b", Rule.FLOOR)]


def test_one_action_per_replica_set_and_limits_per_wave() -> None:
    hosts = [host(f"h{i}", rs=f"rs{i % 2}", site=f"s{i % 3}") for i in range(12)]
    inv = inventory(hosts, {"rs0": 1, "rs1": 1})
    plan = make_plan(
        report_for({h.name: Verdict.FAILED for h in hosts}),
        inv,
        Policy(trip_wire=1.0, max_parallel=2),
    )
    for wave in plan.waves:
        assert len(wave) <= 2
        assert len({a.replica_set for a in wave}) == len(wave)
    assert len(plan.actions) == 12


def test_fingerprint_changes_with_the_fleet() -> None:
    one = report_for({"a": Verdict.DRIFTED})
    assert fingerprint(one) == fingerprint(report_for({"a": Verdict.DRIFTED}))
    assert fingerprint(one) != fingerprint(report_for({"a": Verdict.CONFORMANT}))


VERDICTS = st.sampled_from(list(Verdict))


@st.composite
def fleets(draw: st.DrawFn) -> tuple[Inventory, CheckReport, Policy]:
    count = draw(st.integers(1, 14))
    sets = draw(st.integers(0, 3))
    hosts = [
        host(
            f"h{i}",
            rs=draw(st.sampled_from([None] + [f"rs{j}" for j in range(sets)])),
            site=draw(st.sampled_from([None, "fra", "ams"])),
            protected=draw(st.booleans()),
        )
        for i in range(count)
    ]
    floors = {f"rs{j}": draw(st.integers(1, 3)) for j in range(sets)}
    verdicts = {h.name: draw(VERDICTS) for h in hosts}
    reasons = {h.name: draw(st.sampled_from(["timeout", "refused", "auth"])) for h in hosts}
    policy = Policy(
        max_parallel=draw(st.integers(1, 4)),
        max_parallel_per_site=draw(st.integers(1, 3)),
        trip_wire=draw(st.floats(0.1, 1.0)),
        override=draw(st.sampled_from([None, "a person said so"])),
    )
    return inventory(hosts, floors), report_for(verdicts, reasons), policy


@settings(max_examples=400, deadline=None)
@given(fleets())
def test_no_plan_breaks_a_safety_rule(fleet: tuple[Inventory, CheckReport, Policy]) -> None:
    inv, report, policy = fleet
    plan = make_plan(report, inv, policy)
    verdicts = {h.host: h.verdict for h in report.hosts}
    healthy_verdicts = (Verdict.CONFORMANT, Verdict.DRIFTED)
    acted = {a.host for a in plan.actions}
    # no protected host ever gets an action
    assert not any(inv.hosts[h].protected for h in acted)
    # no host gets two actions, and every host is accounted for once
    assert len(acted) == len(plan.actions)
    assert acted | {r.host for r in plan.refused} | set(plan.unchanged) == set(verdicts)
    # the trip wire holds without an override
    if plan.tripped and policy.override is None:
        assert plan.actions == []
    for wave in plan.waves:
        assert len(wave) <= policy.max_parallel
        for site in {a.site for a in wave if a.site}:
            assert sum(1 for a in wave if a.site == site) <= policy.max_parallel_per_site
        # in every wave, every replica set keeps at least min_live healthy copies
        for rs in inv.replica_sets.values():
            healthy = {m for m in rs.members if verdicts[m] in healthy_verdicts}
            offline = {a.host for a in wave if a.host in healthy}
            if offline:
                assert len(healthy - offline) >= rs.min_live
            assert sum(1 for a in wave if a.replica_set == rs.name) <= 1
