"""Source selection for a re-seed: a table of cases."""

from __future__ import annotations

from fleetmend.reseed.sources import Candidate, choose


def c(host: str, *, site: str = "fra", ok: bool = True, up: bool = True, pos: str | None = "10",
      data: str | None = "A") -> Candidate:  # fmt: skip
    return Candidate(host=host, site=site, reachable=up, healthy=ok, position=pos, manifest=data)


def test_prefers_same_site_among_equals() -> None:
    choice = choose([c("b", site="ams"), c("a", site="ams"), c("z", site="fra")], "fra")
    assert choice.source == "z"


def test_rejects_unreachable_unhealthy_and_stale() -> None:
    choice = choose([c("a", up=False), c("b", ok=False), c("c", pos="9"), c("d", pos="11")], "fra")
    assert choice.source == "d"
    assert choice.rejected["a"] == "unreachable"
    assert choice.rejected["b"].startswith("unhealthy")
    assert choice.rejected["c"] == "behind a fresher healthy peer (position 9)"


def test_a_copy_disagreeing_with_the_majority_is_never_chosen() -> None:
    # "b" is the freshest but its data differs from the two others: corrupt
    choice = choose([c("a", pos="10"), c("b", pos="99", data="B"), c("e", pos="10")], "fra")
    assert choice.source in ("a", "e")
    assert "disagrees with the majority" in choice.rejected["b"]


def test_no_majority_no_source() -> None:
    choice = choose([c("a", data="A"), c("b", data="B")], "fra")
    assert choice.source is None
    assert set(choice.rejected) == {"a", "b"}


def test_two_copies_need_no_majority() -> None:
    assert choose([c("a")], "fra").source == "a"


def test_forced_source_is_still_checked_unless_overridden() -> None:
    peers = [c("a", pos="10"), c("b", pos="5"), c("e", pos="10")]
    assert choose(peers, "fra", forced="e").source == "e"
    refused = choose(peers, "fra", forced="b")
    assert refused.source is None and "fresher" in refused.rejected["b"]
    forced = choose(peers, "fra", forced="b", override="a is being repaired, INC-7")
    assert forced.source == "b" and forced.overridden is not None
    assert choose(peers, "fra", forced="zz").rejected["zz"] == "not a peer of this replica set"


def test_nothing_usable_says_why_for_each() -> None:
    choice = choose([c("a", up=False), c("b", ok=False)], "fra")
    assert choice.source is None and set(choice.rejected) == {"a", "b"}
