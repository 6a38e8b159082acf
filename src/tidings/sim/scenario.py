"""Building a simulated network from a config, running it, and its report."""

from __future__ import annotations

import math
import resource
import statistics
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

from tidings.sim.network import SimConfig, SimNode, Simulation


def build(config: SimConfig) -> Simulation:
    """Nodes, who follows whom, who connects to whom, what is published, churn."""
    sim = Simulation(config)
    rng = sim.rng
    authors = [sim.add_node(author=True) for _ in range(config.authors)]
    readers = [sim.add_node(author=False) for _ in range(config.nodes - config.authors)]
    relays = [sim.add_node(author=False, relay=True) for _ in range(config.relays)]
    everyone = authors + readers
    feeds = [a.book.feed("blog") for a in authors]

    # Who follows whom. "learning": popularity falls off as 1/rank (a few authors
    # followed by many, many followed by few); "random": uniform.
    weights = [1 / (rank + 1) for rank in range(len(feeds))]
    if config.topology == "random":
        weights = [1.0] * len(feeds)
    for node in everyone:
        own = node.book.feed("blog") if node.book.identity else None
        chosen: dict[int, None] = {}
        candidates = [i for i, f in enumerate(feeds) if f != own]
        count = min(config.follows, len(candidates))
        while len(chosen) < count:
            pick = rng.choices(candidates, [weights[i] for i in candidates])[0]
            chosen[pick] = None
        node.follows = [feeds[i] for i in chosen]
        for feed in node.follows:
            sim.followers.setdefault(feed, []).append(node)

    # Who connects to whom: every node dials `degree` random others and, in the
    # learning network, `relay_links` relays; relays dial each other.
    for node in everyone:
        for other in rng.sample(everyone, min(config.degree, len(everyone) - 1)):
            sim.link(node, other)
        for relay in rng.sample(relays, min(config.relay_links, len(relays))):
            sim.link(node, relay)
    for i, relay in enumerate(relays):
        for other in relays[i + 1:]:
            sim.link(relay, other)

    sim.needed = sum(len(sim.followers.get(f, [])) for f in feeds) * config.entries
    sim.payload_needed = sim.needed * config.payload_size

    # Start everyone (late joiners later), publish, crash and restart some.
    late = set(rng.sample(range(len(everyone)), int(config.late * len(everyone))))
    for node in sim.nodes:
        when = rng.uniform(1.0, 10.0) if node.index in late else 0.0
        sim.at(when, sim.start, node)
    sim.at(1.0, sim.tick)
    for author in authors:
        for n in range(config.entries):
            when = rng.uniform(0.0, config.publish_over)
            payload = (b"%d:%d:" % (author.index, n)).ljust(config.payload_size, b".")
            sim.at(when, sim.publish, author, "blog", payload)
    for index in rng.sample(range(len(sim.nodes)), int(config.churn * len(sim.nodes))):
        node = sim.nodes[index]
        down_at = rng.uniform(0.0, config.publish_over + 5.0)
        sim.at(down_at, sim.crash, node)
        sim.at(down_at + rng.uniform(*config.downtime), _restart, sim, node)
    return sim


def _restart(sim: Simulation, node: SimNode) -> None:
    if not node.up:
        sim.start(node)


def diameter(sim: Simulation) -> int:
    """The longest shortest path (in links) between two nodes of the graph."""
    best = 0
    for start in sim.nodes:
        seen = {start.index: 0}
        queue = deque([start])
        while queue:
            node = queue.popleft()
            for link in node.links:
                other = link.other(node)
                if other.index not in seen:
                    seen[other.index] = seen[node.index] + 1
                    queue.append(other)
        best = max(best, max(seen.values()))
    return best


@dataclass
class Report:
    config: dict[str, Any]
    converged: bool
    convergence_s: float | None
    diameter_links: int
    mean_latency_s: float
    floor_s: float
    entries_needed: int
    entries_delivered: int
    entries_sent: int
    redundancy: float
    payload_bytes_needed: int
    payload_bytes_sent: int
    control_bytes_per_entry: float
    wire_bytes_per_entry: float
    delay_median_s: float
    delay_p99_s: float
    connections: int
    crashes: int
    peer_errors: int
    rss_per_node_kib: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run(config: SimConfig) -> tuple[Report, Simulation]:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sim = build(config)
    sim.run()
    sim.finish()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    stats = sim.stats
    delays = sorted(stats.delays)
    mean_latency = statistics.fmean(link.latency for link in sim.links) if sim.links else 0.0
    hops = diameter(sim)
    entry_bytes = stats.entries_sent * _mean_entry_size(sim)
    needed = max(sim.needed, 1)
    report = Report(
        config=asdict(config),
        converged=stats.converged_at is not None,
        convergence_s=stats.converged_at,
        diameter_links=hops,
        mean_latency_s=mean_latency,
        floor_s=hops * mean_latency,
        entries_needed=sim.needed,
        entries_delivered=stats.delivered,
        entries_sent=stats.entries_sent,
        redundancy=stats.payload_bytes_sent / max(sim.payload_needed, 1),
        payload_bytes_needed=sim.payload_needed,
        payload_bytes_sent=stats.payload_bytes_sent,
        control_bytes_per_entry=max(0, stats.wire_bytes - entry_bytes
                                    - stats.payload_bytes_sent) / needed,
        wire_bytes_per_entry=stats.wire_bytes / needed,
        delay_median_s=delays[len(delays) // 2] if delays else math.nan,
        delay_p99_s=delays[min(len(delays) - 1, int(len(delays) * 0.99))] if delays else math.nan,
        connections=stats.connections,
        crashes=stats.crashes,
        peer_errors=len(stats.peer_errors),
        rss_per_node_kib=max(0, after - before) / max(len(sim.nodes), 1),
    )
    return report, sim


def _mean_entry_size(sim: Simulation) -> float:
    sizes = [len(e.raw) for node in sim.nodes if node.book.identity
             for e, _ in node.book.read(node.book.feed("blog"), limit=10)]
    return statistics.fmean(sizes) if sizes else 0.0
