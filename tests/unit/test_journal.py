"""Journal, locks and audit chain against a real SQLite state database."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from fleetmend import audit, locks, statedb
from fleetmend.check import CheckOptions
from fleetmend.journal import Journal, RunStatus, StepStatus
from fleetmend.transport.ssh import Timeouts


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    with closing(statedb.connect(tmp_path)) as conn:
        yield conn


def test_steps_are_recorded_before_and_after(db: sqlite3.Connection) -> None:
    journal = Journal(db)
    run = journal.create(
        "rebuild", {"hosts": ["kv-1"]}, [("kv-1", "reimage"), ("kv-1", "converge")]
    )
    assert [s.status for s in journal.steps(run.id)] == [StepStatus.PENDING] * 2
    journal.start_step(run.id, 1)
    journal.finish_step(run.id, 1, "new key SHA256:x")
    journal.start_step(run.id, 2)  # ... and the process dies here
    steps = journal.steps(run.id)
    assert [(s.status, s.attempts) for s in steps] == [
        (StepStatus.DONE, 1),
        (StepStatus.RUNNING, 1),
    ]
    journal.reopen(run.id)
    steps = journal.steps(run.id)
    assert [s.status for s in steps] == [StepStatus.DONE, StepStatus.PENDING]
    journal.start_step(run.id, 2)
    journal.finish_step(run.id, 2)
    journal.finish_run(run.id, RunStatus.DONE)
    assert journal.run(run.id).status is RunStatus.DONE
    assert journal.steps(run.id)[1].attempts == 2
    assert journal.runs()[0].id == run.id


def test_a_run_keeps_how_hosts_were_reached(db: sqlite3.Connection, tmp_path: Path) -> None:
    """`resume` reaches hosts as the run started: forks, timeouts, SSH config, trust."""
    started = CheckOptions(
        tmp_path, forks=3, timeouts=Timeouts(connect=2.5, command=45), accept_new=True,
        ssh_config=Path("cfg"),
    )  # fmt: skip
    journal = Journal(db)
    run = journal.create("rebuild", {"connect": started.saved()}, [("kv-1", "reimage")])
    resumed = CheckOptions.restored(tmp_path, journal.run(run.id).args["connect"])
    assert resumed.forks == 3 and resumed.accept_new
    assert resumed.timeouts == Timeouts(connect=2.5, command=45)
    assert resumed.ssh_config == Path.cwd() / "cfg"  # resumable from any directory
    unset = CheckOptions.restored(tmp_path, {"ssh_config": None})
    assert unset.ssh_config is None and unset.timeouts == Timeouts()
    assert CheckOptions.restored(tmp_path, {}) == CheckOptions(tmp_path)  # runs from before


def test_a_held_lock_names_its_holder(db: sqlite3.Connection, tmp_path: Path) -> None:
    locks.acquire(db, ["replica-set:kv-lab", "host:kv-1"], "run-a")
    with closing(statedb.connect(tmp_path)) as other:
        with pytest.raises(locks.LockHeld, match="replica-set:kv-lab is locked by run run-a"):
            locks.acquire(other, ["replica-set:kv-lab", "host:kv-2"], "run-b")
        assert [h.name for h in locks.holders(other)] == [
            "host:kv-1",
            "replica-set:kv-lab",
        ]  # all or none
    locks.acquire(db, ["host:kv-1"], "run-a")  # re-entrant for the same owner
    locks.release(db, "run-a")
    assert locks.holders(db) == []


def test_a_dead_holders_lock_is_taken_over_and_audited(db: sqlite3.Connection) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    pid = int(dead.stdout)
    db.execute(
        "INSERT INTO locks VALUES "
        "('replica-set:kv-lab', 'run-dead', ?, ?, 0, strftime('%s','now'))",
        (pid, socket.gethostname()),
    )
    locks.acquire(db, ["replica-set:kv-lab"], "run-new")
    assert [h.owner for h in locks.holders(db)] == ["run-new"]
    (entry,) = audit.entries(db)
    assert (entry.action, entry.target) == ("lock-takeover", "replica-set:kv-lab")


def test_audit_chain_detects_edits_and_removals(db: sqlite3.Connection, tmp_path: Path) -> None:
    for i in range(4):
        audit.append(db, "rebuild", f"kv-{i}", reason="volume unhealthy")
    assert audit.verify(db) == (4, None)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("UPDATE audit SET reason = 'nothing to see' WHERE seq = 2")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("DELETE FROM audit WHERE seq = 3")
    # someone with the file bypasses the triggers
    db.execute("DROP TRIGGER audit_no_update")
    db.execute("UPDATE audit SET reason = 'nothing to see' WHERE seq = 2")
    count, problem = audit.verify(db)
    assert (count, problem) == (1, "entry 2 was edited after it was written")
    db.execute("UPDATE audit SET reason = 'volume unhealthy' WHERE seq = 2")
    db.execute("DROP TRIGGER audit_no_delete")
    db.execute("DELETE FROM audit WHERE seq = 3")
    count, problem = audit.verify(db)
    assert count == 2 and problem == "entry 3 is missing (next is 4)"
