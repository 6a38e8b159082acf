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

Answers: a publisher may give an ``answer`` hook (the HTTP API does). While the
commit's fsync runs, the event loop has nothing else to do (every publisher waits
for it), so once the writer has written the group's rows it calls
:meth:`GroupCommit.written` and the loop prepares each answer then (an HTTP
response's JSON and head); once the commit is durable the leader sends them all
at once, before any publisher's task runs (8 answers leave within a fraction of
a millisecond, not one task switch after another). An answer is sent only once
the commit is durable; one that fails is never sent.
"""

from __future__ import annotations

import contextlib
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
    #: Called on the event loop with the written entry, before it is durable: returns
    #: what sends its answer (called once it is durable, never if the commit fails).
    answer: Answer | None = None
    send: Callable[[], None] | None = None


#: A publisher's answer hook (see the module's docstring): it must not block.
Answer = Callable[[Entry], Callable[[], None]]


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
        self._token: trio.lowlevel.TrioToken | None = None

    async def publish(self, payload: bytes, log_id: str, answer: Answer | None = None) -> Entry:
        """``payload`` appended to ``log_id``; returns once the entry is durable.
        ``answer`` (optional) prepares and sends the publisher's answer (see above)."""
        request = Publish(payload, log_id, answer=answer)
        self._waiting.append(request)
        self._since += 1
        if self._since >= self._answered:
            self._all_back.set()
        try:
            while request.entry is None and request.error is None:
                if self._committing is not None:
                    # Its end wakes every publish waiting: those it stored, and those
                    # that came too late for it (one of which then leads the next).
                    await self._committing.wait()
                else:
                    await self._lead()
        finally:
            # (A publisher that left, cancelled, is not answered by the commit.)
            request.answer = request.send = None
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
        self._token = trio.lowlevel.current_trio_token()
        started = trio.current_time()
        try:
            written = await trio.to_thread.run_sync(self._write, group)
        except BaseException as exc:
            # Rolled back: none of them is stored, and each is told so.
            for request in group:
                request.entry, request.error = None, exc
            self._after()
            raise
        finally:
            self._commit_s = trio.current_time() - started
            self._answered, self._since, self._all_back = len(group), 0, trio.Event()
        try:
            self._answer(group, written)
        finally:
            self._after()  # (after the answers: they go first)

    def _answer(self, group: list[Publish], written: Written) -> None:
        for request, outcome in written:
            if isinstance(outcome, Entry):
                request.entry = outcome
            else:
                request.error = outcome
        for request in group:
            if request.entry is None and request.error is None:  # (a writer's bug)
                request.error = RuntimeError("the group commit skipped a publish")
        # Durable: every answer goes now, before any publisher's task runs.
        self._prepare([(request, request.entry) for request in group
                       if request.entry is not None and request.send is None])
        for request in group:
            send, request.send = request.send, None
            if send is not None and request.entry is not None:
                with contextlib.suppress(Exception):  # (a bug: it answers by itself)
                    send()

    def written(self, written: Written) -> None:
        """Called by the writer in its worker thread once it has written the group's
        rows, before it commits: the answers are prepared on the event loop meanwhile."""
        assert self._token is not None
        if any(request.answer is not None for request, _ in written):
            self._token.run_sync_soon(self._prepare, written)

    @staticmethod
    def _prepare(written: Written) -> None:
        for request, outcome in written:
            if isinstance(outcome, Entry) and request.answer is not None:
                try:
                    request.send = request.answer(outcome)
                except Exception:  # (a publisher's bug: it answers by itself, as without one)
                    request.answer = None
