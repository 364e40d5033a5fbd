"""Drill scenarios as input, and the report's timeline and page (pure parts)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fleetmend.drill.report import html, phases
from fleetmend.drill.scenario import load_scenario
from fleetmend.errors import InputError

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("path", sorted((REPO / "drills").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_scenario_loads(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.faults and scenario.expect.rto_seconds > 0
    assert scenario.expect.data_loss_files == 0 and scenario.expect.floor_held


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "name: x\nfaults:\n  - fault: wipe-disk\n    playbook: a.yml\n    hosts: [a]\n"
            "expect: {rto_seconds: 5}\n",
            ":3: faults[0]: give exactly one of `fault` (a lab fault) or `playbook`",
        ),
        (
            "name: x\nfaults:\n  - fault: melt\n    hosts: [a]\nexpect: {rto_seconds: 5}\n",
            ":3: faults[0].fault: Input should be 'down', 'wipe-disk'",
        ),
        (
            "name: x\nfaults:\n  - fault: down\nexpect: {rto_seconds: 5}\n",
            "say where: `hosts` (names, groups, patterns) or `site`",
        ),
        ("name: x\nfaults:\n  - {fault: down, hosts: [a]}\n", ":1: expect: required field missing"),
        (
            "name: x\nfaults:\n  - {fault: down, hosts: [a]}\nexpect: {rto_seconds: 5}\nrto: 3\n",
            ":5: rto: unknown field 'rto'",
        ),
    ],
)
def test_a_bad_scenario_says_where_and_what(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    with pytest.raises(InputError) as exc:
        load_scenario(path)
    text = "\n".join(exc.value.lines())
    assert str(path) in text and message in text, text


def report() -> dict[str, Any]:
    def ev(t: float, host: str, phase: str, state: str) -> dict[str, Any]:
        return {"t": t, "host": host, "phase": phase, "state": state, "detail": ""}

    return {
        "id": "d1", "scenario": {"name": "lose <b>", "description": "d"}, "scope": ["a", "b"],
        "started_at": "now", "inventory": "inv", "seconds": 30.0, "passed": False,
        "events": [
            ev(0.1, "a", "down", "start"), ev(1.0, "a", "retry-probe", "start"),
            ev(2.0, "a", "retry-probe", "end"), ev(4.0, "a", "reimage", "start"),
            ev(6.0, "a", "reimage", "end"), ev(6.0, "a", "converge", "start"),
            ev(20.0, "a", "converge", "end"), ev(21.0, "a", "verified", "at"),
            ev(0.1, "b", "down", "start"), ev(25.0, "b", "reseed", "start"),
        ],
        "rto": {"overall": None, "hosts": {"a": 20.9, "b": None}},
        "rpo": {"files": 1, "bytes": 3, "volumes": [
            {"replica_set": "rs", "volume": "v", "host": "b", "files": 2, "lost_files": 1,
             "lost_bytes": 3, "lost": ["x"], "extra_files": 0}]},
        "floor": {"rs": {"min_live": 1, "lowest": 1, "lowest_at": 3.0, "held": True}},
        "heal": {"hosts": {"a": {"state": "healed", "rungs": [["rebuild", True, ""]]}}},
        "injected": [{"host": "a", "fault": "down", "t": 0.1}],
        "expectations": [{"what": "w", "expected": "e", "measured": "m", "held": False}],
    }  # fmt: skip


def test_down_lasts_until_the_first_repair_and_probes_do_not_end_it() -> None:
    rows = phases(report())
    assert rows["a"][0] == ("down", 0.1, 4.0, "")
    assert ("retry-probe", 1.0, 2.0, "") in rows["a"]
    # b never finished its re-seed: shown up to the end of the drill, marked so
    assert ("reseed", 25.0, 30.0, "did not finish") in rows["b"]
    assert rows["b"][0][0] == "down"


def test_the_page_escapes_what_it_shows_and_says_failed() -> None:
    page = html(report())
    assert "lose &lt;b&gt;" in page and "lose <b>" not in page
    assert 'class="fail">FAILED' in page and "never" in page
    assert page.count('class="phase phase-') == 6 and page.count('class="verified"') == 1
