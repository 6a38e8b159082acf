"""Shared fixtures, the Hypothesis profiles and the ``system`` and ``slow`` markers.

``pytest`` runs everything: what CI runs. ``pytest --fast`` is the inner loop
(under two minutes on a 2-core machine): it leaves out the tests that start
real processes (``system``: the CLI, nodes killed with -9, the README and
examples run as written) and the long in-process ones (``slow``: simulated
networks), and runs Hypothesis with fewer examples.

Hypothesis never has deadlines here: a loaded machine must not turn a slow
example into a failure. ``HYPOTHESIS_PROFILE=thorough`` runs more examples.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from tidings import MemoryStore, SqliteStore, Store

settings.register_profile(
    "tidings", deadline=None, suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("fast", parent=settings.get_profile("tidings"), max_examples=20)
settings.register_profile("thorough", parent=settings.get_profile("tidings"),
                          max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "tidings"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--fast", action="store_true",
                     help="the inner loop: no system or slow tests, fewer Hypothesis examples")


def pytest_configure(config: pytest.Config) -> None:
    # A runner started in the background by a shell without job control (`pytest &`,
    # nohup, some CI launchers) ignores SIGINT, and every process a test starts
    # would inherit that: the Ctrl-C tests would then wait for a process that
    # cannot hear them. Processes started here get Ctrl-C as a terminal gives it.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if not hasattr(config, "workerinput"):  # (once, in the run's main process)
        _compile_the_package()
    if config.getoption("--fast"):
        if "HYPOTHESIS_PROFILE" not in os.environ:
            settings.load_profile("fast")
        config.option.markexpr = " and ".join(
            part for part in (config.option.markexpr, "not system and not slow") if part)


def _compile_the_package() -> None:
    """Write the package's bytecode now, if it is missing or stale: the suite starts
    well over a thousand processes (the CLI, nodes), and where PYTHONDONTWRITEBYTECODE
    is set (some CI runners set it) each one would otherwise compile every module it
    loads from source again, about 0.3 s of CPU each."""
    import compileall

    import tidings

    compileall.compile_dir(os.path.dirname(tidings.__file__), quiet=2)


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path) -> Iterator[Store]:  # type: ignore[no-untyped-def]
    """Every store implementation, so the logbook tests hold for each."""
    made: Store = MemoryStore() if request.param == "memory" else SqliteStore(tmp_path / "s.db")
    yield made
    made.close()
