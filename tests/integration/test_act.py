"""Plan, converge, rebuild, resume, locks and audit against a lab fleet.

The lab hosts run the `mini` test image: what a lab host can become with a
converge and no package download (packages this machine has, files, a user,
the stamp). Three hosts form replica set `rs` with a floor of two copies.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from fleetmend.cli.app import app
from fleetmend.fleet import Fleet
from fleetmend.lab import Fault, Lab
from fleetmend.lab.faults import FaultOptions
from tests.integration.lab_helpers import CliLab, os_release, require_root

NET = "127.77.202."
HOSTS = ("r1", "r2", "r3")


def write_inputs(root: Path) -> tuple[Path, Path]:
    images = root / "images"
    (images / "templates").mkdir(parents=True)
    os_id, version_id = os_release()
    mini = {
        "name": "mini",
        "version": "1",
        "os": {"id": os_id, "version_id": version_id},
        "packages": {"rsync": "any", "telnetd": "absent"},
        "files": {
            "/etc/mini.conf": {"content": "literal {{ not_a_template }}\n", "mode": "0640"},
            "/etc/mini/motd": {"template": "motd.j2"},
        },
        "groups": {"ops": {}},
        "users": {"ops": {"group": "ops", "shell": "/bin/bash", "home": "/home/ops"}},
        "services": {"ssh": {"process": "sshd"}},
        "sysctls": {"vm.swappiness": "1"},  # left out: lab hosts share the machine's kernel
    }
    (images / "mini.yaml").write_text(yaml.safe_dump(mini))
    (images / "templates" / "motd.j2").write_text(
        "{{ inventory_hostname }} of {{ fleetmend.replica_set }}\n"
    )
    inventory = {
        "all": {
            "vars": {
                "ansible_port": 2200,
                "fleetmend_image": "mini",
                "fleetmend_replica_set": "rs",
                "fleetmend_replica_sets": {"rs": {"min_live": 2}},
            },
            "hosts": {h: {"ansible_host": f"{NET}{i}"} for i, h in enumerate(HOSTS, start=11)},
        }
    }
    path = root / "fleet.yaml"
    path.write_text(yaml.safe_dump(inventory))
    return images, path


class ActLab(CliLab):
    def verdict(self, host: str) -> str:
        _, out, _ = self.cli("check", host, "--format", "json", "--timeout", "2")
        return str(json.loads(out)["hosts"][0]["verdict"])


@pytest.fixture(scope="module")
def act(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ActLab]:
    require_root()
    root = tmp_path_factory.mktemp("act")
    images, inventory = write_inputs(root)
    lab = Lab(root / "state")
    try:
        source = Fleet.load(images, inventory)
        lab.up_fleet(source)
        yield ActLab(lab, images, root / "state")
    finally:
        lab.down()


def test_1_non_interactive_without_yes_refuses(act: ActLab) -> None:
    code, out, err = act.cli("converge", "r1")
    assert code == 5
    assert "without confirmation" in err and "--yes" in err
    assert "r1" in out  # the plan was shown first
    assert act.verdict("r1") == "drifted"  # nothing changed
    assert act.db().execute("SELECT count(*) FROM runs").fetchone()[0] == 0


def test_2_converge_a_drifted_host_to_conformant(act: ActLab) -> None:
    act.lab.break_host("r1", Fault.DRIFT_FILE, FaultOptions(path="/etc/motd"))
    code, _, err = act.cli("converge", "r1", "r2", "r3", "--yes")
    assert code == 0, err
    for host in HOSTS:
        assert act.verdict(host) == "conformant"
    # the inline content reached the host byte for byte, not templated by Ansible
    upper = act.lab.host_dir("r1") / "upper" / "etc" / "mini.conf"
    assert upper.read_text() == "literal {{ not_a_template }}\n"


def test_3_rebuild_a_wiped_host_with_its_new_key(act: ActLab) -> None:
    old_key = act.lab.record().hosts["r2"].host_key
    act.lab.break_host("r2", Fault.WIPE_DISK)
    code, out, err = act.cli("rebuild", "r2", "--yes")
    assert code == 0, err
    new_key = act.lab.record().hosts["r2"].host_key
    assert new_key != old_key
    own = (act.state / "known_hosts").read_text()
    assert f"[{NET}12]:2200 {new_key}" in own and old_key not in own
    assert act.verdict("r2") == "conformant"
    code, out, _ = act.cli("audit", "verify")
    assert code == 0 and "intact" in out
    code, out, _ = act.cli("audit", "show", "--format", "json")
    assert [(e["action"], e["target"]) for e in json.loads(out)] == [("rebuild", "r2")]


def test_4_the_floor_refuses_a_second_rebuild(act: ActLab) -> None:
    act.lab.break_host("r3", Fault.DOWN)  # one copy gone: two healthy, the floor is two
    try:
        code, out, _ = act.cli("rebuild", "r1", "--yes")
        assert code == 5
        assert "floor" in out and "min_live 2" in out
        assert act.verdict("r1") == "conformant"
    finally:
        act.lab.heal_fault("r3")


def test_5_the_trip_wire_refuses_when_most_hosts_are_down(act: ActLab) -> None:
    act.lab.break_host("r1", Fault.DOWN)
    act.lab.break_host("r2", Fault.DOWN)
    try:
        code, out, _ = act.cli("rebuild", "r1", "--yes", "--timeout", "2")
        assert code == 5
        assert "trip-wire" in out and "2 of 3 hosts look failed" in out
    finally:
        act.lab.heal_fault("r1")
        act.lab.heal_fault("r2")


def test_6_a_stale_plan_is_refused(act: ActLab, tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    code, _, _ = act.cli("plan", "--out", str(plan))
    assert code == 0 and json.loads(plan.read_text())["actions"] == []
    act.lab.break_host("r3", Fault.DRIFT_FILE, FaultOptions(path="/etc/mini.conf"))
    code, _, err = act.cli("apply", str(plan), "--yes")
    assert code == 5 and "stale" in err
    code, _, _ = act.cli("plan", "--out", str(plan))
    assert json.loads(plan.read_text())["actions"][0]["host"] == "r3"
    code, _, err = act.cli("apply", str(plan), "--yes")
    assert code == 0, err
    assert act.verdict("r3") == "conformant"


def _steps(act: ActLab, run_id: str) -> list[tuple[str, str, int]]:
    rows = act.db().execute(
        "SELECT name, status, attempts FROM steps WHERE run_id = ? ORDER BY seq", (run_id,)
    )
    return [(r[0], r[1], r[2]) for r in rows]


def _latest_run(act: ActLab) -> str | None:
    row = act.db().execute("SELECT id FROM runs ORDER BY created_at DESC LIMIT 1").fetchone()
    return None if row is None else str(row[0])


@pytest.mark.parametrize("boundary", [0, 1, 2, 3, 4])
def test_7_sigkill_at_every_step_boundary_then_resume(act: ActLab, boundary: int) -> None:
    """Kill `rebuild` as soon as `boundary` steps are done, then resume to conformant."""
    act.lab.break_host("r2", Fault.WIPE_DISK)
    before = _latest_run(act)
    proc = act.spawn("rebuild", "r2", "--yes", "--command-timeout", "45")
    run_id = None
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            latest = _latest_run(act)
            if latest != before:
                run_id = latest
                done = sum(
                    1 for _, status, _ in _steps(act, run_id or "") if status in ("done", "skipped")
                )
                if done >= boundary:
                    os.kill(proc.pid, signal.SIGKILL)
                    break
            time.sleep(0.005)
    finally:
        proc.wait(timeout=30)
    assert run_id is not None, "the rebuild never recorded its run"
    finished = [name for name, status, _ in _steps(act, run_id) if status in ("done", "skipped")]
    code, _, err = act.cli("resume", run_id)
    assert code == 0, err
    assert "--command-timeout 45" in err  # hosts reached as the run started
    steps = _steps(act, run_id)
    assert all(status in ("done", "skipped") for _, status, _ in steps)
    for name, _, attempts in steps:
        if name in finished:
            assert attempts == 1, f"{name} finished before the kill and ran again"
    assert act.verdict("r2") == "conformant"


def test_8_two_concurrent_rebuilds_of_one_replica_set(act: ActLab) -> None:
    first = act.spawn("rebuild", "r2", "--yes")
    second = act.spawn("rebuild", "r3", "--yes")
    codes = sorted([first.wait(timeout=180), second.wait(timeout=180)])
    errors = "".join(p.stderr.read() for p in (first, second) if p.stderr)
    assert codes == [0, 5], errors  # exactly one proceeds
    # the other is stopped by the replica set's lock or, when the first has
    # already taken its host offline, by the floor: either way the copies are safe
    assert "is locked by run" in errors or "refused by safety rules" in errors
    assert act.db().execute("SELECT count(*) FROM locks").fetchone()[0] == 0


def test_9_the_playbook_provider_reports_the_new_key(act: ActLab, tmp_path: Path) -> None:
    """playbooks/reimage.yml as shipped reimages a lab host and reports its key."""
    inventory = yaml.safe_load(act.lab.inventory_path.read_text())
    inventory["all"]["hosts"]["r1"]["fleetmend_provider"] = "playbook"
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(inventory))
    old_key = act.lab.record().hosts["r1"].host_key
    result = CliRunner().invoke(
        app,
        ["--images", str(act.images), "-i", str(path), "--state-dir", str(act.state),
         "rebuild", "r1", "--yes"],
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    new_key = act.lab.record().hosts["r1"].host_key
    assert new_key != old_key
    assert f"[{NET}11]:2200 {new_key}" in (act.state / "known_hosts").read_text()
    assert act.verdict("r1") == "conformant"
