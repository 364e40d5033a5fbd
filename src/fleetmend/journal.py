"""The journal: every run as numbered steps, recorded before and after each one.

A step is marked `running` before it starts and `done` (or `failed`) after it
ends, each in its own transaction, so a run killed at any moment can be resumed
from its first unfinished step. Steps must be idempotent: a step found
`running` on resume was interrupted and is run again.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from fleetmend.audit import actor
from fleetmend.errors import InputError
from fleetmend.statedb import transaction


class RunStatus(StrEnum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"
    """Ran, but did not do its work (it says why in its detail)."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Step:
    run_id: str
    seq: int
    host: str
    name: str
    status: StepStatus
    attempts: int
    started_at: str | None
    finished_at: str | None
    detail: str


@dataclass(frozen=True)
class Run:
    id: str
    kind: str
    created_at: str
    actor: str
    args: dict[str, Any]
    status: RunStatus
    finished_at: str | None


class Journal:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def _tx(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        with transaction(self.db):
            self.db.execute(sql, params)

    def create(self, kind: str, args: dict[str, Any], steps: list[tuple[str, str]]) -> Run:
        """A new run with its steps (host, step name), all pending."""
        run_id = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        with transaction(self.db):
            self.db.execute(
                "INSERT INTO runs (id, kind, created_at, actor, args, status) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, kind, _now(), actor(), json.dumps(args), RunStatus.RUNNING.value),
            )
            self.db.executemany(
                "INSERT INTO steps (run_id, seq, host, name, status) VALUES (?, ?, ?, ?, ?)",
                [(run_id, i, h, n, StepStatus.PENDING.value) for i, (h, n) in enumerate(steps, 1)],
            )
        return self.run(run_id)

    def run(self, run_id: str) -> Run:
        row = self.db.execute(
            "SELECT id, kind, created_at, actor, args, status, finished_at FROM runs WHERE id = ?",
            (run_id,),
        ).fetchone()
        if row is None:
            raise InputError.one("runs", "", f"no run {run_id!r}", "list runs with: fleetmend runs")
        return Run(row[0], row[1], row[2], row[3], json.loads(row[4]), RunStatus(row[5]), row[6])

    def runs(self, limit: int = 20) -> list[Run]:
        ids = self.db.execute("SELECT id FROM runs ORDER BY created_at DESC LIMIT ?", (limit,))
        return [self.run(r[0]) for r in ids.fetchall()]

    def steps(self, run_id: str) -> list[Step]:
        rows = self.db.execute(
            "SELECT run_id, seq, host, name, status, attempts, started_at, finished_at, detail "
            "FROM steps WHERE run_id = ? ORDER BY seq",
            (run_id,),
        ).fetchall()
        return [
            Step(r[0], r[1], r[2], r[3], StepStatus(r[4]), r[5], r[6], r[7], r[8]) for r in rows
        ]

    def start_step(self, run_id: str, seq: int) -> None:
        self._tx(
            "UPDATE steps SET status = ?, attempts = attempts + 1, started_at = ?, detail = '' "
            "WHERE run_id = ? AND seq = ?",
            (StepStatus.RUNNING.value, _now(), run_id, seq),
        )

    def finish_step(
        self,
        run_id: str,
        seq: int,
        detail: str = "",
        *,
        failed: bool = False,
        skipped: bool = False,
    ) -> None:
        status = StepStatus.FAILED if failed else StepStatus.SKIPPED if skipped else StepStatus.DONE
        self._tx(
            "UPDATE steps SET status = ?, finished_at = ?, detail = ? WHERE run_id = ? AND seq = ?",
            (status.value, _now(), detail, run_id, seq),
        )

    def finish_run(self, run_id: str, status: RunStatus) -> None:
        self._tx(
            "UPDATE runs SET status = ?, finished_at = ? WHERE id = ?",
            (status.value, _now(), run_id),
        )

    def reopen(self, run_id: str) -> None:
        """Mark a run running again (resume): failed and interrupted steps go back to pending."""
        with transaction(self.db):
            self.db.execute(
                "UPDATE steps SET status = ? WHERE run_id = ? AND status IN (?, ?)",
                (
                    StepStatus.PENDING.value,
                    run_id,
                    StepStatus.FAILED.value,
                    StepStatus.RUNNING.value,
                ),
            )
            self.db.execute(
                "UPDATE runs SET status = ?, finished_at = NULL WHERE id = ?",
                (RunStatus.RUNNING.value, run_id),
            )
