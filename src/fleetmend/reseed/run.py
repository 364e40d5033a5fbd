"""Re-seed every data volume of a host: pick a source per volume, copy, verify, swap."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass

from fleetmend import audit, statedb
from fleetmend.check import CheckOptions, run_check
from fleetmend.drift import Verdict
from fleetmend.fleet import Fleet
from fleetmend.inventory import Host
from fleetmend.reseed.exchange import Manifest
from fleetmend.reseed.memory import HashMemory
from fleetmend.reseed.sources import Candidate, choose
from fleetmend.reseed.transfer import (
    ReseedError,
    VolumeResult,
    content_digest,
    manifest,
    reseed_volume,
)
from fleetmend.transport.ssh import Connection, Connections, KnownHosts
from fleetmend.transport.target import target_for


@dataclass(frozen=True)
class ReseedOptions:
    volumes: tuple[str, ...] = ()
    """Only these volumes (default: every volume of the host's image)."""
    source: str | None = None
    """`--from PEER`: still refused when a rule rejects it, unless `override` says why."""
    override: str | None = None
    max_rate: float | None = None
    """Bytes per second the re-seed may take from its source."""
    rehash: bool = False
    """Hash every file of the source, not only those changed since last hashed."""


def reseed_host(
    fleet: Fleet, host: Host, check: CheckOptions, options: ReseedOptions
) -> list[VolumeResult]:
    image = fleet.image_of(host)
    unknown = [v for v in options.volumes if v not in image.volumes]
    if unknown:
        raise ReseedError(
            f"{host.name}'s image {image.name} has no volume {unknown[0]!r}",
            f"its volumes: {', '.join(sorted(image.volumes)) or 'none'}",
        )
    names = list(options.volumes) or sorted(image.volumes)
    if not names:
        return []
    peers = fleet.inventory.peers(host)
    if not peers:
        raise ReseedError(f"{host.name} has no replica-set peers to re-seed from")
    report = {r.host: r for r in run_check(fleet, peers, check, []).hosts}
    known = KnownHosts(check.own_known_hosts, check.user_known_hosts)
    memory = HashMemory(check.state_dir)
    results = []
    with Connections(known, check.timeouts) as connections:

        def conn(h: Host) -> Connection:
            return connections.get(target_for(h, fleet.inventory.source, check.ssh_config))

        for name in names:
            volume = image.volumes[name]

            def healthy(peer: Host, volume_name: str = name) -> bool:
                r = report[peer.name]
                rc = r.volumes.get(volume_name, {}).get("health_rc")
                return r.verdict in (Verdict.CONFORMANT, Verdict.DRIFTED) and rc in (0, None)

            # three or more copies: the majority decides, from manifests read at once
            # (unless healthy copies of this data differ on disk: position decides)
            by_manifest = volume.reseed.compare == "manifest"
            manifests: dict[str, Manifest] = {}
            if len(peers) >= 2 and by_manifest:
                healthy_peers = [p for p in peers if healthy(p)]
                with ThreadPoolExecutor(max_workers=max(1, len(healthy_peers))) as pool:
                    found = pool.map(
                        lambda p, v=volume: manifest(conn(p), v.path, v.exclude), healthy_peers
                    )
                    manifests = dict(zip((p.name for p in healthy_peers), found, strict=True))
                for peer_name, entries in manifests.items():
                    memory.remember(peer_name, volume.path, entries)
            candidates = []
            for peer in peers:
                r = report[peer.name]
                digest = None
                if peer.name in manifests:
                    digest = content_digest(manifests[peer.name])
                elif healthy(peer) and (len(peers) < 2 or not by_manifest):
                    digest = "-"  # not compared
                candidates.append(
                    Candidate(
                        host=peer.name,
                        site=peer.site,
                        reachable=r.verdict is not Verdict.UNREACHABLE,
                        healthy=healthy(peer),
                        position=r.volumes.get(name, {}).get("position"),
                        manifest=digest,
                    )
                )
            choice = choose(candidates, host.site, options.source, options.override)
            if choice.source is None:
                why = "; ".join(f"{h}: {reason}" for h, reason in sorted(choice.rejected.items()))
                raise ReseedError(
                    f"no safe source to re-seed {host.name}:{volume.path} from: {why}",
                    "repair a peer first, or force one with --from PEER --override-source REASON",
                )
            if choice.overridden is not None:
                with closing(statedb.connect(check.state_dir)) as db:
                    audit.append(
                        db,
                        "override-source",
                        f"{host.name}:{name}",
                        reason=options.override or "",
                        detail=f"source {choice.source} although: {choice.overridden}",
                    )
            source = fleet.inventory.host(choice.source)
            given = manifests.get(source.name)  # read whole just now: nothing to recall

            def keep(entries: Manifest, at: str = source.name, path: str = volume.path) -> None:
                memory.remember(at, path, entries)

            results.append(
                reseed_volume(
                    name,
                    fleet.reseed_volume(host, name, source),  # commands rendered for it
                    conn(source),
                    conn(host),
                    max_rate=options.max_rate,
                    source_manifest=given,
                    known=None
                    if given is not None or options.rehash
                    else memory.recall(source.name, volume.path),
                    on_manifest=keep,
                )
            )
    return results
