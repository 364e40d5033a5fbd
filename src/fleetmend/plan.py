"""Verdicts x safety policy x topology -> an ordered plan. Pure: no I/O, no clock.

Each host in scope gets the action its verdict asks for (`converge` a drifted
host, `rebuild` a failed or dead one), or a refusal naming the rule that refused
it. Accepted actions are put in waves: a wave runs in parallel, waves one after
another. The rules (see ../shared/DESIGN.md):

- protected: a `fleetmend_protected` host never gets an action;
- trip wire: when more than `trip_wire` of the hosts in scope look failed or
  unreachable, the problem is more likely the network or the checker: every
  action is refused unless an override reason is given (and audited);
- floor: an action that takes a healthy copy offline never leaves its replica
  set with fewer healthy copies than `min_live`; actions on one replica set are
  serialised (one per wave), repairs of broken copies before work on healthy ones;
- limits: at most `max_parallel` actions per wave, `max_parallel_per_site` per site;
- a person: a host unreachable for a reason other than timeout or refusal (auth,
  host key, dns) is not rebuilt automatically: that is configuration, not a dead host.
"""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from fleetmend.check import CheckReport, HostReport
from fleetmend.drift import Verdict
from fleetmend.inventory import Inventory

DEAD_REASONS = frozenset({"timeout", "refused"})


class ActionKind(StrEnum):
    NONE = "none"
    CONVERGE = "converge"
    REBUILD = "rebuild"
    RESEED = "reseed"
    """On request (`fleetmend reseed`), or by heal for data that disagrees with the majority."""
    RESTART = "restart"
    """Heal's cheapest repair of a running host: start its stopped services again."""


class Rule(StrEnum):
    PROTECTED = "protected"
    TRIP_WIRE = "trip-wire"
    FLOOR = "floor"
    NEEDS_PERSON = "needs-person"


class Policy(BaseModel):
    model_config = ConfigDict(frozen=True)

    max_parallel: int = Field(default=5, ge=1)
    max_parallel_per_site: int = Field(default=2, ge=1)
    trip_wire: float = Field(default=0.5, gt=0, le=1)
    """Share of hosts in scope that may look failed before automatic action stops."""
    override: str | None = None
    """A person's reason to act although the trip wire tripped (audited)."""


class Action(BaseModel):
    model_config = ConfigDict(frozen=True)

    host: str
    kind: ActionKind
    reason: str
    wave: int = 0
    replica_set: str | None = None
    site: str | None = None


class Refusal(BaseModel):
    model_config = ConfigDict(frozen=True)

    host: str
    kind: ActionKind
    rule: Rule
    detail: str


class Plan(BaseModel):
    """What to do, in which order, and what was refused; saved and applied later."""

    source: str
    fingerprint: str
    """Digest of the verdicts the plan was made from; `apply` refuses a plan whose
    fleet no longer matches it (a stale plan)."""
    policy: Policy
    actions: list[Action]
    refused: list[Refusal]
    unchanged: list[str]
    tripped: bool = False

    @property
    def waves(self) -> list[list[Action]]:
        count = max((a.wave for a in self.actions), default=-1) + 1
        return [[a for a in self.actions if a.wave == w] for w in range(count)]


def fingerprint(report: CheckReport) -> str:
    """The verdicts and drift of every host in a check, as one digest."""
    state = sorted(
        (h.host, h.verdict.value, h.reason or "", sorted(i.key() for i in h.counted))
        for h in report.hosts
    )
    return hashlib.sha256(json.dumps(state).encode()).hexdigest()


def _wanted(host: HostReport) -> tuple[ActionKind, str]:
    if host.verdict is Verdict.DRIFTED:
        items = ", ".join(f"{i.kind.value} {i.target}" for i in host.counted[:3])
        more = f" (+{len(host.counted) - 3} more)" if len(host.counted) > 3 else ""
        return ActionKind.CONVERGE, f"drifted: {items}{more}"
    if host.verdict is Verdict.FAILED:
        failures = [i for i in host.counted if i.failure] or host.counted
        what = ", ".join(f"{i.kind.value} {i.target}: {i.actual}" for i in failures[:2])
        return ActionKind.REBUILD, f"failed: {what or host.detail}"
    if host.verdict is Verdict.UNREACHABLE:
        return ActionKind.REBUILD, f"unreachable ({host.reason}): {host.detail}"
    return ActionKind.NONE, "conformant"


def make_plan(
    report: CheckReport,
    inventory: Inventory,
    policy: Policy,
    force: dict[str, ActionKind] | None = None,
    targets: set[str] | None = None,
    forced_by: str = "requested by an operator",
) -> Plan:
    """Turn a check into a plan that obeys every safety rule above.

    `force` names hosts an operator asked an action for (`fleetmend rebuild kv-2`):
    they get it whatever their verdict, still under every safety rule. With
    `targets`, only those hosts may get actions; the other hosts of the check
    (their replica-set peers) count for the floor and the trip wire only.
    """
    force = force or {}
    hosts = {h.host: h for h in report.hosts}
    broken = [h for h in report.hosts if h.verdict in (Verdict.FAILED, Verdict.UNREACHABLE)]
    tripped = bool(report.hosts) and len(broken) / len(report.hosts) > policy.trip_wire
    refused: list[Refusal] = []
    unchanged: list[str] = []
    wanted: list[Action] = []
    for name, host in sorted(hosts.items()):
        kind, reason = _wanted(host)
        if name in force:
            kind, reason = force[name], f"{forced_by} ({reason})"
        inv = inventory.hosts[name]
        if kind is ActionKind.NONE or (targets is not None and name not in targets):
            unchanged.append(name)
            continue
        if inv.protected:
            refused.append(
                Refusal(
                    host=name,
                    kind=kind,
                    rule=Rule.PROTECTED,
                    detail="fleetmend_protected host: reported, never acted on",
                )
            )
            continue
        if (
            host.verdict is Verdict.UNREACHABLE
            and host.reason not in DEAD_REASONS
            and name not in force
        ):
            refused.append(
                Refusal(
                    host=name,
                    kind=kind,
                    rule=Rule.NEEDS_PERSON,
                    detail=f"unreachable for a {host.reason} problem, not dead: fix access first",
                )
            )
            continue
        if tripped and policy.override is None:
            refused.append(
                Refusal(
                    host=name,
                    kind=kind,
                    rule=Rule.TRIP_WIRE,
                    detail=f"{len(broken)} of {len(report.hosts)} hosts look failed "
                    f"(more than {policy.trip_wire:.0%}): check the network and the checker, "
                    "or override with a reason",
                )
            )
            continue
        wanted.append(
            Action(host=name, kind=kind, reason=reason, replica_set=inv.replica_set, site=inv.site)
        )
    actions, floor_refusals = _schedule(wanted, report, inventory, policy)
    return Plan(
        source=report.source,
        fingerprint=fingerprint(report),
        policy=policy,
        actions=actions,
        refused=refused + floor_refusals,
        unchanged=unchanged,
        tripped=tripped,
    )


def _healthy(report: HostReport) -> bool:
    return report.verdict in (Verdict.CONFORMANT, Verdict.DRIFTED)


def _schedule(
    wanted: list[Action], report: CheckReport, inventory: Inventory, policy: Policy
) -> tuple[list[Action], list[Refusal]]:
    """Waves that respect the floor and the limits; repairs first, then converges."""
    by_host = {h.host: h for h in report.hosts}
    healthy = {
        rs.name: sum(1 for m in rs.members if m in by_host and _healthy(by_host[m]))
        + sum(1 for m in rs.members if m not in by_host)  # out of scope: assumed healthy
        for rs in inventory.replica_sets.values()
    }
    refusals: list[Refusal] = []
    ordered = sorted(wanted, key=lambda a: (a.kind is not ActionKind.REBUILD, a.host))
    accepted: list[Action] = []
    for action in ordered:
        rs = action.replica_set
        takes_healthy_copy = _healthy(by_host[action.host])
        if rs is not None and takes_healthy_copy:
            floor = inventory.replica_sets[rs].min_live
            if healthy[rs] - 1 < floor:
                refusals.append(
                    Refusal(
                        host=action.host,
                        kind=action.kind,
                        rule=Rule.FLOOR,
                        detail=f"replica set {rs} has {healthy[rs]} healthy copies and "
                        f"min_live {floor}: taking this one offline would go below it",
                    )
                )
                continue
        accepted.append(action)
    waves: list[list[Action]] = []
    placed: list[Action] = []
    for action in accepted:
        for number, wave in enumerate([*waves, []]):
            same_rs = action.replica_set is not None and any(
                a.replica_set == action.replica_set for a in wave
            )
            same_site = sum(1 for a in wave if a.site == action.site and a.site is not None)
            if (
                len(wave) < policy.max_parallel
                and not same_rs
                and (action.site is None or same_site < policy.max_parallel_per_site)
            ):
                if number == len(waves):
                    waves.append([])
                moved = action.model_copy(update={"wave": number})
                waves[number].append(moved)
                placed.append(moved)
                break
    return placed, refusals
