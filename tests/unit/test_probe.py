"""The probe: its script runs under plain sh here, and its output parses, or fails clearly."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from fleetmend.facts import ProbeError, parse_probe, probe_script
from fleetmend.fleet import Fleet
from fleetmend.render import DesiredState


@pytest.fixture
def kv(repo: Path) -> DesiredState:
    fleet = Fleet.load(repo / "images", repo / "inventories" / "lab.yaml")
    return fleet.desired(fleet.inventory.host("kv-1"))


def run_locally(script: str) -> str:
    """The probe under this machine's /bin/sh: what a host without Python runs."""
    return subprocess.run(
        ["sh", "-s"], input=script, capture_output=True, text=True, check=True
    ).stdout


def test_probe_runs_under_posix_sh_and_parses(kv: DesiredState) -> None:
    facts = parse_probe("kv-1", kv, run_locally(probe_script(kv)))
    assert facts.os_id and facts.os_version_id
    assert set(facts.packages) == set(kv.packages)
    assert set(facts.files) == set(kv.files)
    assert set(facts.sysctls) == set(kv.sysctls)
    assert set(facts.volumes) == set(kv.volumes)
    assert facts.sysctls["vm.swappiness"] == Path("/proc/sys/vm/swappiness").read_text().strip()
    if shutil.which("dpkg-query"):
        assert facts.family == "dpkg"


def test_hostile_file_names_are_quoted(kv: DesiredState) -> None:
    evil = "/tmp/x'; touch /tmp/fleetmend-pwned; echo '"
    state = kv.model_copy(update={"files": {evil: kv.files["/etc/motd"]}})
    facts = parse_probe("kv-1", state, run_locally(probe_script(state)))
    assert not facts.files[evil].exists
    assert not Path("/tmp/fleetmend-pwned").exists()


OUTPUT = """@@fleetmend-probe 1
@@os
ID=debian
VERSION_ID="12"
@@stamp
{"image": "kv", "version": "3.2", "digest": "abc", "time": "2026-11-25T10:00:00Z"}
@@packages
dpkg
redis-server\t5:7.0.15-1~deb12u1\tii\x20
rsync\t3.2.7-1\trc\x20
@@files
1
0
@@stat
644\troot\troot\tregular file
@@sums
e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
@@service 0
process\tactive\tenabled
@@sysctls
/proc/sys/net/ipv4/tcp_rmem:4096\t131072  6291456
@@user 0
ops:x:1001:1001::/home/ops:/bin/bash
ops
ops adm
@@group 0
ops:x:1001:
@@volume 0
yes
position\t0\t12345
health\t1\tCould not connect to Redis
264212084\t83101068
@@end
"""


def _state(kv: DesiredState) -> DesiredState:
    return kv.model_copy(
        update={
            "packages": {"redis-server": "any", "rsync": "any"},
            "files": {"/etc/a": kv.files["/etc/motd"], "/etc/b": kv.files["/etc/motd"]},
            "services": {"redis-server": kv.services["redis-server"]},
            "sysctls": {"net.ipv4.tcp_rmem": "4096 131072 6291456", "vm.nope": "1"},
            "users": {"ops": kv.users["ops"]},
            "groups": {"ops": kv.groups["ops"]},
            "volumes": {"data": kv.volumes["data"]},
        }
    )


def test_parse_every_section(kv: DesiredState) -> None:
    facts = parse_probe("kv-1", _state(kv), OUTPUT)
    assert (facts.os_id, facts.os_version_id) == ("debian", "12")
    assert facts.stamp is not None and facts.stamp.image == "kv"
    assert facts.packages == {"redis-server": "5:7.0.15-1~deb12u1", "rsync": None}  # rc: removed
    assert facts.files["/etc/a"].mode == "0644" and facts.files["/etc/a"].owner == "root"
    assert not facts.files["/etc/b"].exists
    assert facts.services["redis-server"].running is True
    assert facts.sysctls == {"net.ipv4.tcp_rmem": "4096 131072 6291456", "vm.nope": None}
    user = facts.users["ops"]
    assert (user.uid, user.group, user.groups, user.shell) == (
        1001,
        "ops",
        ["ops", "adm"],
        "/bin/bash",
    )
    assert facts.groups["ops"].gid == 1001
    volume = facts.volumes["data"]
    assert (volume.position, volume.health_rc, volume.health_output) == (
        "12345",
        1,
        "Could not connect to Redis",
    )
    assert volume.free_kb == 83101068


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        ("", "does not start with its header"),
        ("bash: sh: not found\n", "does not start with its header"),
        (OUTPUT.replace("@@end\n", ""), "ends early"),
        (OUTPUT.replace("@@files\n1\n0\n", "@@files\n1\n"), "unreadable file presence"),
        (OUTPUT.replace("644\troot\troot\tregular file", "644 root"), "unreadable file facts"),
        (OUTPUT.replace("@@sums\ne3b0", "@@sums\n@@x\ne3b0"), "no checksum for '/etc/a'"),
        (OUTPUT.replace("/proc/sys/net/ipv4/tcp_rmem:", "garbage"), "unreadable sysctl line"),
        (OUTPUT.replace("@@service 0\n", ""), "lacks the service section"),
        (OUTPUT.replace("ops:x:1001:1001", "ops:x:abc:1001"), "unreadable probe output"),
        (OUTPUT.replace("health\t1\t", "health:1"), "unreadable volume health line"),
    ],
)
def test_broken_output_is_a_probe_error(kv: DesiredState, broken: str, message: str) -> None:
    with pytest.raises(ProbeError, match=message):
        parse_probe("kv-1", _state(kv), broken)


def test_unreadable_stamp_is_reported_not_raised(kv: DesiredState) -> None:
    facts = parse_probe("kv-1", _state(kv), OUTPUT.replace('{"image"', '{"imag'))
    assert facts.stamp is None
    assert facts.stamp_error and facts.stamp_error.startswith(
        "unreadable /etc/fleetmend/stamp.json"
    )
