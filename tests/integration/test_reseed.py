"""Re-seeding against a lab: every test asserts the target's data equals the source's."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import signal
import struct
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from fleetmend.check import CheckOptions
from fleetmend.cli.app import app
from fleetmend.fleet import Fleet
from fleetmend.lab import Fault, Lab, procs
from fleetmend.lab.faults import FaultOptions
from fleetmend.reseed import exchange, memory, transfer
from fleetmend.reseed.exchange import exchange_openssh
from fleetmend.reseed.helpers import RECEIVER
from fleetmend.reseed.memory import HashMemory
from fleetmend.reseed.scrub import repair, scrub_fleet
from fleetmend.reseed.transfer import ReseedError, content_digest, manifest, reseed_volume
from fleetmend.transport.ssh import Connection, KnownHosts, Result, Timeouts, Unreachable
from fleetmend.transport.target import target_for
from tests.integration.lab_helpers import CliLab, require_root, run, write_replica_set

NET = "127.77.203."
HOSTS = ("a", "b", "c", "d")
DATA = "/srv/data"


def write_inputs(root: Path) -> tuple[Path, Path]:
    store = {
        "name": "store",
        "version": "1",
        "volumes": {
            "data": {
                "path": DATA,
                "position": "cat POSITION",
                "health": "test -s POSITION",
                "exclude": ["tmp/"],
            }
        },
    }
    return write_replica_set(root, store, NET, HOSTS)


_MAKE = (
    "import random; [open(f'objects/o{i}', 'wb').write(random.Random(i).randbytes(i * 3000)) "
    "for i in range(1, 61)]"
)
SEED = (
    f"rm -rf {DATA} && mkdir -p {DATA}/objects/deep/er {DATA}/tmp && cd {DATA} && "
    f"python3 -c {shlex.quote(_MAKE)} && "
    "printf 'empty' > objects/deep/er/e; : > objects/zero; ln -s o1 objects/link; "
    "chmod 0600 objects/o2; echo scratch > tmp/skip; echo 5 > POSITION"
)
"""The same data on every host that runs it: what replication would have made."""


class ReseedLab(CliLab):
    @property
    def fleet(self) -> Fleet:
        return Fleet.load(self.images, self.lab.inventory_path)

    def conn(self, host: str, timeouts: Timeouts | None = None) -> Connection:
        fleet = self.fleet
        known = KnownHosts(self.state / "known_hosts", [])
        target = target_for(fleet.inventory.host(host), "t", None)
        return Connection(target, known, timeouts or Timeouts())

    def freeze(self, host: str, sig: int) -> None:
        """Stop (or continue) every process of `host`, its sshd sessions too: a
        host that went silent, as on power loss, where no reset ever comes."""
        init = self.lab.init_of(self.lab.record().hosts[host])
        assert init is not None, f"{host} is not running"
        for pid in procs.in_namespace(init):
            with suppress(ProcessLookupError):
                os.kill(pid, sig)

    def digest(self, host: str) -> str:
        with self.conn(host) as c:
            return content_digest(manifest(c, DATA, ["tmp/"]))


@pytest.fixture(scope="module")
def rl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReseedLab]:
    require_root()
    root = tmp_path_factory.mktemp("reseed")
    images, inventory = write_inputs(root)
    lab = Lab(root / "state")
    try:
        source = Fleet.load(images, inventory)
        lab.up_fleet(source)
        for host in ("a", "b", "c"):
            run(lab, host, SEED)
        yield ReseedLab(lab, images, root / "state")
    finally:
        lab.down()


def test_1_rebuild_reseeds_a_wiped_host_byte_for_byte(rl: ReseedLab) -> None:
    assert rl.digest("a") == rl.digest("b") == rl.digest("c")
    rl.lab.break_host("d", Fault.WIPE_DISK)
    code, _, err = rl.cli("rebuild", "d", "--yes")
    assert code == 0, err
    assert rl.digest("d") == rl.digest("a")
    link = run(rl.lab, "d", f"readlink {DATA}/objects/link; stat -c %a {DATA}/objects/o2")
    assert link.split() == ["o1", "600"]
    assert run(rl.lab, "d", f"test -e {DATA}/tmp/skip && echo yes || echo no").strip() == "no"
    assert "reseed" in err and "63 of 63 files sent" in err  # all of it, over OpenSSH


def test_2_delta_sends_only_what_differs(rl: ReseedLab) -> None:
    run(
        rl.lab,
        "d",
        f"echo damaged > {DATA}/objects/o7; rm {DATA}/objects/o8; echo extra > {DATA}/objects/x",
    )
    code, _, err = rl.cli("reseed", "d", "--yes")
    assert code == 0, err
    assert "2 of 63 files sent" in err  # 60 objects, e, zero, POSITION
    assert rl.digest("d") == rl.digest("a")


def test_2b_a_change_over_the_budget_comes_over_openssh(
    rl: ReseedLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A host holding data gets the small files while both hosts hash; the
    file over the budget follows over two OpenSSH clients, listed up front."""
    big = "import random; open('objects/big2', 'wb').write(random.Random(2).randbytes(40 << 20))"
    run(rl.lab, "a", f"cd {DATA} && python3 -c {shlex.quote(big)}")
    run(rl.lab, "d", f"echo damaged > {DATA}/objects/o7")
    plans: list[dict[str, object]] = []

    def spy(
        src: list[str], dst: list[str], plan: dict[str, Any], asks: list[dict[str, Any]]
    ) -> tuple[dict[str, Any], Result]:
        plans.append(plan)
        return exchange_openssh(src, dst, plan, asks)

    monkeypatch.setattr(transfer, "exchange_openssh", spy)
    volume = rl.fleet.catalog.resolve("store").volumes["data"]
    try:
        with rl.conn("a") as source, rl.conn("d") as target:
            result = reseed_volume("data", volume, source, target)
        assert rl.digest("d") == rl.digest("a")
        assert [p["send"] for p in plans] == [["objects/big2"]]
        assert result.sent == 2 and result.bytes == (40 << 20) + 7 * 3000  # big2 and o7
        # the replaced data is removed once the swap is done, staging with it
        deadline = time.monotonic() + 10
        while run(rl.lab, "d", "ls -a /srv | grep -c fleetmend || true").strip() != "0":
            assert time.monotonic() < deadline, "staging or replaced data left behind"
            time.sleep(0.2)
    finally:
        for host in ("a", "d"):
            run(rl.lab, host, f"rm -f {DATA}/objects/big2")


def test_2c_a_source_hashes_only_what_changed_since_it_was_last_hashed(
    rl: ReseedLab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two copies (no majority to read first): the source takes the hashes fleetmend
    remembers for files untouched since, and hashes the rest. A remembered hash the
    source's bytes no longer match (rot that left the stat as it was) cannot reach
    the target: the re-seed stops and says so, and `--rehash` hashes afresh."""
    inventory = yaml.safe_load(rl.lab.inventory_path.read_text())
    hosts = inventory["all"]["hosts"]
    inventory["all"]["hosts"] = {h: hosts[h] for h in ("a", "d")}
    inventory["all"].pop("children", None)
    (tmp_path / "pair.yaml").write_text(yaml.safe_dump(inventory))

    def reseed(*extra: str) -> tuple[int, str]:
        result = CliRunner().invoke(
            app,
            ["--images", str(rl.images), "-i", str(tmp_path / "pair.yaml"),
             "--state-dir", str(rl.state), "reseed", "d", "--yes", *extra],
        )  # fmt: skip
        return result.exit_code, result.stderr

    monkeypatch.setattr(memory, "SETTLE", 2.0)  # not a minute: a test's files are young
    time.sleep(2.1)  # every file of a settled: its hash may be remembered
    run(rl.lab, "d", f"echo damaged > {DATA}/objects/o4")
    code, err = reseed("--rehash")
    assert code == 0, err
    assert "1 of 63 files sent" in err and "remembered" not in err
    run(rl.lab, "d", f"echo damaged > {DATA}/objects/o5")
    code, err = reseed()
    assert code == 0, err
    assert "1 of 63 files sent" in err and "63 unchanged at the source (hashes remembered)" in err
    assert rl.digest("d") == rl.digest("a")

    remembered = HashMemory(rl.state)  # o6's hash, as if a's copy rotted since it was taken
    known = remembered.recall("a", DATA)
    known["objects/o6"][5] = hashlib.sha256(b"what o6 held when it was hashed").hexdigest()
    lied = [{"p": p, "t": "f", "k": v[:5], "h": v[5]} for p, v in known.items()]
    remembered.remember("a", DATA, lied)
    run(rl.lab, "d", f"echo damaged > {DATA}/objects/o6")
    before = rl.digest("d")
    code, err = reseed()
    assert code != 0
    assert "'objects/o6' does not match the hash remembered for it at the source" in err, err
    assert "--rehash" in err
    assert rl.digest("d") == before  # live data untouched
    code, err = reseed("--rehash")
    assert code == 0, err
    assert rl.digest("d") == rl.digest("a")


def test_3_a_byte_corrupted_in_transit_is_never_swapped_in(rl: ReseedLab) -> None:
    run(rl.lab, "d", f"echo damaged > {DATA}/objects/o9")
    before = rl.digest("d")
    volume = rl.fleet.catalog.resolve("store").volumes["data"]

    flipped: list[int] = []

    def flip(chunk: bytes) -> bytes:  # one byte, once: in file content or in a frame header
        if flipped or len(chunk) < 100:
            return chunk
        flipped.append(len(chunk) // 2)
        i = len(chunk) // 2
        return chunk[:i] + bytes([chunk[i] ^ 0xFF]) + chunk[i + 1 :]

    with (
        rl.conn("a") as source,
        rl.conn("d") as target,
        pytest.raises(ReseedError, match="stopped, live data untouched"),
    ):
        reseed_volume("data", volume, source, target, tamper=flip)
    assert rl.digest("d") == before  # live data untouched
    code, _, err = rl.cli("reseed", "d", "--yes")  # an honest re-run completes
    assert code == 0, err
    assert rl.digest("d") == rl.digest("a")


def test_4_a_copy_disagreeing_with_the_majority_is_never_the_source(rl: ReseedLab) -> None:
    # b is the freshest, but a byte of its data flipped silently: it must not spread
    rl.lab.break_host("b", Fault.CORRUPT_DATA, FaultOptions(volume="data", count=1, seed=3))
    run(rl.lab, "b", f"echo 9 > {DATA}/POSITION")
    try:
        run(rl.lab, "d", f"echo damaged > {DATA}/objects/o3")
        code, _, err = rl.cli("reseed", "d", "--yes")
        assert code == 0, err
        assert "from b" not in err
        assert rl.digest("d") == rl.digest("a") != rl.digest("b")
        code, out, err = rl.cli("reseed", "d", "--from", "b", "--yes")
        assert code == 4 and "disagrees with the majority" in out + err
    finally:
        rl.lab.heal_fault("b")
        run(rl.lab, "b", f"echo 5 > {DATA}/POSITION")


RECEIVE = " ".join(["python3", "-c", shlex.quote(RECEIVER), DATA, "/srv/.data.fleetmend-staging"])
"""The target's receiver, run by hand: what a malicious peer's stream would reach."""


def _frame(head: dict[str, object], body: bytes = b"") -> bytes:
    raw = json.dumps(head).encode()
    return struct.pack(">I", len(raw)) + raw + body


def _receive(
    rl: ReseedLab,
    plan: dict[str, object],
    frames: list[tuple[str, bytes]],
    entries: list[dict[str, object]] | None = None,
) -> dict[str, object]:
    """Feed the target's receiver a crafted manifest and stream, as a malicious peer would.

    With `entries`, the manifest comes in the stream (as a source that hashes
    while it sends streams it), not in the plan.
    """
    stream = (json.dumps(plan) + "\n").encode()
    if entries is not None:
        stream += _frame({"entries": entries}) + _frame({"manifest_end": True})
    for path, body in frames:
        stream += _frame({"path": path, "size": len(body)}, body)
    stream += _frame({"end": True})
    with rl.conn("d") as target:
        result = target.run(RECEIVE, stdin=stream)
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def _entry(path: str, kind: str, **extra: object) -> dict[str, object]:
    """A manifest entry as a source would send it, root-owned, mode 0644 unless said."""
    return {"p": path, "t": kind, "m": 420, "u": "root", "g": "root", "mt": 0, **extra}


@pytest.mark.parametrize(
    ("entry", "frames", "message"),
    [
        (_entry("../evil", "f", s=1, h="0"), [], "unsafe path"),
        (_entry("/etc/evil", "f", s=1, h="0"), [], "unsafe path"),
        (_entry("l", "l", l="../../etc/shadow", m=511), [], "link leaving"),
        (_entry("dev", "x"), [], "device"),
        (_entry("ok", "f", s=3, h="0" * 64), [("../../etc/evil", b"bad")], "unsafe path"),
        (  # a frame longer than the manifest says: never written, whatever its length
            _entry("ok", "f", s=3, h="0" * 64),
            [("ok", b"x" * 4096)],
            "size changed",
        ),
    ],
)
@pytest.mark.parametrize("streamed", [False, True], ids=["listed", "streamed"])
def test_5_a_malicious_peer_is_refused_and_nothing_is_touched(
    rl: ReseedLab,
    entry: dict[str, object],
    frames: list[tuple[str, bytes]],
    message: str,
    streamed: bool,
) -> None:
    before = rl.digest("d")
    if streamed:  # the manifest arrives as the source hashes, the receiver asks
        outcome = _receive(rl, {"manifest": None, "budget": None}, frames, [entry])
    else:  # the manifest and what will be sent are in the plan
        outcome = _receive(rl, {"manifest": [entry], "send": [entry["p"]]}, frames)
    assert outcome["ok"] is False and message in str(outcome["error"])
    assert rl.digest("d") == before
    assert run(rl.lab, "d", "ls /etc/evil /srv/evil 2>/dev/null | wc -l").strip() == "0"


def test_5b_a_stream_that_breaks_the_protocol_is_refused(rl: ReseedLab) -> None:
    """A source that sends what nobody asked for, a file twice, a second manifest,
    or stops before its manifest ends: refused, live data untouched."""
    before = rl.digest("d")
    body = b"abc"
    entry = _entry("n", "f", s=len(body), h=hashlib.sha256(body).hexdigest())
    plan = (json.dumps({"manifest": None, "budget": None}) + "\n").encode()
    listing = _frame({"entries": [entry]}) + _frame({"manifest_end": True})
    cases = {
        "nobody asked": listing + _frame({"path": "zzz", "size": 3}, b"zzz"),
        "second manifest": listing + _frame({"entries": [entry]}),
        "sent a file nobody asked for: 'n'": listing + 2 * _frame({"path": "n", "size": 3}, body),
        "ended early": _frame({"entries": [entry]}),
    }
    with rl.conn("d") as target:
        for message, stream in cases.items():
            result = target.run(RECEIVE, stdin=plan + stream)
            outcome = json.loads(result.stdout.strip().splitlines()[-1])
            assert outcome["ok"] is False and message in outcome["error"], (message, outcome)
    assert rl.digest("d") == before


def test_5c_a_target_without_room_is_refused_before_the_data_comes(rl: ReseedLab) -> None:
    """The copy would not fit next to the volume: refused as the manifest comes,
    not at ENOSPC hours later, and the live data is untouched."""
    small = "/srv/small"
    run(rl.lab, "a", f"mkdir -p {small}/data && head -c 3M /dev/urandom > {small}/data/big "
        f"&& echo s > {small}/data/s")  # fmt: skip
    run(rl.lab, "d", f"mkdir -p {small} && mount -t tmpfs -o size=2m tmpfs {small} && "
        f"mkdir {small}/data && echo live > {small}/data/keep")  # fmt: skip
    store = rl.fleet.catalog.resolve("store").volumes["data"]
    volume = store.model_copy(update={"path": f"{small}/data", "position": None})
    try:
        room = r"no room for the copy next to /srv/small/data: .* needs at least 3\.1 MB, its "
        room += r"filesystem has 2\.1 MB free \(free space or grow it, then re-run\)$"
        with (
            rl.conn("a") as source,
            rl.conn("d") as target,
            pytest.raises(ReseedError, match=room),
        ):
            reseed_volume("data", volume, source, target)
        assert run(rl.lab, "d", f"cat {small}/data/keep").strip() == "live"
    finally:
        run(rl.lab, "d", f"umount {small} && rmdir {small}")
        run(rl.lab, "a", f"rm -rf {small}")


def test_6_no_safe_source_says_why_for_each(rl: ReseedLab) -> None:
    # a is down; b and c disagree, and with no majority neither can be trusted
    rl.lab.break_host("a", Fault.DOWN)
    rl.lab.break_host("c", Fault.CORRUPT_DATA, FaultOptions(volume="data", count=1, seed=11))
    try:
        before = rl.digest("d")
        code, out, err = rl.cli("reseed", "d", "--yes", "--timeout", "2")
        assert code == 4
        text = out + err
        assert "no safe source" in text
        assert "a: unreachable" in text
        assert "b: no majority among 2 differing copies" in text
        assert "c: no majority among 2 differing copies" in text
        assert rl.digest("d") == before
    finally:
        rl.lab.heal_fault("a")
        rl.lab.heal_fault("c")


def test_7_scrub_finds_exactly_the_corrupted_files_and_repairs_only_them(rl: ReseedLab) -> None:
    injected = rl.lab.break_host(
        "c", Fault.CORRUPT_DATA, FaultOptions(volume="data", count=2, seed=5)
    )
    corrupted = sorted(f["path"].removeprefix(f"{DATA}/") for f in injected.detail["flipped"])
    a_before, b_before = rl.digest("a"), rl.digest("b")
    code, out, _ = rl.cli("scrub", "--format", "json")
    assert code == 4
    (volume,) = json.loads(out)
    assert volume["disagreements"] == {"c": corrupted}
    assert volume["good_sources"] == ["a", "b", "d"]
    code, out, err = rl.cli("scrub", "--repair", "--yes", "--format", "json")
    assert code == 0, err
    (volume,) = json.loads(out)
    assert [(r["volume"], r["sent"]) for r in volume["repaired"]] == [("data", 2)]
    assert rl.digest("c") == rl.digest("a") == a_before
    assert rl.digest("b") == b_before
    code, _, _ = rl.cli("scrub")
    assert code == 0


FLIP = (
    "import sys; f = open(sys.argv[1], 'r+b'); b = f.read(1)[0]; f.seek(0); f.write(bytes([b ^ 1]))"
)
"""Flips a bit of a file's first byte; run twice, it puts the byte back."""


def test_7b_a_source_that_rots_after_the_scrub_cannot_spread(rl: ReseedLab) -> None:
    """The repair is verified against what the majority held at the scrub, not
    against a new reading of its source."""
    injected = rl.lab.break_host(
        "c", Fault.CORRUPT_DATA, FaultOptions(volume="data", count=1, seed=8)
    )
    (bad,) = [f["path"] for f in injected.detail["flipped"]]
    options = CheckOptions(state_dir=rl.state, ssh_config=None, user_known_hosts=[])
    (scrubbed,), connections = scrub_fleet(rl.fleet, options, ["rs"])
    try:
        assert scrubbed.disagreements == {"c": [bad.removeprefix(f"{DATA}/")]}
        assert scrubbed.good_sources[0] == "a"  # the source a repair of c takes
        run(rl.lab, "a", f"python3 -c {shlex.quote(FLIP)} {bad}")  # now a's copy rots too
        before = rl.digest("c")
        with pytest.raises(ReseedError, match="does not match the source's manifest"):
            repair(rl.fleet, options, scrubbed, connections)
        assert rl.digest("c") == before
    finally:
        connections.close()
        run(rl.lab, "a", f"python3 -c {shlex.quote(FLIP)} {bad}")
        rl.lab.heal_fault("c")
    assert rl.digest("a") == rl.digest("b") == rl.digest("c") == rl.digest("d")


def _store_images(rl: ReseedLab, root: Path, reseed: dict[str, str]) -> Path:
    """The lab's store image with another re-seed spec for its volume."""
    image = yaml.safe_load((rl.images / "store.yaml").read_text())
    image["volumes"]["data"]["reseed"] = reseed
    images = root / "images"
    images.mkdir()
    (images / "store.yaml").write_text(yaml.safe_dump(image))
    return images


TAR = {"strategy": "command", "dump": "tar -cf - .", "restore": 'tar -C "$FLEETMEND_STAGING" -xf -'}


def test_7c_a_repair_goes_file_by_file_whatever_the_strategy(rl: ReseedLab, tmp_path: Path) -> None:
    """A volume re-seeded by dump and restore is still repaired file by file: only
    the disagreeing file travels, verified against the majority's manifest."""
    fleet = Fleet.load(_store_images(rl, tmp_path, TAR), rl.lab.inventory_path)
    rl.lab.break_host("c", Fault.CORRUPT_DATA, FaultOptions(volume="data", count=1, seed=3))
    options = CheckOptions(state_dir=rl.state, ssh_config=None, user_known_hosts=[])
    (scrubbed,), connections = scrub_fleet(fleet, options, ["rs"])
    try:
        assert list(scrubbed.disagreements) == ["c"]
        (result,) = repair(fleet, options, scrubbed, connections)
        assert (result.sent, result.files) == (1, 63)
    finally:
        connections.close()
    assert rl.digest("c") == rl.digest("a")


def test_8_max_rate_bounds_the_transfer(rl: ReseedLab) -> None:
    run(rl.lab, "d", f"rm {DATA}/objects/o60")  # 180 kB to send
    code, _, err = rl.cli("reseed", "d", "--yes", "--max-rate", "0.1")
    assert code == 0, err
    seconds = float(err.split("position 5, ")[1].split("s")[0])
    assert seconds >= 1.7, err  # 180 kB at 100 kB/s
    assert rl.digest("d") == rl.digest("a")


def test_9_source_killed_mid_transfer_then_another_peer_completes(rl: ReseedLab) -> None:
    """The source dies mid-stream: the target's live data is untouched; a re-run
    chooses another healthy peer and completes."""
    # 128 MB the source cannot hand over before it dies: more than fleetmend's
    # 64 MiB receive window, relayed at 20 MB/s
    big = "import random; open('objects/big', 'wb').write(random.Random(9).randbytes(128 << 20))"
    for host in ("a", "b", "c"):
        run(rl.lab, host, f"cd {DATA} && python3 -c {shlex.quote(big)}")
    code, _, err = rl.cli("reseed", "d", "--yes")  # d holds the data, as in production
    assert code == 0, err
    run(rl.lab, "d", f"rm {DATA}/objects/big")
    before = rl.digest("d")
    volume = rl.fleet.catalog.resolve("store").volumes["data"]
    killer = threading.Timer(2.0, rl.lab.break_host, args=("a", Fault.DOWN))
    killer.start()
    try:
        with (
            rl.conn("a") as source,
            rl.conn("d") as target,
            pytest.raises((ReseedError, Unreachable)),
        ):
            reseed_volume("data", volume, source, target, max_rate=20e6)
        killer.join()
        assert rl.digest("d") == before  # live data untouched
        code, _, err = rl.cli("reseed", "d", "--yes", "--timeout", "2")
        assert code == 0, err
        assert "from a" not in err
        assert "resumed from staging" in err  # what the first attempt verified is kept
        assert rl.digest("d") == rl.digest("b")
    finally:
        killer.cancel()
        rl.lab.heal_fault("a", Fault.DOWN)
        for host in ("a", "b", "c", "d"):
            run(rl.lab, host, f"rm -f {DATA}/objects/big")


def test_9b_a_source_gone_silent_mid_transfer_is_given_up(
    rl: ReseedLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The source stops answering while its data comes over OpenSSH (no reset,
    as when it loses power): the re-seed gives it up after about the command
    timeout, and the target's live data is untouched."""
    run(rl.lab, "a", f"head -c 512M /dev/zero > {DATA}/objects/big3")
    before = rl.digest("d")
    carrier = {"openssh": False, "frozen_at": 0.0}

    def spy(
        src: list[str], dst: list[str], plan: dict[str, Any], asks: list[dict[str, Any]]
    ) -> tuple[dict[str, Any], Result]:
        carrier["openssh"] = True
        return exchange_openssh(src, dst, plan, asks)

    def parsed(raw: bytes) -> dict[str, Any] | None:
        msg = real_parsed(raw)
        # the receiver's first progress line over OpenSSH: big3 is on its way
        if msg and "progress" in msg and carrier["openssh"] and not carrier["frozen_at"]:
            rl.freeze("a", signal.SIGSTOP)
            carrier["frozen_at"] = time.monotonic()
        return msg

    real_parsed = exchange._parsed
    monkeypatch.setattr(transfer, "exchange_openssh", spy)
    monkeypatch.setattr(exchange, "_parsed", parsed)
    volume = rl.fleet.catalog.resolve("store").volumes["data"]
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        with rl.conn("a", Timeouts(command=3)) as source, rl.conn("d") as target:
            attempt = pool.submit(reseed_volume, "data", volume, source, target)
            with pytest.raises(ReseedError, match="not responding"):
                attempt.result(timeout=60)  # without keepalives: TCP's, two hours
        assert carrier["frozen_at"], "the source was never frozen mid-transfer"
        assert time.monotonic() - carrier["frozen_at"] < 15
        assert rl.digest("d") == before  # live data untouched
    finally:
        rl.freeze("a", signal.SIGCONT)
        pool.shutdown(wait=True)
        run(rl.lab, "a", f"rm -f {DATA}/objects/big3")
        run(rl.lab, "d", "rm -rf /srv/.data.fleetmend-staging")


def test_10_the_command_strategy_relays_dump_into_restore(rl: ReseedLab, tmp_path: Path) -> None:
    reseed = {
        "strategy": "command",
        "dump": "tar --exclude=./tmp -cf - .",
        "restore": (
            'tar -C "$FLEETMEND_STAGING" -xf - && '
            'echo "$FLEETMEND_SOURCE" > "$FLEETMEND_STAGING/SOURCE"'
        ),
    }
    images = _store_images(rl, tmp_path, reseed)
    run(rl.lab, "d", f"echo damaged > {DATA}/objects/o1; echo 5 > {DATA}/POSITION")
    result = CliRunner().invoke(
        app,
        ["--images", str(images), "-i", str(rl.lab.inventory_path), "--state-dir", str(rl.state),
         "reseed", "d", "--yes"],
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "restored by its command (" in result.stderr and " bytes relayed)" in result.stderr
    source = run(rl.lab, "d", f"cat {DATA}/SOURCE").strip()
    run(rl.lab, "d", f"rm {DATA}/SOURCE")
    assert source in ("a", "b", "c")
    assert rl.digest("d") == rl.digest(source)


def test_10b_a_restore_without_dump_fetches_from_the_chosen_source(
    rl: ReseedLab, tmp_path: Path
) -> None:
    """As pg_basebackup does: restore runs alone on the target and fetches from the
    source by the address and vars its template names; every value is one shell
    word; a restore quiet for longer than the command timeout is waited for."""
    fetch = (
        "import sys, urllib.request as u; sys.stdout.buffer.write(u.urlopen(sys.argv[1]).read())"
    )
    restore = (
        f"sleep 5 && python3 -c {shlex.quote(fetch)} "
        "http://{{ source.address }}:{{ source.vars.export_port }}/data.tar "
        '| tar -C "$FLEETMEND_STAGING" -xf - && echo {{ note }} > "$FLEETMEND_STAGING/NOTE"'
    )
    images = _store_images(rl, tmp_path, {"strategy": "command", "restore": restore})
    inventory = yaml.safe_load(rl.lab.inventory_path.read_text())
    inventory["all"]["vars"].update(export_port=8765, note="a b; touch /tmp/pwned")
    (tmp_path / "inv.yaml").write_text(yaml.safe_dump(inventory))
    record = rl.lab.record()
    for host in ("a", "b", "c"):  # what each peer would serve as the source
        address = record.hosts[host].address
        run(rl.lab, host, (
            f"mkdir -p /srv/export && cd {DATA} && tar --exclude=./tmp -cf /srv/export/data.tar . "
            f"&& (setsid python3 -m http.server --bind {address} 8765 --directory /srv/export "
            "</dev/null >/dev/null 2>&1 & echo $! > /srv/export.pid)"
        ))  # fmt: skip
    run(rl.lab, "d", f"echo damaged > {DATA}/objects/o1")
    try:
        result = CliRunner().invoke(
            app,
            ["--images", str(images), "-i", str(tmp_path / "inv.yaml"), "--state-dir",
             str(rl.state), "reseed", "d", "--yes", "--command-timeout", "2"],
        )  # fmt: skip
        assert result.exit_code == 0, result.stderr
        assert "restored by its command (fetched by the target)" in result.stderr
        note = run(rl.lab, "d", f"cat {DATA}/NOTE; rm {DATA}/NOTE").strip()
        assert note == "a b; touch /tmp/pwned"
        assert run(rl.lab, "d", "test -e /tmp/pwned && echo yes || echo no").strip() == "no"
        assert rl.digest("d") == rl.digest("a")
    finally:
        for host in ("a", "b", "c"):
            run(rl.lab, host, "kill $(cat /srv/export.pid); rm -rf /srv/export /srv/export.pid")


def test_10c_a_command_that_cannot_render_stops_a_rebuild_before_the_wipe(
    rl: ReseedLab, tmp_path: Path
) -> None:
    images = _store_images(
        rl, tmp_path, {**TAR, "restore": "tar -C {{ volume.staging }} -xf - {{ nope }}"}
    )
    before = rl.digest("d")
    result = CliRunner().invoke(
        app,
        ["--images", str(images), "-i", str(rl.lab.inventory_path), "--state-dir",
         str(rl.state), "rebuild", "d", "--yes"],
    )  # fmt: skip
    assert result.exit_code == 2, result.stderr
    assert "volumes.data.reseed.restore: 'nope' is undefined (for host d)" in result.stderr
    assert "reimage" not in result.stderr  # no step ran
    assert rl.digest("d") == before
