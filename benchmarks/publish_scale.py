"""tidings publish-at-scale benchmark: does a publish cost the same at 10 and 10,000 feeds?

Usage::

    python benchmarks/publish_scale.py            # 10 vs 10,000 feeds held
    python benchmarks/publish_scale.py --quick    # 10 vs 2,000 feeds held
    python benchmarks/publish_scale.py --json     # one JSON object on stdout

Two embedded nodes (``open_node``) run in this process, on two fresh homes: one
holds 10 feeds, the other 10,000 (one entry each, of other authors, ingested
before the run and not timed). Each pair publishes on the small node, then on
the large one, operation by operation (``EmbeddedNode.publish``: signing, a
durable commit, telling the replicator), so a stall of the disk lands on both
sides alike. The figure is the large node's rate; its raw limit the small
node's; the ratio, large ÷ small per pair, is what a publish loses as the
number of feeds grows (goal: >= 0.8, issue 16). See benchmarks/README.md.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:  # for `import run` when run.py imports this file
    sys.path.insert(0, str(BENCH_DIR))

import run as base  # noqa: E402  (benchmarks/run.py: Figure, Results, output)
import trio  # noqa: E402
from pairs import Paired, no_gc  # noqa: E402  (benchmarks/pairs.py)
from run import RawKind, Results, log  # noqa: E402

from tidings import Identity  # noqa: E402
from tidings.core.entry import sign_entry  # noqa: E402
from tidings.embed import EmbeddedNode, open_node  # noqa: E402
from tidings.node.home import Home  # noqa: E402

perf_counter = time.perf_counter
LOG = "bench"


@dataclass(frozen=True)
class Sizes:
    name: str
    small: int  # feeds the small node holds
    large: int  # feeds the large node holds
    publishes: int  # per node per pair
    pairs: int


FULL = Sizes("full", 10, 10_000, 300, 5)
QUICK = Sizes("quick", 10, 2_000, 200, 3)
SMOKE = Sizes("smoke", 2, 20, 20, 1)

RAW_KINDS = {
    "raw_publish_few_feeds": RawKind("EmbeddedNode.publish on a node holding few feeds",
                                     "entries/s"),
}


def fill(home: Path, feeds: int) -> None:
    """Make ``home`` and give its store ``feeds`` feeds of other authors, one entry each."""
    Home(home).init()
    book = Home(home).open_logbook()
    try:
        with book.store.transaction():
            for index in range(feeds):
                author = Identity.from_seed(index.to_bytes(4, "big") * 8)
                entry = sign_entry(author.secret_key, author=author.author.key, log_id="main",
                                   seq=1, timestamp=1_700_000_000_000_000,
                                   payload=b"feed %d" % index, backlink=None, lipmaa_link=None)
                book.ingest(entry.feed, [(entry.raw, b"feed %d" % index)]).raise_error()
    finally:
        book.store.close()


async def alternate_nodes(small: EmbeddedNode, large: EmbeddedNode, sizes: Sizes) -> Paired:
    """Per pair: a publish on ``small``, one on ``large``, ... ``publishes`` times each."""
    values: list[float] = []
    raws: list[float] = []
    clock = perf_counter
    counter = 0
    for _ in range(sizes.pairs):
        small_s = large_s = 0.0
        with no_gc():
            for _ in range(sizes.publishes):
                counter += 1
                payload = b"publish %d" % counter
                start = clock()
                await small.publish(payload, LOG)
                middle = clock()
                await large.publish(payload, LOG)
                large_s += clock() - middle
                small_s += middle - start
        raws.append(sizes.publishes / small_s)
        values.append(sizes.publishes / large_s)
    return Paired.of(values, raws)


def bench_publish_scale(results: Results, sizes: Sizes) -> None:
    results.raw_kinds.update(RAW_KINDS)
    with tempfile.TemporaryDirectory(prefix="tidings-bench-scale-") as tmp:
        log(f"filling two homes: {sizes.small:,} and {sizes.large:,} feeds (not timed) ...")
        fill(Path(tmp) / "small", sizes.small)
        fill(Path(tmp) / "large", sizes.large)

        async def main() -> Paired:
            async with open_node(Path(tmp) / "small") as small, \
                    open_node(Path(tmp) / "large") as large:
                await small.publish(b"first", LOG)  # the feed row; not timed
                await large.publish(b"first", LOG)
                log(f"{sizes.pairs} pairs of {sizes.publishes} publishes on each node, "
                    "alternating ...")
                return await alternate_nodes(small, large, sizes)

        paired = trio.run(main)
    section = (f"Publishing at scale: EmbeddedNode.publish on a node holding {sizes.large:,} "
               f"feeds, beside one holding {sizes.small}")
    results.paired("publish_at_many_feeds", section,
                   f"EmbeddedNode.publish, {sizes.large:,} feeds held", "entries/s", paired,
                   "raw_publish_few_feeds", count=sizes.publishes, goal_ratio=0.8,
                   note=f"ratio = rate at {sizes.large:,} feeds / rate at {sizes.small} feeds, "
                        "per pair, publishes alternating between the two nodes")


def print_human(results: Results, meta: dict[str, Any]) -> None:
    print(f"tidings publish-at-scale benchmark: {meta['mode']} run")
    print(f"{meta['statistic']}; total {meta['elapsed_s']:.0f} s")
    base.print_table(results)


def main(argv: Sequence[str] | None = None) -> int:
    parser = base.size_parser(__doc__, f"{QUICK.large:,} feeds instead of {FULL.large:,}")
    args = parser.parse_args(argv)
    sizes = SMOKE if args.smoke else QUICK if args.quick else FULL
    results = Results()
    begun = perf_counter()
    bench_publish_scale(results, sizes)
    meta = {
        **base.machine_meta(sizes.name, "tidings", "trio"),
        "statistic": f"{base.STATISTIC}; {sizes.pairs} pairs of {sizes.publishes} publishes",
        "elapsed_s": perf_counter() - begun,
    }
    return base.emit("tidings-publish-scale", results, meta, as_json=args.json,
                     human=print_human, smoke=args.smoke)


if __name__ == "__main__":
    sys.exit(main())
