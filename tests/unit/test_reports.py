"""Reports for programs (JSON, JUnit, Prometheus) and check history in real SQLite."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from contextlib import closing
from pathlib import Path

from fleetmend import history, reports, statedb
from fleetmend.check import CheckReport, HostReport, ReplicaSetReport
from fleetmend.drift import DriftItem, DriftKind, Verdict
from fleetmend.errors import ExitCode


def make_report(
    web2: Verdict = Verdict.DRIFTED, at: str = "2026-11-25T10:00:00+00:00"
) -> CheckReport:
    item = DriftItem(
        kind=DriftKind.FILE, target="/etc/motd", expected="sha256:a", actual="sha256:b"
    )
    waived = DriftItem(
        kind=DriftKind.SYSCTL,
        target="vm.swappiness",
        expected="10",
        actual="60",
        waived="ok (until 2026-12-31)",
    )
    hosts = [
        HostReport(
            host="web-1",
            image="web",
            replica_set="web-lab",
            site="lab",
            verdict=Verdict.CONFORMANT,
            items=[waived],
        ),
        HostReport(
            host="web-2",
            image="web",
            replica_set="web-lab",
            site="lab",
            verdict=web2,
            items=[item] if web2 is Verdict.DRIFTED else [],
            volumes={"content": {"position": "7", "health_rc": 0, "size_kb": 100, "free_kb": 40}},
        ),
        HostReport(
            host="kv-1",
            image="kv",
            replica_set="kv-lab",
            site="lab",
            verdict=Verdict.UNREACHABLE,
            reason="timeout",
            detail='no SSH banner "quoted"',
        ),
    ]
    sets = [
        ReplicaSetReport(
            name="kv-lab", min_live=2, members=["kv-1", "kv-2"], checked=["kv-1"], healthy=[]
        ),
        ReplicaSetReport(
            name="web-lab",
            min_live=1,
            members=["web-1", "web-2"],
            checked=["web-1", "web-2"],
            healthy=["web-1", "web-2"],
        ),
    ]
    return CheckReport(
        source="lab.yaml", started_at=at, seconds=1.5, hosts=hosts, replica_sets=sets
    )


def test_exit_codes() -> None:
    assert make_report().exit_code() is ExitCode.HOSTS_FAILED
    only_web = make_report()
    only_web.hosts = only_web.hosts[:2]
    assert only_web.exit_code() is ExitCode.DRIFT
    only_web.hosts = only_web.hosts[:1]
    assert only_web.exit_code() is ExitCode.OK


def test_json() -> None:
    data = json.loads(reports.to_json(make_report()))
    assert data["counts"] == {"conformant": 1, "drifted": 1, "failed": 0, "unreachable": 1}
    assert data["exit_code"] == 4
    assert [rs["under_floor"] for rs in data["replica_sets"]] == [True, False]


def test_junit_one_testcase_per_host_a_failure_per_item() -> None:
    suite = ET.fromstring(reports.to_junit(make_report()))
    assert suite.get("tests") == "3" and suite.get("failures") == "1" and suite.get("errors") == "1"
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert cases["web-1"].find("failure") is None
    assert "waived sysctl vm.swappiness" in (cases["web-1"].findtext("system-out") or "")
    (failure,) = cases["web-2"].findall("failure")
    assert failure.get("type") == "file"
    assert failure.get("message") == "/etc/motd: expected sha256:a, found sha256:b"
    error = cases["kv-1"].find("error")
    assert error is not None and error.get("type") == "timeout"


def test_prometheus_text_exposition() -> None:
    text = reports.to_prometheus(make_report())
    lines = text.splitlines()
    assert 'fleetmend_host_verdict{host="web-2",image="web",verdict="drifted"} 1' in lines
    assert 'fleetmend_host_verdict{host="web-2",image="web",verdict="conformant"} 0' in lines
    assert 'fleetmend_host_drift_items{host="web-2"} 1' in lines
    assert 'fleetmend_host_waived_items{host="web-1"} 1' in lines
    assert 'fleetmend_volume_free_bytes{host="web-2",volume="content"} 40960' in lines
    assert 'fleetmend_replica_set_under_floor{replica_set="kv-lab"} 1' in lines
    assert 'fleetmend_check_hosts{verdict="unreachable"} 1' in lines
    assert "fleetmend_check_timestamp_seconds 1795600800" in lines
    assert "fleetmend_check_duration_seconds 1.5" in lines
    for line in lines:  # every sample line is NAME{labels} VALUE or NAME VALUE
        if not line.startswith("#"):
            assert line.startswith("fleetmend_") and len(line.rsplit(" ", 1)) == 2


def test_history_tells_since_when(tmp_path: Path) -> None:
    with closing(statedb.connect(tmp_path)) as db:
        history.record(db, make_report(Verdict.CONFORMANT, "2026-11-25T08:00:00+00:00"))
        history.record(db, make_report(Verdict.DRIFTED, "2026-11-25T09:00:00+00:00"))
        history.record(db, make_report(Verdict.DRIFTED, "2026-11-25T10:00:00+00:00"))
        entries = history.host_history(db, "web-2")
    assert [e.verdict for e in entries] == [Verdict.DRIFTED, Verdict.DRIFTED, Verdict.CONFORMANT]
    first = history.since(entries)
    assert first is not None and first.at == "2026-11-25T09:00:00+00:00"
    assert entries[0].counted[0]["target"] == "/etc/motd"
    with closing(statedb.connect(tmp_path)) as db:  # reopening does not migrate again
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(statedb.MIGRATIONS)
        assert history.host_history(db, "nope") == []
