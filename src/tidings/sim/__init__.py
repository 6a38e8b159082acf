"""A deterministic network simulator driving the real replication core.

``python -m tidings.sim --help``; see :mod:`tidings.sim.network` for the model.
"""

from tidings.sim.network import SimConfig, Simulation
from tidings.sim.scenario import Report, build, run

__all__ = ["Report", "SimConfig", "Simulation", "build", "run"]
