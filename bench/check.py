"""`fleetmend check` against its peers, on a lab fleet, in the same run.

Three columns for the same items (by default 30 files, 20 packages, 5 sysctls
per host, as the issue's scale note):
  fleetmend    run_check: render, one probe per host, parse, judge
  lower bound  a short paramiko script: one connection, one shell command per
               host printing the same facts, no parsing (the floor for any tool)
  ansible      `ansible-playbook --check --diff playbooks/converge.yml` with the
               same desired state as host variables; slow, so run on fewer hosts
               and reported per host

    sudo .venv/bin/python bench/check.py --hosts 20 100 --ansible-hosts 3
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import paramiko
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from fleetmend.check import CheckOptions, run_check  # noqa: E402
from fleetmend.fleet import Fleet  # noqa: E402
from fleetmend.lab import Lab, generated_hosts  # noqa: E402
from fleetmend.render import DesiredState  # noqa: E402
from fleetmend.transport.ssh import Timeouts  # noqa: E402

PACKAGES = [
    "coreutils", "bash", "dpkg", "apt", "tar", "gzip", "sed", "grep", "findutils", "procps",
    "rsync", "openssh-server", "openssh-client", "ca-certificates", "util-linux", "iproute2",
    "make", "git", "perl", "python3",
]  # fmt: skip
SYSCTLS = [
    "vm.swappiness",
    "net.core.somaxconn",
    "kernel.pid_max",
    "fs.file-max",
    "vm.overcommit_memory",
]


def bench_images(directory: Path, files: int) -> Path:
    images = directory / "images"
    images.mkdir(parents=True)
    image = {
        "name": "bench",
        "version": "1",
        "packages": dict.fromkeys(PACKAGES, "any"),
        "files": {
            f"/etc/bench/file{i:02d}.conf": {"content": f"# bench file {i}\nvalue = {i}\n" * 20}
            for i in range(files)
        },
        "sysctls": {k: Path("/proc/sys", *k.split(".")).read_text().strip() for k in SYSCTLS},
        "description": "what the issue's scale note describes",
    }
    (images / "bench.yaml").write_text(yaml.safe_dump(image))
    return images


def lower_bound_command(state: DesiredState) -> str:
    files = " ".join(shlex.quote(f) for f in state.files)
    sysctls = " ".join(shlex.quote("/proc/sys/" + k.replace(".", "/")) for k in state.sysctls)
    packages = " ".join(shlex.quote(p) for p in state.packages)
    return (
        f"cat /etc/os-release; dpkg-query -W -f='${{Package}} ${{Version}}\\n' {packages}; "
        f"stat -c '%a %U %G %n' {files}; sha256sum {files}; cat {sysctls}"
    )


def run_lower_bound(fleet: Fleet, lab: Lab, forks: int) -> float:
    known = paramiko.HostKeys(str(lab.known_hosts_path))
    key = paramiko.PKey.from_path(str(lab.key_path))

    def one(name: str) -> int:
        host = fleet.inventory.host(name)
        command = lower_bound_command(fleet.desired(host))
        client = paramiko.SSHClient()
        client._host_keys = known  # type: ignore[attr-defined]
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.connect(host.address, port=host.port, username="root", pkey=key,
                       look_for_keys=False, allow_agent=False, timeout=10)  # fmt: skip
        _, out, _ = client.exec_command(command)
        size = len(out.read())
        client.close()
        return size

    start = time.perf_counter()
    with ThreadPoolExecutor(forks) as pool:
        sizes = list(pool.map(one, list(fleet.inventory.hosts)))
    assert all(sizes)
    return time.perf_counter() - start


def run_fleetmend(fleet: Fleet, state_dir: Path, forks: int) -> float:
    options = CheckOptions(state_dir=state_dir, forks=forks, timeouts=Timeouts(),
                           ssh_config=None, user_known_hosts=[])  # fmt: skip
    start = time.perf_counter()
    report = run_check(fleet, fleet.inventory.select([]), options, [])
    seconds = time.perf_counter() - start
    assert not [h for h in report.hosts if h.verdict.value == "unreachable"], report.hosts
    return seconds


def run_ansible(fleet: Fleet, lab: Lab, hosts: list[str], work: Path) -> float:
    inventory = yaml.safe_load(lab.inventory_path.read_text())
    keep = {h: inventory["all"]["hosts"][h] for h in hosts}
    for name, vars_ in keep.items():
        vars_["fleetmend_desired"] = fleet.desired(fleet.inventory.host(name)).model_dump(
            mode="json"
        )
        vars_["fleetmend_manage_services"] = False
        vars_["fleetmend_apply_sysctls"] = False
    inventory["all"]["hosts"] = keep
    inventory["all"].pop("children", None)
    path = work / "ansible-inventory.yaml"
    path.write_text(yaml.safe_dump(inventory))
    env = {**os.environ, "ANSIBLE_HOST_KEY_CHECKING": "True", "ANSIBLE_NOCOLOR": "1",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}  # fmt: skip
    start = time.perf_counter()
    result = subprocess.run(
        ["ansible-playbook", "--check", "--diff", "-f", "5", "-i", str(path),
         str(REPO / "playbooks" / "converge.yml")],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    if result.returncode not in (0, 2):
        raise SystemExit(
            f"ansible-playbook failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        )
    return seconds


def prepare(fleet: Fleet, lab: Lab) -> None:
    """Write the managed files so every tool compares real content, not missing files."""
    for name in fleet.inventory.hosts:
        state = fleet.desired(fleet.inventory.host(name))
        payload = json.dumps({p: f.content for p, f in state.files.items()})
        script = (
            "import json,os,sys\n"
            "for p,c in json.load(sys.stdin).items():\n"
            "    os.makedirs(os.path.dirname(p),exist_ok=True); open(p,'w').write(c)\n"
        )
        ssh = ["ssh", "-F", str(lab.ssh_config_path), name]
        subprocess.run(
            [*ssh, "python3", "-c", shlex.quote(script)],
            input=payload,
            text=True,
            check=True,
            capture_output=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--hosts", type=int, nargs="+", default=[20, 100])
    parser.add_argument("--ansible-hosts", type=int, default=3)
    parser.add_argument("--files", type=int, default=30)
    parser.add_argument("--forks", type=int, default=20)
    args = parser.parse_args()
    items = f"{args.files} files, {len(PACKAGES)} packages, {len(SYSCTLS)} sysctls"
    print(f"items per host: {items}; forks {args.forks}")
    header = ["hosts", "fleetmend", "lower bound", "ratio", "ansible/host", "ansible ratio"]
    widths = [5, 10, 11, 6, 12, 13]
    print("  ".join(f"{h:>{w}}" for h, w in zip(header, widths, strict=True)))
    for count in args.hosts:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            images = bench_images(work, args.files)
            lab = Lab(work / "state")
            try:
                from fleetmend.catalog import Catalog

                image = Catalog.load(images).resolve("bench")
                lab.up(generated_hosts(count, image, port=2292))
                fleet = Fleet.load(images, lab.inventory_path)
                prepare(fleet, lab)
                run_fleetmend(fleet, work / "state", args.forks)  # warm-up: imports, caches
                ours = min(run_fleetmend(fleet, work / "state", args.forks) for _ in range(3))
                floor = min(run_lower_bound(fleet, lab, args.forks) for _ in range(3))
                few = sorted(fleet.inventory.hosts)[: args.ansible_hosts]
                ansible = run_ansible(fleet, lab, few, work) / len(few)
                ansible_total = ansible * count
                print(
                    f"{count:>5}  {ours:>9.2f}s  {floor:>10.2f}s  {ours / floor:>5.2f}x  "
                    f"{ansible:>11.1f}s  {ansible_total / ours:>11.0f}x"
                )
            finally:
                lab.down()
    print("ratio: fleetmend / lower bound; ansible ratio: ansible per host x hosts / fleetmend")


if __name__ == "__main__":
    main()
