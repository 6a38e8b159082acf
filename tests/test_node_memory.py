"""A node process's allocator settings (node/memory.py): blob-sized buffers are reused,
not mapped and zeroed afresh for every message (counted in page faults)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Sends 32 MB of blob-data messages through a channel pair, as a serving node does
# (2 MiB a flush), and prints the minor page faults per MB.
CHILD = """
import os, resource, sys
from tidings.node.memory import tune_allocator
if sys.argv[1] == "tune" and not tune_allocator():
    print("untunable"); sys.exit()
from tests.test_channel import established
from tidings.wire.messages import BlobData
a, b = established()
chunks = tuple((i, os.urandom(65536), b"") for i in range(4))
def run(mb):
    for _ in range(mb // 2):
        for _ in range(8):
            a.send(BlobData(1, chunks, False))
        b.receive_data(a.data_to_send())
        assert len(b.messages()) == 8
run(4)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
run(32)
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 32)
"""


def faults_per_mb(mode: str) -> str:
    done = subprocess.run([sys.executable, "-c", CHILD, mode], cwd=ROOT, capture_output=True,
                          text=True, check=True)
    return done.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_a_tuned_node_process_moves_blob_bytes_without_fresh_pages() -> None:
    tuned = faults_per_mb("tune")
    if tuned == "untunable":
        pytest.skip("this libc has no mallopt thresholds (not glibc)")
    # Untuned, every 2 MiB flush maps fresh memory: a fault per 4 KiB page, ~256 per
    # MB. Tuned, the buffers come back from the heap.
    assert float(faults_per_mb("none")) > 100
    assert float(tuned) < 10
