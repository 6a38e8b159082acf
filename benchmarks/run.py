"""tidings benchmarks: one entry point, every figure next to the raw limit it is bounded by.

Usage::

    python benchmarks/run.py            # full run, about 1-3 minutes
    python benchmarks/run.py --quick    # smaller sizes, under ~30 s
    python benchmarks/run.py --json     # one JSON object on stdout
    python benchmarks/run.py --replication --http   # also benchmarks/replication.py, http_api.py

Each figure is sampled in pairs with its raw limit (a bare Ed25519 call, a bare
SQLite statement, a bare interpreter start): raw, figure, raw, figure, ... The
ratio printed is the median of the per-pair ratios, with their min and max, so
a noisy moment moves both halves of a pair rather than one side of the ratio
(benchmarks/pairs.py). Where the raw limit is a true bound (a durable publish
cannot beat bare durable commits), a ratio across it makes the run exit 1: the
benchmark is then wrong, not the machine. The goals are informational: this
script never fails because a goal is missed. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

try:
    import tidings  # noqa: F401  (installed, or run from a checkout below)
except ImportError:  # pragma: no cover - running from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:  # for `import pairs` when this file is imported
    sys.path.insert(0, str(BENCH_DIR))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from pairs import (  # noqa: E402  (benchmarks/pairs.py, beside this file)
    Bound,
    Operations,
    Paired,
    alternate,
    broken_bounds,
    interleave,
    milliseconds,
    per_second,
)

from tidings import Identity, Logbook, MemoryStore, SqliteStore  # noqa: E402
from tidings.core.entry import MAX_UNSIGNED_RUN, Entry, sign_entry  # noqa: E402
from tidings.core.ids import FeedId  # noqa: E402
from tidings.core.lipmaa import certificate_pool, link_target, links_needed  # noqa: E402
from tidings.core.verify import Anchor, check_run, decode_run, verify_partial  # noqa: E402
from tidings.storage.logbook import BATCH_SIZE  # noqa: E402

perf_counter = time.perf_counter

#: Fixed inputs so two runs measure the same bytes.
SEED_VERIFY = bytes(range(32))
SEED_PUBLISH = bytes(range(1, 33))
SEED_POOL = bytes(range(2, 34))
TIMESTAMP = 1_700_000_000_000_000
MESSAGE = bytes(range(200))  # the ~200-byte message of the raw Ed25519 figures
BLOB = bytes(range(200))  # the ~200-byte row of the raw SQLite figures
#: Pairs of the build of the pool log, and slices per pair: each slice of the
#: log is signed right after a loop of raw signs.
POOL_BUILD_CHUNKS = 10


@dataclass(frozen=True)
class Sizes:
    name: str
    pairs: int  # (raw, figure) pairs per figure
    raw_crypto: int  # Ed25519 calls per raw sample
    verify_log: int  # entries in the verification / ingest log
    durable: int  # single durable publishes (and raw commits) per sample
    bulk: int  # entries per bulk publish sample
    cli: int  # lines fed to `tidings publish --lines`
    cli_pairs: int  # pairs of the CLI run (each one is a few seconds)
    pool_seqs: tuple[int, ...]
    pool_pairs: int


FULL = Sizes("full", 5, 5000, 20_000, 2000, 20_000, 50_000, 3, (10**3, 10**6), 50)
QUICK = Sizes("quick", 3, 2000, 10_000, 1000, 10_000, 20_000, 3, (10**3, 10**5), 20)
#: Tiny: for the test that checks the benchmarks still run; their figures mean nothing.
SMOKE = Sizes("smoke", 1, 200, 500, 50, 500, 500, 1, (10**3,), 2)


def log(message: str) -> None:
    """Progress goes to stderr, so stdout holds only the table or the JSON object."""
    print(message, file=sys.stderr, flush=True)


# -- figures -------------------------------------------------------------------------


@dataclass(frozen=True)
class RawKind:
    """A raw limit: what it is and its unit. Its samples come from the figures' pairs."""

    label: str
    unit: str


#: The raw limits of this file; replication.py and http_api.py add theirs.
RAW_KINDS = {
    "raw_ed25519_verify": RawKind("Ed25519 verify, 200-byte message", "verifies/s"),
    "raw_ed25519_verify_one": RawKind("one Ed25519 verify", "ms"),
    "raw_ed25519_sign": RawKind("Ed25519 sign, 200-byte message", "signs/s"),
    "raw_sqlite_batch_insert": RawKind("SQLite executemany of 200-byte rows, 1 commit",
                                       "rows/s"),
    "raw_sqlite_durable_commit": RawKind("SQLite BEGIN IMMEDIATE/INSERT/COMMIT, 1 row",
                                         "commits/s"),
    "raw_python_startup": RawKind("python -c pass (process start)", "ms"),
}


@dataclass
class Figure:
    """One row: a value, and (when ``paired``) the raw limit sampled in pairs with it."""

    key: str
    section: str
    label: str
    value: float
    unit: str
    paired: Paired | None = None
    raw_key: str | None = None  # a raw limit (RAW_KINDS) or another figure's key
    raw_label: str = ""
    raw_unit: str = ""
    bound: Bound | None = None
    goal_ratio: float | None = None  # goal on the ratio (value / raw)
    goal_value: float | None = None  # goal on the value itself
    note: str = ""
    count: int | None = None  # operations per sample, when the value is a rate
    samples: int | None = None  # samples behind a value without a raw limit

    @property
    def ratio(self) -> float | None:
        return self.paired.ratio_median if self.paired is not None else None

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
        paired = self.paired
        out: dict[str, Any] = {
            "label": self.label,
            "unit": self.unit,
            "value": round(self.value, 6),
            "raw": round(paired.raw, 6) if paired is not None else None,
            "raw_key": self.raw_key,
            "raw_unit": self.raw_unit or None,
            "ratio_median": round(paired.ratio_median, 4) if paired is not None else None,
            "ratio_min": round(paired.ratio_min, 4) if paired is not None else None,
            "ratio_max": round(paired.ratio_max, 4) if paired is not None else None,
            "n_pairs": paired.n_pairs if paired is not None else None,
        }
        if paired is not None and paired.n_pairs <= 20:
            out["pairs"] = [[round(raw, 6), round(value, 6)]
                            for raw, value in zip(paired.raws, paired.values, strict=True)]
        if self.samples is not None:
            out["n_samples"] = self.samples
        if self.bound is not None:
            out["bound"] = {"ratio": self.bound.describe(), "why": self.bound.why}
        if self.goal_ratio is not None:
            out["goal_ratio_min"] = self.goal_ratio
        if self.goal_value is not None:
            out["goal_value_min"] = self.goal_value
        if self.met is not None:
            out["met"] = self.met
        if self.count is not None:
            out["ops_per_sample"] = self.count
        if self.note:
            out["note"] = self.note
        return out


class Results:
    def __init__(self) -> None:
        self.figures: dict[str, Figure] = {}
        self.notes: list[str] = []
        self.raw_kinds: dict[str, RawKind] = dict(RAW_KINDS)
        #: Every raw sample taken in a pair, by raw limit: the raw rows of the table.
        self.raw_samples: dict[str, list[float]] = {}

    def add(self, figure: Figure) -> Figure:
        if figure.key in self.figures:
            raise RuntimeError(f"figure {figure.key} twice: the benchmark is broken")
        if figure.raw_key is not None:
            if figure.paired is None:
                raise RuntimeError(f"{figure.key} names a raw limit but has no pairs")
            if figure.raw_key in self.raw_kinds:
                kind = self.raw_kinds[figure.raw_key]
                self.raw_samples.setdefault(figure.raw_key, []).extend(figure.paired.raws)
            else:  # another figure is the raw limit (its own pairs are in its row)
                other = self.figures[figure.raw_key]
                kind = RawKind(other.label, other.unit)
            figure.raw_label = figure.raw_label or kind.label
            figure.raw_unit = kind.unit
        self.figures[figure.key] = figure
        return figure

    def paired(self, key: str, section: str, label: str, unit: str, paired: Paired,
               raw_key: str, **extra: Any) -> Figure:
        """A figure whose value is the median of its samples, each after a raw sample."""
        return self.add(Figure(key, section, label, paired.value, unit, paired=paired,
                               raw_key=raw_key, **extra))

    def raw_figures(self) -> list[Figure]:
        """One row per raw limit: the median of every sample of it taken in this run."""
        out = []
        for key, values in self.raw_samples.items():
            kind = self.raw_kinds[key]
            out.append(Figure(key, "raw", kind.label, statistics.median(values), kind.unit,
                              samples=len(values)))
        return out

    def broken_bounds(self) -> list[str]:
        return broken_bounds((f.key, f.paired, f.bound) for f in self.figures.values()
                             if f.paired is not None and f.bound is not None)


def at_most_one(why: str) -> Bound:
    return Bound(why, at_most=1.0)


def at_least_one(why: str) -> Bound:
    return Bound(why, at_least=1.0)


def signatures_bound(entries: int, signatures: int, operation: str) -> Bound:
    """Entries/s over Ed25519 operations/s: at most entries per signature."""
    return Bound(f"the {entries:,} entries carry {signatures:,} signatures, each one Ed25519 "
                 f"{operation} at least", at_most=entries / signatures)


def min_signatures(entries: int) -> int:
    """The fewest signatures ``entries`` entries of one log carry (spec/04 C5)."""
    return math.ceil(entries / (MAX_UNSIGNED_RUN + 1))


# -- raw limits ------------------------------------------------------------------------


def ed25519_verify_seconds(n: int) -> Callable[[], float]:
    """Seconds of ``n`` bare Ed25519 verifies of a 200-byte message."""
    key = Ed25519PrivateKey.from_private_bytes(SEED_VERIFY)
    public, signature = key.public_key(), key.sign(MESSAGE)

    def once() -> float:
        verify = public.verify
        start = perf_counter()
        for _ in range(n):
            verify(signature, MESSAGE)
        return perf_counter() - start

    return once


def ed25519_sign_seconds(n: int) -> Callable[[], float]:
    """Seconds of ``n`` bare Ed25519 signs of a 200-byte message."""
    key = Ed25519PrivateKey.from_private_bytes(SEED_VERIFY)

    def once() -> float:
        sign = key.sign
        start = perf_counter()
        for _ in range(n):
            sign(MESSAGE)
        return perf_counter() - start

    return once


def sqlite_raw(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    db.execute("CREATE TABLE t (seq INTEGER PRIMARY KEY, data BLOB NOT NULL)")
    return db


def sqlite_batch_seconds(n: int) -> Callable[[], float]:
    """Seconds of one transaction inserting ``n`` 200-byte rows into a fresh WAL file."""
    rows = [(seq, BLOB) for seq in range(1, n + 1)]

    def once() -> float:
        with tempfile.TemporaryDirectory(prefix="tidings-bench-") as tmp:
            db = sqlite_raw(Path(tmp) / "raw.sqlite3")
            try:
                start = perf_counter()
                db.execute("BEGIN IMMEDIATE")
                db.executemany("INSERT INTO t (seq, data) VALUES (?, ?)", rows)
                db.execute("COMMIT")
                return perf_counter() - start
            finally:
                db.close()

    return once


def run_python(args: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, *args], capture_output=True, **kwargs)


def process_seconds(args: Sequence[str]) -> Callable[[], float]:
    """Seconds from spawning ``python ARGS`` to its exit (it must succeed)."""

    def once() -> float:
        start = perf_counter()
        run_python(args, check=True)
        return perf_counter() - start

    return once


# -- 1. verification -----------------------------------------------------------


@dataclass
class TestLog:
    feed: FeedId
    raws: list[bytes]
    payloads: list[bytes]
    hashes: list[bytes]  # hashes[seq - 1]
    signatures: int


def build_test_log(n: int, *, every_entry_signed: bool = False) -> TestLog:
    """A log made by bulk appends (a signature every 64 entries and at each append's
    end), or by single publishes (every entry signed)."""
    book = Logbook(MemoryStore(), Identity.from_seed(SEED_VERIFY), clock=lambda: TIMESTAMP)
    payloads = [b"post number %d" % i for i in range(1, n + 1)]
    step = 1 if every_entry_signed else BATCH_SIZE
    signatures = 0
    for start in range(0, n, step):
        signatures += sum(e.signed for e in book.publish_batch(payloads[start:start + step]))
    feed = book.feed()
    rows = book.store.entries(feed)
    return TestLog(feed, [r.raw for r in rows], payloads, [r.hash for r in rows], signatures)


def verify_log(test: TestLog) -> None:
    """What ``Logbook.verify`` does, minus the store reads."""
    for _ in verify_chunks(test):
        pass


def verify_chunks(test: TestLog) -> Iterator[None]:
    """What ``Logbook.verify`` does per chunk, minus the store reads; yields after each
    chunk of BATCH_SIZE entries."""
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
        yield


def bench_verification(results: Results, sizes: Sizes) -> None:
    n, pairs = sizes.verify_log, sizes.pairs
    section = (f"1. Verification: log of {n:,} entries, small payloads checked, "
               f"chunks of BATCH_SIZE={BATCH_SIZE}")
    log(f"building two {n:,}-entry logs to verify ...")
    test = build_test_log(n)
    all_signed = build_test_log(n, every_entry_signed=True)
    verify_log(test)  # warm caches (public key, link targets) once
    raw_op = max(sizes.raw_crypto // 4, 1)  # verifies between two chunks
    chunk = min(n, BATCH_SIZE)

    def chunks_beside_raw(which: TestLog) -> Callable[[], AbstractContextManager[Operations]]:
        @contextmanager
        def operations() -> Iterator[Operations]:
            chunks = verify_chunks(which)
            yield ed25519_verify_seconds(raw_op), lambda: next(chunks)
        return operations

    log("verifying a log of single publishes and one of bulk appends, chunk by chunk, "
        "each chunk after raw verifies ...")
    results.paired("verify_every_entry_signed", section,
                   "check_run, every entry signed (single publishes)", "entries/s",
                   alternate(pairs, n // chunk, chunks_beside_raw(all_signed),
                             raw_units=raw_op, figure_units=chunk),
                   "raw_ed25519_verify", count=n,
                   bound=signatures_bound(n, all_signed.signatures, "verify"))
    results.paired("verify_bulk", section,
                   "check_run, one signature per 64 entries (bulk appends)", "entries/s",
                   alternate(pairs, n // chunk, chunks_beside_raw(test),
                             raw_units=raw_op, figure_units=chunk),
                   "raw_ed25519_verify", count=n, goal_ratio=10,
                   bound=signatures_bound(n, test.signatures, "verify"))

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

    log("ingesting into SqliteStore, each after raw SQLite batch inserts ...")
    results.paired("ingest_sqlite", section,
                   f"Logbook.ingest into SqliteStore, {BATCH_SIZE}/call", "entries/s",
                   interleave(pairs, per_second(n, sqlite_batch_seconds(n)),
                              per_second(n, ingest_once)),
                   "raw_sqlite_batch_insert", count=n,
                   bound=at_most_one("ingest writes at least one row per entry (in fact an "
                                     "entry, a payload and a hash row) and verifies it; the "
                                     "raw limit writes one row per entry, in one commit"))


# -- 2. publishing ---------------------------------------------------------------


@contextmanager
def temp_logbook() -> Iterator[Logbook]:
    with tempfile.TemporaryDirectory(prefix="tidings-bench-") as tmp:
        store = SqliteStore(Path(tmp) / "store.sqlite3")
        try:
            yield Logbook(store, Identity.from_seed(SEED_PUBLISH))
        finally:
            store.close()


def publish_seconds(payloads: Sequence[bytes], log_id: str = "main") -> Callable[[], float]:
    """Seconds of ``Logbook.publish`` of each payload on a fresh ``SqliteStore``."""

    def once() -> float:
        with temp_logbook() as book:
            book.publish(b"first", log_id)  # creates the feed row; not timed
            publish = book.publish
            start = perf_counter()
            for payload in payloads:
                publish(payload, log_id)
            return perf_counter() - start

    return once


@contextmanager
def commit_and_publish() -> Iterator[tuple[Callable[[], object], Callable[[], object]]]:
    """A bare durable one-row commit and a ``Logbook.publish``, on two fresh files."""
    with tempfile.TemporaryDirectory(prefix="tidings-bench-") as tmp, temp_logbook() as book:
        db = sqlite_raw(Path(tmp) / "raw.sqlite3")
        book.publish(b"first")  # creates the feed row; not timed
        seqs = iter(range(1, 1 << 62))
        execute, publish = db.execute, book.publish

        def commit() -> None:
            execute("BEGIN IMMEDIATE")
            execute("INSERT INTO t (seq, data) VALUES (?, ?)", (next(seqs), BLOB))
            execute("COMMIT")

        try:
            yield commit, lambda: publish(b"note %d" % next(seqs))
        finally:
            db.close()


def bench_publishing(results: Results, sizes: Sizes) -> None:
    section = "2. Publishing: SqliteStore in a temp dir (WAL, synchronous=FULL)"
    n_single, n_bulk, pairs = sizes.durable, sizes.bulk, sizes.pairs
    raw_sign = per_second(sizes.raw_crypto, ed25519_sign_seconds(sizes.raw_crypto))
    bulk_signatures: list[int] = []

    def bulk_once() -> float:
        payloads = [b"%d" % i for i in range(1, n_bulk + 1)]
        signatures = 0
        with temp_logbook() as book:
            start = perf_counter()
            for first in range(0, n_bulk, BATCH_SIZE):
                entries = book.publish_batch(payloads[first:first + BATCH_SIZE])
                signatures += sum(e.signed for e in entries)
            elapsed = perf_counter() - start
        bulk_signatures.append(signatures)
        return elapsed

    log("durable single commits: a raw SQLite commit, then a Logbook.publish, in turn ...")
    results.paired("publish_durable_single", section, "Logbook.publish, 1 durable commit each",
                   "entries/s", alternate(pairs, n_single, commit_and_publish),
                   "raw_sqlite_durable_commit", count=n_single, goal_value=2000,
                   bound=at_most_one("each publish is one durable commit with the same "
                                     "pragmas, plus signing and more rows"),
                   note="one raw commit, then one publish, in turn, on two fresh files; each "
                        "side's rate is the count over the sum of its own calls' times")
    log("bulk publishing (publish_batch in chunks of BATCH_SIZE), after raw signs ...")
    bulk = interleave(pairs, raw_sign, per_second(n_bulk, bulk_once))
    results.paired("publish_bulk", section,
                   f"Logbook.publish_batch, {BATCH_SIZE}/call ({n_bulk:,})", "entries/s", bulk,
                   "raw_ed25519_sign", count=n_bulk, goal_ratio=0.5,
                   bound=signatures_bound(n_bulk, max(bulk_signatures), "sign"))
    bench_cli(results, sizes, section, raw_sign)


def bench_cli(results: Results, sizes: Sizes, section: str,
              raw_sign: Callable[[], float]) -> None:
    n = sizes.cli
    log("process start-up: bare python, then python -m tidings --version, in pairs ...")
    results.paired("cli_startup", section, "python -m tidings --version", "ms",
                   interleave(sizes.pairs, milliseconds(process_seconds(["-c", "pass"])),
                              milliseconds(process_seconds(["-m", "tidings", "--version"]))),
                   "raw_python_startup",
                   bound=at_least_one("the CLI is a python start plus imports"))

    log(f"real CLI: {n:,} lines | python -m tidings publish --lines, after raw signs ...")
    with tempfile.TemporaryDirectory(prefix="tidings-bench-") as tmp:
        lines = Path(tmp) / "lines.txt"
        lines.write_bytes(b"".join(b"%d\n" % i for i in range(1, n + 1)))  # = `seq 1 N`
        runs = 0

        def cli_once() -> float:
            nonlocal runs
            runs += 1
            home = Path(tmp) / f"home-{runs}"
            run_python(["-m", "tidings", "--home", str(home), "init"], check=True)  # untimed
            with lines.open("rb") as stdin:
                start = perf_counter()
                done = run_python(["-m", "tidings", "--home", str(home), "publish", "--lines"],
                                  stdin=stdin)
                elapsed = perf_counter() - start
            if done.returncode != 0:
                raise RuntimeError(f"tidings publish --lines failed: "
                                   f"{done.stderr.decode()[-500:]}")
            return elapsed

        cli = interleave(sizes.cli_pairs, raw_sign, per_second(n, cli_once))
    results.paired("cli_publish_lines", section, f"CLI: seq 1 {n} | publish --lines",
                   "entries/s", cli, "raw_ed25519_sign", count=n,
                   bound=signatures_bound(n, min_signatures(n), "sign"),
                   note="wall time includes interpreter start-up and imports")


# -- 3. certificate pools ------------------------------------------------------------


def build_chain(last: int, keep: set[int], raw_signs: int) -> tuple[dict[int, Entry], Paired]:
    """Sign entries 1..last of one feed; keep the entries at ``keep``, and every hash.

    Every entry must be signed: each hash covers the previous entry's full bytes.
    The log is built in POOL_BUILD_CHUNKS pairs of POOL_BUILD_CHUNKS steps, each
    step a loop of ``raw_signs`` bare signs, then the next slice of the log.
    """
    identity = Identity.from_seed(SEED_POOL)
    secret, author = identity.secret_key, identity.author.key
    hashes: list[bytes] = [b""]  # hashes[seq]
    kept: dict[int, Entry] = {}
    steps = POOL_BUILD_CHUNKS * POOL_BUILD_CHUNKS
    if last % steps:
        raise ValueError(f"the pool log's length must be a multiple of {steps}")
    step = last // steps
    seqs = iter(range(1, last + 1, step))

    def sign_slice() -> None:
        first = next(seqs)
        for seq in range(first, first + step):
            target = link_target(seq)
            entry = sign_entry(
                secret, author=author, log_id="bench", seq=seq, timestamp=TIMESTAMP,
                payload=b"%d" % seq, backlink=hashes[-1] if seq > 1 else None,
                lipmaa_link=hashes[target] if target is not None else None,
            )
            hashes.append(entry.hash)
            if seq in keep:
                kept[seq] = entry

    @contextmanager
    def operations() -> Iterator[Operations]:
        yield ed25519_sign_seconds(raw_signs), sign_slice
        if last >= 100_000:
            log(f"  ... {len(hashes) - 1:,} entries signed")

    built = alternate(POOL_BUILD_CHUNKS, POOL_BUILD_CHUNKS, operations, raw_units=raw_signs,
                      figure_units=step)
    return kept, built


def power_label(n: int) -> str:
    exponent = len(str(n)) - 1
    return f"10^{exponent}" if n == 10**exponent else f"{n:,}"


def bench_pools(results: Results, sizes: Sizes) -> None:
    section = "3. Certificate pools: verify the latest entry of a log of `seq` entries"
    seqs = sizes.pool_seqs
    last = max(seqs)
    pools = {seq: [s for s in certificate_pool(seq) if s <= seq] for seq in seqs}
    keep = set().union(*pools.values())
    log(f"building a {last:,}-entry log for the pool figures (every entry signed), slice "
        "by slice, each slice after raw signs ...")
    kept, built = build_chain(last, keep, max(sizes.raw_crypto // 10, 1))
    results.paired("pool_log_build", section,
                   f"sign_entry loop building the {power_label(last)} log", "entries/s", built,
                   "raw_ed25519_sign",
                   bound=at_most_one("every entry of this log is signed: one Ed25519 sign "
                                     "each"),
                   note=f"one build, in {built.n_pairs} pairs of {POOL_BUILD_CHUNKS} slices of "
                        f"{last // POOL_BUILD_CHUNKS ** 2:,} entries, each slice right after "
                        f"{max(sizes.raw_crypto // 10, 1):,} raw signs")
    one_by_one = results.figures["verify_every_entry_signed"].value
    # One verify is short: a raw sample times 20 of them (a clock read costs ~0.1 µs).
    raw_one = milliseconds(ed25519_verify_seconds(20), per=20)
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
        verify = results.paired(
            f"{key}_verify", section, f"pool({name}): verify_partial, latest", "ms",
            interleave(sizes.pool_pairs, raw_one, milliseconds(once)), "raw_ed25519_verify_one",
            bound=at_least_one("verify_partial checks the head's signature: one Ed25519 "
                               "verify at least"))
        estimate_ms = seq / one_by_one * 1000
        results.add(Figure(
            f"{key}_full_one_by_one_estimate", section, f"all {name} one by one (ESTIMATE)",
            estimate_ms, "ms", paired=Paired.once(estimate_ms, verify.value),
            raw_key=f"{key}_verify",
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
    if unit in ("MiB", "bytes/entry"):
        return f"{value:,.1f} {unit}"
    return f"{value:,.0f} {unit}"


def short_unit(unit: str) -> str:
    return {"entries/s": "/s", "verifies/s": "verify/s", "signs/s": "sign/s",
            "rows/s": "rows/s", "commits/s": "commit/s"}.get(unit, unit)


def fmt_ratio(ratio: float) -> str:
    return f"{ratio:,.2f}" if ratio < 100 else f"{ratio:,.0f}"


def ratio_cell(figure: Figure) -> str:
    """``median (min-max)``; a ratio across its bound is marked ``!``."""
    paired = figure.paired
    if paired is None:
        return "-"
    text = f"{fmt_ratio(paired.ratio_median)}x"
    if paired.n_pairs > 1:
        text += f" ({fmt_ratio(paired.ratio_min)}-{fmt_ratio(paired.ratio_max)})"
    if figure.bound is not None and figure.bound.crossed_by(paired.ratio_median):
        text += " !"
    return text


def raw_cell(figure: Figure) -> str:
    if figure.paired is None:
        return "-"
    return fmt(figure.paired.raw, short_unit(figure.raw_unit))


HEADINGS = ("figure", "value (median)", "raw limit (median)", "ratio: median (min-max)", "goal",
            "met?")


def print_table(results: Results, *, widths: tuple[int, ...] = (44, 20, 20, 22, 10, 4),
                headings: tuple[str, ...] = HEADINGS,
                raw_title: str = "Raw limits: median of every sample taken in this run "
                                 "(each paired with a figure)") -> None:
    """The raw limits, then one row per figure by section, then the notes."""
    print()
    print(raw_title)
    for figure in results.raw_figures():
        print(f"  {figure.label:<52} {fmt(figure.value, figure.unit):>22}  "
              f"({figure.samples} samples)")

    def row(cells: Sequence[str]) -> None:
        print("  ".join(c.ljust(w) if i < 3 else c.rjust(w)
                        for i, (c, w) in enumerate(zip(cells, widths, strict=True))))

    print()
    row(headings)
    section = None
    for figure in results.figures.values():
        if figure.section != section:
            section = figure.section
            print(section)
        met = "-" if figure.met is None else ("yes" if figure.met else "NO")
        row((" " + figure.label[:43], fmt(figure.value, figure.unit), raw_cell(figure),
             ratio_cell(figure), figure.goal_text, met))
    print()
    print("Notes")
    for figure in results.figures.values():
        if figure.note:
            print(f"  {figure.label}: {figure.note}")
    for note in results.notes:
        print(f"  {note}")
    bounds: dict[tuple[str, str], list[str]] = {}
    for figure in results.figures.values():
        if figure.bound is not None:
            bounds.setdefault((figure.bound.describe(), figure.bound.why), []).append(figure.key)
    if bounds:
        print()
        print("Bounds: a median ratio across one makes the run exit 1")
        for (limit, why), keys in bounds.items():
            print(f"  {limit}: {why} ({', '.join(keys)})")


def print_human(results: Results, meta: dict[str, Any]) -> None:
    print(f"tidings benchmarks: {meta['mode']} run")
    print(f"python {meta['python']}, cryptography {meta['cryptography']}, cbor2 "
          f"{meta['cbor2']}, SQLite {meta['sqlite']}, {meta['cpus']} CPUs, "
          f"temp dir {meta['tmpdir']}")
    print(f"each figure: {meta['statistic']}; total {meta['elapsed_s']:.0f} s")
    if meta["mode"] == "quick":
        print("QUICK RUN: smaller sizes (see the section headers); the pool figure uses a "
              "10^5 log, not 10^6")
    print_table(results)


STATISTIC = ("samples in pairs (raw limit, then figure); value and raw = medians of their "
             "samples; ratio = median of the per-pair ratios (min-max)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = size_parser(__doc__, "smaller sizes (pool of a 10^5 log, not 10^6); under ~30 s")
    parser.add_argument("--replication", action="store_true",
                        help="also run benchmarks/replication.py (two nodes over loopback TCP)")
    parser.add_argument("--http", action="store_true",
                        help="also run benchmarks/http_api.py (the local HTTP API: publishes/s, "
                             "SSE delivery latency)")
    parser.add_argument("--publish-scale", action="store_true",
                        help="also run benchmarks/publish_scale.py (a publish at 10 and at "
                             "10,000 feeds held)")
    args = parser.parse_args(argv)
    sizes = SMOKE if args.smoke else QUICK if args.quick else FULL
    results = Results()
    begun = perf_counter()
    log(f"tidings benchmarks ({sizes.name}); progress on stderr")
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
    if args.publish_scale:
        import publish_scale  # benchmarks/publish_scale.py, beside this file

        publish_scale.bench_publish_scale(
            results, publish_scale.SMOKE if args.smoke else
            publish_scale.QUICK if args.quick else publish_scale.FULL)
    results.notes.append(
        "ratio = value / raw limit, per pair. For rates higher is better; for the pool rows "
        "the ratio is how many single Ed25519 verifies the pool check costs, and for the "
        "ESTIMATE row how many times faster the pool is than checking the whole log."
    )
    meta = {
        **machine_meta(sizes.name, "cryptography", "cbor2"),
        "batch_size": BATCH_SIZE,
        "pairs": sizes.pairs,
        "statistic": f"{STATISTIC}; {sizes.pairs} pairs a figure unless its row says",
        "sizes": {
            "raw_crypto_calls": sizes.raw_crypto,
            "verify_log_entries": sizes.verify_log,
            "durable_publishes": sizes.durable,
            "bulk_entries": sizes.bulk,
            "cli_lines": sizes.cli,
            "cli_pairs": sizes.cli_pairs,
            "pool_seqs": list(sizes.pool_seqs),
            "pool_pairs": sizes.pool_pairs,
        },
        **more_meta,
        "elapsed_s": perf_counter() - begun,
    }
    return emit("tidings", results, meta, as_json=args.json, human=print_human,
                smoke=args.smoke)


def size_parser(doc: str | None, quick_help: str) -> argparse.ArgumentParser:
    """A benchmark's argument parser: --json, --quick and --smoke."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object to stdout")
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes: only checks that the benchmark runs (the tests use "
                             "it); a ratio across its bound is reported but does not fail")
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
         human: Callable[[Results, dict[str, Any]], None], smoke: bool = False) -> int:
    """Print one benchmark's results (one JSON object with ``as_json``, else a table);
    return the exit status: 1 when a ratio crossed its bound, outside ``smoke``.

    Smoke runs time a few hundred operations once, so their ratios prove nothing
    either way: a crossed bound is printed there, not failed on.
    """
    broken = results.broken_bounds()
    if as_json:
        figures = {f.key: f.to_json() for f in results.raw_figures()}
        figures.update({key: f.to_json() for key, f in results.figures.items()})
        print(json.dumps({
            "benchmark": name,
            "meta": meta,
            "figures": figures,
            "notes": results.notes,
            "broken_bounds": broken,
        }, indent=2))
    else:
        human(results, meta)
    if not broken:
        return 0
    log("")
    log(f"IMPOSSIBLE RATIOS: {len(broken)} figure(s) crossed the bound their raw limit sets; "
        "the benchmark measured something other than it claims:")
    for message in broken:
        log(f"  {message}")
    if smoke:
        log("(--smoke: tiny samples prove nothing either way; not failing)")
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
