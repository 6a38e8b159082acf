"""tidings beside Hypercore: the same logs written, served and replicated, in one run.

Usage::

    python benchmarks/anchor.py            # 100,000 x 200 B in one feed; 1,000 feeds x 100
    python benchmarks/anchor.py --quick    # 10,000 in one feed; 100 feeds x 100
    python benchmarks/anchor.py --json     # one JSON object on stdout
    python benchmarks/anchor.py --hypercore-dir DIR   # reuse an npm folder with the packages

Hypercore 11 (with Corestore and @hyperswarm/secret-stream) is installed with
npm into a temporary folder for the run; without node or npm, or when the
install fails, the benchmark says why and exits 0. benchmarks/hypercore_driver.js
drives it. Both systems get the same 200-byte payloads (SHA-256 output, so
nothing compresses them) and run on loopback TCP, ports chosen by the OS:

* tidings: a ``tidings up`` node serves a home; the reader is the real CLI,
  ``python -m tidings --home R sync --peer 127.0.0.1:PORT`` on a fresh home R
  that follows the feeds;
* Hypercore: ``node hypercore_driver.js serve`` replicates a Corestore to every
  connection; the reader is ``node hypercore_driver.js read`` on a fresh folder.

Every measurement alternates, tidings then Hypercore, then tidings again, and
each ratio (tidings / Hypercore) is the median of the per-pair ratios, with their
min and max (benchmarks/pairs.py). A replication's time runs from spawning the
reader to its exit, for both. See benchmarks/README.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:  # for `import run` and `import replication`
    sys.path.insert(0, str(BENCH_DIR))

import run as base  # noqa: E402  (benchmarks/run.py: figures, output)
from pairs import Paired, no_gc  # noqa: E402  (benchmarks/pairs.py)
from replication import (  # noqa: E402  (benchmarks/replication.py: homes, nodes, proxy)
    Child,
    CountingProxy,
    NodeProcess,
    Source,
    build_source,
    make_receiver,
    proc_cpu_s,
    rss_kib_to_mib,
    run_measured,
    run_sync,
)
from run import RawKind, Results, log  # noqa: E402

from tidings.storage.logbook import BATCH_SIZE  # noqa: E402
from tidings.wire.messages import VERSIONS  # noqa: E402

WIRE_VERSION = VERSIONS[-1]  # what two nodes of this checkout speak

perf_counter = time.perf_counter

ENTRY_SIZE = 200  # payload bytes of every entry and every Hypercore block
PACKAGES = ("hypercore", "corestore", "@hyperswarm/secret-stream")
DRIVER = BENCH_DIR / "hypercore_driver.js"
#: npm fetches a few MB; on a slow link that takes a while, but not this long.
INSTALL_TIMEOUT_S = 600


@dataclass(frozen=True)
class Sizes:
    name: str
    pairs: int  # (tidings, Hypercore) pairs per figure
    one_feed: int  # entries in the one-feed log
    feeds: int  # feeds in the many-feeds scenario ...
    per_feed: int  # ... and entries in each
    single: int  # single appends per sample


FULL = Sizes("full", 3, 100_000, 1000, 100, 1000)
QUICK = Sizes("quick", 3, 10_000, 100, 100, 300)
#: Tiny: checks that the benchmark runs; its figures mean nothing.
SMOKE = Sizes("smoke", 1, 500, 5, 10, 20)


class Skipped(Exception):
    """The anchor cannot run here (no node or npm, or the install failed)."""


def anchor_payload(i: int) -> bytes:
    """Payload i: SHA-256(b"anchor i 0") || SHA-256(b"anchor i 1") || ..., cut to ENTRY_SIZE.

    hypercore_driver.js makes the same bytes for block i.
    """
    parts = [hashlib.sha256(b"anchor %d %d" % (i, k)).digest()
             for k in range(-(-ENTRY_SIZE // 32))]
    return b"".join(parts)[:ENTRY_SIZE]


def dir_bytes(path: Path) -> int:
    """Apparent size (st_size) of every file under ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# -- Hypercore through hypercore_driver.js ------------------------------------------------


@dataclass
class Hypercore:
    node: str  # the node executable
    modules: Path  # the node_modules folder holding PACKAGES
    versions: dict[str, str]

    def env(self) -> dict[str, str]:
        return {**os.environ, "NODE_PATH": str(self.modules)}

    def cmd(self, *args: str) -> list[str]:
        return [self.node, str(DRIVER), *args]

    def run(self, *args: str) -> dict[str, Any]:
        """A driver command that prints one JSON line; its result."""
        done = subprocess.run(self.cmd(*args), capture_output=True, text=True, env=self.env(),
                              stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise RuntimeError(f"hypercore_driver.js {args[0]} exited with {done.returncode}: "
                               f"{done.stderr[-800:]}")
        result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
        return result

    def measured(self, *args: str) -> Child:
        """A driver command through the launcher: spawn to exit, peak RSS, CPU."""
        return run_measured(self.cmd(*args), self.env())


def install_hypercore(folder: Path) -> Hypercore:
    """``npm install`` PACKAGES into ``folder`` (or use them if already there)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise Skipped("node and npm are needed to run Hypercore; "
                      f"{'node' if node is None else 'npm'} is not on PATH")
    modules = folder / "node_modules"
    if not all((modules / package / "package.json").exists() for package in PACKAGES):
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / "package.json").exists():
            (folder / "package.json").write_text('{"private": true}\n')
        log(f"npm install {' '.join(PACKAGES)} into {folder} ...")
        try:
            done = subprocess.run([npm, "install", "--no-audit", "--no-fund",
                                   "--loglevel=error", *PACKAGES], cwd=folder,
                                  capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise Skipped(f"npm install took over {INSTALL_TIMEOUT_S} s") from None
        if done.returncode != 0:
            raise Skipped(f"npm install failed (exit {done.returncode}): "
                          f"{(done.stderr or done.stdout).strip()[-600:]}")
    versions = {package: json.loads((modules / package / "package.json").read_text())["version"]
                for package in PACKAGES}
    version = subprocess.run([node, "--version"], capture_output=True, text=True)
    versions["node"] = version.stdout.strip()
    return Hypercore(node, modules, versions)


class HypercoreServer:
    """``node hypercore_driver.js serve DIR KEYS``: its port is on its first stdout line."""

    def __init__(self, hypercore: Hypercore, store: Path, keys: Path, log_path: Path) -> None:
        self.log_path = log_path
        with log_path.open("wb") as stderr:
            self.proc = subprocess.Popen(hypercore.cmd("serve", str(store), str(keys)),
                                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=stderr, env=hypercore.env())
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # the driver prints it once it listens
        try:
            self.port = int(json.loads(line)["port"])
        except (ValueError, KeyError, TypeError):
            self.kill()
            raise RuntimeError(f"the Hypercore server did not start: {line[:200]!r} "
                               f"{log_path.read_text(errors='replace')[-800:]}") from None

    def cpu_s(self) -> float | None:
        return proc_cpu_s(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
                raise RuntimeError("the Hypercore server did not stop within 20 s") from None
        self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@contextmanager
def servers(source: Source, hypercore: Hypercore, store: Path, keys: Path,
            tmp: Path) -> Iterator[tuple[NodeProcess, HypercoreServer]]:
    """A ``tidings up`` node on ``source`` and a Hypercore server on ``store``, both on
    127.0.0.1 with ports chosen by the OS; stopped (or killed, on an error) after."""
    node = NodeProcess(source.home, tmp / f"{source.home.name}.log")
    try:
        server = HypercoreServer(hypercore, store, keys, tmp / f"{store.name}.log")
        try:
            yield node, server
            server.stop()
        finally:
            server.kill()
        node.stop()
    finally:
        node.kill()


# -- one scenario ---------------------------------------------------------------------------


@dataclass
class Reads:
    """Each system's readers, one per pair, in the order they ran."""

    seconds: list[float] = field(default_factory=list)
    rss_mib: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)
    server_cpu_s: list[float | None] = field(default_factory=list)
    disk: list[int] = field(default_factory=list)


def hypercore_read(hypercore: Hypercore, server_cpu: HypercoreServer, folder: Path, keys: Path,
                   port: int, expect: int) -> tuple[Child, float | None]:
    """One Hypercore reader into a fresh ``folder``; its CPU and the server's."""
    before = server_cpu.cpu_s()
    with no_gc():
        child = hypercore.measured("read", str(folder), str(keys), str(port))
    after = server_cpu.cpu_s()
    if child.returncode != 0:
        raise RuntimeError(f"the Hypercore reader exited with {child.returncode}: "
                           f"{child.stderr[-800:]}")
    got = int(json.loads(child.stdout.splitlines()[-1])["entries"])
    if got != expect:
        raise RuntimeError(f"the Hypercore reader got {got} blocks, not {expect}: "
                           "the benchmark is broken")
    return child, (after - before if before is not None and after is not None else None)


def replicate(results: Results, sizes: Sizes, tmp: Path, key: str, section: str,
              source: Source, hypercore: Hypercore, store: Path, keys: Path) -> None:
    """Pairs of readers (tidings, then Hypercore) against both servers; then one proxied
    reader each for the bytes on the wire; the figures of ``key``."""
    n = source.entries
    tidings, hyper = Reads(), Reads()
    with servers(source, hypercore, store, keys, tmp) as (node, server):
        log(f"  tidings node on 127.0.0.1:{node.port}, Hypercore on 127.0.0.1:{server.port}; "
            f"{sizes.pairs} pairs of readers (tidings, then Hypercore) ...")
        for attempt in range(sizes.pairs):
            home = make_receiver(tmp / f"reader-{key}-{attempt}", source.feeds)
            run = run_sync(home, node, n)
            tidings.seconds.append(run.elapsed_s)
            tidings.rss_mib.append(rss_kib_to_mib(run.client_peak_rss_kib))
            tidings.cpu_s.append(run.client_cpu_s)
            tidings.server_cpu_s.append(run.node_cpu_s)
            tidings.disk.append(dir_bytes(home))
            shutil.rmtree(home)
            folder = tmp / f"hc-reader-{key}-{attempt}"
            child, server_cpu = hypercore_read(hypercore, server, folder, keys, server.port, n)
            hyper.seconds.append(child.elapsed_s)
            hyper.rss_mib.append(rss_kib_to_mib(child.peak_rss_kib))
            hyper.cpu_s.append(child.cpu_s)
            hyper.server_cpu_s.append(server_cpu)
            hyper.disk.append(dir_bytes(folder))
            shutil.rmtree(folder)
            log(f"    pair {attempt + 1}: tidings {run.elapsed_s:.2f} s, Hypercore "
                f"{child.elapsed_s:.2f} s")
        log("  one more reader each through the counting proxy ...")
        proxied = run_sync(make_receiver(tmp / f"reader-{key}-proxy", source.feeds), node, n,
                           proxied=True)
        proxy = CountingProxy(server.port)
        try:
            hypercore_read(hypercore, server, tmp / f"hc-reader-{key}-proxy", keys, proxy.port, n)
        finally:
            proxy.close()
        if proxy.connections != 1:
            raise RuntimeError(f"the Hypercore reader made {proxy.connections} connections, "
                               "not 1")

    what = (f"{n:,} entries" if len(source.feeds) == 1
            else f"{len(source.feeds):,} feeds x {n // len(source.feeds)}")
    figure(results, f"replicate_{key}", section, f"read {what}: spawn to exit", "entries/s",
           Paired.of([n / s for s in tidings.seconds], [n / s for s in hyper.seconds]),
           note="readers: `tidings sync` (the CLI) and `node hypercore_driver.js read`, each "
                "into a fresh home or folder; start-up included")
    figure(results, f"wire_bytes_per_entry_{key}", section, "bytes on the wire per entry",
           "bytes/entry", Paired.once(proxied.wire_total / n, proxy.total / n),
           note=f"TCP payload both ways, one proxied reader each (tidings at wire version "
                f"{WIRE_VERSION}: compact runs, spec/09 §8; goal: at most Hypercore's): tidings "
                f"{proxied.from_node:,} + {proxied.to_node:,}, Hypercore "
                f"{proxy.from_node:,} + {proxy.to_node:,} (server->reader + reader->server)")
    figure(results, f"disk_bytes_per_entry_reader_{key}", section,
           "reader's disk bytes per entry", "bytes/entry",
           Paired.of([d / n for d in tidings.disk], [d / n for d in hyper.disk]),
           note="apparent size of every file in the reader's home / folder after it exits")
    figure(results, f"reader_peak_rss_{key}", section, "reader peak RSS (ru_maxrss)", "MiB",
           Paired.of(tidings.rss_mib, hyper.rss_mib),
           note="os.wait4 in the launcher; its ~10 MiB is a floor under both")
    figure(results, f"reader_cpu_{key}", section, "reader CPU (user+sys)", "ms",
           Paired.of([t * 1000 for t in tidings.cpu_s], [h * 1000 for h in hyper.cpu_s]))
    server_cpus = [(t, h) for t, h in zip(tidings.server_cpu_s, hyper.server_cpu_s, strict=True)
                   if t is not None and h is not None]
    if server_cpus and all(h > 0 for _, h in server_cpus):
        figure(results, f"server_cpu_{key}", section, "server CPU during a read (user+sys)",
               "ms", Paired.of([t * 1000 for t, _ in server_cpus],
                               [h * 1000 for _, h in server_cpus]),
               note="from /proc/PID/stat, 10 ms ticks")


def figure(results: Results, key: str, section: str, label: str, unit: str, paired: Paired,
           note: str = "") -> None:
    """A row: tidings as the value, Hypercore as the raw limit of the same name."""
    scenario = "many feeds" if key.endswith("many_feeds") else "one feed"
    results.raw_kinds[f"hypercore_{key}"] = RawKind(f"Hypercore, {scenario}: {label}", unit)
    results.paired(key, section, label, unit, paired, f"hypercore_{key}", note=note)


def bench_one_feed(results: Results, sizes: Sizes, tmp: Path, hypercore: Hypercore) -> None:
    n = sizes.one_feed
    section = f"1. One feed of {n:,} entries x {ENTRY_SIZE} B"
    log(f"one feed: {sizes.pairs} pairs of writers, {n:,} entries in appends of {BATCH_SIZE} "
        "(tidings, then Hypercore) ...")
    tidings_rates: list[float] = []
    hyper_rates: list[float] = []
    sources: list[Source] = []
    stores: list[Path] = []
    for attempt in range(sizes.pairs):
        source = build_source(tmp / f"source-one-{attempt}", [0], n, make_payload=anchor_payload,
                              one_transaction=False)
        tidings_rates.append(n / source.append_s)
        store, keys = tmp / f"hc-source-one-{attempt}", tmp / f"hc-one-{attempt}.keys"
        done = hypercore.run("write", str(store), "1", str(n), str(ENTRY_SIZE), str(BATCH_SIZE),
                             str(keys))
        hyper_rates.append(n / done["seconds"])
        sources.append(source)
        stores.append(store)
        log(f"    pair {attempt + 1}: tidings {tidings_rates[-1]:,.0f}/s, Hypercore "
            f"{hyper_rates[-1]:,.0f}/s")
    figure(results, "append_batched_one_feed", section, f"append, {BATCH_SIZE} entries a call",
           "entries/s", Paired.of(tidings_rates, hyper_rates),
           note="Logbook.publish_batch (one durable SQLite commit a call, as `tidings publish "
                "--lines`) beside core.append(1000 blocks); timed in the writing process")
    figure(results, "disk_bytes_per_entry_writer_one_feed", section,
           "writer's disk bytes per entry", "bytes/entry",
           Paired.of([dir_bytes(s.home) / n for s in sources],
                     [dir_bytes(store) / n for store in stores]))
    for source, store in zip(sources[1:], stores[1:], strict=True):
        shutil.rmtree(source.home)
        shutil.rmtree(store)

    m = sizes.single
    log(f"one feed: {sizes.pairs} pairs of {m:,} single appends ...")
    payloads = [anchor_payload(i) for i in range(1, m + 1)]
    tidings_single: list[float] = []
    hyper_single: list[float] = []
    for attempt in range(sizes.pairs):
        with no_gc():
            tidings_single.append(m / base.publish_seconds(payloads)())
        done = hypercore.run("single", str(tmp / f"hc-single-{attempt}"), str(m),
                             str(ENTRY_SIZE))
        hyper_single.append(m / done["seconds"])
        shutil.rmtree(tmp / f"hc-single-{attempt}")
    figure(results, "append_single_one_feed", section, "append, one entry a call", "entries/s",
           Paired.of(tidings_single, hyper_single),
           note="Logbook.publish (each one durable: an fsync'd SQLite commit) beside an awaited "
                "core.append(block) (RocksDB, written without a sync per append)")
    log("one feed: replication ...")
    replicate(results, sizes, tmp, "one_feed", section, sources[0], hypercore, stores[0],
              tmp / "hc-one-0.keys")


def bench_many_feeds(results: Results, sizes: Sizes, tmp: Path, hypercore: Hypercore) -> None:
    feeds, per = sizes.feeds, sizes.per_feed
    section = f"2. {feeds:,} feeds x {per} entries x {ENTRY_SIZE} B (one author / core each)"
    log(f"many feeds: writing {feeds:,} feeds x {per} entries, each system once (not timed) ...")
    source = build_source(tmp / "source-many", range(1, feeds + 1), per,
                          make_payload=anchor_payload)
    store, keys = tmp / "hc-source-many", tmp / "hc-many.keys"
    hypercore.run("write", str(store), str(feeds), str(per), str(ENTRY_SIZE), str(BATCH_SIZE),
                  str(keys))
    n = source.entries
    figure(results, "disk_bytes_per_entry_writer_many_feeds", section,
           "writer's disk bytes per entry", "bytes/entry",
           Paired.once(dir_bytes(source.home) / n, dir_bytes(store) / n))
    log("many feeds: replication ...")
    replicate(results, sizes, tmp, "many_feeds", section, source, hypercore, store, keys)


def bench_anchor(results: Results, sizes: Sizes, hypercore: Hypercore) -> None:
    with tempfile.TemporaryDirectory(prefix="tidings-bench-anchor-") as tmp:
        bench_one_feed(results, sizes, Path(tmp), hypercore)
        bench_many_feeds(results, sizes, Path(tmp), hypercore)
    results.notes.append(
        "value = tidings, raw = Hypercore (the same figure), ratio = tidings / Hypercore per "
        "pair; for rates higher favours tidings, for bytes, MiB and CPU lower does."
    )
    results.notes.append(
        "Durability differs: every tidings commit is fsync'd (SQLite WAL, synchronous=FULL); "
        "Hypercore's RocksDB writes are not synced per append (strace shows a handful of "
        "fsync/fdatasync calls for hundreds of appends, at open and close)."
    )


# -- output ----------------------------------------------------------------------------------


def print_human(results: Results, meta: dict[str, Any]) -> None:
    versions = ", ".join(f"{k} {v}" for k, v in meta["hypercore_versions"].items())
    print(f"tidings beside Hypercore: {meta['mode']} run")
    print(f"python {meta['python']}, tidings {meta['tidings']}, SQLite {meta['sqlite']}; "
          f"{versions}; {meta['cpus']} CPUs, temp dir {meta['tmpdir']}")
    print(f"{meta['statistic']}; total {meta['elapsed_s']:.0f} s")
    base.print_table(results, widths=(40, 20, 20, 22, 4, 4),
                     headings=("figure", "tidings (median)", "Hypercore (median)",
                               "tidings/Hypercore", "goal", "met?"),
                     raw_title="Hypercore: median of its samples, each paired with tidings'")


def main(argv: Sequence[str] | None = None) -> int:
    parser = base.size_parser(__doc__, "10,000 entries in one feed; 100 feeds x 100")
    parser.add_argument("--hypercore-dir", type=Path, metavar="DIR",
                        help="an npm folder to install the packages into (or that has them); "
                             "default: a temporary one for this run")
    args = parser.parse_args(argv)
    sizes = SMOKE if args.smoke else QUICK if args.quick else FULL
    begun = perf_counter()
    log(f"tidings beside Hypercore ({sizes.name}); progress on stderr")
    with tempfile.TemporaryDirectory(prefix="tidings-bench-npm-") as npm_tmp:
        try:
            hypercore = install_hypercore(args.hypercore_dir or Path(npm_tmp))
        except Skipped as skipped:
            log(f"SKIPPED: {skipped}")
            if args.json:
                print(json.dumps({"benchmark": "tidings-vs-hypercore", "skipped": str(skipped)}))
            return 0
        results = Results()
        bench_anchor(results, sizes, hypercore)
    meta = {
        **base.machine_meta(sizes.name, "tidings"),
        "hypercore_versions": hypercore.versions,
        "statistic": f"{sizes.pairs} pairs (tidings, then Hypercore) a figure unless its row "
                     "says; each side's median, and the median of the per-pair ratios "
                     "tidings / Hypercore (min-max)",
        "sizes": {"pairs": sizes.pairs, "one_feed_entries": sizes.one_feed,
                  "many_feeds": sizes.feeds, "entries_per_feed": sizes.per_feed,
                  "single_appends": sizes.single, "entry_bytes": ENTRY_SIZE,
                  "append_batch": BATCH_SIZE},
        "elapsed_s": perf_counter() - begun,
    }
    return base.emit("tidings-vs-hypercore", results, meta, as_json=args.json,
                     human=print_human, smoke=args.smoke)


if __name__ == "__main__":
    sys.exit(main())
