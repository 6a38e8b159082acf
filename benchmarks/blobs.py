"""Blob transfer between real nodes on loopback, beside its raw limits (issue 14).

    python benchmarks/blobs.py            # a 200 MB blob, 3 pairs of samples
    python benchmarks/blobs.py --quick    # 20 MB, 2 pairs
    python benchmarks/blobs.py --json

Figures, each sampled in pairs with what bounds it (benchmarks/pairs.py):

* ``blob_one_peer``: a reader's node (`tidings up`) fetches the blob from the
  author's node; MB/s from the reader's ``blob-wanted`` to ``blob-complete``
  (its log's ``seconds``), beside the slower of raw loopback TCP (one socket,
  a thread each side) and raw BLAKE2b-256 in 64 KiB pieces, each timed just
  before. The goal: at least half of that slower limit.
* ``blob_two_peers``: the same from the author and a relay that holds the blob,
  beside ``blob_one_peer`` timed just before.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pairs import Paired, interleave

MB = 1_000_000
READY = re.compile(r"event=ready addr=[0-9.]+:(\d+)")


def tidings(home: Path, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "tidings", "--home", str(home), *args],
                          capture_output=True, text=True, check=True)
    return done.stdout


class Node:
    def __init__(self, home: Path, *args: str) -> None:
        self.log_path = home.parent / f"{home.name}-{time.monotonic_ns()}.log"
        self.log_file = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tidings", "--home", str(home), "up", "--listen",
             "127.0.0.1:0", "--no-lan", "--no-api", *args],
            stdout=subprocess.DEVNULL, stderr=self.log_file)
        self.port = int(self.wait(READY.pattern).group(1))

    def wait(self, pattern: str, timeout: float = 600) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.log_path.read_text(errors="replace"))
            if found:
                return found
            if self.proc.poll() is not None:
                raise RuntimeError(self.log_path.read_text())
            time.sleep(0.02)
        raise TimeoutError(pattern)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        self.log_file.close()


def raw_tcp(size: int) -> float:
    """MB/s of one loopback TCP connection, a thread writing and the caller reading."""
    listener = socket.create_server(("127.0.0.1", 0))
    block = os.urandom(1 << 20)

    def write() -> None:
        with socket.create_connection(listener.getsockname()) as out:
            sent = 0
            while sent < size:  # exactly size: the reader closes after it
                piece = block[:size - sent]
                out.sendall(piece)
                sent += len(piece)

    writer = threading.Thread(target=write)
    start = time.perf_counter()
    writer.start()
    conn, _ = listener.accept()
    got = 0
    with conn:
        while got < size:
            data = conn.recv(1 << 20)
            if not data:
                break
            got += len(data)
    writer.join()
    listener.close()
    return got / MB / (time.perf_counter() - start)


def raw_blake2b(data: bytes) -> float:
    """MB/s of BLAKE2b-256 over ``data`` in 64 KiB pieces (what a chunk check hashes)."""
    view = memoryview(data)
    start = time.perf_counter()
    for offset in range(0, len(data), 65536):
        hashlib.blake2b(view[offset:offset + 65536], digest_size=32).digest()
    return len(data) / MB / (time.perf_counter() - start)


def fetch_rate(work: Path, feed: str, peers: list[int], blob: str) -> float:
    """MB/s of a fresh reader's node fetching the blob from ``peers``."""
    reader = Path(tempfile.mkdtemp(dir=work)) / "reader"
    tidings(reader, "init")
    tidings(reader, "follow", feed)
    args = [arg for port in peers for arg in ("--peer", f"127.0.0.1:{port}")]
    node = Node(reader, *args)
    try:
        found = node.wait(rf"event=blob-complete blob={blob} [^\n]*seconds=([0-9.]+)")
    finally:
        node.stop()
    size = int(blob.rsplit("_", 1)[1])
    return size / MB / float(found.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 MB, 2 pairs")
    parser.add_argument("--size-mb", type=int, help="the blob's size in MB")
    parser.add_argument("--pairs", type=int)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    size = (args.size_mb or (20 if args.quick else 200)) * MB
    count = args.pairs or (2 if args.quick else 3)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        author, relay = work / "author", work / "relay"
        tidings(author, "init")
        episode = work / "episode.bin"
        data = os.urandom(size)
        episode.write_bytes(data)
        made = json.loads(tidings(author, "publish", "--log", "podcast", "--attach",
                                  str(episode), "--json"))
        blob = made["attachments"][0]["blob"]
        feed = made["feed"]
        a = Node(author)
        tidings(relay, "init")
        tidings(relay, "follow", feed)
        b = Node(relay, "--peer", f"127.0.0.1:{a.port}")
        try:
            b.wait(rf"event=blob-complete blob={blob}")

            def limit() -> float:
                return min(raw_tcp(size), raw_blake2b(data))

            one: Callable[[], float] = lambda: fetch_rate(work, feed, [a.port], blob)  # noqa: E731
            two: Callable[[], float] = lambda: fetch_rate(  # noqa: E731
                work, feed, [a.port, b.port], blob)
            single = interleave(count, limit, one)
            double = interleave(count, one, two)
            tcp, blake = raw_tcp(size), raw_blake2b(data)
        finally:
            a.stop()
            b.stop()
    figures = {"blob_one_peer": _figure(single, "MB/s", "min(raw TCP, raw BLAKE2b) MB/s"),
               "blob_two_peers": _figure(double, "MB/s", "blob_one_peer MB/s"),
               "raw_tcp_loopback": {"value": tcp, "unit": "MB/s"},
               "raw_blake2b": {"value": blake, "unit": "MB/s"}}
    if args.json:
        print(json.dumps({"size_mb": size // MB, "figures": figures}, indent=2))
    else:
        print(f"blob of {size // MB} MB, {count} pairs of samples")
        for name, figure in figures.items():
            line = f"{name:<20} {figure['value']:10.1f} {figure['unit']}"
            if "ratio_median" in figure:
                line += (f"   x{figure['ratio_median']:.2f} of {figure['raw_name']} "
                         f"(min x{figure['ratio_min']:.2f}, max x{figure['ratio_max']:.2f})")
            print(line)
    return 0


def _figure(paired: Paired, unit: str, raw_name: str) -> dict[str, object]:
    return {"value": paired.value, "unit": unit, "raw": paired.raw, "raw_name": raw_name,
            "ratio_median": paired.ratio_median, "ratio_min": paired.ratio_min,
            "ratio_max": paired.ratio_max, "n_pairs": paired.n_pairs}


if __name__ == "__main__":
    sys.exit(main())
