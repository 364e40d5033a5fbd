"""Scrub's comparison of replicas with their majority: a table of cases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fleetmend.check import CheckOptions
from fleetmend.fleet import Fleet
from fleetmend.reseed.scrub import compare, scrub_fleet
from fleetmend.transport.ssh import Timeouts
from tests.conftest import write


def f(path: str, digest: str, size: int = 1) -> dict[str, Any]:
    return {"p": path, "t": "f", "s": size, "h": digest}


def test_one_corrupted_replica() -> None:
    good = [f("a", "1"), f("b", "2"), f("c", "3")]
    bad = [f("a", "1"), f("b", "X"), f("c", "3")]
    result = compare("rs", "data", {"h1": good, "h2": bad, "h3": good})
    assert result.disagreements == {"h2": ["b"]}
    assert result.good_sources == ["h1", "h3"]
    assert result.undecided == []


def test_missing_and_extra_files_disagree_too() -> None:
    good = [f("a", "1"), f("b", "2")]
    result = compare("rs", "data", {"h1": good, "h2": [f("a", "1"), f("z", "9")], "h3": good})
    assert result.disagreements == {"h2": ["b", "z"]}


def test_two_copies_that_differ_cannot_be_decided() -> None:
    result = compare("rs", "data", {"h1": [f("a", "1")], "h2": [f("a", "2")]})
    assert result.undecided == ["a"]
    assert result.good_sources == []


def test_all_agree() -> None:
    same = [f("a", "1")]
    result = compare("rs", "data", {"h1": same, "h2": same, "h3": same})
    assert result.disagreements == {} and result.good_sources == ["h1", "h2", "h3"]


def test_a_volume_compared_by_position_is_left_out(tmp_path: Path) -> None:
    """A database's healthy copies differ on disk: scrub reads no manifest of them
    (nothing listens at these loopback ports: a read would show as unreachable)."""
    images = tmp_path / "images"
    write(
        images / "db.yaml",
        """
        name: db
        version: "1"
        volumes:
          files: {path: /srv/files}
          pgdata:
            path: /srv/pg
            reseed: {strategy: command, restore: "true", compare: position}
        """,
    )
    inventory = write(
        tmp_path / "inv.yaml",
        """
        all:
          vars:
            fleetmend_image: db
            fleetmend_replica_set: rs
            fleetmend_replica_sets: {rs: {min_live: 1}}
            ansible_port: 1
          hosts:
            h1: {ansible_host: 127.0.0.1}
            h2: {ansible_host: 127.0.0.1}
        """,
    )
    fleet = Fleet.load(images, inventory)
    options = CheckOptions(tmp_path, timeouts=Timeouts(connect=2), ssh_config=None)
    results, connections = scrub_fleet(fleet, options, ["rs"])
    connections.close()
    assert [(r.volume, r.unreachable) for r in results] == [("files", ["h1", "h2"])]
