"""The lab against the real machine: namespaces, overlay roots, sshd, faults, teardown.

One lab of the shipped lab inventory serves the module; its fixture tears it
down (and checks nothing is left) also when a test fails midway.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import ansible_runner
import paramiko
import pytest

from fleetmend.catalog import Catalog
from fleetmend.errors import InputError
from fleetmend.fleet import Fleet
from fleetmend.lab import Fault, Lab, generated_hosts, hosts_from_fleet, procs
from fleetmend.lab.faults import FaultError, FaultOptions
from fleetmend.lab.lab import HostState, LabError, checkout_root
from tests.integration.lab_helpers import (
    banner_within,
    client,
    host_mounts_mention,
    require_root,
    run,
    tcp_refused,
)

REPO = Path(__file__).resolve().parents[2]


def lab_inventory(directory: Path, net: str = "127.77.200.") -> Path:
    """The shipped lab inventory on addresses of its own, so a demo lab left running on
    this machine (127.77.0.x) cannot collide with the test's."""
    text = (REPO / "inventories" / "lab.yaml").read_text().replace("127.77.0.", net)
    path = directory / "lab.yaml"
    path.write_text(text)
    return path


def start_lab(state: Path) -> Lab:
    require_root()
    fleet = Fleet.load(REPO / "images", lab_inventory(state))
    lab = Lab(state)
    lab.up_fleet(fleet)
    return lab


def assert_nothing_left(lab: Lab) -> None:
    assert procs.marked(lab.dir) == {}
    assert host_mounts_mention(lab.dir) == []


STALE = "[127.77.200.11]:2200 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE9jmcGeICAsmnXJ/8swVaE3sl/6m"
"""web-1's key as a rebuild in an earlier lab pinned it in fleetmend's own known_hosts."""
OTHER = "[192.0.2.1]:22 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE9jmcGeICAsmnXJ/8swVaE3sl/6m"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    state = tmp_path_factory.mktemp("state")
    (state / "known_hosts").write_text(f"{STALE}\n{OTHER}\n")
    lab = start_lab(state)
    try:
        yield lab
    finally:
        lab.down()
        assert_nothing_left(lab)


def test_every_host_answers_with_its_own_key_and_name(lab: Lab) -> None:
    names = sorted(lab.record().hosts)
    assert len(names) == 8
    for name in names:
        out = run(lab, name, "hostname; cat /proc/1/comm; id -u")
        assert out.split() == [name, "sshd", "0"]


def test_up_forgets_keys_pinned_for_its_hosts_before_their_new_keys(lab: Lab) -> None:
    # else `make demo` twice in one state directory finds web-1's key "CHANGED"
    assert (lab.dir.parent / "known_hosts").read_text() == f"{OTHER}\n"


def test_an_unknown_host_key_is_refused(lab: Lab, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.touch()
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        client(lab, "web-1", known_hosts=empty)


def test_hosts_are_isolated_from_the_machine_and_each_other(lab: Lab) -> None:
    out = run(lab, "web-1", f"ls -A {lab.dir.parent} | wc -l; echo x > /etc/only-web-1")
    assert out.strip() == "0"  # the lab's state directory is hidden
    root = checkout_root()
    if root is not None:
        assert run(lab, "web-1", f"ls -A {root} | wc -l").strip() == "0"
    assert not Path("/etc/only-web-1").exists()
    assert run(lab, "web-2", "test -e /etc/only-web-1 && echo yes || echo no").strip() == "no"
    upper = lab.host_dir("web-1") / "upper" / "etc" / "only-web-1"
    assert upper.read_text() == "x\n"  # the write landed in web-1's writable layer
    assert run(lab, "web-1", "ps -e --no-headers | wc -l").strip() != ""
    assert "sshd" in run(lab, "web-1", "ps -o comm= -p 1")


def test_data_volumes_live_in_the_writable_layer(lab: Lab) -> None:
    assert run(lab, "kv-1", "stat -c %a /var/lib/redis").strip() == "750"
    assert (lab.host_dir("kv-1") / "upper" / "var" / "lib" / "redis").is_dir()
    assert run(lab, "web-1", "test -d /srv/www && echo yes").strip() == "yes"


def test_ansible_runner_reaches_every_host(
    lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ansible-runner runs the `ansible` of PATH: the one installed beside this Python
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    result = ansible_runner.run(
        private_data_dir=str(tmp_path),
        inventory=str(lab.inventory_path),
        host_pattern="all",
        module="command",
        module_args="cat /etc/hostname",
        quiet=True,
        envvars={"ANSIBLE_HOST_KEY_CHECKING": "True"},
    )
    assert result.status == "successful", result.stdout.read()
    assert sorted(result.stats["ok"]) == sorted(lab.record().hosts)
    outputs = {
        e["event_data"]["host"]: e["event_data"]["res"]["stdout"]
        for e in result.events
        if e["event"] == "runner_on_ok"
    }
    assert outputs == {name: name for name in lab.record().hosts}


def test_up_again_leaves_running_hosts_alone(lab: Lab) -> None:
    before = {h.name: h.pid for h in lab.status()}
    fleet = Fleet.load(REPO / "images", lab_inventory(lab.dir.parent))
    lab.up_fleet(fleet)
    assert {h.name: h.pid for h in lab.status()} == before


def test_fault_down_refuses_connections_until_healed(lab: Lab) -> None:
    host = lab.record().hosts["kv-2"]
    run(lab, "kv-2", "echo kept > /var/lib/redis/mark")
    lab.break_host("kv-2", Fault.DOWN)
    assert tcp_refused(host.address, host.port)
    assert {h.name: h.state for h in lab.status()}["kv-2"] is HostState.STOPPED
    assert lab.heal_fault("kv-2") == [Fault.DOWN]
    assert run(lab, "kv-2", "cat /var/lib/redis/mark") == "kept\n"  # layer survives a restart


def test_fault_hang_accepts_but_never_answers(lab: Lab) -> None:
    host = lab.record().hosts["kv-3"]
    lab.break_host("kv-3", Fault.HANG)
    try:
        assert not banner_within(host.address, host.port, 1.0)
        with pytest.raises((paramiko.SSHException, TimeoutError, OSError)):
            client(lab, "kv-3", timeout=1.0)
        assert {h.name: h.state for h in lab.status()}["kv-3"] is HostState.HUNG
    finally:
        lab.heal_fault("kv-3", Fault.HANG)
    assert run(lab, "kv-3", "hostname") == "kv-3\n"


def _sums(lab: Lab, name: str) -> dict[str, tuple[str, str]]:
    """path -> (sha256, 'size mtime') of every file of the blob volume."""
    out = run(lab, name, "cd /srv/blobs && find . -type f -exec stat -c '%n %s %Y' {} + ")
    stats = {line.split()[0]: " ".join(line.split()[1:]) for line in out.splitlines()}
    sums = run(lab, name, "cd /srv/blobs && find . -type f -exec sha256sum {} +")
    return {
        line.split()[1]: (line.split()[0], stats[line.split()[1]]) for line in sums.splitlines()
    }


def test_fault_corrupt_data_is_silent_and_undone(lab: Lab) -> None:
    run(
        lab,
        "blob-1",
        "mkdir -p /srv/blobs/objects && for i in 1 2 3 4 5 6; do "
        "head -c 2048 /dev/urandom > /srv/blobs/objects/o$i; done; echo 7 > /srv/blobs/POSITION",
    )
    before = _sums(lab, "blob-1")
    injected = lab.break_host("blob-1", Fault.CORRUPT_DATA, FaultOptions(count=2, seed=7))
    after = _sums(lab, "blob-1")
    changed = sorted(p for p in before if before[p][0] != after[p][0])
    assert len(changed) == 2
    assert [f"/srv/blobs/{p[2:]}" for p in changed] == sorted(
        f["path"] for f in injected.detail["flipped"]
    )
    assert all(before[p][1] == after[p][1] for p in before)  # same size and mtime
    lab.heal_fault("blob-1")
    assert _sums(lab, "blob-1") == before


def test_fault_drift_file_changes_a_managed_file_and_is_undone(lab: Lab) -> None:
    before = run(lab, "web-2", "sha256sum /etc/motd; stat -c '%a %Y' /etc/motd")
    lab.break_host("web-2", Fault.DRIFT_FILE)
    assert "# drift injected by fleetmend lab" in run(lab, "web-2", "tail -1 /etc/motd")
    lab.heal_fault("web-2")
    assert run(lab, "web-2", "sha256sum /etc/motd; stat -c '%a %Y' /etc/motd") == before


def test_fault_remove_package_only_inside_the_host(lab: Lab) -> None:
    injected = lab.break_host("blob-2", Fault.REMOVE_PACKAGE, FaultOptions(package="rsync"))
    assert injected.detail == {"package": "rsync"}
    status = run(lab, "blob-2", "dpkg-query -W -f '${Status}' rsync")
    assert "install ok installed" not in status
    assert run(lab, "blob-3", "dpkg-query -W -f '${Status}' rsync") == "install ok installed"
    with pytest.raises(FaultError, match="package rsync was removed from blob-2") as exc:
        lab.heal_fault("blob-2")
    assert "converge the host" in exc.value.hint


def test_fault_stop_service_ends_its_processes(lab: Lab) -> None:
    # a stand-in daemon whose argv[0] is nginx (the lab has no init system to run one)
    run(lab, "web-1", "setsid bash -c 'exec -a nginx sleep 600' </dev/null >/dev/null 2>&1 &")
    count = "for i in $(seq 50); do pgrep -f '^nginx 600' >/dev/null && break; sleep 0.1; done; "
    assert run(lab, "web-1", count + "pgrep -c -f '^nginx 600' || true").strip() == "1"
    injected = lab.break_host("web-1", Fault.STOP_SERVICE)
    assert injected.detail["service"] == "nginx"
    assert run(lab, "web-1", "pgrep -c -f '^nginx 600' || true").strip() == "0"
    with pytest.raises(FaultError):
        lab.heal_fault("web-1")


def test_wipe_disk_then_reimage_gives_a_fresh_layer_and_a_new_key(lab: Lab) -> None:
    run(lab, "kv-1", "echo precious > /var/lib/redis/data")
    old_key = lab.record().hosts["kv-1"].host_key
    lab.break_host("kv-1", Fault.WIPE_DISK)
    assert not (lab.host_dir("kv-1") / "upper").exists()
    with pytest.raises(FaultError, match="disk was wiped") as exc:
        lab.heal_fault("kv-1")
    assert exc.value.hint == "rebuild it: fleetmend lab reimage kv-1"
    new_key = lab.reimage("kv-1")
    assert new_key != old_key
    assert new_key in lab.known_hosts_path.read_text()
    assert old_key not in lab.known_hosts_path.read_text()
    with client(lab, "kv-1") as ssh:  # strict checking accepts exactly the new key
        assert ssh.get_transport().get_remote_server_key().get_base64() == new_key.split()[1]  # type: ignore[union-attr]
    assert run(lab, "kv-1", "ls -A /var/lib/redis").strip() == ""
    assert lab.record().hosts["kv-1"].faults == []


def test_reimage_of_a_running_host_discards_its_writes(lab: Lab) -> None:
    run(lab, "web-2", "echo local > /etc/local-change")
    lab.reimage("web-2")
    assert run(lab, "web-2", "test -e /etc/local-change && echo yes || echo no") == "no\n"


def test_break_needs_a_running_host_and_names_its_choices(lab: Lab) -> None:
    with pytest.raises(FaultError, match="has no volume 'nope'"):
        lab.break_host("blob-3", Fault.CORRUPT_DATA, FaultOptions(volume="nope"))
    with pytest.raises(InputError, match="no lab host 'nope'"):
        lab.break_host("nope", Fault.DOWN)


def test_down_finds_hosts_of_a_crashed_run(tmp_path: Path) -> None:
    """A run that died before writing its record still leaves nothing behind."""
    require_root()
    lab = Lab(tmp_path)
    base = Catalog.load(REPO / "images").resolve("base")
    try:
        lab.up(generated_hosts(3, base, port=2211))
        pids = {h.pid for h in lab.record().hosts.values()}
        assert len(procs.marked(lab.dir)) == 3
        lab.record_path.unlink()  # the record is lost, as after a crash
        assert sorted(lab.down()) == ["lab-01", "lab-02", "lab-03"]
        assert not any(procs.alive(p) for p in pids if p)
    finally:
        lab.down()
        assert_nothing_left(lab)
        shutil.rmtree(tmp_path / "lab", ignore_errors=True)


def test_non_loopback_hosts_are_refused(tmp_path: Path) -> None:
    fleet = Fleet.load(REPO / "images", REPO / "inventories" / "example-prod.yaml")
    with pytest.raises(InputError, match=r"is not in 127\.0\.0\.0/8"):
        hosts_from_fleet(fleet)


def test_lab_json_status(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from fleetmend.cli.app import app

    result = CliRunner().invoke(
        app, ["--state-dir", str(lab.dir.parent), "lab", "status", "--format", "json"]
    )
    assert result.exit_code == 0, result.stdout
    data = json.loads(result.stdout)
    assert {h["name"] for h in data["hosts"]} == set(lab.record().hosts)
    assert all(h["state"] == "running" for h in data["hosts"])
    assert all(h["host_key_fingerprint"].startswith("SHA256:") for h in data["hosts"])


def test_an_address_in_use_is_refused_not_shadowed(tmp_path: Path) -> None:
    """A second lab on the same addresses must fail, not answer with the first lab's sshd."""
    require_root()
    base = Catalog.load(REPO / "images").resolve("base")
    first, second = Lab(tmp_path / "one"), Lab(tmp_path / "two")
    try:
        first.up(generated_hosts(1, base, port=2214))
        with pytest.raises(LabError, match="already in use"):
            second.up(generated_hosts(1, base, port=2214))
        assert procs.marked(second.dir) == {}
    finally:
        first.down()
        second.down()
        assert_nothing_left(first)
        assert_nothing_left(second)
