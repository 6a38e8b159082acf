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

from tidings.core.verify import signatures_hold

#: Fewer signatures than this are checked on the calling thread alone: handing half
#: to the helper costs a few context switches, about what one check costs.
MIN_SPLIT = 4


class _Job:
    __slots__ = ("author", "done", "error", "holds", "signed")

    def __init__(self, author: bytes, signed: Sequence[tuple[bytes, bytes]]) -> None:
        self.author = author
        self.signed = signed
        self.holds = False
        self.error: BaseException | None = None
        self.done = threading.Lock()
        self.done.acquire()  # released by the helper once the job is done

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
            try:
                job.holds = signatures_hold(job.author, job.signed)
            except BaseException as exc:  # handed to the waiting caller
                job.error = exc
            job.done.release()


_helper: _Helper | None = None
_helper_lock = threading.Lock()


def _forget_helper() -> None:
    global _helper
    _helper = None  # a forked child has no helper thread: it starts its own


os.register_at_fork(after_in_child=_forget_helper)


def signatures_hold_split(author: bytes, signed: Sequence[tuple[bytes, bytes]]) -> bool:
    """:func:`~tidings.core.verify.signatures_hold`, its first half checked on the
    helper thread while this thread checks the rest (a
    :data:`~tidings.core.verify.SignatureCheck`)."""
    global _helper
    if len(signed) < MIN_SPLIT or (os.cpu_count() or 1) < 2:
        return signatures_hold(author, signed)
    helper = _helper
    if helper is None:
        with _helper_lock:
            helper = _helper = _helper or _Helper()
    half = len(signed) // 2
    job = _Job(author, signed[:half])
    helper.jobs.put(job)
    here = signatures_hold(author, signed[half:])
    return job.wait() and here


__all__ = ["MIN_SPLIT", "signatures_hold_split"]
