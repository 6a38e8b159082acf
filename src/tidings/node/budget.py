"""What one connection may cost the node per second (spec/14 §6), pure arithmetic.

Every read of a peer's bytes is one call into the replicator, under the lock all
connections share. Two bounds keep one peer from taking that lock from the rest:

* **Small reads** (a ping, a note, a trickle) are spaced at least
  ``1 / SMALL_READS_PER_SECOND`` apart: bytes that arrive meanwhile wait in the
  socket and are taken in one read. A peer sending a ping every millisecond
  costs 20 replicator calls a second, not a thousand; an honest live stream is
  delayed by at most 50 ms. A small read that leaves answers to send (a
  request, a blob request) is not spaced: the peer must read the answers
  before more of its reads are taken (the node's output bound), so a fetch
  keeps its pipe full.
* **Work**: the seconds the replicator spent on the peer's bytes are charged to
  it and refill at ``WORK_SHARE`` per second, up to ``WORK_BURST``. A peer in
  debt waits for its budget only while other connections wait for the lock, so a
  single honest sync runs at full speed and a heavy one cannot starve the others.
"""

from __future__ import annotations

from tidings.core.records import record

#: A read of fewer bytes than this is small (pings, notes, trickles).
SMALL_READ = 4096
SMALL_READS_PER_SECOND = 20.0
#: The share of the replicator's time one connection may take while others wait.
WORK_SHARE = 0.25
#: Seconds of replicator work a connection may take at once before it is held back.
WORK_BURST = 1.0
#: Every read costs at least this much (a call into the replicator is not free).
MIN_CHARGE = 0.001


@record(frozen=False)
class ReadBudget:
    """One connection's budget; times are seconds on the node's clock."""

    last_small: float = float("-inf")
    credit: float = WORK_BURST
    updated: float = 0.0

    def wait_before_read(self, now: float, contended: bool) -> float:
        """Seconds to wait before the next read may be handed to the replicator."""
        self._refill(now)
        waits = [0.0]
        if contended and self.credit < 0:
            waits.append(-self.credit / WORK_SHARE)
        return max(waits)

    def wait_after_small(self, now: float, size: int, *, answered: bool = False) -> float:
        """Seconds to wait before reading again, after a read of ``size`` bytes
        (``answered``: it left answers to send, so the peer's reading of them paces it)."""
        if size >= SMALL_READ or answered:
            return 0.0
        spacing = 1.0 / SMALL_READS_PER_SECOND
        wait = max(0.0, self.last_small + spacing - now)
        self.last_small = now + wait
        return wait

    def charge(self, now: float, seconds: float) -> None:
        """The replicator spent ``seconds`` on this connection's bytes."""
        self._refill(now)
        self.credit -= max(seconds, MIN_CHARGE)

    def _refill(self, now: float) -> None:
        if now > self.updated:
            self.credit = min(WORK_BURST, self.credit + (now - self.updated) * WORK_SHARE)
            self.updated = now


__all__ = ["SMALL_READ", "SMALL_READS_PER_SECOND", "WORK_BURST", "WORK_SHARE", "ReadBudget"]
