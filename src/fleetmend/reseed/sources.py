"""Choosing the peer to re-seed from. Pure: no I/O.

A candidate is a peer of the target's replica set. It is rejected when it is
unreachable, unhealthy (its check verdict, or its volume's health command),
behind a fresher healthy peer (the volume's `position`), or, with three or more
copies, when its data manifest disagrees with the majority (the caller gives
every candidate the same manifest for a volume compared by position only, whose
healthy copies differ on disk). Among the rest the
same site is preferred. A forced source (`--from`) is still refused when a rule
rejects it, unless a person overrides with a reason (audited by the caller).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True)
class Candidate:
    host: str
    site: str | None
    reachable: bool
    healthy: bool
    position: str | None
    manifest: str | None
    """Digest of the volume's content manifest (paths, types, sizes, hashes)."""


@dataclass(frozen=True)
class Choice:
    source: str | None
    rejected: dict[str, str]
    """host -> why it was not chosen."""
    overridden: str | None = None
    """The rule a person overrode to force this source, if any."""


def _position_key(position: str | None) -> tuple[int, float, str]:
    if position is None:
        return (0, 0.0, "")
    try:
        return (2, float(position), "")
    except ValueError:
        return (1, 0.0, position)


def choose(
    candidates: list[Candidate],
    target_site: str | None,
    forced: str | None = None,
    override: str | None = None,
) -> Choice:
    rejected: dict[str, str] = {}
    alive = []
    for c in candidates:
        if not c.reachable:
            rejected[c.host] = "unreachable"
        elif not c.healthy:
            rejected[c.host] = "unhealthy (its check failed or its volume's health command did)"
        elif c.manifest is None:
            rejected[c.host] = "its manifest could not be read"
        else:
            alive.append(c)
    if len(candidates) + 1 >= 3 and alive:  # with the target, three or more copies
        counts = Counter(c.manifest for c in alive)
        top, votes = counts.most_common(1)[0]
        if votes * 2 > len(alive):
            for c in alive:
                if c.manifest != top:
                    rejected[c.host] = (
                        f"its data disagrees with the majority ({votes} of {len(alive)} copies)"
                    )
        elif len(alive) > 1:
            for c in alive:
                rejected[c.host] = f"no majority among {len(alive)} differing copies"
    agreeing = [c for c in alive if c.host not in rejected]
    if agreeing:
        freshest = max(_position_key(c.position) for c in agreeing)
        for c in agreeing:
            if _position_key(c.position) < freshest:
                rejected[c.host] = f"behind a fresher healthy peer (position {c.position})"
    usable = [c for c in agreeing if c.host not in rejected]
    if forced is not None:
        known = {c.host for c in candidates}
        if forced not in known:
            return Choice(None, {**rejected, forced: "not a peer of this replica set"})
        if forced in rejected:
            if override is None:
                return Choice(None, rejected)
            return Choice(forced, rejected, overridden=rejected[forced])
        return Choice(forced, rejected)
    if not usable:
        return Choice(None, rejected)
    usable.sort(key=lambda c: (c.site != target_site, c.host))
    return Choice(usable[0].host, rejected)
