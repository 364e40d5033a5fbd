"""`heal --watch`: a controller that checks and heals continuously, and says how it is doing.

Level-triggered and idempotent: every tick looks at the fleet as it is now and
heals what is broken; a healthy fleet makes a tick a plain check. A host whose
repair failed is left alone for a back-off that doubles with each failure
(capped); at most `max_repairs_per_hour` repairs start in any hour (counted from
the state database, so a restart does not reset it). On start it first carries
on any heal run a stopped controller left unfinished (the journal knows where).
Its state is exposed as Prometheus metrics: a textfile for node_exporter's
textfile collector, and/or a local HTTP port.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from fleetmend import statedb
from fleetmend.check import CheckOptions
from fleetmend.errors import FleetmendError
from fleetmend.fleet import Fleet
from fleetmend.fsutil import write_atomic
from fleetmend.heal import record
from fleetmend.heal.engine import HealOptions, HealReport, Hooks, heal, resume_interrupted
from fleetmend.inventory import Host
from fleetmend.waivers import Waiver

REPAIR_OUTCOMES = (record.Outcome.OK, record.Outcome.FAILED)


@dataclass(frozen=True)
class WatchOptions:
    interval: float
    max_repairs_per_hour: int = 10
    backoff_max: float = 3600.0
    metrics_file: Path | None = None
    metrics_port: int | None = None


@dataclass
class State:
    ticks: int = 0
    last_tick: float = 0.0
    last_seconds: float = 0.0
    tripped: bool = False
    limited: bool = False
    failures: Counter[str] = field(default_factory=Counter)
    not_before: dict[str, float] = field(default_factory=dict)
    hosts: dict[str, str] = field(default_factory=dict)
    repairs: Counter[tuple[str, str]] = field(default_factory=Counter)
    repairs_last_hour: int = 0
    resumed: list[str] = field(default_factory=list)
    errors: int = 0
    """Ticks that ended in an error (a lock held by another run, a host's helper failing)."""


def metrics(state: State, now: float) -> str:
    """The controller's state in the Prometheus text format."""
    lines = [
        "# HELP fleetmend_heal_ticks_total Controller ticks (check + heal) since start.",
        "# TYPE fleetmend_heal_ticks_total counter",
        f"fleetmend_heal_ticks_total {state.ticks}",
        "# HELP fleetmend_heal_last_tick_timestamp_seconds When the last tick ended.",
        "# TYPE fleetmend_heal_last_tick_timestamp_seconds gauge",
        f"fleetmend_heal_last_tick_timestamp_seconds {state.last_tick:.3f}",
        "# HELP fleetmend_heal_last_tick_duration_seconds How long the last tick took.",
        "# TYPE fleetmend_heal_last_tick_duration_seconds gauge",
        f"fleetmend_heal_last_tick_duration_seconds {state.last_seconds:.3f}",
        "# HELP fleetmend_heal_tick_errors_total Ticks that ended in an error.",
        "# TYPE fleetmend_heal_tick_errors_total counter",
        f"fleetmend_heal_tick_errors_total {state.errors}",
        "# HELP fleetmend_heal_tripped 1 while the trip wire stops every repair.",
        "# TYPE fleetmend_heal_tripped gauge",
        f"fleetmend_heal_tripped {int(state.tripped)}",
        "# HELP fleetmend_heal_rate_limited 1 while the repairs-per-hour limit holds repairs.",
        "# TYPE fleetmend_heal_rate_limited gauge",
        f"fleetmend_heal_rate_limited {int(state.limited)}",
        "# HELP fleetmend_heal_repairs_last_hour Repairs started in the last hour.",
        "# TYPE fleetmend_heal_repairs_last_hour gauge",
        f"fleetmend_heal_repairs_last_hour {state.repairs_last_hour}",
        "# HELP fleetmend_heal_hosts Hosts in scope by their state after the last tick.",
        "# TYPE fleetmend_heal_hosts gauge",
    ]
    counts = Counter(state.hosts.values())
    for name in ("healthy", "healed", "held", "refused", "failed", "backoff"):
        lines.append(f'fleetmend_heal_hosts{{state="{name}"}} {counts.get(name, 0)}')
    lines += [
        "# HELP fleetmend_heal_repairs_total Repairs this controller carried out.",
        "# TYPE fleetmend_heal_repairs_total counter",
    ]
    for (rung, outcome), n in sorted(state.repairs.items()):
        lines.append(f'fleetmend_heal_repairs_total{{rung="{rung}",outcome="{outcome}"}} {n}')
    lines += [
        "# HELP fleetmend_heal_backoff_seconds Seconds until heal tries a host again.",
        "# TYPE fleetmend_heal_backoff_seconds gauge",
    ]
    for host, at in sorted(state.not_before.items()):
        if at > now:
            lines.append(f'fleetmend_heal_backoff_seconds{{host="{host}"}} {at - now:.1f}')
    return "\n".join(lines) + "\n"


class _Exporter:
    """Serves the latest metrics on 127.0.0.1:PORT/metrics from a thread."""

    def __init__(self, port: int) -> None:
        self.text = ""
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = exporter.text.encode()
                self.send_response(200 if self.path in ("/", "/metrics") else 404)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Controller:
    def __init__(
        self,
        fleet: Fleet,
        targets: list[Host],
        check: CheckOptions,
        waivers: list[Waiver],
        heal_options: HealOptions,
        options: WatchOptions,
        hooks: Hooks | None = None,
        on_tick: Callable[[State, HealReport], None] | None = None,
        on_error: Callable[[FleetmendError], None] | None = None,
    ) -> None:
        self.fleet, self.targets, self.check, self.waivers = fleet, targets, check, waivers
        self.heal_options, self.options = heal_options, options
        self.hooks = hooks or Hooks()
        self.on_tick = on_tick
        self.on_error = on_error
        self.state = State()
        self.stop = threading.Event()
        self.exporter = None
        if options.metrics_port:
            try:
                self.exporter = _Exporter(options.metrics_port)
            except OSError as exc:
                raise FleetmendError(
                    f"cannot serve metrics on 127.0.0.1:{options.metrics_port}: {exc.strerror}",
                    "pick a free port with --metrics-port",
                ) from None

    def publish(self) -> None:
        text = metrics(self.state, time.time())
        if self.options.metrics_file is not None:
            try:
                write_atomic(self.options.metrics_file, text)
            except OSError as exc:
                raise FleetmendError(
                    f"cannot write the metrics file {self.options.metrics_file}: {exc.strerror}",
                    "give --metrics-file a path this user may write",
                ) from None
        if self.exporter is not None:
            self.exporter.text = text

    def _repairs_last_hour(self) -> int:
        with closing(statedb.connect(self.check.state_dir)) as db:
            return sum(1 for r in record.since(db, 3600) if r.outcome in REPAIR_OUTCOMES)

    def tick(self) -> HealReport:
        started, now = time.monotonic(), time.time()
        s = self.state
        waiting = {h for h, at in s.not_before.items() if at > now}
        targets = [t for t in self.targets if t.name not in waiting]
        s.repairs_last_hour = self._repairs_last_hour()
        s.limited = s.repairs_last_hour >= self.options.max_repairs_per_hour
        report, _ = heal(
            self.fleet, targets, self.check, self.waivers, self.heal_options, self.hooks,
            dry_run=s.limited,
        )  # fmt: skip
        for name, outcome in report.hosts.items():
            for rung, ok, _detail in outcome.rungs:
                if rung != "retry-probe":
                    s.repairs[(rung, "ok" if ok else "failed")] += 1
            if outcome.state in ("healthy", "healed"):
                s.failures.pop(name, None)
                s.not_before.pop(name, None)
            elif outcome.state in ("failed", "held") and not s.limited:
                s.failures[name] += 1
                backoff = self.options.interval * 2 ** s.failures[name]
                s.not_before[name] = now + min(backoff, self.options.backoff_max)
        s.hosts = {n: o.state for n, o in report.hosts.items()}
        s.hosts.update(dict.fromkeys(waiting, "backoff"))
        s.tripped = report.tripped
        s.ticks += 1
        s.last_tick, s.last_seconds = time.time(), time.monotonic() - started
        self.publish()
        if self.on_tick:
            self.on_tick(s, report)
        return report

    def run(self) -> None:
        """Until `stop` is set: resume what a stopped controller left, then tick every interval."""
        self.publish()
        try:
            self.state.resumed = resume_interrupted(self.fleet, self.check, self.hooks)
            while not self.stop.is_set():
                began = time.monotonic()
                try:
                    self.tick()
                except FleetmendError as exc:  # a controller outlives one bad tick
                    self.state.errors += 1
                    self.publish()
                    if self.on_error:
                        self.on_error(exc)
                self.stop.wait(max(0.0, self.options.interval - (time.monotonic() - began)))
        finally:
            if self.exporter is not None:
                self.exporter.close()
