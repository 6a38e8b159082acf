"""The benchmarks still run against the current code (tiny sizes; no timing is checked).

Benchmarks are not tests: their figures are never asserted. This keeps a change
to the library from breaking them unnoticed, and checks the arithmetic of
benchmarks/pairs.py (pairs, medians, bounds) on numbers given here.
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
sys.path.insert(0, str(BENCHMARKS))

import pairs  # noqa: E402  (benchmarks/pairs.py)
import run  # noqa: E402  (benchmarks/run.py)

PAIRED_FIELDS = ("value", "raw", "ratio_median", "ratio_min", "ratio_max", "n_pairs")


def test_every_benchmark_runs_and_prints_its_figures_as_json() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "run.py"), "--smoke", "--replication", "--http",
         "--publish-scale", "--json"], capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    figures = report["figures"]
    for name in ("raw_ed25519_verify", "publish_durable_single", "replicate_one_feed",
                 "reconnect_changed_bytes", "raw_logbook_publish", "embed_publish",
                 "http_publish_1conn", "sse_latency_median", "embed_latency_median",
                 "publish_at_many_feeds", "reconnect_unchanged_time"):
        assert name in figures, sorted(figures)
    for name in ("publish_durable_single", "replicate_one_feed", "sse_latency_median"):
        figure = figures[name]
        assert all(figure[key] is not None for key in PAIRED_FIELDS), figure
        assert figure["ratio_min"] <= figure["ratio_median"] <= figure["ratio_max"]
    assert figures["publish_durable_single"]["bound"]["ratio"] == "<= 1x"
    assert isinstance(report["broken_bounds"], list)


def test_a_ratio_is_the_median_of_the_ratios_of_the_pairs() -> None:
    paired = pairs.Paired.of(values=[10, 30, 8], raws=[20, 20, 2])
    assert paired.ratios == [0.5, 1.5, 4.0]
    assert (paired.ratio_median, paired.ratio_min, paired.ratio_max) == (1.5, 0.5, 4.0)
    assert (paired.value, paired.raw, paired.n_pairs) == (10, 20, 3)


def test_interleave_takes_a_raw_sample_before_each_figure_sample() -> None:
    calls: list[str] = []

    def raw() -> float:
        calls.append("raw")
        return 2.0

    def figure() -> float:
        calls.append("figure")
        return 1.0

    paired = pairs.interleave(3, raw, figure)
    assert calls == ["raw", "figure"] * 3
    assert paired.ratios == [0.5] * 3


def test_pairs_need_one_raw_sample_per_figure_sample_and_a_positive_raw() -> None:
    with pytest.raises(ValueError):
        pairs.Paired.of([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        pairs.Paired.of([], [])
    with pytest.raises(ValueError):
        pairs.Paired.of([1.0], [0.0])


def test_a_median_ratio_across_a_ceiling_is_named_with_its_reason() -> None:
    ceiling = pairs.Bound("a publish includes a durable commit", at_most=1.0)
    faster = pairs.Paired.of([5.25, 1.2, 0.9], [1.0, 1.0, 1.0])
    broken = pairs.broken_bounds([("publish_durable_single", faster, ceiling)])
    assert len(broken) == 1
    assert "publish_durable_single" in broken[0]
    assert "a publish includes a durable commit" in broken[0]
    assert "2 of 3 pairs" in broken[0]
    within = pairs.Paired.of([0.5, 1.2, 0.9], [1.0, 1.0, 1.0])  # one noisy pair: median 0.9
    assert pairs.broken_bounds([("publish_durable_single", within, ceiling)]) == []


def test_a_median_ratio_below_a_floor_is_named_and_all_pairs_crossing_says_so() -> None:
    floor = pairs.Bound("a sync starts a python", at_least=1.0)
    quicker = pairs.Paired.of([0.5, 0.6], [1.0, 1.0])
    (message,) = pairs.broken_bounds([("sync_noop_one_feed", quicker, floor)])
    assert "all 2 pairs" in message and ">= 1x" in message


def emit_status(results: run.Results, *, smoke: bool) -> int:
    return run.emit("test", results, {}, as_json=True, human=lambda r, m: None, smoke=smoke)


def test_a_crossed_bound_fails_the_run_except_a_smoke_run(
        capsys: pytest.CaptureFixture[str]) -> None:
    results = run.Results()
    results.paired("publish_durable_single", "2. Publishing", "Logbook.publish", "entries/s",
                   pairs.Paired.of([5.25], [1.0]), "raw_sqlite_durable_commit",
                   bound=run.at_most_one("each publish is one durable commit"))
    assert emit_status(results, smoke=False) == 1
    out, err = capsys.readouterr()
    assert json.loads(out)["broken_bounds"] and "IMPOSSIBLE" in err
    assert emit_status(results, smoke=True) == 0
    results.figures["publish_durable_single"].paired = pairs.Paired.of([0.5], [1.0])
    assert emit_status(results, smoke=False) == 0


def test_the_raw_row_is_the_median_of_every_raw_sample_of_the_run() -> None:
    results = run.Results()
    for key, raws in (("verify_a", [1.0, 3.0]), ("verify_b", [2.0])):
        results.paired(key, "1.", key, "entries/s", pairs.Paired.of([1.0] * len(raws), raws),
                       "raw_ed25519_verify")
    (raw,) = results.raw_figures()
    assert (raw.key, raw.value, raw.samples) == ("raw_ed25519_verify", 2.0, 3)


def test_the_hypercore_anchor_skips_cleanly_without_node_or_npm(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "anchor.py"), "--smoke", "--json"],
        capture_output=True, text=True, timeout=120, env={"PATH": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "SKIPPED" in done.stderr and "node" in done.stderr
    assert "skipped" in json.loads(done.stdout)


def test_the_blob_ceiling_prints_each_steps_cost_and_the_best_rates_they_allow() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "blob_ceiling.py"), "--mb", "2", "--rounds", "1",
         "--json"], capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    steps = report["cpu_ms_per_mb"]
    for name in ("blake2b_64k", "chacha_encrypt", "chacha_decrypt", "pwrite_fsync_4m",
                 "pread_64k", "tcp_send", "tcp_receive"):
        assert steps[name] > 0, name
    # Each node's floor is the sum of its steps; two cores at best run both at once.
    receiver, sender = report["receiver_ms_per_mb"], report["sender_ms_per_mb"]
    assert receiver > steps["blake2b_64k"] and sender > steps["blake2b_64k"]
    assert report["two_shared_cores_mb_s"] == pytest.approx(2000 / (receiver + sender))
    assert report["one_core_each_mb_s"] == pytest.approx(1000 / max(receiver, sender))
