"""The benchmarks still run against the current code (tiny sizes; no timing is checked).

Benchmarks are not tests: their figures are never asserted. This only keeps a
change to the library from breaking them unnoticed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

#: Every test here starts real processes (see tests/conftest.py).
pytestmark = pytest.mark.system

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_every_benchmark_runs_and_prints_its_figures_as_json() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "run.py"), "--smoke", "--replication", "--http",
         "--json"], capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout)["figures"]
    for name in ("raw_ed25519_verify", "publish_durable_single", "replicate_one_feed",
                 "reconnect_changed_bytes", "raw_logbook_publish", "embed_publish",
                 "http_publish_1conn", "sse_latency_median", "embed_latency_median"):
        assert name in figures, sorted(figures)
