"""Figures sampled in pairs with the raw limits that bound them: A, B, A, B, ...

A figure timed at one moment and its raw limit timed at another drift apart on
a shared machine: a neighbour's build during the raw run, and the ratio says
the figure beat its own floor. So every sample of a figure comes right after a
sample of its raw limit, and the ratio reported is the median of the ratios of
the pairs, beside their min and max. The value and the raw limit reported are
the medians of their own samples.

Some raw limits are true bounds: a durable publish includes a durable commit,
so it can never be faster than bare durable commits. A :class:`Bound` says so,
and :func:`broken_bounds` names every figure whose ratio crosses its bound: the
benchmark, not the machine, is then broken, and the run exits non-zero.

Used by benchmarks/run.py, replication.py, http_api.py and anchor.py.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import AbstractAsyncContextManager, AbstractContextManager, contextmanager
from dataclasses import dataclass


@contextmanager
def no_gc() -> Iterator[None]:
    """Collect first, then keep the collector out of the timed code (as timeit does)."""
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@dataclass(frozen=True)
class Paired:
    """Samples of a figure and of its raw limit, ``values[i]`` taken right after ``raws[i]``.

    Both are in the units they are reported in (entries/s, ms, bytes, ...).
    """

    values: tuple[float, ...]
    raws: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.values) != len(self.raws) or not self.values:
            raise ValueError(f"{len(self.values)} values and {len(self.raws)} raw samples: "
                             "pairs need one of each, and at least one pair")
        if any(raw <= 0 for raw in self.raws):
            raise ValueError(f"a raw limit must be positive to divide by: {self.raws}")

    @classmethod
    def of(cls, values: Iterable[float], raws: Iterable[float]) -> Paired:
        return cls(tuple(values), tuple(raws))

    @classmethod
    def once(cls, value: float, raw: float) -> Paired:
        """One pair: a figure measured once (a byte count, a single long run)."""
        return cls((value,), (raw,))

    @property
    def n_pairs(self) -> int:
        return len(self.values)

    @property
    def ratios(self) -> list[float]:
        return [value / raw for value, raw in zip(self.values, self.raws, strict=True)]

    @property
    def value(self) -> float:
        return statistics.median(self.values)

    @property
    def raw(self) -> float:
        return statistics.median(self.raws)

    @property
    def ratio_median(self) -> float:
        return statistics.median(self.ratios)

    @property
    def ratio_min(self) -> float:
        return min(self.ratios)

    @property
    def ratio_max(self) -> float:
        return max(self.ratios)


def interleave(pairs: int, raw: Callable[[], float], figure: Callable[[], float]) -> Paired:
    """``raw()``, ``figure()``, ``raw()``, ``figure()``, ... ``pairs`` times each.

    Each call returns one sample in its reporting unit and runs with the garbage
    collector paused (collected before).
    """
    values: list[float] = []
    raws: list[float] = []
    for _ in range(pairs):
        with no_gc():
            raws.append(raw())
        with no_gc():
            values.append(figure())
    return Paired.of(values, raws)


async def interleave_async(pairs: int, raw: Callable[[], float],
                           figure: Callable[[], Awaitable[float]]) -> Paired:
    """:func:`interleave` for a figure sampled by a coroutine (in a trio or asyncio loop).

    ``raw()`` is called as is: it blocks the loop, so nothing else runs meanwhile.
    """
    values: list[float] = []
    raws: list[float] = []
    for _ in range(pairs):
        with no_gc():
            raws.append(raw())
        with no_gc():
            values.append(await figure())
    return Paired.of(values, raws)


Operations = tuple[Callable[[], object], Callable[[], object]]


def alternate(pairs: int, count: int, operations: Callable[[], AbstractContextManager[Operations]],
              *, raw_units: int = 1, figure_units: int = 1) -> Paired:
    """The finest interleaving: raw, figure, raw, figure, ... operation by operation.

    Each pair enters ``operations()`` (untimed setup: fresh files, say), which
    gives a raw operation and a figure operation; then runs raw, figure, raw,
    figure, ... ``count`` times each, timing every call. A pair's samples are
    units per second of each side: ``count * units`` / the sum of its own
    calls' times (an operation may do several units: a loop of verifies, a
    chunk of entries). A stall of the disk or a burst of load from another
    process then lands on both sides of a pair alike, instead of on whichever
    sample it happens to hit.
    """
    values: list[float] = []
    raws: list[float] = []
    clock = time.perf_counter
    for _ in range(pairs):
        with operations() as (raw, figure), no_gc():
            raw_s = figure_s = 0.0
            for _ in range(count):
                start = clock()
                raw()
                middle = clock()
                figure()
                figure_s += clock() - middle
                raw_s += middle - start
        raws.append(count * raw_units / raw_s)
        values.append(count * figure_units / figure_s)
    return Paired.of(values, raws)


async def alternate_async(
    pairs: int, count: int,
    operations: Callable[[], AbstractAsyncContextManager[tuple[Callable[[], object],
                                                              Callable[[], Awaitable[object]]]]],
) -> Paired:
    """:func:`alternate` for a figure operation that is a coroutine (the raw one blocks)."""
    values: list[float] = []
    raws: list[float] = []
    clock = time.perf_counter
    for _ in range(pairs):
        async with operations() as (raw, figure):
            with no_gc():
                raw_s = figure_s = 0.0
                for _ in range(count):
                    start = clock()
                    raw()
                    middle = clock()
                    await figure()
                    figure_s += clock() - middle
                    raw_s += middle - start
        raws.append(count / raw_s)
        values.append(count / figure_s)
    return Paired.of(values, raws)


def per_second(count: int, seconds: Callable[[], float]) -> Callable[[], float]:
    """A sampler of ``count`` operations per the seconds ``seconds()`` timed."""
    return lambda: count / seconds()


def milliseconds(seconds: Callable[[], float], per: int = 1) -> Callable[[], float]:
    """A sampler of milliseconds per operation: ``seconds()`` timed ``per`` of them."""
    return lambda: seconds() * 1000 / per


@dataclass(frozen=True)
class Bound:
    """What a ratio (value / raw) can physically be, and why.

    ``at_most`` for a raw limit that is a true ceiling (a rate whose every
    operation includes the raw one), ``at_least`` for a true floor (a time or
    a size that includes the raw one).
    """

    why: str
    at_most: float | None = None
    at_least: float | None = None

    def crossed_by(self, ratio: float) -> bool:
        return ((self.at_most is not None and ratio > self.at_most)
                or (self.at_least is not None and ratio < self.at_least))

    def describe(self) -> str:
        if self.at_most is not None:
            return f"<= {self.at_most:g}x"
        if self.at_least is not None:
            return f">= {self.at_least:g}x"
        return "-"


def broken_bounds(figures: Iterable[tuple[str, Paired, Bound]]) -> list[str]:
    """A message for every figure whose median ratio crosses its bound.

    The message says how many pairs crossed it: all of them points at the
    measurement (it does not measure what it claims); some of them at a machine
    too noisy for a ratio this close to its bound.
    """
    broken = []
    for key, paired, bound in figures:
        if not bound.crossed_by(paired.ratio_median):
            continue
        crossed = sum(bound.crossed_by(ratio) for ratio in paired.ratios)
        if crossed == paired.n_pairs:
            verdict = (f"all {crossed} pairs crossed it: the benchmark does not measure what "
                       "it claims")
        else:
            verdict = (f"{crossed} of {paired.n_pairs} pairs crossed it: too much noise for "
                       "a ratio this close to its bound; rerun on a quieter machine")
        broken.append(
            f"{key}: median ratio {paired.ratio_median:.3g}x (min {paired.ratio_min:.3g}x, "
            f"max {paired.ratio_max:.3g}x) is impossible: it must be {bound.describe()} "
            f"because {bound.why}; {verdict}"
        )
    return broken
