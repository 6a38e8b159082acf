"""The pure parts of the resource model (spec/14), in process: who gets a slot, what a
connection's reads may cost, a relay's quota, missing payloads, bounded decoding.
The same bounds against real processes are in tests/test_attacks.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tidings.core.ids import FeedId
from tidings.errors import MalformedMessage
from tidings.node.budget import SMALL_READS_PER_SECOND, WORK_BURST, ReadBudget
from tidings.node.slots import Standing, admit, inbound_cap, source
from tidings.node.state import MAX_PER_SOURCE, NodeState, network_prefix
from tidings.replication.payloads import MissingPayloads
from tidings.replication.relay import MIN_HOLD, OFFER_TTL, PENDING_PER_PEER, RelayQuota
from tidings.wire.messages import MAX_ARRAYS, decode_message


def _standing(host: str, opened: float, *, ready: bool = True, useful: int = 0,
              initiator: bool = False) -> Standing:
    return Standing((host, 1000), initiator, opened, useful=useful, ready=ready)


def test_outbound_slots_are_reserved() -> None:
    assert inbound_cap(64, 8) == 56 and inbound_cap(4, 8) == 1


def test_at_the_cap_the_least_proven_inbound_connection_goes() -> None:
    useful = _standing("10.0.0.1", 1.0, useful=5)
    idle_old = _standing("10.0.0.2", 2.0)
    idle_new = _standing("10.0.0.3", 3.0)
    half_open = _standing("10.0.0.4", 4.0, ready=False)
    outbound = _standing("10.0.0.5", 0.0, initiator=True)
    everyone = [useful, idle_old, idle_new, half_open, outbound]
    assert admit(("10.0.0.9", 1), everyone, inbound_cap=4).evict is half_open
    assert admit(("10.0.0.9", 1), everyone[:3], inbound_cap=3).evict is idle_old
    below = admit(("10.0.0.9", 1), everyone[:3], inbound_cap=4)
    assert below.accept and below.evict is None


def test_one_address_makes_room_only_among_its_own() -> None:
    mine = [_standing("10.0.0.1", float(i)) for i in range(3)]
    other = _standing("10.0.0.2", -1.0)
    decision = admit(("10.0.0.1", 9), [other, *mine], inbound_cap=100, per_address=3)
    assert decision.accept and decision.evict is mine[0]
    assert source(("::ffff:10.0.0.1", 1)) == "10.0.0.1"


def test_small_reads_are_spaced_and_work_waits_only_under_contention() -> None:
    budget = ReadBudget()
    assert budget.wait_after_small(10.0, 100) == 0.0
    assert budget.wait_after_small(10.0, 100) == pytest.approx(1 / SMALL_READS_PER_SECOND)
    assert budget.wait_after_small(20.0, 1 << 20) == 0.0  # a large read: never held
    # a small read that left answers (a blob request): paced by the output bound
    assert budget.wait_after_small(20.0, 100) == 0.0
    assert budget.wait_after_small(20.0, 100, answered=True) == 0.0
    assert budget.wait_after_small(20.0, 100) > 0.0
    budget.charge(30.0, WORK_BURST + 1.0)
    assert budget.wait_before_read(30.0, contended=False) == 0.0
    assert budget.wait_before_read(30.0, contended=True) > 0.0


def _feed(i: int) -> FeedId:
    return FeedId(i.to_bytes(32, "big"), "f")


def test_a_relay_takes_a_few_offers_per_peer_and_drops_those_that_bring_nothing() -> None:
    quota = RelayQuota(max_feeds=10_000, max_bytes=1000)
    quota.expire(100.0)
    taken = quota.take((_feed(i) for i in range(1000)), b"stranger")
    assert len(taken) == PENDING_PER_PEER
    assert quota.take([_feed(5000)], b"author") == [_feed(5000)]  # another peer's share
    quota.stored(_feed(5000), 10)
    assert quota.expire(100.0 + OFFER_TTL) == taken  # brought nothing: dropped
    assert set(quota.charged) == {_feed(5000)}
    assert quota.stored(_feed(5000), 990) == [_feed(5000)]  # the bytes spent: fetched no more
    assert quota.full and quota.take([_feed(6000)], b"author") == []  # nothing to evict yet


def test_a_full_relay_gives_the_least_served_feeds_place_to_a_newcomer() -> None:
    quota = RelayQuota(max_feeds=3, max_bytes=1000, min_hold=MIN_HOLD)
    quota.expire(1.0)
    for i in range(3):
        assert quota.take([_feed(i)], b"p") == [_feed(i)]
        assert quota.stored(_feed(i), 100) == []
    quota.served(_feed(0))
    quota.served(_feed(2))
    assert quota.full and quota.take([_feed(9)], b"author") == []  # held too briefly
    quota.expire(1.0 + MIN_HOLD)
    assert quota.take([_feed(9)], b"author") == [_feed(9)]  # one could give its place
    assert quota.stored(_feed(9), 50) == [_feed(1)]  # the one never read
    assert set(quota.charged) == {_feed(0), _feed(2), _feed(9)} and quota.bytes_used == 250
    quota.expire(1.0 + 2 * MIN_HOLD)
    # Bytes: a newcomer takes the places of the least served (then oldest) feeds
    # until it fits; feeds read more than it stay, and then it stops.
    assert quota.stored(_feed(9), 700) == []  # 950 bytes: under the bound
    assert quota.stored(_feed(9), 100) == [_feed(9)]  # the others were read: it stops
    assert _feed(9) in quota.charged and quota.bytes_used == 1050
    assert quota.take([_feed(10)], b"author") == [_feed(10)]
    # 9, never read and held long enough, gives its place: the read ones stay.
    assert quota.stored(_feed(10), 10) == [_feed(9)]
    assert set(quota.charged) == {_feed(0), _feed(2), _feed(10)} and quota.bytes_used == 210
    quota.take([_feed(11)], b"author")
    assert quota.stored(_feed(11), 10) == [_feed(11)]  # 0 and 2 were read, 10 is new
    assert set(quota.charged) == {_feed(0), _feed(2), _feed(10)} and quota.bytes_used == 210


def test_a_relay_counts_its_bytes_from_the_store_at_start() -> None:
    quota = RelayQuota(max_feeds=10, max_bytes=1000)
    quota.restore({_feed(1): 600, _feed(2): 500})
    assert quota.full and quota.bytes_used == 1100
    quota.expire(1.0)
    quota.expire(1.0 + MIN_HOLD)
    assert quota.take([_feed(3)], b"author") == [_feed(3)]
    assert quota.stored(_feed(3), 100) == [_feed(1)]  # the oldest of the unread
    assert quota.bytes_used == 600


def test_missing_payloads_are_asked_of_each_peer_once_per_gap() -> None:
    missing = MissingPayloads()
    missing.add(_feed(1), range(1, 101))
    first = missing.next_ask(_feed(1), b"a")
    assert first is not None and first == tuple(range(1, 65))
    assert missing.next_ask(_feed(1), b"a") is None  # asked already
    missing.got(_feed(1), first)
    missing.answered(_feed(1), b"a")
    assert missing.next_ask(_feed(1), b"a") == tuple(range(65, 101))
    missing.got(_feed(1), range(65, 101))
    assert missing.count() == 0


def test_learned_addresses_are_counted_per_network_prefix() -> None:
    assert network_prefix("192.0.2.7") == network_prefix("192.0.2.200") == "192.0.2.0/24"
    assert network_prefix("2001:db8:1:2::1") == "2001:db8:1::/48"
    assert network_prefix("Example.org") == "example.org"


def test_a_msgpack_bomb_is_refused_while_it_is_decoded() -> None:
    inner = b"\xdc" + (4096).to_bytes(2, "big") + b"\x90" * 4096
    count = (2 * 1024 * 1024 - 64) // len(inner)
    bomb = b"\x94\x01\x00\xdc" + count.to_bytes(2, "big") + inner * count + b"\x01"
    with pytest.raises(MalformedMessage, match=f"over {MAX_ARRAYS} arrays"):
        decode_message(bomb)


def test_learned_addresses_are_bounded_per_source_across_sessions(tmp_path: Path) -> None:
    """spec/14 §5: a source (the network prefix of the peer that gave them) keeps at
    most MAX_PER_SOURCE unproven addresses in the table, however many sessions it
    opens, across restarts; a failed address makes room again; others keep theirs."""
    path = tmp_path / "node.sqlite3"
    state = NodeState(path)
    for session in range(8):  # 8 sessions of 16 addresses, each in its own /24
        fresh = [(f"10.{session}.{i}.1", 4000) for i in range(16)]
        state.add_peers(fresh, "exchange", learned_from="198.51.100.7")
    learned = [p for p in state.peers() if p.source == "exchange"]
    assert len(learned) == MAX_PER_SOURCE
    state.close()
    state = NodeState(path)  # a restart: the count is in the table
    state.add_peers([("10.200.0.1", 4000)], "exchange", learned_from="198.51.100.99")  # same /24
    assert len([p for p in state.peers() if p.source == "exchange"]) == MAX_PER_SOURCE
    state.add_peers([("10.201.0.1", 4000)], "exchange", learned_from="192.0.2.1")  # another
    assert ("10.201.0.1", 4000) in {p.address for p in state.peers()}
    assert state.forget_unproven(learned[0].address)
    state.add_peers([("10.202.0.1", 4000)], "exchange", learned_from="198.51.100.7")
    assert ("10.202.0.1", 4000) in {p.address for p in state.peers()}
    state.add_peers([("10.203.0.1", 4000)], "config")  # configured: never bounded
    assert ("10.203.0.1", 4000) in {p.address for p in state.peers()}
    state.close()
