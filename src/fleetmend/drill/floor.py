"""Watch every replica set's live copies through a drill: was the floor ever broken?

A copy counts as live when its host answers SSH (a banner within the probe
timeout), it is not a host the drill broke and has not yet seen recovered, and
it is not in a step that takes its data offline (reimage, wait-ssh, reseed).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fleetmend.inventory import Inventory
from fleetmend.transport.ssh import answers_ssh
from fleetmend.transport.target import Target

OFFLINE_STEPS = frozenset({"reimage", "wait-ssh", "reseed"})


@dataclass
class SetFloor:
    name: str
    min_live: int
    members: list[str]
    lowest: int
    lowest_at: float = 0.0
    below_seconds: float = 0.0
    samples: list[tuple[float, int]] = field(default_factory=list)

    @property
    def held(self) -> bool:
        return self.lowest >= self.min_live


class FloorMonitor:
    """Samples every `period` seconds from a thread until `stop()`."""

    def __init__(
        self,
        inventory: Inventory,
        sets: list[str],
        targets: dict[str, Target],
        not_live: Callable[[], set[str]],
        period: float = 0.5,
    ) -> None:
        self.targets = targets
        self.not_live = not_live
        self.period = period
        self.sets = {
            n: SetFloor(
                n,
                inventory.replica_sets[n].min_live,
                list(inventory.replica_sets[n].members),
                lowest=len(inventory.replica_sets[n].members),
            )
            for n in sets
        }
        self.t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self, t0: float) -> None:
        self.t0 = t0
        self._thread.start()

    def stop(self) -> dict[str, SetFloor]:
        self._stop.set()
        self._thread.join()
        return self.sets

    def sample(self) -> None:
        now = time.monotonic() - self.t0
        out = self.not_live()
        for rs in self.sets.values():
            live = sum(
                1
                for m in rs.members
                if m not in out
                and m in self.targets
                and answers_ssh(self.targets[m].address, self.targets[m].port, timeout=0.5)
            )
            if rs.samples and rs.samples[-1][1] < rs.min_live:
                rs.below_seconds += now - rs.samples[-1][0]
            rs.samples.append((round(now, 2), live))
            if live < rs.lowest:
                rs.lowest, rs.lowest_at = live, round(now, 2)

    def _loop(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(self.period):
                self.sample()
                return
