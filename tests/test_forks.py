"""spec/06-forks.md: fork proofs stand alone; a node keeps them and freezes the feed."""

from __future__ import annotations

import pytest

from tidings import ForkProof, Logbook, MemoryStore, Store
from tidings.core.entry import decode_entry
from tidings.errors import ForkDetected, ForkedFeed, InvalidForkProof, UsageError

from .helpers import author, forge, make_log


def two_branches() -> tuple[list, list]:  # type: ignore[type-arg]
    """One author, two devices: seq 1 shared, seq 2 and 3 differ."""
    a, _ = make_log(3, payload=lambda i: b"first" if i == 1 else b"laptop %d" % i)
    b, _ = make_log(3, payload=lambda i: b"first" if i == 1 else b"phone %d" % i)
    return a, b


def test_a_proof_verifies_alone_and_round_trips() -> None:
    a, b = two_branches()
    proof = ForkProof.from_entries(a[1], b[1])
    again = ForkProof.from_bytes(proof.to_bytes())
    assert again == proof and again.seq == 2 and again.feed == a[0].feed
    assert ForkProof.from_entries(b[1], a[1]) == proof  # one proof per fork


@pytest.mark.parametrize(
    ("pick", "message"),
    [
        (lambda a, b: (a[1], a[1]), "same entry"),
        (lambda a, b: (a[1], b[2]), "seq"),
        (lambda a, b: (a[1], decode_entry(forge(author(2), seq=1))), "feeds"),
    ],
)
def test_non_proofs_are_refused(pick, message: str) -> None:  # type: ignore[no-untyped-def]
    a, b = two_branches()
    with pytest.raises(InvalidForkProof, match=message):
        ForkProof.from_entries(*pick(a, b))


def test_a_proof_needs_two_authentic_entries() -> None:
    a, b = two_branches()
    forged = bytearray(b[1].raw)
    forged[-1] ^= 1
    with pytest.raises(InvalidForkProof, match="not authentic"):
        ForkProof.from_entries(a[1], decode_entry(bytes(forged)))


def test_tampered_proof_bytes_are_refused() -> None:
    a, b = two_branches()
    data = bytearray(ForkProof.from_entries(a[1], b[1]).to_bytes())
    data[-1] ^= 1
    with pytest.raises(InvalidForkProof):
        ForkProof.from_bytes(bytes(data))


def test_the_store_keeps_the_proof_and_refuses_both_branches(store: Store) -> None:
    a, b = two_branches()
    feed = a[0].feed
    book = Logbook(store)
    book.ingest(feed, [(e.raw, None) for e in a[:2]])
    with pytest.raises(ForkDetected) as caught:
        book.ingest(feed, [(b[0].raw, None), (b[1].raw, None)])
    assert caught.value.seq == 2
    proofs = book.fork_proofs(feed)
    assert [p.seq for p in proofs] == [2]
    proofs[0].verify()
    # neither branch grows past the fork
    for branch in (a, b):
        with pytest.raises(ForkedFeed):
            book.ingest(feed, [(branch[2].raw, None)])
    assert book.head(feed) == a[1]
    assert book.feeds()[0].forked_at == 2
    assert not book.verify(feed)[0].ok


def test_a_proof_travels_to_a_node_that_never_saw_the_fork(store: Store) -> None:
    a, b = two_branches()
    proof = ForkProof.from_entries(a[2], b[2])
    receiver = Logbook(store)
    receiver.ingest(a[0].feed, [(e.raw, None) for e in a[:2]])
    assert receiver.add_fork_proof(ForkProof.from_bytes(proof.to_bytes()))
    assert not receiver.add_fork_proof(proof)  # already known
    with pytest.raises(ForkedFeed):
        receiver.ingest(a[0].feed, [(a[2].raw, None)])


def test_you_cannot_publish_to_your_own_forked_feed() -> None:
    a, b = two_branches()
    book = Logbook(MemoryStore(), author(1))
    book.ingest(a[0].feed, [(e.raw, None) for e in a])
    book.add_fork_proof(ForkProof.from_entries(a[2], b[2]))
    with pytest.raises(UsageError, match="forked"):
        book.publish(b"more", "blog")
