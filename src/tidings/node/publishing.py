"""Group commit of a node's own publishes: what arrives together shares one fsync.

One commit at a time, each in a task of its own (started by the first publish
that finds none open): it takes every publish waiting (after gathering, below)
and writes them in one transaction in a worker thread; then every publish of the
group returns, each only once its own entry is durable: all woken at once as
soon as the writer says the commit is durable (:meth:`GroupCommit.durable`),
while it finishes its own work after the commit, or else when the commit ends.
A publish that comes once a commit has taken its group joins the next one, whose
task waits for the commit before it to end: each publisher waits for one wake-up.

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
response's JSON and head). Once the commit is durable, the writer calls
:meth:`GroupCommit.durable` in its thread, which sends every answer prepared by
then at once, from that thread: the answers leave as soon as the fsync ends,
without waiting for the event loop to hear of it, and while that thread writes
them (the GIL released in each write) the event loop is free to read the requests
that come back. The leader sends any answer not prepared by then, before any
publisher's task runs. An answer is sent only once the commit is durable; one
that fails is never sent, nor one whose publisher left.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import trio

from tidings.core.entry import Entry
from tidings.errors import UsageError


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


#: A publisher's answer hook (see the module's docstring): called on the event loop,
#: it must not block; what it returns sends the answer, must not block either, and
#: may be called from the writer's thread (then while the publisher still waits).
Answer = Callable[[Entry], Callable[[], None]]


#: What a writer returns: per publish it took, its entry, or why it was refused
#: before it wrote anything (the others of the group are stored all the same).
Written = Sequence[tuple[Publish, Entry | BaseException]]


@dataclass(eq=False, slots=True)
class _Commit:
    """One commit: ``answered`` once the publishes it took know their outcome (as soon
    as it is durable), ``ended`` once its task has ended (its writer too)."""

    answered: trio.Event = field(default_factory=trio.Event)
    ended: trio.Event = field(default_factory=trio.Event)
    #: The publishes it took.
    group: list[Publish] = field(default_factory=list)


class GroupCommit:
    """The publishes of one node, committed in groups.

    ``write(requests)`` runs in a worker thread while ``lock`` is held: it writes
    every publish of ``requests`` in one transaction and commits it. If it raises,
    nothing of the group is stored and each of its publishes raises that (unless it
    said the group was durable first, :meth:`durable`). ``after()`` runs on the
    event loop after each commit, stored or not.
    """

    def __init__(self, lock: trio.Lock, write: Callable[[Sequence[Publish]], Written],
                 after: Callable[[], None]) -> None:
        self._lock = lock
        self._write = write
        self._after = after
        #: Publishes no commit has taken yet.
        self._waiting: list[Publish] = []
        #: The commit that takes the publishes that come now (None: the next publish
        #: starts one), and the one whose writer runs.
        self._open: _Commit | None = None
        self._writing: _Commit | None = None
        #: How many publishes the last commit took, how many came since (set once as
        #: many came), and how long the last commit took.
        self._answered, self._since, self._all_back = 0, 0, trio.Event()
        self._commit_s = 0.0
        self._token: trio.lowlevel.TrioToken | None = None
        #: Held while answers are made ready (event loop) or taken to be sent (the
        #: writer's thread, :meth:`durable`), and while a leaving publisher drops its own.
        self._answers = threading.Lock()
        #: Set by :meth:`aclose`: nothing more is written.
        self._closed = False

    async def publish(self, payload: bytes, log_id: str, answer: Answer | None = None) -> Entry:
        """``payload`` appended to ``log_id``; returns once the entry is durable.
        ``answer`` (optional) prepares and sends the publisher's answer (see above)."""
        if self._closed:
            raise _stopped()
        request = Publish(payload, log_id, answer=answer)
        self._waiting.append(request)
        self._since += 1
        if self._since >= self._answered:
            self._all_back.set()
        try:
            while request.entry is None and request.error is None:
                commit = self._open
                if commit is None:
                    # Each commit runs in a task of its own (waiting for the one before
                    # it to end): this publisher, answered, returns without waiting for
                    # the writer to finish, and one that comes meanwhile joins the next.
                    commit = self._open = _Commit()
                    trio.lowlevel.spawn_system_task(self._lead, commit, name="group commit")
                # It takes this publish, and wakes it once durable (or failed).
                await commit.answered.wait()
        finally:
            # (A publisher that left, cancelled, is not answered by the commit.)
            with self._answers:
                request.answer = request.send = None
        if request.error is not None:
            raise request.error
        assert request.entry is not None
        return request.entry

    async def aclose(self) -> None:
        """Stop: a publish not written yet (or made from now on) raises UsageError, and
        this returns once the commit being written, if any, has ended: the store may
        close then. (Commits run as system tasks, outside the node's nursery.)"""
        self._closed = True
        self._all_back.set()  # (a commit gathering its group stops waiting)
        while (commit := self._writing or self._open) is not None:
            await commit.ended.wait()

    async def _lead(self, commit: _Commit) -> None:
        try:
            async with self._lock:
                await self._commit(commit)
        except Exception as exc:  # (a bug: each publish of it not answered yet raises it)
            for request in commit.group:
                if request.entry is None and request.error is None:
                    request.error = exc
        finally:
            if self._open is commit:  # (it ended before it took any: the next will)
                self._open = None
            commit.answered.set()
            commit.ended.set()

    async def _commit(self, commit: _Commit) -> None:
        if self._since < self._answered:
            with trio.move_on_after(self._commit_s):
                await self._all_back.wait()
        group = commit.group = self._waiting
        self._waiting, self._open = [], None
        if self._closed:  # (the node stops: the store is about to close)
            for request in group:
                request.error = _stopped()
            return
        # (Those that come from now on are for the next commit.)
        self._answered, self._since, self._all_back = len(group), 0, trio.Event()
        self._token = trio.lowlevel.current_trio_token()
        started = trio.current_time()
        self._writing = commit
        try:
            written = await trio.to_thread.run_sync(self._write, group)
        except BaseException as exc:
            # Rolled back: none of them is stored, and each is told so (but those the
            # writer said were durable before it failed), the leader too: by its own
            # publish, which raises ``exc`` or returns its durable entry.
            for request in group:
                if request.entry is None:
                    request.error = exc
            self._after()
            if isinstance(exc, Exception):
                return
            raise
        finally:
            self._writing = None
            self._commit_s = trio.current_time() - started
        try:
            self._answer(group, written)
        finally:
            self._after()  # (after the answers: they go first)

    @staticmethod
    def _settle(written: Written) -> None:
        for request, outcome in written:
            if request.entry is None and request.error is None:
                if isinstance(outcome, Entry):
                    request.entry = outcome
                else:
                    request.error = outcome

    def _answer(self, group: list[Publish], written: Written) -> None:
        self._settle(written)
        for request in group:
            if request.entry is None and request.error is None:  # (a writer's bug)
                request.error = RuntimeError("the group commit skipped a publish")
        # Durable: every answer goes now, before any publisher's task runs.
        self._prepare([(request, request.entry) for request in group
                       if request.entry is not None and request.send is None])
        for request in group:
            with self._answers:
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

    def durable(self, written: Written) -> None:
        """Called by the writer in its worker thread once the group's commit is durable
        (never after one that failed): sends the answers prepared by then, and wakes the
        group's publishers, while the writer finishes (its work after the commit)."""
        assert self._token is not None
        self._send_ready(written)
        commit = self._writing
        if commit is not None:
            self._token.run_sync_soon(self._durable, commit, written)

    def _send_ready(self, written: Written) -> None:
        """Send the answers of a durable group prepared by now (each once)."""
        with self._answers:
            sends = []
            for request, outcome in written:
                if request.send is not None and isinstance(outcome, Entry):
                    sends.append(request.send)
                    request.answer = request.send = None  # (answered: not again)
        for send in sends:
            with contextlib.suppress(Exception):  # (a bug: it answers by itself)
                send()

    def _durable(self, commit: _Commit, written: Written) -> None:
        # (Those prepared after the writer sent what was ready go now, before any
        # publisher's task runs.)
        self._send_ready(written)
        self._settle(written)
        commit.answered.set()

    def _prepare(self, written: Written) -> None:
        for request, outcome in written:
            if isinstance(outcome, Entry) and request.answer is not None:
                try:
                    send = request.answer(outcome)
                except Exception:  # (a publisher's bug: it answers by itself, as without one)
                    request.answer = None
                    continue
                with self._answers:
                    if request.answer is not None:  # (not left meanwhile)
                        request.send = send


def _stopped() -> UsageError:
    return UsageError("the node has stopped: publish while it runs (inside open_node)")
