"""Scrub: compare every replica's data with the majority, to find silent corruption.

For each replica set and data volume, the manifest of every reachable member is
taken; for each path, the value (type, size, hash, link target) most members
hold is the truth, when a strict majority holds it. A member's files that
differ from it, are missing or are extra are its disagreements. Repairing a
member re-seeds it from a member that agrees with the majority on every file:
only the disagreeing files travel, verified against the manifest the majority
agreed on (not a new reading of the source: a source corrupted since the scrub
fails the repair instead of spreading), and swapped in as for any re-seed.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

from fleetmend import audit, statedb
from fleetmend.check import CheckOptions
from fleetmend.fleet import Fleet
from fleetmend.images import ReseedSpec
from fleetmend.inventory import Host
from fleetmend.reseed.memory import HashMemory
from fleetmend.reseed.transfer import ReseedError, VolumeResult, manifest, reseed_volume
from fleetmend.transport.ssh import Connection, Connections, KnownHosts, Unreachable
from fleetmend.transport.target import target_for

Entry = tuple[str, int | None, str | None, str | None]
"""What copies must agree on for one path: type, size, hash, link target."""


def _value(e: dict[str, Any]) -> Entry:
    return (e["t"], e.get("s"), e.get("h"), e.get("l"))


@dataclass
class VolumeScrub:
    replica_set: str
    volume: str
    members: list[str]
    unreachable: list[str] = field(default_factory=list)
    disagreements: dict[str, list[str]] = field(default_factory=dict)
    """member -> paths where it differs from the majority (sorted)."""
    undecided: list[str] = field(default_factory=list)
    """Paths with no strict majority: nobody can say which copy is right."""
    good_sources: list[str] = field(default_factory=list)
    """Members that agree with the majority everywhere: repair sources."""
    manifests: dict[str, list[dict[str, Any]]] = field(default_factory=dict, repr=False)
    """member -> its manifest as read: what a repair from it is verified against."""

    def summary(self) -> dict[str, Any]:
        """What a scrub reports (everything but the manifests)."""
        return {
            "replica_set": self.replica_set,
            "volume": self.volume,
            "members": self.members,
            "unreachable": self.unreachable,
            "disagreements": self.disagreements,
            "undecided": self.undecided,
            "good_sources": self.good_sources,
        }


def compare(
    replica_set: str, volume: str, manifests: dict[str, list[dict[str, Any]]]
) -> VolumeScrub:
    """Pure: the disagreements of each member's manifest with the majority."""
    result = VolumeScrub(replica_set, volume, sorted(manifests), manifests=manifests)
    tables = {m: {e["p"]: _value(e) for e in entries} for m, entries in manifests.items()}
    paths = sorted({p for table in tables.values() for p in table})
    count = len(tables)
    bad: dict[str, list[str]] = {m: [] for m in tables}
    for path in paths:
        votes = Counter(tables[m].get(path) for m in tables)  # None: the member lacks it
        value, n = votes.most_common(1)[0]
        if n * 2 <= count:
            result.undecided.append(path)
            continue
        for m in tables:
            if tables[m].get(path) != value:
                bad[m].append(path)
    result.disagreements = {m: paths_ for m, paths_ in bad.items() if paths_}
    result.good_sources = [m for m in sorted(tables) if not bad[m]] if not result.undecided else []
    return result


Copy = tuple[str, str, str]
"""(replica set, volume, member)."""


def read_manifests(
    fleet: Fleet, check: CheckOptions, replica_sets: list[str], connections: Connections
) -> tuple[dict[Copy, list[dict[str, Any]]], list[Copy]]:
    """Every member's manifest of every data volume of each replica set, read at once
    (each host hashes its own data); and the copies whose host did not answer."""
    jobs: list[tuple[Copy, Host, str, list[str]]] = []
    for name in replica_sets:
        members = [fleet.inventory.host(m) for m in fleet.inventory.replica_sets[name].members]
        for volume_name, volume in sorted(fleet.image_of(members[0]).volumes.items()):
            if volume.reseed.compare != "manifest":
                continue  # healthy copies differ on disk: the data's own tools check it
            jobs += [((name, volume_name, m.name), m, volume.path, volume.exclude) for m in members]

    def read(job: tuple[Copy, Host, str, list[str]]) -> list[dict[str, Any]] | None:
        _, host, path, exclude = job
        conn = connections.get(target_for(host, fleet.inventory.source, check.ssh_config))
        try:
            return manifest(conn, path, exclude)
        except Unreachable:
            return None

    with ThreadPoolExecutor(max_workers=max(1, min(check.forks, len(jobs)))) as pool:
        found = list(pool.map(read, jobs))
    memory = HashMemory(check.state_dir)  # every file hashed: the next re-seed need not
    for (_, host, path, _), entries in zip(jobs, found, strict=True):
        if entries is not None:
            memory.remember(host.name, path, entries)
    manifests = {j[0]: m for j, m in zip(jobs, found, strict=True) if m is not None}
    return manifests, [j[0] for j, m in zip(jobs, found, strict=True) if m is None]


def scrub_fleet(
    fleet: Fleet, check: CheckOptions, replica_sets: list[str]
) -> tuple[list[VolumeScrub], Connections]:
    """Manifests of every member of each replica set, compared per volume.

    Returns the open connections too, so a repair reuses them; close them after.
    """
    known = KnownHosts(check.own_known_hosts, check.user_known_hosts)
    connections = Connections(known, check.timeouts)
    manifests, unreachable = read_manifests(fleet, check, replica_sets, connections)
    volumes = sorted({(rs, vol) for rs, vol, _ in [*manifests, *unreachable]})
    results = []
    for rs, vol in volumes:
        result = compare(
            rs, vol, {m: e for (r, v, m), e in manifests.items() if (r, v) == (rs, vol)}
        )
        result.unreachable = [m for r, v, m in unreachable if (r, v) == (rs, vol)]
        results.append(result)
    return results, connections


def repair(
    fleet: Fleet,
    check: CheckOptions,
    scrubbed: VolumeScrub,
    connections: Connections,
    max_rate: float | None = None,
) -> list[VolumeResult]:
    """Re-seed each disagreeing member from a member that agrees with the majority.

    The delta re-seed sends exactly the disagreeing files; the rest is kept.
    The source does not hash again: what it sends is verified against its
    manifest from the scrub, whose content the majority agreed on.
    """
    if scrubbed.undecided or not scrubbed.good_sources:
        raise ReseedError(
            f"{scrubbed.replica_set}/{scrubbed.volume}: no member agrees with the majority on "
            f"every file ({len(scrubbed.undecided)} paths undecided): repair by hand"
        )
    done = []
    for member, paths in sorted(scrubbed.disagreements.items()):
        host = fleet.inventory.host(member)
        sources = sorted(
            scrubbed.good_sources, key=lambda s: (fleet.inventory.host(s).site != host.site, s)
        )
        source = fleet.inventory.host(sources[0])
        # file by file, whatever the volume's strategy: only the disagreeing files
        # travel, verified against the majority's manifest
        declared = fleet.image_of(host).volumes[scrubbed.volume]
        volume = declared.model_copy(update={"reseed": ReseedSpec()})

        def conn(h: Host) -> Connection:
            return connections.get(target_for(h, fleet.inventory.source, check.ssh_config))

        with closing(statedb.connect(check.state_dir)) as db:
            audit.append(
                db,
                "scrub-repair",
                f"{member}:{scrubbed.volume}",
                reason=f"{len(paths)} file(s) disagree with the majority",
                detail=f"from {source.name}: {', '.join(paths[:10])}",
            )
        done.append(
            reseed_volume(
                scrubbed.volume,
                volume,
                conn(source),
                conn(host),
                max_rate=max_rate,
                source_manifest=scrubbed.manifests[source.name],
            )
        )
    return done
