"""Check results over time: store each check, and tell since when a host is as it is."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass

from fleetmend.check import CheckReport
from fleetmend.drift import Verdict
from fleetmend.statedb import transaction


def record(db: sqlite3.Connection, report: CheckReport) -> int:
    """Store a check and its per-host results; returns the check's id."""
    counts = {v.value: n for v, n in report.counts().items()}
    with transaction(db):
        cur = db.execute(
            "INSERT INTO checks (started_at, seconds, source, counts) VALUES (?, ?, ?, ?)",
            (report.started_at, report.seconds, report.source, json.dumps(counts)),
        )
        check_id = int(cur.lastrowid or 0)
        db.executemany(
            "INSERT INTO check_hosts (check_id, host, verdict, reason, detail, items) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [
                (
                    check_id,
                    h.host,
                    h.verdict.value,
                    h.reason,
                    h.detail,
                    json.dumps([i.model_dump(mode="json") for i in h.items]),
                )
                for h in report.hosts
            ],
        )
    return check_id


@dataclass(frozen=True)
class Entry:
    check_id: int
    at: str
    verdict: Verdict
    reason: str | None
    detail: str
    items: list[dict[str, object]]

    @property
    def counted(self) -> list[dict[str, object]]:
        return [i for i in self.items if not i.get("waived")]


def host_history(db: sqlite3.Connection, host: str, limit: int = 50) -> list[Entry]:
    """The host's last `limit` check results, newest first."""
    rows = db.execute(
        "SELECT c.id, c.started_at, h.verdict, h.reason, h.detail, h.items "
        "FROM check_hosts h JOIN checks c ON c.id = h.check_id "
        "WHERE h.host = ? ORDER BY c.id DESC LIMIT ?",
        (host, limit),
    ).fetchall()
    return [Entry(r[0], r[1], Verdict(r[2]), r[3], r[4], json.loads(r[5])) for r in rows]


def since(entries: list[Entry]) -> Entry | None:
    """The oldest entry of the newest run of entries with the current verdict.

    For a host drifted in its last three checks, that is when it started drifting.
    """
    if not entries:
        return None
    current = entries[0]
    first = current
    for entry in entries[1:]:
        if entry.verdict is not current.verdict:
            break
        first = entry
    return first
