"""The network simulator drives the real replicators; small runs here, large ones by hand.

``python -m tidings.sim --nodes 1000 --authors 100 --entries 100 --follows 20 --relays 10``
is the large run (README.md, "Simulating a network"); these keep to seconds each.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tidings.sim import Report, SimConfig, Simulation, run

#: Simulated networks of dozens of nodes: seconds each (see tests/conftest.py).
pytestmark = pytest.mark.slow

SMALL = SimConfig(nodes=60, authors=12, entries=30, follows=4, relays=3, seed=7)


@pytest.fixture(scope="module")
def small() -> tuple[Report, Simulation]:
    """One run of SMALL, which the tests below only read (seconds each run)."""
    return run(SMALL)


def test_a_learning_network_converges_with_little_redundancy(
        small: tuple[Report, Simulation]) -> None:
    report, sim = small
    assert report.converged, report
    assert report.entries_delivered == report.entries_needed > 0
    assert report.redundancy <= 1.5
    assert report.peer_errors == 0
    # Every follower holds, verified, every entry of every feed it follows.
    for node in sim.nodes:
        for feed in node.follows:
            assert node.book.verify(feed)[0].entries == SMALL.entries
    # Convergence cannot beat the network's physical floor.
    assert report.convergence_s is not None and report.convergence_s >= report.floor_s / 2


def test_nodes_that_do_not_follow_a_feed_do_not_store_it(
        small: tuple[Report, Simulation]) -> None:
    _, sim = small
    for node in sim.nodes:
        if node.relay:
            continue
        own = {node.book.feed("blog")} if node.book.identity else set()
        held = {info.feed for info in node.book.feeds()}
        assert held <= set(node.follows) | own


@pytest.mark.parametrize("topology", ["random", "learning"])
def test_convergence_under_loss_and_churn(topology: str) -> None:
    config = SimConfig(nodes=50, authors=10, entries=20, follows=3, relays=3, loss=0.1,
                       churn=0.2, late=0.1, topology=topology, seed=11)
    report, _ = run(config)
    assert report.converged, report
    # Crashes are scheduled over the publishing window and a little after; those due
    # after the network converged never happen (the run stops there).
    assert report.crashes >= int(0.2 * 53) // 2
    assert report.peer_errors == 0


def test_one_seed_gives_one_run(small: tuple[Report, Simulation]) -> None:
    first, _ = small
    second, _ = run(SMALL)
    keys = ("convergence_s", "entries_sent", "payload_bytes_sent", "delay_p99_s", "connections")
    assert {k: getattr(first, k) for k in keys} == {k: getattr(second, k) for k in keys}


@pytest.mark.system
def test_the_command_prints_a_json_report() -> None:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(
        [sys.executable, "-m", "tidings.sim", "--nodes", "30", "--authors", "6", "--entries",
         "10", "--follows", "3", "--relays", "2", "--json"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["converged"] and report["redundancy"] <= 1.5
    assert report["config"]["nodes"] == 30
