"""Shared fixtures, the Hypothesis profile and the ``system`` marker.

``pytest`` runs everything (what CI runs). ``pytest -m "not system"`` leaves
out the tests that start real processes (the CLI, nodes killed with -9, the
README and examples run as written): the fast inner loop.

Hypothesis runs without deadlines: a loaded 2-core machine must not turn a
slow example into a failure. ``HYPOTHESIS_PROFILE=thorough`` runs ten times
the examples.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from tidings import MemoryStore, SqliteStore, Store

settings.register_profile(
    "tidings", deadline=None, suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("thorough", parent=settings.get_profile("tidings"),
                          max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "tidings"))


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path) -> Iterator[Store]:  # type: ignore[no-untyped-def]
    """Every store implementation, so the logbook tests hold for each."""
    made: Store = MemoryStore() if request.param == "memory" else SqliteStore(tmp_path / "s.db")
    yield made
    made.close()
