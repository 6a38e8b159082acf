"""The node's hop to a worker thread (node/threads.py)."""

from __future__ import annotations

import threading

import pytest
import trio

from tidings.node.threads import run_in_thread


async def test_the_call_runs_in_another_thread_and_its_result_comes_back() -> None:
    here = threading.get_ident()
    assert await run_in_thread(threading.get_ident) != here
    assert await run_in_thread(lambda: 6 * 7) == 42


async def test_its_exception_is_raised_in_the_caller() -> None:
    def fail() -> None:
        raise ValueError("from the worker")

    with pytest.raises(ValueError, match="from the worker"):
        await run_in_thread(fail)


async def test_a_cancelled_caller_still_waits_for_the_call_to_end() -> None:
    started, release, ended = threading.Event(), threading.Event(), threading.Event()

    def work() -> str:
        started.set()
        release.wait()
        ended.set()
        return "done"

    async def call() -> None:
        await run_in_thread(work)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(call)
        while not started.is_set():
            await trio.sleep(0.001)
        nursery.cancel_scope.cancel()
        # The caller cannot leave while the call runs: the nursery waits for it, and
        # the call ends only once the timer lets it go.
        threading.Timer(0.05, release.set).start()
    assert ended.is_set()


async def test_a_cancelled_caller_does_not_start_the_call() -> None:
    ran = threading.Event()
    with trio.CancelScope() as scope:
        scope.cancel()
        await run_in_thread(ran.set)
    assert scope.cancelled_caught and not ran.is_set()
