"""The audit log: every destructive action and override, append-only and hash-chained.

Each entry's hash covers its content and the previous entry's hash, so editing
or removing any entry breaks the chain from there on; `verify` says where.
Triggers refuse UPDATE and DELETE through SQLite; the chain catches what
bypasses them (an edited file).
"""

from __future__ import annotations

import getpass
import hashlib
import json
import socket
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime

from fleetmend.statedb import transaction

GENESIS = "0" * 64


def actor() -> str:
    """Who acts: user@machine, as an SRE reading the log would want it."""
    return f"{getpass.getuser()}@{socket.gethostname()}"


def _digest(
    prev: str, at: str, who: str, action: str, target: str, reason: str, detail: str
) -> str:
    body = json.dumps([prev, at, who, action, target, reason, detail], separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


def append(
    db: sqlite3.Connection, action: str, target: str, reason: str = "", detail: str = ""
) -> str:
    """Add one entry chained to the last; returns its hash."""
    at = datetime.now(UTC).isoformat(timespec="seconds")
    who = actor()
    with transaction(db):
        row = db.execute("SELECT hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        prev = row[0] if row else GENESIS
        digest = _digest(prev, at, who, action, target, reason, detail)
        db.execute(
            "INSERT INTO audit (at, actor, action, target, reason, detail, prev, hash) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (at, who, action, target, reason, detail, prev, digest),
        )
    return digest


@dataclass(frozen=True)
class Entry:
    seq: int
    at: str
    actor: str
    action: str
    target: str
    reason: str
    detail: str


def entries(db: sqlite3.Connection, limit: int = 100) -> list[Entry]:
    rows = db.execute(
        "SELECT seq, at, actor, action, target, reason, detail FROM audit "
        "ORDER BY seq DESC LIMIT ?",
        (limit,),
    ).fetchall()
    return [Entry(*r) for r in rows]


def verify(db: sqlite3.Connection) -> tuple[int, str | None]:
    """(entries checked, None) when the chain is whole, else the first problem found."""
    prev = GENESIS
    expected_seq = None
    count = 0
    for row in db.execute(
        "SELECT seq, at, actor, action, target, reason, detail, prev, hash FROM audit ORDER BY seq"
    ):
        seq, at, who, action, target, reason, detail, stored_prev, stored = row
        if expected_seq is not None and seq != expected_seq:
            return count, f"entry {expected_seq} is missing (next is {seq})"
        if stored_prev != prev:
            return (
                count,
                f"entry {seq} does not follow entry {seq - 1}: an entry was removed or replaced",
            )
        if _digest(prev, at, who, action, target, reason, detail) != stored:
            return count, f"entry {seq} was edited after it was written"
        prev, expected_seq = stored, seq + 1
        count += 1
    return count, None
