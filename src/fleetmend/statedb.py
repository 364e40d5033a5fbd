"""The state database: one SQLite file in the state directory, migrated in place.

Check results live here now; the journal, locks and audit log of later stages
join it as new migrations (never by editing an old one).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from fleetmend.errors import FleetmendError, display_path

MIGRATIONS: list[str] = [
    # 1: check results, for `fleetmend history`
    """
    CREATE TABLE checks (
        id INTEGER PRIMARY KEY,
        started_at TEXT NOT NULL,
        seconds REAL NOT NULL,
        source TEXT NOT NULL,
        counts TEXT NOT NULL
    );
    CREATE TABLE check_hosts (
        check_id INTEGER NOT NULL REFERENCES checks(id),
        host TEXT NOT NULL,
        verdict TEXT NOT NULL,
        reason TEXT,
        detail TEXT NOT NULL,
        items TEXT NOT NULL,
        PRIMARY KEY (check_id, host)
    );
    CREATE INDEX check_hosts_by_host ON check_hosts(host, check_id);
    """,
    # 2: the journal of runs and their steps, locks, and the audit chain
    """
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        created_at TEXT NOT NULL,
        actor TEXT NOT NULL,
        args TEXT NOT NULL,
        status TEXT NOT NULL,
        finished_at TEXT
    );
    CREATE TABLE steps (
        run_id TEXT NOT NULL REFERENCES runs(id),
        seq INTEGER NOT NULL,
        host TEXT NOT NULL,
        name TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        started_at TEXT,
        finished_at TEXT,
        detail TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (run_id, seq)
    );
    CREATE TABLE locks (
        name TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        pid INTEGER NOT NULL,
        machine TEXT NOT NULL,
        acquired_at REAL NOT NULL,
        heartbeat_at REAL NOT NULL
    );
    CREATE TABLE audit (
        seq INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        reason TEXT NOT NULL,
        detail TEXT NOT NULL,
        prev TEXT NOT NULL,
        hash TEXT NOT NULL
    );
    CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    """,
    # 3: heal's repair history (retry budgets, hosts held for a person) and drills
    """
    CREATE TABLE repairs (
        seq INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        host TEXT NOT NULL,
        rung TEXT NOT NULL,
        outcome TEXT NOT NULL,
        run_id TEXT,
        detail TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX repairs_by_host ON repairs(host, at);
    CREATE TABLE drills (
        id TEXT PRIMARY KEY,
        scenario TEXT NOT NULL,
        started_at TEXT NOT NULL,
        passed INTEGER NOT NULL,
        report TEXT NOT NULL
    );
    """,
    # 4: the hashes of each copy's files, by stat key (reseed/memory.py)
    """
    CREATE TABLE hashes (
        host TEXT NOT NULL,
        path TEXT NOT NULL,
        taken_at REAL NOT NULL,
        entries BLOB NOT NULL,
        PRIMARY KEY (host, path)
    );
    """,
]


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction, taken at once (BEGIN IMMEDIATE): committed, or rolled back."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


class StateError(FleetmendError):
    """The state database cannot be opened or migrated."""


def connect(state_dir: Path) -> sqlite3.Connection:
    """Open (creating and migrating as needed) the state database of `state_dir`."""
    path = state_dir / "state.db"
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        return _open(path)
    except (sqlite3.Error, OSError) as exc:
        raise StateError(
            f"cannot open the state database {display_path(path)}: {exc}",
            "check --state-dir (FLEETMEND_STATE_DIR) and its permissions",
        ) from None


def _open(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA foreign_keys=ON")
    version = db.execute("PRAGMA user_version").fetchone()[0]
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        # one transaction per migration, the version bump included
        try:
            db.executescript(f"BEGIN IMMEDIATE; {script}; PRAGMA user_version = {number}; COMMIT;")
        except sqlite3.Error:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
    return db
