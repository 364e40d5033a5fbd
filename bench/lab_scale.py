"""How fast the lab starts and stops N hosts, and what each costs in memory.

Peer, measured in the same run: N plain sshd processes on the same loopback
addresses with no namespaces or overlay (the floor any lab of real sshd hosts
has to pay). Prints times, proportional memory (PSS) per host, and the ratios.

    sudo .venv/bin/python bench/lab_scale.py --hosts 50
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from fleetmend.catalog import Catalog  # noqa: E402
from fleetmend.lab import Lab, generated_hosts  # noqa: E402
from fleetmend.lab.sshfiles import keygen  # noqa: E402


def pss_kb(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                total += int(line.split()[1])
    return total


def wait_banner(address: str, port: int) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, port), timeout=0.5) as s:
                if s.recv(8).startswith(b"SSH-"):
                    return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"{address}:{port} did not answer")


def bench_lab(n: int, state: Path) -> tuple[float, float, float]:
    lab = Lab(state)
    specs = generated_hosts(n, Catalog.load(REPO / "images").resolve("base"), port=2290)
    t0 = time.perf_counter()
    lab.up(specs)
    up = time.perf_counter() - t0
    pids = []
    for host in lab.record().hosts.values():
        assert host.pid is not None
        init = lab.init_of(host)
        pids += [host.pid, *([init] if init else [])]
    pss = pss_kb(pids) / n / 1024
    t0 = time.perf_counter()
    lab.down()
    return up, time.perf_counter() - t0, pss


def bench_plain_sshd(n: int, work: Path) -> tuple[float, float, float]:
    """N sshd in one shared mount namespace (only for a private /run/sshd, which sshd needs)."""
    key = work / "hostkey"
    keygen(key, "bench")
    addresses = [f"127.79.{i // 200}.{i % 200 + 10}" for i in range(1, n + 1)]
    sshd = (
        f"/usr/sbin/sshd -D -e -f /dev/null -h {key} -o PidFile=none -o UsePAM=no "
        "-o ListenAddress=$a:2291"
    )
    script = (
        "mount -t tmpfs tmpfs /run && mkdir /run/sshd && "
        f"for a in {' '.join(addresses)}; do {sshd} 2>/dev/null & done; wait"
    )
    t0 = time.perf_counter()
    wrapper = subprocess.Popen(["unshare", "--mount", "sh", "-c", script], start_new_session=True)
    try:
        for address in addresses:
            wait_banner(address, 2291)
        up = time.perf_counter() - t0
        # `unshare` without --fork execs the shell, so the daemons are its children
        children = Path(f"/proc/{wrapper.pid}/task/{wrapper.pid}/children").read_text()
        pss = pss_kb([int(p) for p in children.split()]) / n / 1024
        t0 = time.perf_counter()
    finally:
        os.killpg(wrapper.pid, signal.SIGKILL)
        wrapper.wait()
    return up, time.perf_counter() - t0, pss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        lab = bench_lab(args.hosts, Path(tmp))
        plain = bench_plain_sshd(args.hosts, Path(tmp))
    print(f"{args.hosts} hosts          up (s)   down (s)   PSS/host (MB)")
    print(f"fleetmend lab     {lab[0]:7.2f}   {lab[1]:8.2f}   {lab[2]:13.2f}")
    print(f"plain sshd        {plain[0]:7.2f}   {plain[1]:8.2f}   {plain[2]:13.2f}")
    # killing plain sshd is instant; a down ratio against ~0 s would say nothing
    down_ratio = f"{lab[1] / plain[1]:8.2f}" if plain[1] >= 0.01 else f"{'-':>8}"
    print(f"ratio (lab/plain) {lab[0] / plain[0]:7.2f}   {down_ratio}   {lab[2] / plain[2]:13.2f}")


if __name__ == "__main__":
    main()
