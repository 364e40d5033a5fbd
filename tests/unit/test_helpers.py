"""The helpers, run here as a host runs them: SENDER's frames, its end and the hashes
it takes from fleetmend's memory, HASH's death; and that memory itself (real SQLite)."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from fleetmend.reseed.exchange import SHRANK, failure
from fleetmend.reseed.helpers import HASH, SENDER
from fleetmend.reseed.memory import HashMemory, Known

Start = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def start() -> Iterator[Start]:
    """Starts SENDER in manifest mode in a volume, telling it the hashes fleetmend
    remembers (`known`) and to remember files settled for 2 s; ends it after the
    test, also a hung one."""
    started: list[subprocess.Popen[bytes]] = []

    def run(volume: Path, known: Known | None = None) -> subprocess.Popen[bytes]:
        started.append(
            subprocess.Popen(
                [sys.executable, "-c", SENDER, "[]", "manifest"],
                cwd=volume,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        )
        assert started[-1].stdin is not None
        first = {"known": known or {}, "settle": 2}
        started[-1].stdin.write((json.dumps(first) + "\n").encode())
        started[-1].stdin.flush()
        return started[-1]

    yield run
    for proc in started:
        proc.kill()
        proc.wait()
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None and not pipe.closed:
                pipe.close()


def frames(out: IO[bytes]) -> Any:
    """(header, content) pairs as the receiver reads them."""
    while raw := out.read(4):
        head = json.loads(out.read(struct.unpack(">I", raw)[0]))
        yield head, out.read(head["size"]) if "path" in head else b""


def test_manifest_then_the_asked_file_then_end(tmp_path: Path, start: Start) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "big").write_bytes(os.urandom(300_000))
    (tmp_path / "small").write_bytes(b"x")
    sender = start(tmp_path)
    assert sender.stdin is not None and sender.stdout is not None
    entries: list[dict[str, Any]] = []
    received = {}
    for head, content in frames(sender.stdout):
        if "entries" in head:
            entries += head["entries"]
        elif head.get("manifest_end"):
            sender.stdin.write(b'{"want": ["d/big"]}\n{"done": true}\n')
            sender.stdin.close()
        elif "path" in head:
            received[head["path"]] = content
        elif head.get("end"):
            break
    assert sender.wait(timeout=30) == 0
    assert [e["p"] for e in entries] == ["d", "small", "d/big"]  # os.walk's order, sorted
    big = (tmp_path / "d" / "big").read_bytes()
    assert entries[2]["h"] == hashlib.sha256(big).hexdigest()
    assert received == {"d/big": big}


def test_a_receiver_gone_ends_the_sender(tmp_path: Path, start: Start) -> None:
    """Nobody reads its frames or asks any more: it must end, not wait on a busy source."""
    for i in range(30_000):  # more batches (of 100) than its queue holds (256)
        (tmp_path / f"f{i}").write_bytes(b"y")
    sender = start(tmp_path)
    assert sender.stdin is not None and sender.stdout is not None
    sender.stdout.close()
    sender.stdin.close()
    assert sender.wait(timeout=30) != 0


def test_a_file_truncated_while_hashed_says_so(tmp_path: Path) -> None:
    """A file truncated under the hash's mmap kills it with SIGBUS (Python cannot catch
    that); what it leaves on stderr must tell fleetmend, and the operator, why."""
    big = tmp_path / "big"
    with big.open("wb") as f:
        f.truncate(65 << 20)  # more than one 64 MiB slice: the hash ticks in between
    script = HASH + "def tick(): os.truncate(sys.argv[1], 0)\nimport sys\nsha(sys.argv[1])\n"
    done = subprocess.run([sys.executable, "-c", script, str(big)], capture_output=True, text=True)
    assert done.returncode == -7, done  # SIGBUS
    assert failure(done.stderr) == SHRANK


def test_other_failures_keep_their_words() -> None:
    assert failure("Traceback ...\nPermissionError: [Errno 13] denied: 'x'\n").endswith("'x'")


def _manifest(sender: subprocess.Popen[bytes]) -> dict[str, dict[str, Any]]:
    """The entries a sender streams, by path; it is told nothing is wanted."""
    assert sender.stdin is not None and sender.stdout is not None
    entries: dict[str, dict[str, Any]] = {}
    for head, _ in frames(sender.stdout):
        if "entries" in head:
            entries.update((e["p"], e) for e in head["entries"])
        elif head.get("manifest_end"):
            sender.stdin.write(b'{"done": true}\n')
            sender.stdin.close()
        elif head.get("end"):
            break
    assert sender.wait(timeout=30) == 0
    return entries


def test_a_remembered_hash_stands_only_while_the_file_is_untouched(
    tmp_path: Path, start: Start
) -> None:
    """The source hashes a file again as soon as its size, times or inode changed;
    a file written moments ago is never remembered (a write within the clock's tick
    would not show in its times), one settled for as long as it is told is."""
    for name in ("same", "written", "replaced"):
        (tmp_path / name).write_bytes(name.encode())
    time.sleep(2.1)
    (tmp_path / "fresh").write_bytes(b"fresh")
    first = _manifest(start(tmp_path))
    assert "k" not in first["fresh"]
    assert {e["p"] for e in first.values() if "k" in e} == {"same", "written", "replaced"}
    known: Known = {p: [*e["k"], "0" * 64] for p, e in first.items() if "k" in e}  # a lie
    (tmp_path / "written").write_bytes(b"WRITTEN")  # same size, new times
    (tmp_path / "replaced.new").write_bytes(b"replaced")
    (tmp_path / "replaced.new").replace(tmp_path / "replaced")  # same bytes, new inode
    second = _manifest(start(tmp_path, known))
    assert second["same"]["h"] == "0" * 64 and second["same"]["r"] == 1  # taken, not hashed
    for name, content in (("written", b"WRITTEN"), ("replaced", b"replaced")):
        assert second[name]["h"] == hashlib.sha256(content).hexdigest()
        assert "r" not in second[name]


def test_the_memory_keeps_the_last_full_manifest_per_copy(tmp_path: Path) -> None:
    memory = HashMemory(tmp_path / "state")
    assert memory.recall("a", "/srv/data") == {}
    key = [1, 2, 3, 4, 5]
    entries: list[dict[str, Any]] = [
        {"p": "d", "t": "d"},
        {"p": "f", "t": "f", "s": 3, "h": "1" * 64, "k": key},
        {"p": "new", "t": "f", "s": 3, "h": "2" * 64},  # no stat key: not rememberable
        {"p": "l", "t": "l", "l": "f"},
    ]
    memory.remember("a", "/srv/data", entries)
    memory.remember("b", "/srv/data", [{**entries[1], "h": "3" * 64}])
    assert memory.recall("a", "/srv/data") == {"f": [*key, "1" * 64]}
    assert memory.recall("a", "/srv/other") == {}
    memory.remember("a", "/srv/data", entries[:1])  # a later manifest replaces it whole
    assert memory.recall("a", "/srv/data") == {}
    assert memory.recall("b", "/srv/data") == {"f": [*key, "3" * 64]}
