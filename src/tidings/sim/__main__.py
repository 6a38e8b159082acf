"""``python -m tidings.sim``: run one simulated network and print its report."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from tidings.sim.network import SimConfig, Simulation
from tidings.sim.scenario import Report, run

#: What each option of SimConfig means, for --help (defaults are appended).
_HELP = {
    "nodes": "nodes in the network, authors included",
    "authors": "nodes that publish (one 'blog' log each)",
    "entries": "entries each author publishes",
    "payload_size": "bytes of each entry's payload",
    "follows": "authors each node follows",
    "topology": "'learning' (a few popular authors, many small ones, relays) or "
                "'random' (uniform follows, no preference)",
    "degree": "peers each node dials",
    "relays": "always-on relays",
    "relay_links": "relays each node dials",
    "latency": "one-way link latency, uniform between LO and HI seconds",
    "bandwidth": "bytes per second each way on a link",
    "loss": "chance that a piece of data is lost and sent again (each loss adds "
            "3 x latency + 0.2 s, as a retransmission timeout would)",
    "churn": "fraction of nodes that crash once during the run and restart",
    "downtime": "seconds a crashed node stays down, uniform between LO and HI",
    "late": "fraction of nodes that start offline and join between 1 and 10 s",
    "publish_over": "authors publish during the first this many seconds",
    "seed": "random seed: the same seed gives the same run",
    "max_time": "virtual seconds after which an unconverged run stops (exit 1)",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tidings.sim",
        description="Simulate a tidings network in virtual time and report convergence, "
                    "redundancy and delays. The same seed gives the same run.",
    )
    defaults = SimConfig()
    for item in dataclasses.fields(SimConfig):
        value = getattr(defaults, item.name)
        flag = "--" + item.name.replace("_", "-")
        text = f"{_HELP[item.name]} (default: {value})"
        if isinstance(value, tuple):
            parser.add_argument(flag, type=float, nargs=2, default=value, metavar=("LO", "HI"),
                                help=text)
        else:
            parser.add_argument(flag, type=type(value), default=value, help=text)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--plot", metavar="PNG",
                        help="write a plot of delivery over time and the delay CDF "
                             "(needs matplotlib: pip install 'tidings[sim]')")
    return parser


def _print(report: Report) -> None:
    r = report
    print(f"nodes {r.config['nodes']} ({r.config['relays']} relays), authors "
          f"{r.config['authors']} x {r.config['entries']} entries, each node follows "
          f"{r.config['follows']}; loss {r.config['loss']:.0%}, churn {r.config['churn']:.0%}")
    if r.converged:
        print(f"converged in {r.convergence_s:.2f} s (virtual); floor = diameter "
              f"{r.diameter_links} links x mean latency {r.mean_latency_s * 1000:.0f} ms = "
              f"{r.floor_s:.2f} s; publishing lasts {r.config['publish_over']} s")
    else:
        print(f"NOT converged: {r.entries_delivered} of {r.entries_needed} entries delivered")
    print(f"redundancy (payload bytes sent / needed): {r.redundancy:.3f}")
    print(f"entries sent per entry needed: {r.entries_sent / max(r.entries_needed, 1):.3f}; "
          f"wire bytes per entry {r.wire_bytes_per_entry:.0f}, of which control "
          f"{r.control_bytes_per_entry:.0f}")
    print(f"delivery delay: median {r.delay_median_s:.3f} s, p99 {r.delay_p99_s:.3f} s")
    print(f"connections {r.connections}, crashes {r.crashes}, peer errors {r.peer_errors}, "
          f"memory ~{r.rss_per_node_kib:.0f} KiB per node")


def _plot(sim: Simulation, report: Report, path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no plot: matplotlib is not installed (pip install 'tidings[sim]')",
              file=sys.stderr)
        return
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    times, counts = zip(*sim.stats.progress, strict=True) if sim.stats.progress else ((), ())
    left.plot(times, [c / max(report.entries_needed, 1) for c in counts])
    left.axvline(report.floor_s, linestyle="--", color="grey", label="diameter x latency")
    left.set_xlabel("virtual time (s)")
    left.set_ylabel("fraction of needed entries delivered")
    left.legend()
    delays = sorted(sim.stats.delays)
    right.plot(delays, [i / max(len(delays), 1) for i in range(len(delays))])
    right.set_xlabel("publish-to-follower delay (s)")
    right.set_ylabel("CDF")
    fig.suptitle(f"{report.config['nodes']} nodes, loss {report.config['loss']:.0%}, "
                 f"churn {report.config['churn']:.0%}, seed {report.config['seed']}")
    fig.tight_layout()
    fig.savefig(Path(path))


def main(argv: list[str] | None = None) -> int:
    if os.environ.get("PYTHONHASHSEED") != "0":
        # Set iteration order decides tie-breaks; a fixed hash seed makes a run repeatable.
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable, "-m", "tidings.sim", *sys.argv[1:]])
    args = _parser().parse_args(argv)
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(SimConfig)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    report, sim = run(SimConfig(**values))
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        _print(report)
    if args.plot:
        _plot(sim, report, args.plot)
    return 0 if report.converged else 1


if __name__ == "__main__":
    sys.exit(main())
