"""Scrub's comparison of replicas with their majority: a table of cases."""

from __future__ import annotations

from typing import Any

from fleetmend.reseed.scrub import compare


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
