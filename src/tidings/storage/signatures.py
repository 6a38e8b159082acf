"""A received run's signatures checked on two cores (the logbook's ingest path).

cryptography's Ed25519 verify runs without the GIL, so while the ingesting thread
checks half of a run's signatures, one helper thread checks the other half: a sync
client is busy on one core while the node that serves it leaves the other about half
idle. The answer is :func:`tidings.core.verify.signatures_hold`'s: every signature
is checked, by the same function, whichever thread checks it.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Sequence

from tidings.core.verify import SignatureCheck, signatures_hold

#: Fewer signatures than this are checked on the calling thread alone: handing half
#: to the helper costs a few context switches, about what one check costs.
MIN_SPLIT = 4


class _Job:
    __slots__ = ("author", "done", "error", "holds", "signed", "taken")

    def __init__(self, author: bytes, signed: Sequence[tuple[bytes, bytes]]) -> None:
        self.author = author
        self.signed = signed
        self.holds = False
        self.error: BaseException | None = None
        self.taken = threading.Lock()  # held by the thread that runs the job
        self.done = threading.Lock()
        self.done.acquire()  # released once the job is done (or dropped)

    def take(self) -> bool:
        """Whether this thread is the one to run the job (the helper, or a caller
        that reached it before the helper did)."""
        return self.taken.acquire(blocking=False)

    def run(self) -> None:
        try:
            self.holds = signatures_hold(self.author, self.signed)
        except BaseException as exc:  # handed to the waiting caller
            self.error = exc
        finally:
            self.done.release()

    def wait(self) -> bool:
        with self.done:
            if self.error is not None:
                raise self.error
            return self.holds


class _Helper:
    """One daemon thread taking jobs from a queue; it never holds anything at exit."""

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        threading.Thread(target=self._run, name="tidings-signatures", daemon=True).start()

    def _run(self) -> None:
        while True:
            job = self.jobs.get()
            if job.take():
                job.run()


_helper: _Helper | None = None
_helper_lock = threading.Lock()


def _forget_helper() -> None:
    global _helper
    _helper = None  # a forked child has no helper thread: it starts its own


os.register_at_fork(after_in_child=_forget_helper)


def _two_cores() -> bool:
    return (os.cpu_count() or 1) >= 2


def _the_helper() -> _Helper:
    global _helper
    helper = _helper
    if helper is None:
        with _helper_lock:
            helper = _helper = _helper or _Helper()
    return helper


def signatures_hold_split(author: bytes, signed: Sequence[tuple[bytes, bytes]]) -> bool:
    """:func:`~tidings.core.verify.signatures_hold`, its first half checked on the
    helper thread while this thread checks the rest (a
    :data:`~tidings.core.verify.SignatureCheck`)."""
    if len(signed) < MIN_SPLIT or not _two_cores():
        return signatures_hold(author, signed)
    half = len(signed) // 2
    job = _Job(author, signed[:half])
    _the_helper().jobs.put(job)
    here = signatures_hold(author, signed[half:])
    if job.take():  # not begun: the helper is busy with checks ahead, run it here
        job.run()
    return job.wait() and here


class ChecksAhead:
    """Signature checks of runs that are still to be ingested, started on the helper
    thread at once: while the ingesting thread stores one run, the helper checks the
    signatures of the next (a read often carries tens of runs).

    :meth:`check` gives the :data:`~tidings.core.verify.SignatureCheck` for a run:
    the answer of its job when asked about exactly the job's signatures, which the
    caller runs itself if the helper has not begun it; anything else is checked
    afresh. Everything is checked, by the same function, whichever thread checks it.
    """

    def __init__(self) -> None:
        self._jobs: dict[int, tuple[object, _Job]] = {}  # by id(run), the run kept alive

    def start(self, run: object, author: bytes, signed: Sequence[tuple[bytes, bytes]]) -> None:
        """Begin checking ``run``'s signatures (its ``(signature, body)`` pairs)."""
        if not signed or not _two_cores():
            return
        job = _Job(author, signed)
        self._jobs[id(run)] = (run, job)
        _the_helper().jobs.put(job)

    def check(self, run: object) -> SignatureCheck:
        entry = self._jobs.pop(id(run), None)
        if entry is None or entry[0] is not run:
            return signatures_hold_split
        job = entry[1]

        def check(author: bytes, signed: Sequence[tuple[bytes, bytes]]) -> bool:
            if author != job.author or list(signed) != list(job.signed):
                _drop(job)
                return signatures_hold_split(author, signed)
            if job.take():  # not begun: the helper is busy with others, run it here
                job.run()
            return job.wait()

        return check

    def forget(self) -> None:
        """Drop the checks not asked for (a run that took another path): those the
        helper has not begun are not run."""
        for _, job in self._jobs.values():
            _drop(job)
        self._jobs.clear()


def _drop(job: _Job) -> None:
    if job.take():
        job.done.release()


__all__ = ["MIN_SPLIT", "ChecksAhead", "signatures_hold_split"]
