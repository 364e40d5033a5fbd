"""The helpers, run here as a host runs them: SENDER's frames and its end, HASH's death."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from fleetmend.reseed.exchange import SHRANK, failure
from fleetmend.reseed.helpers import HASH, SENDER


@pytest.fixture
def start() -> Iterator[Callable[[Path], subprocess.Popen[bytes]]]:
    """Starts SENDER in manifest mode in a volume; ends it after the test, also a hung one."""
    started: list[subprocess.Popen[bytes]] = []

    def run(volume: Path) -> subprocess.Popen[bytes]:
        started.append(
            subprocess.Popen(
                [sys.executable, "-c", SENDER, "[]", "manifest"],
                cwd=volume,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        )
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


def test_manifest_then_the_asked_file_then_end(
    tmp_path: Path, start: Callable[[Path], subprocess.Popen[bytes]]
) -> None:
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


def test_a_receiver_gone_ends_the_sender(
    tmp_path: Path, start: Callable[[Path], subprocess.Popen[bytes]]
) -> None:
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
