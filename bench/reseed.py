"""Re-seeding against its peers, between two lab hosts, in the same run.

full:  fleetmend re-seed of an empty target (manifest, stream, verify, swap)
       vs  ssh A 'tar c' | ssh B 'tar x'  relayed through this machine
delta: fleetmend re-seed after 1% of the files changed
       vs  rsync -a -c over ssh from A to B (the peer's best at finding changes),
       --rounds times (other files each round, the two taking turns to go first);
       both targets hold the previous round's data. First with the source hashing
       every file (`reseed --rehash`, or a first re-seed), then as fleetmend runs
       once it has hashed the source: only files changed since are hashed there
       (the target hashes all it keeps or receives either way)

  sudo .venv/bin/python bench/reseed.py --gib 1 --files 2000 --rounds 5
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from fleetmend.fleet import Fleet  # noqa: E402
from fleetmend.lab import Lab  # noqa: E402
from fleetmend.reseed.memory import SETTLE, HashMemory  # noqa: E402
from fleetmend.reseed.transfer import reseed_volume  # noqa: E402
from fleetmend.transport.ssh import Connection, KnownHosts, Timeouts  # noqa: E402
from fleetmend.transport.target import target_for  # noqa: E402

DATA = "/srv/bench"
MAKE = """
import os, random, sys
total, count = int(sys.argv[1]), int(sys.argv[2])
rng = random.Random(7)
weights = [rng.paretovariate(1.2) for _ in range(count)]
scale = total / sum(weights)
for i, w in enumerate(weights):
    d = f"{sys.argv[3]}/d{i % 40:02d}"
    os.makedirs(d, exist_ok=True)
    with open(f"{d}/f{i:05d}", "wb") as f:
        f.write(os.urandom(max(1, int(w * scale))))
"""


def setup(work: Path) -> tuple[Lab, Fleet]:
    images = work / "images"
    images.mkdir()
    (images / "store.yaml").write_text(
        yaml.safe_dump({"name": "store", "version": "1", "volumes": {"data": {"path": DATA}}})
    )
    inventory = {
        "all": {
            "vars": {
                "ansible_port": 2200,
                "fleetmend_image": "store",
                "fleetmend_replica_set": "rs",
                "fleetmend_replica_sets": {"rs": {"min_live": 1}},
            },
            "hosts": {
                "src": {"ansible_host": "127.77.230.11"},
                "dst": {"ansible_host": "127.77.230.12"},
            },
        }
    }
    (work / "inv.yaml").write_text(yaml.safe_dump(inventory))
    lab = Lab(work / "state")
    lab.up_fleet(Fleet.load(images, work / "inv.yaml"))
    return lab, Fleet.load(images, lab.inventory_path)


def ssh(lab: Lab, host: str, command: str) -> None:
    subprocess.run(["ssh", "-F", str(lab.ssh_config_path), host, command], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5, help="delta runs of each tool")
    args = parser.parse_args()
    size = int(args.gib * (1 << 30))
    with tempfile.TemporaryDirectory() as tmp:
        lab = Lab(Path(tmp) / "state")
        try:
            lab, fleet = setup(Path(tmp))
            known = KnownHosts(Path(tmp) / "known_hosts", [])
            conns = {
                h: Connection(
                    target_for(fleet.inventory.host(h), "b", None), known, Timeouts(command=3600)
                )
                for h in ("src", "dst")
            }
            volume = fleet.catalog.resolve("store").volumes["data"]
            memory = HashMemory(Path(tmp) / "state")
            ssh(lab, "src", f"python3 -c {shlex.quote(MAKE)} {size} {args.files} {DATA}")
            made = time.monotonic()
            ssh(lab, "src", f"cat {DATA}/*/* > /dev/null")  # warm cache for every tool alike
            os.sync()  # nobody pays for another tool's writeback
            t0 = time.perf_counter()
            full = reseed_volume("data", volume, conns["src"], conns["dst"])
            ours_full = time.perf_counter() - t0
            sent = [(full.sent, full.remembered)]
            cfg = shlex.quote(str(lab.ssh_config_path))
            os.sync()  # nobody pays for another tool's writeback
            t0 = time.perf_counter()
            subprocess.run(
                f"ssh -F {cfg} src 'tar -C {DATA} -cf - .' | "
                f"ssh -F {cfg} dst 'mkdir -p /srv/tar && tar -C /srv/tar -xf -'",
                shell=True, check=True,
            )  # fmt: skip
            tar_full = time.perf_counter() - t0
            # rsync's target: a copy of what dst holds now (the source's data)
            ssh(lab, "dst", f"rm -rf /srv/tar && cp -a {DATA} /srv/rsync")
            key = lab.key_path.read_text()
            ssh(lab, "src", f"umask 077; printf %s {shlex.quote(key)} > /tmp/k")
            dst = lab.record().hosts["dst"]
            transport = (
                f"ssh -i /tmp/k -p {dst.port} -o StrictHostKeyChecking=no "
                "-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
            )
            rsync = (
                f"rsync -a -c -e {shlex.quote(transport)} {DATA}/ root@{dst.address}:/srv/rsync/"
            )

            def time_ours(rehash: bool) -> float:
                known = None if rehash else memory.recall("src", DATA)
                t0 = time.perf_counter()
                result = reseed_volume(
                    "data", volume, conns["src"], conns["dst"], known=known,
                    on_manifest=lambda entries: memory.remember("src", DATA, entries),
                )  # fmt: skip
                seconds = time.perf_counter() - t0
                sent.append((result.sent, result.remembered))
                return seconds

            def time_rsync() -> float:
                t0 = time.perf_counter()
                ssh(lab, "src", rsync)
                return time.perf_counter() - t0

            # a fleet's data is older than a minute: fleetmend remembers no younger file's hash
            time.sleep(max(0.0, SETTLE + 1 - (time.monotonic() - made)))
            deltas: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
            for k in range(2 * args.rounds):
                rehash = k < args.rounds  # first the source hashes all: that fills the memory
                # 1% of the files change on the source, other ones each round
                pick = f"ls -d {DATA}/*/* | awk 'NR % 100 == {k % 100}'"
                change = "head -c 4096 /dev/urandom | dd of=$f conv=notrunc status=none"
                ssh(lab, "src", f"for f in $({pick}); do {change}; done")
                times = {}
                for name in ["ours", "rsync"][:: 1 - 2 * (k % 2)]:
                    os.sync()  # nobody pays for another tool's writeback
                    times[name] = time_ours(rehash) if name == "ours" else time_rsync()
                deltas[rehash].append((times["ours"], times["rsync"]))
            ssh(lab, "src", "rm -f /tmp/k")
        finally:
            lab.down()
    mb = full.bytes / 1e6
    print(f"data: {mb:.0f} MB in {full.files} files")
    ours = f"fleetmend {ours_full:6.2f}s ({mb / ours_full:5.0f} MB/s)"
    peer = f"tar|ssh relay {tar_full:6.2f}s ({mb / tar_full:5.0f} MB/s)"
    print(f"full   {ours}   {peer}   fleetmend at {tar_full / ours_full:4.2f} of the peer's speed")
    counts = iter(sent[1:])
    for rehash, how in ((True, "source hashes all"), (False, "hashes remembered")):
        for ours_delta, rsync_delta in deltas[rehash]:
            files, remembered = next(counts)
            print(
                f"delta  ({how}) fleetmend {ours_delta:5.2f}s "
                f"({files} files sent, {remembered} hashes remembered)   "
                f"rsync -a -c {rsync_delta:5.2f}s   "
                f"fleetmend takes {ours_delta / rsync_delta:4.2f}x the peer's time"
            )
        ratios = sorted(o / p for o, p in deltas[rehash])
        print(
            f"delta  ({how}) over {len(ratios)} rounds: fleetmend takes "
            f"{statistics.median(ratios):4.2f}x the peer's time "
            f"(median; {ratios[0]:4.2f}-{ratios[-1]:4.2f})"
        )


if __name__ == "__main__":
    main()
