"""tidings benchmarks: one entry point, every figure next to the raw limit it is bounded by.

Usage::

    python benchmarks/run.py            # full run, about 1-3 minutes
    python benchmarks/run.py --quick    # smaller sizes, under ~30 s
    python benchmarks/run.py --json     # one JSON object on stdout
    python benchmarks/run.py --replication --http   # also benchmarks/replication.py, http_api.py

Each figure is measured in the same run as its raw limit (a bare Ed25519 call,
a bare SQLite statement) and printed with the ratio between the two: absolute
rates move with the machine, the ratio mostly does not. Every measurement is
repeated and the best run is reported (the fastest run is the one least
disturbed by the rest of the machine); the JSON output also holds every sample.
The goals are informational: this script never fails because a goal is missed.
See benchmarks/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

try:
    import tidings  # noqa: F401  (installed, or run from a checkout below)
except ImportError:  # pragma: no cover - running from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tidings import Identity, Logbook, MemoryStore, SqliteStore
from tidings.core.entry import Entry, sign_entry
from tidings.core.ids import FeedId
from tidings.core.lipmaa import certificate_pool, link_target, links_needed
from tidings.core.verify import Anchor, check_run, decode_run, verify_partial
from tidings.storage.logbook import BATCH_SIZE

perf_counter = time.perf_counter

#: Fixed inputs so two runs measure the same bytes.
SEED_VERIFY = bytes(range(32))
SEED_PUBLISH = bytes(range(1, 33))
SEED_POOL = bytes(range(2, 34))
TIMESTAMP = 1_700_000_000_000_000
MESSAGE = bytes(range(200))  # the ~200-byte message of the raw Ed25519 figures
BLOB = bytes(range(200))  # the ~200-byte row of the raw SQLite figures


@dataclass(frozen=True)
class Sizes:
    name: str
    repeats: int
    raw_crypto: int  # Ed25519 calls per raw sample
    verify_log: int  # entries in the verification / ingest log
    durable: int  # single durable publishes (and raw commits) per sample
    bulk: int  # entries per bulk publish sample
    cli: int  # lines fed to `tidings publish --lines`
    pool_seqs: tuple[int, ...]
    pool_repeats: int


FULL = Sizes("full", 5, 5000, 20_000, 2000, 20_000, 50_000, (10**3, 10**6), 50)
QUICK = Sizes("quick", 3, 2000, 10_000, 1000, 10_000, 20_000, (10**3, 10**5), 20)
#: Tiny: for the test that checks the benchmarks still run; their figures mean nothing.
SMOKE = Sizes("smoke", 1, 200, 500, 50, 500, 500, (10**3,), 2)


# -- measuring ---------------------------------------------------------------


def log(message: str) -> None:
    """Progress goes to stderr, so stdout holds only the table or the JSON object."""
    print(message, file=sys.stderr, flush=True)


@contextmanager
def no_gc() -> Iterator[None]:
    """Collect first, then keep the collector out of the timed code (as timeit does)."""
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def samples(repeats: int, once: Callable[[], float]) -> list[float]:
    """Run ``once`` (which returns the seconds it timed, setup excluded) ``repeats`` times."""
    out = []
    for _ in range(repeats):
        with no_gc():
            out.append(once())
    return out


@dataclass
class Figure:
    key: str
    section: str
    label: str
    value: float
    unit: str
    raw_key: str | None = None
    raw_label: str = ""
    raw_value: float | None = None
    raw_unit: str = ""
    ratio: float | None = None
    goal_ratio: float | None = None  # goal on the ratio (value / raw)
    goal_value: float | None = None  # goal on the value itself
    note: str = ""
    samples_s: list[float] = field(default_factory=list)
    count: int | None = None  # operations per sample, when the value is a rate

    @property
    def goal_text(self) -> str:
        if self.goal_ratio is not None:
            return f">= {self.goal_ratio:g}x"
        if self.goal_value is not None:
            return f">= {self.goal_value:,.0f}/s"
        return "-"

    @property
    def met(self) -> bool | None:
        if self.goal_ratio is not None:
            return self.ratio is not None and self.ratio >= self.goal_ratio
        if self.goal_value is not None:
            return self.value >= self.goal_value
        return None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "label": self.label,
            "value": round(self.value, 6),
            "unit": self.unit,
        }
        if self.raw_key is not None:
            out.update(raw=self.raw_key, raw_value=round(self.raw_value or 0.0, 6),
                       raw_unit=self.raw_unit)
        if self.ratio is not None:
            out["ratio"] = round(self.ratio, 4)
        if self.goal_ratio is not None:
            out["goal_ratio_min"] = self.goal_ratio
        if self.goal_value is not None:
            out["goal_value_min"] = self.goal_value
        if self.met is not None:
            out["met"] = self.met
        if self.count is not None:
            out["ops_per_sample"] = self.count
        if self.samples_s:
            if len(self.samples_s) <= 10:
                out["samples_s"] = [round(s, 6) for s in self.samples_s]
            else:  # the pool timings: many short samples, summarised
                out["n_samples"] = len(self.samples_s)
                out["min_s"] = round(min(self.samples_s), 9)
            out["median_s"] = round(statistics.median(self.samples_s), 9)
        if self.note:
            out["note"] = self.note
        return out


class Results:
    def __init__(self) -> None:
        self.figures: dict[str, Figure] = {}
        self.notes: list[str] = []

    def add(self, figure: Figure) -> Figure:
        if figure.raw_key is not None:
            raw = self.figures[figure.raw_key]
            figure.raw_value = raw.value
            figure.raw_unit = raw.unit
            figure.raw_label = figure.raw_label or raw.label
            if figure.ratio is None and raw.value:
                figure.ratio = figure.value / raw.value
        self.figures[figure.key] = figure
        return figure

    def rate(self, key: str, section: str, label: str, count: int, times: list[float],
             unit: str, **extra: Any) -> Figure:
        """A throughput figure: ``count`` operations, best (shortest) of ``times``."""
        return self.add(Figure(key, section, label, count / min(times), unit,
                               samples_s=times, count=count, **extra))


# -- 1. verification -----------------------------------------------------------


def bench_raw_ed25519(results: Results, sizes: Sizes) -> None:
    key = Ed25519PrivateKey.from_private_bytes(SEED_VERIFY)
    public = key.public_key()
    signature = key.sign(MESSAGE)
    n = sizes.raw_crypto

    def verify_once() -> float:
        verify = public.verify
        start = perf_counter()
        for _ in range(n):
            verify(signature, MESSAGE)
        return perf_counter() - start

    def sign_once() -> float:
        sign = key.sign
        start = perf_counter()
        for _ in range(n):
            sign(MESSAGE)
        return perf_counter() - start

    results.rate("raw_ed25519_verify", "raw", "Ed25519 verify, 200-byte message", n,
                 samples(sizes.repeats, verify_once), "verifies/s")
    results.rate("raw_ed25519_sign", "raw", "Ed25519 sign, 200-byte message", n,
                 samples(sizes.repeats, sign_once), "signs/s")


@dataclass
class TestLog:
    feed: FeedId
    raws: list[bytes]
    payloads: list[bytes]
    hashes: list[bytes]  # hashes[seq - 1]


def build_test_log(n: int, *, every_entry_signed: bool = False) -> TestLog:
    """A log made by bulk appends (a signature every 64 entries and at each append's
    end), or by single publishes (every entry signed)."""
    book = Logbook(MemoryStore(), Identity.from_seed(SEED_VERIFY), clock=lambda: TIMESTAMP)
    payloads = [b"post number %d" % i for i in range(1, n + 1)]
    step = 1 if every_entry_signed else BATCH_SIZE
    for start in range(0, n, step):
        book.publish_batch(payloads[start:start + step])
    feed = book.feed()
    rows = book.store.entries(feed)
    return TestLog(feed, [r.raw for r in rows], payloads, [r.hash for r in rows])


def verify_log(test: TestLog) -> None:
    """What ``Logbook.verify`` does per chunk, minus the store reads."""
    feed, raws, payloads, hashes = test.feed, test.raws, test.payloads, test.hashes
    author, log_id = feed.author_key, feed.log_id
    unsigned = unsigned_bytes = 0
    for start in range(0, len(raws), BATCH_SIZE):
        chunk = raws[start:start + BATCH_SIZE]
        first = start + 1
        run = decode_run(chunk, feed, first)
        known = {seq: hashes[seq - 1] for seq in links_needed(first, first + len(run) - 1)}
        anchor = Anchor(author, log_id, start, False, known, unsigned, unsigned_bytes)
        result = check_run(run, anchor, payloads[start:start + len(run)])
        assert result.error is None
        for entry in run:  # the unsigned row carried into the next chunk
            if entry.signed:
                unsigned = unsigned_bytes = 0
            else:
                unsigned, unsigned_bytes = unsigned + 1, unsigned_bytes + entry.payload_size


def sqlite_raw(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    db.execute("CREATE TABLE t (seq INTEGER PRIMARY KEY, data BLOB NOT NULL)")
    return db


def bench_verification(results: Results, sizes: Sizes) -> None:
    n = sizes.verify_log
    section = (f"1. Verification: log of {n:,} entries, small payloads checked, "
               f"chunks of BATCH_SIZE={BATCH_SIZE}")
    log(f"building two {n:,}-entry logs to verify ...")
    test = build_test_log(n)
    all_signed = build_test_log(n, every_entry_signed=True)
    verify_log(test)  # warm caches (public key, link targets) once

    def verify_once(which: TestLog) -> Callable[[], float]:
        def once() -> float:
            start = perf_counter()
            verify_log(which)
            return perf_counter() - start
        return once

    log("verifying a log of single publishes and one of bulk appends ...")
    results.rate("verify_every_entry_signed", section,
                 "check_run, every entry signed (single publishes)", n,
                 samples(sizes.repeats, verify_once(all_signed)), "entries/s",
                 raw_key="raw_ed25519_verify")
    results.rate("verify_bulk", section,
                 "check_run, one signature per 64 entries (bulk appends)", n,
                 samples(sizes.repeats, verify_once(test)), "entries/s",
                 raw_key="raw_ed25519_verify", goal_ratio=10)

    items = list(zip(test.raws, test.payloads, strict=True))

    def ingest_once() -> float:
        with tempfile.TemporaryDirectory(prefix="tidings-bench-") as tmp:
            store = SqliteStore(Path(tmp) / "store.sqlite3")
            try:
                book = Logbook(store)
                added = 0
                start = perf_counter()
                for first in range(0, n, BATCH_SIZE):
                    added += book.ingest(test.feed, items[first:first + BATCH_SIZE]).added
                elapsed = perf_counter() - start
            finally:
                store.close()
        if added != n:
            raise RuntimeError(f"ingest stored {added} of {n} entries: the benchmark is broken")
        return elapsed

    def raw_insert_once() -> float:
        rows = [(seq, BLOB) for seq in range(1, n + 1)]
        with tempfile.TemporaryDirectory(prefix="tidings-bench-") as tmp:
            db = sqlite_raw(Path(tmp) / "raw.sqlite3")
            try:
                start = perf_counter()
                db.execute("BEGIN IMMEDIATE")
                db.executemany("INSERT INTO t (seq, data) VALUES (?, ?)", rows)
                db.execute("COMMIT")
                elapsed = perf_counter() - start
            finally:
                db.close()
        return elapsed

    log("ingesting into SqliteStore, and raw SQLite batch inserts ...")
    results.rate("raw_sqlite_batch_insert", "raw",
                 f"SQLite executemany, {n:,} x 200-byte rows, 1 commit", n,
                 samples(sizes.repeats, raw_insert_once), "rows/s")
    results.rate("ingest_sqlite", section,
                 f"Logbook.ingest into SqliteStore, {BATCH_SIZE}/call", n,
                 samples(sizes.repeats, ingest_once), "entries/s",
                 raw_key="raw_sqlite_batch_insert")


# -- 2. publishing ---------------------------------------------------------------


@contextmanager
def temp_logbook() -> Iterator[Logbook]:
    with tempfile.TemporaryDirectory(prefix="tidings-bench-") as tmp:
        store = SqliteStore(Path(tmp) / "store.sqlite3")
        try:
            yield Logbook(store, Identity.from_seed(SEED_PUBLISH))
        finally:
            store.close()


def bench_publishing(results: Results, sizes: Sizes) -> None:
    section = "2. Publishing: SqliteStore in a temp dir (WAL, synchronous=FULL)"
    n_single, n_bulk = sizes.durable, sizes.bulk

    def raw_commit_once() -> float:
        with tempfile.TemporaryDirectory(prefix="tidings-bench-") as tmp:
            db = sqlite_raw(Path(tmp) / "raw.sqlite3")
            execute = db.execute
            try:
                start = perf_counter()
                for seq in range(1, n_single + 1):
                    execute("BEGIN IMMEDIATE")
                    execute("INSERT INTO t (seq, data) VALUES (?, ?)", (seq, BLOB))
                    execute("COMMIT")
                elapsed = perf_counter() - start
            finally:
                db.close()
        return elapsed

    def publish_once() -> float:
        payloads = [b"note %d" % i for i in range(n_single)]
        with temp_logbook() as book:
            book.publish(b"first")  # creates the feed row; not timed
            publish = book.publish
            start = perf_counter()
            for payload in payloads:
                publish(payload)
            return perf_counter() - start

    def bulk_once() -> float:
        payloads = [b"%d" % i for i in range(1, n_bulk + 1)]
        with temp_logbook() as book:
            start = perf_counter()
            for first in range(0, n_bulk, BATCH_SIZE):
                book.publish_batch(payloads[first:first + BATCH_SIZE])
            return perf_counter() - start

    log("durable single commits: raw SQLite, then Logbook.publish ...")
    results.rate("raw_sqlite_durable_commit", "raw",
                 "SQLite BEGIN IMMEDIATE/INSERT/COMMIT, 1 row", n_single,
                 samples(sizes.repeats, raw_commit_once), "commits/s")
    results.rate("publish_durable_single", section, "Logbook.publish, 1 durable commit each",
                 n_single, samples(sizes.repeats, publish_once), "entries/s",
                 raw_key="raw_sqlite_durable_commit", goal_value=2000)
    log("bulk publishing (publish_batch in chunks of BATCH_SIZE) ...")
    results.rate("publish_bulk", section,
                 f"Logbook.publish_batch, {BATCH_SIZE}/call ({n_bulk:,})", n_bulk,
                 samples(sizes.repeats, bulk_once), "entries/s",
                 raw_key="raw_ed25519_sign", goal_ratio=0.5)
    bench_cli(results, sizes, section)


def run_python(args: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, *args], capture_output=True, **kwargs)


def bench_cli(results: Results, sizes: Sizes, section: str) -> None:
    n = sizes.cli

    def start_once(args: Sequence[str]) -> Callable[[], float]:
        def once() -> float:
            start = perf_counter()
            run_python(args, check=True)
            return perf_counter() - start
        return once

    log("process start-up: bare python, python -m tidings --version ...")
    bare = samples(sizes.repeats, start_once(["-c", "pass"]))
    results.add(Figure("raw_python_startup", "raw", "python -c pass (process start)",
                       min(bare) * 1000, "ms", samples_s=bare))
    started = samples(sizes.repeats, start_once(["-m", "tidings", "--version"]))
    results.add(Figure("cli_startup", section, "python -m tidings --version", min(started) * 1000,
                       "ms", raw_key="raw_python_startup", samples_s=started))

    log(f"real CLI: {n:,} lines | python -m tidings publish --lines (once) ...")
    with tempfile.TemporaryDirectory(prefix="tidings-bench-") as tmp:
        home = Path(tmp) / "home"
        run_python(["-m", "tidings", "--home", str(home), "init"], check=True)
        lines = Path(tmp) / "lines.txt"
        lines.write_bytes(b"".join(b"%d\n" % i for i in range(1, n + 1)))  # = `seq 1 N`
        with lines.open("rb") as stdin, no_gc():
            start = perf_counter()
            done = run_python(["-m", "tidings", "--home", str(home), "publish", "--lines"],
                              stdin=stdin)
            elapsed = perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"tidings publish --lines failed: {done.stderr.decode()[-500:]}")
    results.rate("cli_publish_lines", section,
                 f"CLI: seq 1 {n} | publish --lines, once", n, [elapsed],
                 "entries/s", raw_key="raw_ed25519_sign",
                 note="measured once; wall time includes interpreter start-up and imports")


# -- 3. certificate pools ------------------------------------------------------------


def build_chain(last: int, keep: set[int]) -> tuple[dict[int, Entry], float]:
    """Sign entries 1..last of one feed; keep the entries at ``keep``, and every hash.

    Every entry must be signed: each hash covers the previous entry's full bytes.
    """
    identity = Identity.from_seed(SEED_POOL)
    secret, author = identity.secret_key, identity.author.key
    hashes: list[bytes] = [b""]  # hashes[seq]
    kept: dict[int, Entry] = {}
    previous: bytes | None = None
    step = max(last // 10, 1)
    with no_gc():
        start = perf_counter()
        for seq in range(1, last + 1):
            target = link_target(seq)
            entry = sign_entry(
                secret, author=author, log_id="bench", seq=seq, timestamp=TIMESTAMP,
                payload=b"%d" % seq, backlink=previous,
                lipmaa_link=hashes[target] if target is not None else None,
            )
            previous = entry.hash
            hashes.append(previous)
            if seq in keep:
                kept[seq] = entry
            if seq % step == 0 and last >= 100_000:
                log(f"  ... {seq:,} entries signed ({perf_counter() - start:.1f} s)")
        elapsed = perf_counter() - start
    return kept, elapsed


def power_label(n: int) -> str:
    exponent = len(str(n)) - 1
    return f"10^{exponent}" if n == 10**exponent else f"{n:,}"


def bench_pools(results: Results, sizes: Sizes) -> None:
    section = "3. Certificate pools: verify the latest entry of a log of `seq` entries"
    seqs = sizes.pool_seqs
    last = max(seqs)
    pools = {seq: [s for s in certificate_pool(seq) if s <= seq] for seq in seqs}
    keep = set().union(*pools.values())
    log(f"building a {last:,}-entry log for the pool figures (every entry signed) ...")
    kept, built = build_chain(last, keep)
    results.add(Figure("pool_log_build", section,
                       f"sign_entry loop building the {power_label(last)} log",
                       last / built, "entries/s", raw_key="raw_ed25519_sign",
                       samples_s=[built], count=last,
                       note="one run; every entry of the log is signed"))
    verify_s = 1 / results.figures["raw_ed25519_verify"].value
    results.add(Figure("raw_ed25519_verify_one", "raw", "one Ed25519 verify (1 / rate above)",
                       verify_s * 1000, "ms"))
    one_by_one = results.figures["verify_every_entry_signed"].value
    for seq in seqs:
        name = power_label(seq)
        exponent = len(str(seq)) - 1
        key = f"pool_1e{exponent}" if seq == 10**exponent else f"pool_{seq}"
        members = certificate_pool(seq)
        entries = [kept[s] for s in pools[seq]]
        size_bytes = sum(len(e.raw) for e in entries)

        def once(entries: list[Entry] = entries) -> float:
            start = perf_counter()
            verify_partial(entries)
            return perf_counter() - start

        if len(verify_partial(entries)) != len(entries):
            raise RuntimeError(f"pool({name}) did not verify: the benchmark is broken")
        times = samples(sizes.pool_repeats, once)
        results.add(Figure(f"{key}_size", section, f"pool({name}): certificate_pool size",
                           len(members), "seqs",
                           note=f"certificate_pool({seq}) names {len(members)} seqs; "
                                f"{len(entries)} of them exist in a log whose head is {seq} "
                                "(the rest lie above the head and let later pools join)"))
        results.add(Figure(f"{key}_held", section, f"pool({name}): entries that exist",
                           len(entries), "entries"))
        results.add(Figure(f"{key}_bytes", section, f"pool({name}): bytes of those entries",
                           size_bytes, "bytes", note="entry bytes only, no payloads"
                           if seq == seqs[0] else ""))
        pool_ms = min(times) * 1000
        results.add(Figure(f"{key}_verify", section, f"pool({name}): verify_partial, latest",
                           pool_ms, "ms", raw_key="raw_ed25519_verify_one",
                           samples_s=times))
        estimate_ms = seq / one_by_one * 1000
        results.add(Figure(
            f"{key}_full_one_by_one_estimate", section,
            f"all {name} one by one (ESTIMATE)", estimate_ms, "ms",
            raw_key=f"{key}_verify", raw_label=f"pool({name}) verify",
            note=f"estimate: {seq} / measured one-by-one rate; ratio = speed-up of the pool",
        ))


# -- output ------------------------------------------------------------------------


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "ms":
        if value >= 10_000:
            return f"{value / 1000:,.1f} s"
        return f"{value:,.3f} ms" if value < 100 else f"{value:,.0f} ms"
    if unit.endswith("/s"):
        return f"{value:,.0f} {unit}"
    return f"{value:,.0f} {unit}"


def short_unit(unit: str) -> str:
    return {"entries/s": "/s", "verifies/s": "verify/s", "signs/s": "sign/s",
            "rows/s": "rows/s", "commits/s": "commit/s"}.get(unit, unit)


def default_raw_cell(figure: Figure) -> str:
    if figure.raw_value is not None:
        return fmt(figure.raw_value, short_unit(figure.raw_unit))
    return figure.raw_label or "-"


def print_table(
    results: Results, *, widths: tuple[int, ...],
    raw_cell: Callable[[Figure], str] = default_raw_cell,
) -> None:
    """The raw limits, then one row per figure by section, then the notes."""
    print()
    print("Raw limits measured in this run")
    for figure in results.figures.values():
        if figure.section == "raw":
            print(f"  {figure.label:<52} {fmt(figure.value, figure.unit):>22}")

    def row(cells: Sequence[str]) -> None:
        print("  ".join(c.ljust(w) if i < 3 else c.rjust(w)
                        for i, (c, w) in enumerate(zip(cells, widths, strict=True))))

    print()
    row(("figure", "value", "raw limit", "ratio", "goal", "met?"))
    section = None
    for figure in results.figures.values():
        if figure.section == "raw":
            continue
        if figure.section != section:
            section = figure.section
            print(section)
        ratio = "-"
        if figure.ratio is not None:
            ratio = f"{figure.ratio:,.2f}x" if figure.ratio < 100 else f"{figure.ratio:,.0f}x"
        met = "-" if figure.met is None else ("yes" if figure.met else "NO")
        row((" " + figure.label[:43], fmt(figure.value, figure.unit), raw_cell(figure), ratio,
             figure.goal_text, met))
    print()
    print("Notes")
    for figure in results.figures.values():
        if figure.note:
            print(f"  {figure.label}: {figure.note}")
    for note in results.notes:
        print(f"  {note}")


def print_human(results: Results, meta: dict[str, Any]) -> None:
    print(f"tidings benchmarks: {meta['mode']} run")
    print(f"python {meta['python']}, cryptography {meta['cryptography']}, cbor2 "
          f"{meta['cbor2']}, SQLite {meta['sqlite']}, {meta['cpus']} CPUs, "
          f"temp dir {meta['tmpdir']}")
    print(f"each figure: {meta['statistic']} unless marked once; "
          f"total {meta['elapsed_s']:.0f} s")
    if meta["mode"] == "quick":
        print("QUICK RUN: smaller sizes (see the section headers); the pool figure uses a "
              "10^5 log, not 10^6")
    print_table(results, widths=(44, 20, 26, 9, 10, 4))


def main(argv: Sequence[str] | None = None) -> int:
    parser = size_parser(__doc__, "smaller sizes (pool of a 10^5 log, not 10^6); under ~30 s")
    parser.add_argument("--replication", action="store_true",
                        help="also run benchmarks/replication.py (two nodes over loopback TCP)")
    parser.add_argument("--http", action="store_true",
                        help="also run benchmarks/http_api.py (the local HTTP API: publishes/s, "
                             "SSE delivery latency)")
    args = parser.parse_args(argv)
    sizes = SMOKE if args.smoke else QUICK if args.quick else FULL
    results = Results()
    begun = perf_counter()
    log(f"tidings benchmarks ({sizes.name}); progress on stderr")
    bench_raw_ed25519(results, sizes)
    bench_verification(results, sizes)
    bench_publishing(results, sizes)
    bench_pools(results, sizes)
    more_meta: dict[str, Any] = {}
    if args.replication:
        import replication  # benchmarks/replication.py, beside this file

        replication_sizes = (replication.SMOKE if args.smoke else
                             replication.QUICK if args.quick else replication.FULL)
        replication.bench_replication(results, replication_sizes)
        more_meta["replication_sizes"] = replication.sizes_meta(replication_sizes)
    if args.http:
        import http_api  # benchmarks/http_api.py, beside this file

        http_sizes = (http_api.SMOKE if args.smoke else
                      http_api.QUICK if args.quick else http_api.FULL)
        http_api.bench_http_api(results, http_sizes)
        more_meta["http_sizes"] = http_api.sizes_meta(http_sizes)
    results.notes.append(
        "ratio = value / raw limit. For rates higher is better; for the pool rows the ratio "
        "is how many single Ed25519 verifies the pool check costs, and for the ESTIMATE "
        "row how many times faster the pool is than checking the whole log."
    )
    meta = {
        **machine_meta(sizes.name, "cryptography", "cbor2"),
        "batch_size": BATCH_SIZE,
        "repeats": sizes.repeats,
        "statistic": f"best (fastest) of {sizes.repeats} runs",
        "sizes": {
            "raw_crypto_calls": sizes.raw_crypto,
            "verify_log_entries": sizes.verify_log,
            "durable_publishes": sizes.durable,
            "bulk_entries": sizes.bulk,
            "cli_lines": sizes.cli,
            "pool_seqs": list(sizes.pool_seqs),
            "pool_repeats": sizes.pool_repeats,
        },
        **more_meta,
        "elapsed_s": perf_counter() - begun,
    }
    emit("tidings", results, meta, as_json=args.json, human=print_human)
    return 0


def size_parser(doc: str | None, quick_help: str) -> argparse.ArgumentParser:
    """A benchmark's argument parser: --json, --quick and --smoke."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object to stdout")
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes: only checks that the benchmark runs (the tests use it)")
    return parser


def machine_meta(mode: str, *packages: str) -> dict[str, Any]:
    """What a benchmark's JSON says about the run: its mode, versions and machine."""
    return {
        "mode": mode,
        "python": platform.python_version(),
        **{package: metadata.version(package) for package in packages},
        "sqlite": sqlite3.sqlite_version,
        "cpus": os.cpu_count(),
        "tmpdir": tempfile.gettempdir(),
    }


def emit(name: str, results: Results, meta: dict[str, Any], *, as_json: bool,
         human: Callable[[Results, dict[str, Any]], None]) -> None:
    """Print one benchmark's results: one JSON object with ``--json``, else a table."""
    if as_json:
        print(json.dumps({
            "benchmark": name,
            "meta": meta,
            "figures": {key: f.to_json() for key, f in results.figures.items()},
            "notes": results.notes,
        }, indent=2))
    else:
        human(results, meta)


if __name__ == "__main__":
    sys.exit(main())
