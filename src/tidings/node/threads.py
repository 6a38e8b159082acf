"""One hop to a worker thread and back, at the least cost trio allows.

``trio.to_thread.run_sync`` costs about 170-220 µs of CPU a call on this project's
2-core machine: a capacity limiter, a copied context, and the OS thread renamed
twice (two ``prctl`` calls through ctypes) around every job. The node hops for
every read from a peer and every batch it sends, 10 to 20 times per MB of a blob.
:func:`run_in_thread` runs the call in trio's thread cache as ``to_thread.run_sync``
does (not cancellable: the caller waits for the call to end), without the rest:
about 110 µs. Nothing run this way uses ``trio.from_thread`` or context variables.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import trio

if TYPE_CHECKING:
    import outcome

T = TypeVar("T")


async def run_in_thread(call: Callable[[], T]) -> T:
    """``call()`` in a worker thread; its result, or its exception raised here."""
    await trio.lowlevel.checkpoint_if_cancelled()
    task = trio.lowlevel.current_task()
    token = trio.lowlevel.current_trio_token()

    def deliver(result: outcome.Outcome[T]) -> None:  # (in the worker thread)
        token.run_sync_soon(trio.lowlevel.reschedule, task, result)

    trio.lowlevel.start_thread_soon(call, deliver)  # (no name: no renaming per job)

    def abort(_: object) -> trio.lowlevel.Abort:
        return trio.lowlevel.Abort.FAILED  # a call that started runs to its end

    result: T = await trio.lowlevel.wait_task_rescheduled(abort)
    return result
