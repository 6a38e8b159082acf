"""Connection slots: who gets one, and who gives one up (spec/14 §2).

Pure bookkeeping for the node: the daemon asks :func:`admit` when a stranger
connects and tells each connection's :class:`Standing` what it has been worth.

* Outbound slots are reserved: inbound connections never take more than
  ``max_connections - max_outbound`` slots, so a crowd of strangers cannot stop
  the node from dialing its configured and known peers.
* At the inbound cap a newcomer is not refused: the least proven inbound
  connection is closed for it (one that exchanged nothing useful, the oldest of
  those first). Holding a slot costs a stranger a connection that gives the
  node entries; idling costs it the slot as soon as someone else comes.
* One source address holds at most ``per_address`` inbound connections (NAT
  lets a few honest nodes share one), so one host cannot take every slot even
  by churning.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import field

from tidings.core.records import record

#: Inbound connections from one source address: a few honest nodes may share an
#: address behind NAT; more than this from one host is one party taking slots.
DEFAULT_PER_ADDRESS = 4


@record(frozen=False, eq=False, slots=False)
class Standing:
    """What one connection has been worth to this node."""

    address: tuple[str, int]
    initiator: bool
    opened: float
    #: Entries it gave that verified and were new, and notes of feeds we hold or want.
    useful: int = 0
    #: Hellos exchanged (a connection still in the handshake is the least proven).
    ready: bool = False
    #: Configured peers and peers we dialed are never evicted.
    protected: bool = field(default=False)

    def rank(self) -> tuple[int, int, float]:
        """Smaller is evicted first: not ready, then nothing useful, then oldest."""
        return (int(self.ready), self.useful, self.opened)


def source(address: tuple[str, int]) -> str:
    """The host a connection comes from (an IPv4-mapped IPv6 address as IPv4)."""
    host = address[0]
    try:
        parsed = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        return str(parsed.ipv4_mapped)
    return str(parsed)


@record
class Admission:
    """The answer to a newcomer: take it (evicting ``evict`` first, if any), or refuse."""

    accept: bool
    evict: Standing | None = None
    reason: str = ""


def admit(address: tuple[str, int], inbound: Iterable[Standing], *, inbound_cap: int,
          per_address: int = DEFAULT_PER_ADDRESS) -> Admission:
    """Whether an inbound connection from ``address`` gets a slot, and at whose cost."""
    current = [s for s in inbound if not s.initiator]
    host = source(address)
    same = [s for s in current if source(s.address) == host]
    if len(same) >= per_address:
        # Its own least proven connection makes room, never another host's.
        victim = min((s for s in same if not s.protected), key=Standing.rank, default=None)
        if victim is None:
            return Admission(False, reason="per-address")
        return Admission(True, victim)
    if len(current) < inbound_cap:
        return Admission(True)
    victim = min((s for s in current if not s.protected), key=Standing.rank, default=None)
    if victim is None:
        return Admission(False, reason="max-connections")
    return Admission(True, victim)


def inbound_cap(max_connections: int, max_outbound: int) -> int:
    """Inbound slots: what the reserved outbound ones leave (at least one)."""
    return max(1, max_connections - max_outbound)


__all__ = ["DEFAULT_PER_ADDRESS", "Admission", "Standing", "admit", "inbound_cap", "source"]
