"""Run a drill: record the data, break hosts on purpose, heal, and measure what came back.

1. The fleet in scope must be healthy (conformant, every replica agreeing):
   a drill on a broken fleet measures nothing.
2. Every data volume's manifest is recorded on every member of its replica set.
3. The faults are injected; a thread watches each replica set's live copies.
4. `heal` runs (with scrub when the scenario asks); its steps and checks make
   the timeline of each host: down, probe, reimage, converge, re-seed, verified.
5. Every volume is read again and compared with its pre-fault manifest: files
   (and bytes) that do not match are the data lost (RPO); the time from a
   host's fault to the check that found it conformant is its recovery time (RTO).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fleetmend.check import CheckOptions, CheckReport, run_check
from fleetmend.drift import Verdict
from fleetmend.drill.floor import OFFLINE_STEPS, FloorMonitor
from fleetmend.drill.scenario import FaultSpec, Scenario
from fleetmend.errors import ExitCode, FleetmendError, InputError
from fleetmend.execute import Context, converge_inventory
from fleetmend.fleet import Fleet
from fleetmend.heal.engine import HealOptions, Hooks, heal
from fleetmend.heal.ladder import Rung
from fleetmend.inventory import Host
from fleetmend.lab import Lab
from fleetmend.lab.faults import FaultOptions
from fleetmend.plan import Plan
from fleetmend.playbooks import Outcome, run_playbook
from fleetmend.reseed.scrub import read_manifests
from fleetmend.transport.ssh import Connections, KnownHosts
from fleetmend.transport.target import target_for

Entry = tuple[Any, ...]
Manifests = dict[tuple[str, str, str], dict[str, Entry]]
"""(replica set, volume, member) -> path -> (type, size, hash, link)."""


class DrillRefused(FleetmendError):
    """The drill would measure nothing (or break something real): nothing was injected."""

    exit_code = ExitCode.REFUSED


def _entries(entries: list[dict[str, Any]]) -> dict[str, Entry]:
    return {e["p"]: (e["t"], e.get("s"), e.get("h"), e.get("l")) for e in entries}


class Drill:
    def __init__(
        self,
        fleet: Fleet,
        scenario: Scenario,
        scenario_path: Path,
        check: CheckOptions,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.fleet, self.scenario, self.path, self.check = fleet, scenario, scenario_path, check
        self.say = progress or (lambda _: None)
        inv = fleet.inventory
        self.scope = inv.select(scenario.scope)
        self.faults = [(f, self._where(f)) for f in scenario.faults]
        self.sets = sorted({h.replica_set for h in self.scope if h.replica_set})
        members = {m for rs in self.sets for m in inv.replica_sets[rs].members}
        self.watched = sorted(members | {h.name for h in self.scope})
        self.t0 = 0.0
        self.events: list[dict[str, Any]] = []
        self.open_steps: dict[str, str] = {}
        self.broken: dict[str, float] = {}
        self.recovered: dict[str, float] = {}
        self.probing: set[str] = set()
        self.lock = threading.Lock()

    # -- where the faults go ------------------------------------------------------------
    def _where(self, spec: FaultSpec) -> list[Host]:
        inv = self.fleet.inventory
        names = {h.name for h in self.scope}
        if spec.site is not None:
            hosts = [h for h in self.scope if h.site == spec.site]
            if not hosts:
                sites = sorted({str(h.site) for h in self.scope})
                raise InputError.one(
                    str(self.path), "faults", f"no host in scope is in site {spec.site!r}",
                    f"sites in scope: {', '.join(sites)}",
                )  # fmt: skip
        else:
            hosts = inv.select(spec.hosts)
            outside = [h.name for h in hosts if h.name not in names]
            if outside:
                raise InputError.one(
                    str(self.path), "faults", f"{', '.join(outside)} not in the drill's scope",
                    "add them to `scope`, or fault hosts the drill heals and measures",
                )  # fmt: skip
        if spec.playbook is not None and not (self.path.parent / spec.playbook).is_file():
            raise InputError.one(
                str(self.path), "faults", f"no playbook {spec.playbook}",
                f"`playbook:` is relative to the scenario file ({self.path.parent})",
            )  # fmt: skip
        if spec.fault is not None:
            not_lab = [h.name for h in hosts if h.provider != "lab" or not h.vars.get(
                "fleetmend_lab_dir")]  # fmt: skip
            if not_lab:
                raise InputError.one(
                    str(self.path), "faults",
                    f"{spec.fault.value} is a lab fault, and {', '.join(not_lab)} "
                    "are not lab hosts",
                    "for a real fleet, inject the fault with `playbook:`",
                )  # fmt: skip
        return hosts

    # -- the timeline ---------------------------------------------------------------------
    def now(self) -> float:
        return round(time.monotonic() - self.t0, 2)

    def event(self, host: str, phase: str, state: str, detail: str = "") -> None:
        with self.lock:
            self.events.append(
                {"t": self.now(), "host": host, "phase": phase, "state": state, "detail": detail}
            )

    def on_step(self, host: str, step: str, state: str) -> None:
        if state == "running":
            self.open_steps[host] = step
            self.event(host, step, "start")
        else:
            self.open_steps.pop(host, None)
            self.event(host, step, "end", state)
            self.say(f"{host}: {step} {state.split(':')[0]} at {self.now():.1f}s")

    def on_plan(self, plan: Plan, rungs: dict[str, Rung]) -> None:
        for host, rung in rungs.items():
            if rung is Rung.RETRY_PROBE:
                self.probing.add(host)
                self.event(host, rung.value, "start")

    def on_check(self, report: CheckReport) -> None:
        for host in sorted(self.probing):  # a probe ends with the check that follows it
            self.event(host, Rung.RETRY_PROBE.value, "end", "probed again")
        self.probing.clear()
        t = self.now()
        for h in report.hosts:
            waiting = h.host in self.broken and h.host not in self.recovered
            if waiting and h.verdict is Verdict.CONFORMANT:
                self.recovered[h.host] = t
                self.event(h.host, "verified", "at", "conformant")

    def not_live(self) -> set[str]:
        with self.lock:
            repairing = {h for h, s in self.open_steps.items() if s in OFFLINE_STEPS}
            return repairing | (set(self.broken) - set(self.recovered))

    # -- data -------------------------------------------------------------------------------
    def manifests(self, connections: Connections) -> tuple[Manifests, list[str]]:
        """Every copy's data, as the drill compares it; and the copies that did not answer."""
        found, unreachable = read_manifests(self.fleet, self.check, self.sets, connections)
        copies = {k: _entries(v) for k, v in found.items()}
        copies.update({k: {} for k in unreachable})  # a copy nobody can read holds nothing
        return copies, [f"{rs}/{vol} on {host}" for rs, vol, host in unreachable]

    def _require_healthy(self, connections: Connections) -> Manifests:
        inv = self.fleet.inventory
        report = run_check(self.fleet, [inv.host(n) for n in self.watched], self.check, [])
        bad = [h for h in report.hosts if h.verdict is not Verdict.CONFORMANT]
        if bad:
            what = "; ".join(f"{h.host} {h.verdict.value}" for h in bad[:5])
            raise DrillRefused(
                f"a drill needs a healthy fleet to measure against: {what}",
                "bring it back first: fleetmend heal " + " ".join(h.host for h in bad[:5]),
            )
        baseline, unreachable = self.manifests(connections)
        if unreachable:
            raise DrillRefused(
                f"cannot read {', '.join(unreachable[:3])} before the drill",
                "a drill needs every copy readable to measure against",
            )
        for rs in self.sets:
            copies = {k: v for k, v in baseline.items() if k[0] == rs}
            for _, vol, _ in copies:
                same = [v for k, v in copies.items() if k[1] == vol]
                if any(v != same[0] for v in same):
                    raise DrillRefused(
                        f"the copies of {rs}/{vol} already differ before the drill",
                        f"find out which: fleetmend scrub --replica-set {rs}",
                    )
        return baseline

    # -- the faults ---------------------------------------------------------------------------
    def inject(self) -> list[dict[str, Any]]:
        done = []
        for spec, hosts in self.faults:
            if spec.fault is not None:
                for host in hosts:
                    lab = Lab.at(Path(str(host.vars["fleetmend_lab_dir"])))
                    rec = lab.break_host(
                        host.name, spec.fault, FaultOptions(volume=spec.volume, count=spec.count)
                    )
                    self._broke(host.name, spec.fault.value, rec.detail)
                    done.append({"host": host.name, "fault": spec.fault.value, "t": self.now()})
            else:
                assert spec.playbook is not None
                book = (self.path.parent / spec.playbook).resolve()
                ctx = Context(fleet=self.fleet, state_dir=self.check.state_dir, check=self.check)
                work = self.check.state_dir / "drills" / "inject" / uuid.uuid4().hex[:8]
                result = run_playbook(
                    book, converge_inventory(ctx, hosts), work, extravars=dict(spec.vars)
                )
                if result.outcome is not Outcome.SUCCESSFUL:
                    broken = sorted(self.broken)
                    raise FleetmendError(
                        f"injecting {spec.playbook} failed ({result.outcome.value}); see {work}; "
                        f"hosts this drill already broke: {', '.join(broken) or 'none'}",
                        "bring them back: fleetmend heal " + " ".join(broken) if broken else "",
                    )
                for host in hosts:
                    self._broke(host.name, spec.playbook, {})
                    done.append({"host": host.name, "fault": spec.playbook, "t": self.now()})
        return done

    def _broke(self, host: str, fault: str, detail: dict[str, Any]) -> None:
        with self.lock:
            self.broken.setdefault(host, self.now())
        self.event(host, "down", "start", fault)
        self.say(f"{host}: injected {fault}")

    # -- the whole drill ------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        inv = self.fleet.inventory
        started_at = datetime.now(UTC).isoformat(timespec="seconds")
        known = KnownHosts(self.check.own_known_hosts, self.check.user_known_hosts)
        with Connections(known, self.check.timeouts) as connections:
            self.say("checking the fleet is healthy and recording every replica's data ...")
            baseline = self._require_healthy(connections)
        targets = {
            n: target_for(inv.host(n), inv.source, self.check.ssh_config) for n in self.watched
        }
        monitor = FloorMonitor(inv, self.sets, targets, self.not_live)
        self.t0 = time.monotonic()
        monitor.start(self.t0)
        try:
            injected = self.inject()
            self.say("healing ...")
            hooks = Hooks(on_check=self.on_check, on_step=self.on_step, on_plan=self.on_plan)
            options = HealOptions(scrub=self.scenario.heal.scrub, probe_pause=1.0)
            healed, _ = heal(self.fleet, self.scope, self.check, [], options, hooks)
        finally:
            floors = monitor.stop()
        ended = self.now()
        self.say("reading every replica's data again ...")
        known = KnownHosts(self.check.own_known_hosts, self.check.user_known_hosts)  # new keys
        with Connections(known, self.check.timeouts) as connections:
            after, _ = self.manifests(connections)
        return self._report(started_at, injected, healed.as_dict(), baseline, after, floors, ended)

    def _report(
        self,
        started_at: str,
        injected: list[dict[str, Any]],
        healed: dict[str, Any],
        baseline: Manifests,
        after: Manifests,
        floors: dict[str, Any],
        ended: float,
    ) -> dict[str, Any]:
        volumes = []
        lost_files = lost_bytes = 0
        for (rs, vol, member), before in sorted(baseline.items()):
            now = after.get((rs, vol, member), {})
            differ = sorted(p for p, e in before.items() if now.get(p) != e)
            extra = sorted(set(now) - set(before))
            size = sum(int(before[p][1] or 0) for p in differ)
            lost_files += len(differ)
            lost_bytes += size
            volumes.append({
                "replica_set": rs, "volume": vol, "host": member, "files": len(before),
                "lost_files": len(differ), "lost_bytes": size, "lost": differ[:20],
                "extra_files": len(extra),
            })  # fmt: skip
        rto_hosts = {
            h: (round(self.recovered[h] - t, 2) if h in self.recovered else None)
            for h, t in sorted(self.broken.items())
        }
        known = [v for v in rto_hosts.values() if v is not None]
        rto = max(known) if known and len(known) == len(rto_hosts) else None
        floor = {
            n: {"min_live": f.min_live, "lowest": f.lowest, "lowest_at": f.lowest_at,
                "held": f.held, "below_seconds": round(f.below_seconds, 2),
                "samples": f.samples}
            for n, f in floors.items()
        }  # fmt: skip
        expect = self.scenario.expect
        floor_ok = all(f["held"] for f in floor.values())
        expectations: list[dict[str, Any]] = [
            {"what": "every host in scope healthy again", "expected": "yes",
             "measured": "yes" if healed["ok"] else "no", "held": bool(healed["ok"])},
            {"what": "recovery time (RTO), seconds", "expected": f"<= {expect.rto_seconds:g}",
             "measured": "never" if rto is None else f"{rto:.1f}",
             "held": rto is not None and rto <= expect.rto_seconds},
            {"what": "data lost (RPO), files", "expected": f"<= {expect.data_loss_files}",
             "measured": f"{lost_files} ({lost_bytes} bytes)",
             "held": lost_files <= expect.data_loss_files},
        ]  # fmt: skip
        if expect.floor_held:
            lowest = ", ".join(f"{n} {f['lowest']}/{f['min_live']}" for n, f in floor.items())
            expectations.append(
                {"what": "no replica set under its floor", "expected": "held",
                 "measured": lowest or "no replica sets", "held": floor_ok}
            )  # fmt: skip
        phases = Counter(e["phase"] for e in self.events)
        return {
            "id": datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6],
            "scenario": self.scenario.model_dump(mode="json"),
            "scenario_file": str(self.path),
            "inventory": str(self.fleet.inventory.source),
            "started_at": started_at,
            "seconds": ended,
            "scope": [h.name for h in self.scope],
            "injected": injected,
            "events": sorted(self.events, key=lambda e: e["t"]),
            "phase_counts": dict(phases),
            "rto": {"overall": rto, "hosts": rto_hosts},
            "rpo": {"files": lost_files, "bytes": lost_bytes, "volumes": volumes},
            "floor": floor,
            "heal": healed,
            "expectations": expectations,
            "passed": all(e["held"] for e in expectations),
        }
