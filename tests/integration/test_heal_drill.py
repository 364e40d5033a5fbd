"""heal and drills on the lab fleet of inventories/lab.yaml (moved to 127.77.204.x).

Every shipped scenario runs against the lab: its recovery time is measured,
no file is lost, no replica set goes below its floor. heal refuses when the
trip wire trips; heal --watch repairs a fault injected while it runs, goes
quiet, and a controller killed mid-repair resumes the run from the journal.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fleetmend.fleet import Fleet
from fleetmend.lab import Fault, Lab
from tests.integration.lab_helpers import CliLab, require_root, run

REPO = Path(__file__).resolve().parents[2]
NET = "127.77.204."
SCOPE = ["web-1", "web-2", "blob-1", "blob-2", "blob-3"]
SEED = {
    "web": "mkdir -p /srv/www/img && printf '<h1>lab</h1>\\n' > /srv/www/index.html && "
    "head -c 70000 /dev/zero | tr '\\0' w > /srv/www/img/big && echo 7 > /srv/www/.generation",
    "blob": "mkdir -p /srv/blobs/objects && for i in 1 2 3 4 5 6; do "
    "printf 'blob %s\\n' $i > /srv/blobs/objects/o$i; head -c 9000 /dev/zero >> "
    "/srv/blobs/objects/o$i; done; echo 3 > /srv/blobs/POSITION",
}


@dataclass
class DrillLab(CliLab):
    root: Path

    def verdicts(self) -> dict[str, str]:
        _, out, _ = self.cli("check", *SCOPE, "--format", "json", "--timeout", "2")
        return {h["host"]: h["verdict"] for h in json.loads(out)["hosts"]}

    def drill(self, scenario: str) -> dict[str, object]:
        code, out, err = self.cli("drill", str(REPO / "drills" / scenario), "--yes", "-f", "json")
        report: dict[str, object] = json.loads(out)
        assert code == 0, f"{scenario}: {json.dumps(report['expectations'], indent=1)}\n{err}"
        return report


@pytest.fixture(scope="module")
def dl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DrillLab]:
    require_root()
    root = tmp_path_factory.mktemp("drill")
    inventory = root / "lab.yaml"
    inventory.write_text((REPO / "inventories" / "lab.yaml").read_text().replace("127.77.0.", NET))
    lab = Lab(root / "state")
    try:
        lab.up_fleet(Fleet.load(REPO / "images", inventory))
        for host in SCOPE:
            run(lab, host, SEED[host.split("-")[0]])
        d = DrillLab(lab, REPO / "images", root / "state", root)
        # the drill's precondition: a healthy fleet; heal converges the fresh lab to it
        code, _, err = d.cli("heal", *SCOPE, "--yes", "--max-parallel", "5")
        assert code == 0, err
        yield d
    finally:
        lab.down()


def _check_report(report: dict[str, object], faulted: set[str]) -> None:
    rto = report["rto"]
    assert isinstance(rto, dict)
    assert set(rto["hosts"]) == faulted
    assert all(isinstance(v, float) and v > 0 for v in rto["hosts"].values()), rto
    assert rto["overall"] == max(rto["hosts"].values())
    rpo = report["rpo"]
    assert isinstance(rpo, dict) and rpo["files"] == 0 and rpo["bytes"] == 0
    floor = report["floor"]
    assert isinstance(floor, dict) and set(floor) == {"web-lab", "blobs-lab"}
    assert all(f["held"] and f["lowest"] >= f["min_live"] for f in floor.values()), floor
    assert report["passed"] is True


def test_1_lose_one_host(dl: DrillLab) -> None:
    report = dl.drill("lose-one-host.yaml")
    _check_report(report, {"web-1"})
    phases = {e["phase"] for e in report["events"] if e["host"] == "web-1"}  # type: ignore[attr-defined]
    assert {"down", "retry-probe", "reimage", "converge", "reseed", "verify"} <= phases
    floor = report["floor"]
    assert isinstance(floor, dict) and floor["web-lab"]["lowest"] == 1  # web-2 alone meanwhile


def test_2_the_report_renders_in_a_real_headless_browser(dl: DrillLab, tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    assert chromium, "chromium is missing: `make test` installs it (scripts/install-system-deps.sh)"
    row = dl.db().execute("SELECT id FROM drills ORDER BY started_at DESC LIMIT 1").fetchone()
    code, _, err = dl.cli("drill", "report", row[0], "--out", str(tmp_path))
    assert code == 0, err
    page = tmp_path / "report.html"
    assert page.exists() and (tmp_path / "report.json").exists()
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1000,1400",
    ]  # fmt: skip
    dom = subprocess.run(
        [chromium, *flags, "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    assert "PASSED" in dom and 'id="rto"' in dom
    assert dom.count('class="phase phase-') >= 5 and 'class="verified"' in dom
    shot = tmp_path / "page.png"
    subprocess.run(
        [chromium, *flags, f"--screenshot={shot}", page.as_uri()],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (1000, 1400)
    assert len(png) > 30_000, "the screenshot is (nearly) blank"


def test_3_silent_corruption(dl: DrillLab) -> None:
    report = dl.drill("silent-corruption.yaml")
    _check_report(report, {"blob-2"})
    heal = report["heal"]
    assert isinstance(heal, dict)
    assert [r[0] for r in heal["hosts"]["blob-2"]["rungs"]] == ["reseed"]  # no rebuild needed


def test_4_hung_host(dl: DrillLab) -> None:
    report = dl.drill("hung-host.yaml")
    _check_report(report, {"web-2"})
    heal = report["heal"]
    assert isinstance(heal, dict)
    rungs = [r[0] for r in heal["hosts"]["web-2"]["rungs"]]
    assert rungs == ["retry-probe", "retry-probe", "rebuild"]


def test_5_lose_a_site(dl: DrillLab) -> None:
    report = dl.drill("lose-a-site.yaml")
    _check_report(report, {"web-1", "blob-1"})


def test_6_heal_refuses_when_the_trip_wire_trips(dl: DrillLab) -> None:
    down = ["web-1", "web-2", "blob-1"]
    for host in down:
        dl.lab.break_host(host, Fault.DOWN)
    try:
        code, out, err = dl.cli("heal", *SCOPE, "--yes", "--timeout", "2", "-f", "json")
        assert code == 5, err
        report = json.loads(out)
        assert report["tripped"] is True and report["runs"] == []
        for host in down:
            assert report["hosts"][host]["state"] == "refused"
            assert "3 of 5 hosts look failed" in report["hosts"][host]["detail"]
        assert "trip wire" in err
    finally:
        for host in down:
            dl.lab.heal_fault(host, Fault.DOWN)


def _heal_runs(dl: DrillLab) -> list[tuple[str, str]]:
    rows = dl.db().execute("SELECT id, status FROM runs WHERE kind = 'heal' ORDER BY created_at")
    return [(str(r[0]), str(r[1])) for r in rows]


def _wait(what: str, seconds: float, ok: object) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if callable(ok) and ok():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def test_7_watch_repairs_goes_quiet_and_resumes_after_a_kill(dl: DrillLab) -> None:
    metrics = dl.root / "heal.prom"
    # this module's drills already made ~10 repairs this hour: the default budget
    # (10 an hour) would rightly hold this controller to checks only
    args = ("heal", *SCOPE, "--watch", "2", "--yes", "--timeout", "2",
            "--max-repairs-per-hour", "100", "--metrics-file", str(metrics))  # fmt: skip
    before = len(_heal_runs(dl))
    controller = dl.spawn(*args, new_session=True)
    try:
        first = "fleetmend_heal_ticks_total 1"
        _wait("the first tick", 60, lambda: metrics.exists() and first in metrics.read_text())
        dl.lab.break_host("web-2", Fault.DRIFT_FILE)  # injected while it runs

        # the converge that repairs it starts: kill the controller (and its children) mid-repair
        def converging() -> bool:
            runs = _heal_runs(dl)[before:]
            if not runs:
                return False
            row = (
                dl.db()
                .execute(
                    "SELECT status FROM steps WHERE run_id = ? AND name = 'converge'",
                    (runs[-1][0],),
                )
                .fetchone()
            )
            return row is not None and row[0] == "running"

        _wait("heal to start converging web-2", 60, converging)
        os.killpg(controller.pid, signal.SIGKILL)
        controller.wait(timeout=30)
        (run_id, status), *_ = _heal_runs(dl)[before:]
        assert status == "running"  # left in the journal, unfinished
        # a new controller resumes that run before anything else, then goes quiet
        controller = dl.spawn(*args, new_session=True)
        _wait("the run to be resumed and finished", 120,
              lambda: dict(_heal_runs(dl)).get(run_id) == "done")  # fmt: skip
        attempts = (
            dl.db()
            .execute("SELECT attempts FROM steps WHERE run_id = ? AND name = 'converge'", (run_id,))
            .fetchone()[0]
        )
        assert attempts == 2  # started before the kill, run again after it
        healthy = 'fleetmend_heal_hosts{state="healthy"} 5'
        _wait("a quiet tick", 60, lambda: healthy in metrics.read_text())
        quiet = len(_heal_runs(dl))
        ticks = int(metrics.read_text().split("\nfleetmend_heal_ticks_total ")[1].split()[0])
        _wait("two more ticks", 30, lambda: f"ticks_total {ticks + 2}" in metrics.read_text())
        assert len(_heal_runs(dl)) == quiet, "a healthy fleet made the controller act"
        assert dl.verdicts()["web-2"] == "conformant"
        text = metrics.read_text()
        assert "fleetmend_heal_tripped 0" in text and "fleetmend_heal_repairs_last_hour" in text
    finally:
        if controller.poll() is None:
            controller.send_signal(signal.SIGTERM)
            try:
                controller.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(controller.pid, signal.SIGKILL)
                controller.wait()


def test_8_a_fault_injected_by_playbook_as_on_a_real_fleet(dl: DrillLab) -> None:
    """The `playbook:` fault path, for fleets that are not a lab, run against the lab."""
    scenario = dl.root / "drift.yaml"
    scenario.write_text(
        "name: hand-edit\n"
        "scope: [web, blobs]\n"
        "faults:\n"
        f"  - playbook: {REPO / 'drills' / 'faults' / 'drift-file.yml'}\n"
        "    vars: {path: /etc/motd}\n"
        "    hosts: [blob-3]\n"
        "expect: {rto_seconds: 180}\n"
    )
    code, out, err = dl.cli("drill", str(scenario), "--yes", "-f", "json")
    assert code == 0, err
    report = json.loads(out)
    _check_report(report, {"blob-3"})
    assert [r[0] for r in report["heal"]["hosts"]["blob-3"]["rungs"]] == ["converge"]
    missing = dl.root / "missing.yaml"
    missing.write_text(
        "name: x\nfaults:\n  - {fault: down, hosts: [web-1]}\n"
        "  - {playbook: nowhere.yml, hosts: [web-2]}\nexpect: {rto_seconds: 9}\n"
    )
    code, _, err = dl.cli("drill", str(missing), "--yes")
    assert code == 2 and "no playbook nowhere.yml" in err, err
    assert dl.verdicts()["web-1"] == "conformant"  # refused before any fault
