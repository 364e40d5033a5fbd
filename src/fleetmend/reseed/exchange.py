"""How the source's SENDER and the target's RECEIVER talk, always through fleetmend.

The source's frames go on to the target; the target's asks (JSON lines) go back
to the source. The hosts never talk to each other and need no trust in each other.
Two carriers:

- the open paramiko connections (`exchange_paramiko`): no new key exchange, so
  a small delta starts at once; Python relays the bytes (about 50 MB/s here),
  with a rate limit and fault injection when asked;
- two OpenSSH clients (`exchange_openssh`) whose pipe joins the sender's output
  straight to the receiver's input: about three times paramiko's throughput,
  for a wiped host or the part of a change that is over the receiver's budget.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from typing import IO, Any

from fleetmend.transport.ssh import Result, Stream

Manifest = list[dict[str, Any]]
Tamper = Callable[[bytes], bytes]


def lines(messages: list[dict[str, Any]]) -> bytes:
    return b"".join((json.dumps(m) + "\n").encode() for m in messages)


def _parsed(raw: bytes) -> dict[str, Any] | None:
    try:
        msg = json.loads(raw)
    except json.JSONDecodeError:
        return None
    return msg if isinstance(msg, dict) else None


def messages(receiver: Stream) -> Iterator[dict[str, Any]]:
    """The receiver's JSON lines as they come: its view of the live volume first,
    then asks and progress, its outcome last."""
    pending = b""
    while True:
        chunk = receiver.recv(1 << 16)
        if not chunk:
            return
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for raw in complete:
            msg = _parsed(raw)
            if msg is not None:
                yield msg


SHRANK = (
    "a file shrank while it was being read: something writes to the volume meanwhile "
    "(stop the writer, or use the volume's `command` strategy for live data), then re-run"
)


def failure(stderr: str) -> str:
    """What a helper's stderr says went wrong, in a line."""
    if "Fatal Python error: Bus error" in stderr:  # a mmap'ed file was truncated
        return SHRANK
    return stderr.strip()[-300:]


def _no_answer(stderr: str, failures: list[BaseException]) -> dict[str, Any]:
    why = failure(stderr) or (str(failures[0]) if failures else "no answer")
    return {"ok": False, "error": why}


def relay(
    source: Stream,
    target: Stream,
    max_rate: float | None,
    tamper: Tamper | None = None,
    tap: Callable[[bytes], None] | None = None,
    given_up: Callable[[], bool] | None = None,
) -> int:
    """Copy source's stdout to target's stdin, at most `max_rate` bytes a second.

    `tap` sees every chunk as the source sent it. A target that is slow to
    take more (hashing a large file) is waited for until `given_up()` says so.
    """
    start, total = time.monotonic(), 0
    while True:
        chunk = source.recv(1 << 20 if max_rate is None else max(4096, int(max_rate / 20)))
        if not chunk:
            return total
        if tap is not None:
            tap(chunk)
        target.send(tamper(chunk) if tamper else chunk, given_up=given_up)
        total += len(chunk)
        if max_rate:
            ahead = total / max_rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)


def exchange_paramiko(
    sender: Stream,
    receiver: Stream,
    said: Iterator[dict[str, Any]],
    plan: dict[str, Any],
    max_rate: float | None = None,
    tamper: Tamper | None = None,
) -> tuple[dict[str, Any], Manifest | None, Result]:
    """Run both helpers at once over the open paramiko connections.

    `said` is the receiver's messages (see `messages`). Returns the receiver's
    outcome, the manifest as it streamed past (None when it could not be
    followed or was given), and how the sender ended.
    """
    tap = Tap()
    stopped = threading.Event()
    failures: list[BaseException] = []

    def forward() -> None:
        try:
            relay(sender, receiver, max_rate, tamper, tap.feed, stopped.is_set)
        except Exception as exc:  # the receiver's outcome (or its absence) tells
            failures.append(exc)
        finally:
            with suppress(Exception):
                receiver.close_input()

    outcome: dict[str, Any] | None = None
    receiver.send(lines([plan]))
    thread = threading.Thread(target=forward, name="reseed-relay", daemon=True)
    thread.start()
    try:
        for msg in said:
            if "want" in msg or "done" in msg:
                sender.send(lines([msg]))
                if msg.get("done"):
                    sender.close_input()
            elif "ok" in msg:
                outcome = msg
                if msg["ok"]:
                    break  # swapped in; it removes the replaced data on its own
    finally:
        stopped.set()
        if outcome is None or outcome.get("error"):
            sender.channel.close()  # the target gave up: the source stops too
        thread.join()
    sent = sender.finish()
    if outcome is not None and outcome["ok"]:
        receiver.channel.close()
        return outcome, (tap.entries if tap.complete and not tap.broken else None), sent
    received = receiver.finish()
    if outcome is None:
        outcome = _no_answer(received.stderr, failures)
    return outcome, (tap.entries if tap.complete and not tap.broken else None), sent


def exchange_openssh(
    src_argv: list[str], dst_argv: list[str], plan: dict[str, Any], asks: list[dict[str, Any]]
) -> tuple[dict[str, Any], Result]:
    """Run both helpers at once over two OpenSSH clients joined by a pipe here.

    The receiver reads the plan first, then the sender's stream from the same
    pipe; its asks come back to this process and go on to the sender, after
    `asks` (what is already known to be wanted). Returns the receiver's outcome
    and how the sender ended.
    """
    read_fd, write_fd = os.pipe()
    receiver = subprocess.Popen(
        dst_argv, stdin=read_fd, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    os.close(read_fd)
    with os.fdopen(write_fd, "wb", buffering=0) as pipe:
        # the plan goes in before the sender shares the pipe: its client makes it non-blocking
        pipe.write(lines([plan]))
        sender = subprocess.Popen(
            src_argv, stdin=subprocess.PIPE, stdout=pipe, stderr=subprocess.PIPE
        )
    errors = {"sender": b"", "receiver": b""}
    drains = [
        threading.Thread(target=_drain, args=(p.stderr, errors, k), daemon=True)
        for k, p in (("sender", sender), ("receiver", receiver))
    ]
    for t in drains:
        t.start()
    assert sender.stdin is not None and receiver.stdout is not None
    outcome: dict[str, Any] | None = None
    try:
        _ask(sender.stdin, asks)
        for raw in receiver.stdout:
            msg = _parsed(raw)
            if msg is None:
                continue
            if "want" in msg or "done" in msg:
                _ask(sender.stdin, [msg])
            elif "ok" in msg:
                outcome = msg
    finally:
        with suppress(OSError):
            sender.stdin.close()
        if outcome is None or outcome.get("error"):
            sender.terminate()  # the target gave up (or this process did): the source stops too
        receiver.wait()
        sender.wait()
        for t in drains:
            t.join()
    received_err = errors["receiver"].decode(errors="replace")
    if outcome is None:
        outcome = _no_answer(received_err, [])
    return outcome, Result("", errors["sender"].decode(errors="replace"), sender.returncode, 0.0)


def _ask(stdin: IO[bytes], asks: list[dict[str, Any]]) -> None:
    if not asks:
        return
    with suppress(BrokenPipeError):  # a sender that died shows in the receiver's outcome
        stdin.write(lines(asks))
        stdin.flush()
        if any(a.get("done") for a in asks):
            stdin.close()


def _drain(stream: IO[bytes] | None, into: dict[str, bytes], key: str) -> None:
    if stream is not None:
        into[key] = stream.read()


@dataclass
class Tap:
    """Follows the source's frames as they pass to the target, keeping the manifest."""

    entries: Manifest = field(default_factory=list)
    complete: bool = False
    broken: bool = False
    _head: bytearray = field(default_factory=bytearray)
    _need: int = 4  # length of the frame prefix being read: 4, then 4 + the header
    _skip: int = 0  # file content still to pass by

    def feed(self, chunk: bytes) -> None:
        i = 0
        while i < len(chunk) and not self.broken:
            if self._skip:
                n = min(self._skip, len(chunk) - i)
                self._skip -= n
                i += n
                continue
            n = min(self._need - len(self._head), len(chunk) - i)
            self._head += chunk[i : i + n]
            i += n
            if len(self._head) < self._need:
                continue
            if self._need == 4:
                self._need = 4 + int.from_bytes(self._head, "big")
                continue
            try:
                head = json.loads(bytes(self._head[4:]))
                self._head.clear()
                self._need = 4
                if "entries" in head:
                    self.entries.extend(head["entries"])
                elif head.get("manifest_end"):
                    self.complete = True
                elif "path" in head:
                    self._skip = int(head["size"])
            except (ValueError, TypeError, KeyError, AttributeError):
                self.broken = True
