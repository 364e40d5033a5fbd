"""Locks on hosts and replica sets, held in the state database by a run.

A lock names its owner (a run id), the process and machine holding it, and a
heartbeat. A second operator trying to take a held lock is refused, naming the
holder. A lock whose holder is gone (its process no longer exists on this
machine, or its heartbeat is older than the time-to-live) is taken over, and
the takeover is audited.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import time
from dataclasses import dataclass

from fleetmend import audit
from fleetmend.errors import ExitCode, FleetmendError
from fleetmend.statedb import transaction

TTL = 120.0
"""Seconds without a heartbeat after which a lock is considered abandoned."""


class LockHeld(FleetmendError):
    """Another run holds a lock this run needs."""

    exit_code = ExitCode.REFUSED


_COLUMNS = "name, owner, pid, machine, acquired_at, heartbeat_at"


@dataclass(frozen=True)
class Holder:
    name: str
    owner: str
    pid: int
    machine: str
    acquired_at: float
    heartbeat_at: float


def _alive(holder: Holder) -> bool:
    if holder.machine != socket.gethostname():
        return True  # cannot see another machine's processes: trust the heartbeat
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def holders(db: sqlite3.Connection) -> list[Holder]:
    rows = db.execute(f"SELECT {_COLUMNS} FROM locks ORDER BY name").fetchall()
    return [Holder(*r) for r in rows]


def acquire(db: sqlite3.Connection, names: list[str], owner: str, ttl: float = TTL) -> None:
    """Take every lock in `names` for `owner`, all or none; `LockHeld` names the holder."""
    now = time.time()
    taken_over = []
    with transaction(db):
        for name in sorted(set(names)):
            row = db.execute(
                f"SELECT {_COLUMNS} FROM locks WHERE name = ?",
                (name,),
            ).fetchone()
            if row is not None:
                holder = Holder(*row)
                if holder.owner == owner:  # the same run again (resume): now this process
                    db.execute(
                        "UPDATE locks SET pid = ?, machine = ?, heartbeat_at = ? WHERE name = ?",
                        (os.getpid(), socket.gethostname(), now, name),
                    )
                    continue
                stale = now - holder.heartbeat_at > ttl or not _alive(holder)
                if not stale:
                    raise LockHeld(
                        f"{name} is locked by run {holder.owner} (pid {holder.pid} on "
                        f"{holder.machine}, since {time.ctime(holder.acquired_at)})",
                        "wait for that run to finish, or look at it: fleetmend runs show "
                        + holder.owner,
                    )
                taken_over.append(holder)
            db.execute(
                f"INSERT OR REPLACE INTO locks ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                (name, owner, os.getpid(), socket.gethostname(), now, now),
            )
    for holder in taken_over:
        audit.append(
            db,
            "lock-takeover",
            holder.name,
            reason=f"holder run {holder.owner} (pid {holder.pid}) is gone",
            detail=f"taken by run {owner}",
        )


def abandoned(db: sqlite3.Connection, owner: str, ttl: float = TTL) -> bool:
    """True when no live process holds a lock for `owner` (a run someone must resume)."""
    now = time.time()
    rows = db.execute(f"SELECT {_COLUMNS} FROM locks WHERE owner = ?", (owner,)).fetchall()
    return all(now - h.heartbeat_at > ttl or not _alive(h) for h in (Holder(*r) for r in rows))


def heartbeat(db: sqlite3.Connection, owner: str) -> None:
    db.execute("UPDATE locks SET heartbeat_at = ? WHERE owner = ?", (time.time(), owner))


def release(db: sqlite3.Connection, owner: str) -> None:
    db.execute("DELETE FROM locks WHERE owner = ?", (owner,))
