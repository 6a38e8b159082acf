"""Group commit of a node's own publishes: what arrives together shares one fsync.

One publish at a time leads a commit: it takes every publish waiting (after
gathering, below) and writes them in one transaction in a worker thread; then
every publish of the group returns, each only once its own entry is durable.
Publishes that arrive during the commit wait for it, all woken at once when it
ends, and one of them leads the next.

Why a commit gathers at all: publishers usually publish again at once when
answered (an app's tasks, or its keep-alive HTTP connections), and those that
come back after the next commit started would wait for it and then commit
alone: with 8 HTTP connections the commits settled into groups of 1 and 7,
twice the fsyncs of 8 tasks in one process. So a commit waits for as many
publishes as the last commit answered, but never longer than that commit took
(waiting longer would cost more than committing them next). It waits before
the transaction opens: the store is never held waiting for the event loop, where
an app's own call to the store would then wait for the store.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import trio

from tidings.core.entry import Entry


@dataclass(eq=False, slots=True)
class Publish:
    """One publish waiting for its group commit: the entry once durable, or the error."""

    payload: bytes
    log_id: str
    entry: Entry | None = None
    error: BaseException | None = None


#: What a writer returns: per publish it took, its entry, or why it was refused
#: before it wrote anything (the others of the group are stored all the same).
Written = Sequence[tuple[Publish, Entry | BaseException]]


class GroupCommit:
    """The publishes of one node, committed in groups.

    ``write(requests)`` runs in a worker thread while ``lock`` is held: it writes
    every publish of ``requests`` in one transaction and commits it. If it raises,
    nothing of the group is stored and each of its publishes raises that.
    ``after()`` runs on the event loop after each commit, stored or not.
    """

    def __init__(self, lock: trio.Lock, write: Callable[[Sequence[Publish]], Written],
                 after: Callable[[], None]) -> None:
        self._lock = lock
        self._write = write
        self._after = after
        #: Publishes no commit has taken yet.
        self._waiting: list[Publish] = []
        #: Set when the commit under way ends (None: none is).
        self._committing: trio.Event | None = None
        #: How many publishes the last commit answered, how many came since (set
        #: once as many came), and how long that commit took.
        self._answered, self._since, self._all_back = 0, 0, trio.Event()
        self._commit_s = 0.0

    async def publish(self, payload: bytes, log_id: str) -> Entry:
        """``payload`` appended to ``log_id``; returns once the entry is durable."""
        request = Publish(payload, log_id)
        self._waiting.append(request)
        self._since += 1
        if self._since >= self._answered:
            self._all_back.set()
        while request.entry is None and request.error is None:
            if self._committing is not None:
                # Its end wakes every publish waiting: those it stored, and those
                # that came too late for it (one of which then leads the next).
                await self._committing.wait()
            else:
                await self._lead()
        if request.error is not None:
            raise request.error
        assert request.entry is not None
        return request.entry

    async def _lead(self) -> None:
        done = self._committing = trio.Event()
        try:
            async with self._lock:
                await self._commit()
        finally:
            self._committing = None
            done.set()

    async def _commit(self) -> None:
        if self._since < self._answered:
            with trio.move_on_after(self._commit_s):
                await self._all_back.wait()
        group, self._waiting = self._waiting, []
        started = trio.current_time()
        try:
            written = await trio.to_thread.run_sync(self._write, group)
        except BaseException as exc:
            # Rolled back: none of them is stored, and each is told so.
            for request in group:
                request.entry, request.error = None, exc
            raise
        finally:
            self._commit_s = trio.current_time() - started
            self._answered, self._since, self._all_back = len(group), 0, trio.Event()
            self._after()
        for request, outcome in written:
            if isinstance(outcome, Entry):
                request.entry = outcome
            else:
                request.error = outcome
        for request in group:
            if request.entry is None and request.error is None:  # (a writer's bug)
                request.error = RuntimeError("the group commit skipped a publish")
