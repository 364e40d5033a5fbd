"""Heal's memory across runs, in the state database: every repair tried, and who is held.

A host is held for a person when its ladder was used up (`exhausted`), or when
`max_failures` repairs of it failed within the window: rebuilding it again and
again would hide a cause a person must find. `release` (audited) lets heal try
again; failures before a release no longer count.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from enum import StrEnum

from fleetmend import audit
from fleetmend.statedb import transaction


class Outcome(StrEnum):
    OK = "ok"
    FAILED = "failed"
    EXHAUSTED = "exhausted"
    """The host used every rung it may use: held for a person."""
    RELEASED = "released"
    """A person looked: heal may act on the host again."""


@dataclass(frozen=True)
class Repair:
    at: float
    host: str
    rung: str
    outcome: Outcome
    run_id: str | None
    detail: str


def add(
    db: sqlite3.Connection,
    host: str,
    rung: str,
    outcome: Outcome,
    run_id: str | None = None,
    detail: str = "",
) -> None:
    with transaction(db):
        db.execute(
            "INSERT INTO repairs (at, host, rung, outcome, run_id, detail) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (time.time(), host, rung, outcome.value, run_id, detail),
        )


def since(db: sqlite3.Connection, seconds: float, host: str | None = None) -> list[Repair]:
    """Repairs of the last `seconds` (of one host, or all), oldest first."""
    sql = "SELECT at, host, rung, outcome, run_id, detail FROM repairs WHERE at >= ?"
    params: tuple[object, ...] = (time.time() - seconds,)
    if host is not None:
        sql += " AND host = ?"
        params += (host,)
    rows = db.execute(sql + " ORDER BY seq", params).fetchall()
    return [Repair(r[0], r[1], r[2], Outcome(r[3]), r[4], r[5]) for r in rows]


def held(db: sqlite3.Connection, host: str, max_failures: int, window: float) -> str | None:
    """Why `host` waits for a person, or None when heal may act on it."""
    rows = db.execute(
        "SELECT at, rung, outcome, detail FROM repairs WHERE host = ? AND at >= "
        "COALESCE((SELECT MAX(at) FROM repairs WHERE host = ? AND outcome = 'released'), 0) "
        "ORDER BY seq",
        (host, host),
    ).fetchall()
    exhausted = [r for r in rows if r[2] == Outcome.EXHAUSTED.value]
    if exhausted:
        return f"its repair ladder was used up ({exhausted[-1][3]})"
    cutoff = time.time() - window
    failed = [r for r in rows if r[2] == Outcome.FAILED.value and r[0] >= cutoff]
    if len(failed) >= max_failures:
        return (
            f"{len(failed)} repairs failed in the last {window / 3600:g}h "
            f"(last: {failed[-1][1]}: {failed[-1][3][:120]})"
        )
    return None


def release(db: sqlite3.Connection, host: str, reason: str) -> None:
    add(db, host, "-", Outcome.RELEASED, detail=reason)
    audit.append(db, "heal-release", host, reason=reason, detail="heal may act on it again")
