"""Hashes fleetmend remembers of each copy's files, so a source hashes only what changed.

Every whole manifest fleetmend reads of a volume (the one a re-seed's source
streams, source selection's, scrub's) is kept in the state database: per file,
its stat key (device, inode, size, mtime, ctime) and its sha256. The next
re-seed from that host sends the source what it remembers; the source hashes
only files whose stat key changed and takes the remembered hash for the rest
(so a hash is carried forward for as long as its file's stat stays the same).

This is safe because of where the hashes are used. A remembered hash is only
ever what the target verifies against: a file the target keeps is hashed on the
target, a file it receives is hashed as it arrives. A source file that rotted
since (same stat, other bytes) cannot reach the target: it fails verification,
with a message saying the hash was remembered. What it gives up is finding that
rot at the source before the transfer. Choosing a source by majority, and
scrub, always hash everything (`manifest()`), and `--rehash` forces a full hash.

The helpers mark a file rememberable only when its times stood still for
SETTLE seconds before the walk and while it was hashed. Two kinds of write
leave the times as they were: a second write within the clock's tick (a few
milliseconds), and writes to a page of a shared memory map until the kernel
writes that page back (30 s by default, dirty_expire_centisecs); the next write
after that moves them again. SETTLE outlasts both.
"""

from __future__ import annotations

import json
import time
import zlib
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleetmend import statedb

SETTLE = 60.0
"""Seconds a file's times must have stood still before its hash may be remembered."""

Known = dict[str, list[Any]]
"""path in the volume -> [device, inode, size, mtime_ns, ctime_ns, sha256]."""


def known_of(entries: list[dict[str, Any]]) -> Known:
    """What of a manifest may be remembered: files the helper gave a stat key."""
    return {
        e["p"]: [*e["k"], e["h"]]
        for e in entries
        if e.get("t") == "f" and isinstance(e.get("k"), list) and len(e["k"]) == 5
    }


@dataclass(frozen=True)
class HashMemory:
    """The remembered hashes in the state directory's database."""

    state_dir: Path

    def recall(self, host: str, path: str) -> Known:
        with closing(statedb.connect(self.state_dir)) as db:
            row = db.execute(
                "SELECT entries FROM hashes WHERE host = ? AND path = ?", (host, path)
            ).fetchone()
        if row is None:
            return {}
        try:
            known = json.loads(zlib.decompress(row["entries"]))
        except (zlib.error, ValueError):
            return {}  # unreadable: hashing everything is always right
        return known if isinstance(known, dict) else {}

    def remember(self, host: str, path: str, entries: list[dict[str, Any]]) -> None:
        """Keep what a full manifest of `host`'s `path` says (replacing the last one)."""
        blob = zlib.compress(json.dumps(known_of(entries)).encode(), 1)
        with closing(statedb.connect(self.state_dir)) as db, statedb.transaction(db):
            db.execute(
                "INSERT OR REPLACE INTO hashes (host, path, taken_at, entries) VALUES (?, ?, ?, ?)",
                (host, path, time.time(), blob),
            )
