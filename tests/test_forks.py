"""spec/06-forks.md: fork proofs stand alone; a node keeps them and freezes the feed."""

from __future__ import annotations

import pytest

from tidings import ForkProof, Logbook, MemoryStore, Store
from tidings.core.entry import Entry, decode_entry
from tidings.core.forks import MAX_PROOF_SIZE, MAX_RUN
from tidings.errors import ForkDetected, ForkedFeed, InvalidForkProof, UsageError

from .helpers import author, forge, make_log


def two_branches() -> tuple[list[Entry], list[Entry]]:
    """One author, two devices: seq 1 shared, seqs 2 and 3 differ (one append each,
    so entry 2 is unsigned and entry 3 vouches for it)."""
    a, _ = make_log(3, payload=lambda i: b"first" if i == 1 else b"laptop %d" % i)
    b, _ = make_log(3, payload=lambda i: b"first" if i == 1 else b"phone %d" % i)
    assert a[0] == b[0] and not a[1].signed and a[2].signed
    return a, b


def test_a_proof_verifies_alone_and_round_trips() -> None:
    a, b = two_branches()
    proof = ForkProof.from_runs(a[1:], b[1:])
    again = ForkProof.from_bytes(proof.to_bytes())
    assert again == proof and again.seq == 2 and again.feed == a[0].feed
    assert ForkProof.from_runs(b[1:], a[1:]) == proof  # one proof per fork
    assert len(proof.first) == 2


@pytest.mark.parametrize(
    ("pick", "reason"),
    [
        (lambda a, b: (a[1:], a[1:]), "same-entry"),
        (lambda a, b: (a[1:], b[2:]), "different-seqs"),
        (lambda a, b: (a[2:], b[2:]), "not-fork-point"),  # they split at 2, not 3
        (lambda a, b: (a[1:2], b[1:]), "unsigned-end"),
        (lambda a, b: (a[1:], [b[1], b[0]]), "broken-run"),
        (lambda a, b: (a[:1], [decode_entry(forge(author(2)))]), "different-feeds"),
    ],
)
def test_non_proofs_are_refused(pick, reason: str) -> None:  # type: ignore[no-untyped-def]
    a, b = two_branches()
    with pytest.raises(InvalidForkProof) as caught:
        ForkProof.from_runs(*pick(a, b))
    assert caught.value.reason == reason


def test_a_branch_ends_at_its_first_signed_entry() -> None:
    who = author(1)
    first = decode_entry(forge(who))
    a2 = decode_entry(forge(who, seq=2, backlink=first.hash, timestamp=1))
    a3 = decode_entry(forge(who, seq=3, backlink=a2.hash))
    b2 = decode_entry(forge(who, seq=2, backlink=first.hash, timestamp=2))
    with pytest.raises(InvalidForkProof) as caught:
        ForkProof.from_runs([a2, a3], [b2])
    assert caught.value.reason == "not-minimal"
    assert ForkProof.from_runs([a2], [b2]).seq == 2


def test_a_proof_needs_authentic_branches() -> None:
    a, b = two_branches()
    forged = bytearray(b[2].raw)
    forged[-1] ^= 1
    with pytest.raises(InvalidForkProof) as caught:
        ForkProof.from_runs(a[1:], [b[1], decode_entry(bytes(forged))])
    assert caught.value.reason == "bad-signature"


def test_tampered_proof_bytes_are_refused() -> None:
    a, b = two_branches()
    data = bytearray(ForkProof.from_runs(a[1:], b[1:]).to_bytes())
    data[-1] ^= 1
    with pytest.raises(InvalidForkProof):
        ForkProof.from_bytes(bytes(data))


def test_the_largest_proof_fits_its_bound() -> None:
    who = author(1)
    first = decode_entry(forge(who))

    def branch(stamp: int) -> list[Entry]:
        run: list[Entry] = []
        for seq in range(2, 2 + MAX_RUN):
            from tidings.core.lipmaa import link_target

            target = link_target(seq)
            link = None
            if target is not None:
                link = first.hash if target == 1 else run[target - 2].hash
            run.append(decode_entry(forge(
                who, flags=2 if seq == 1 + MAX_RUN else 0, seq=seq, timestamp=stamp,
                log_id="b" * 64, backlink=run[-1].hash if run else first.hash,
                lipmaa_link=link)))
        return run

    proof = ForkProof.from_runs(branch(1), branch(2))
    assert len(proof.to_bytes()) <= MAX_PROOF_SIZE
    assert ForkProof.from_bytes(proof.to_bytes()) == proof


def test_the_store_keeps_the_proof_and_refuses_both_branches(store: Store) -> None:
    a, b = two_branches()
    feed = a[0].feed
    book = Logbook(store)
    assert book.ingest(feed, [(e.raw, None) for e in a]).raise_error().added == 3
    result = book.ingest(feed, [(e.raw, None) for e in b])
    assert isinstance(result.error, ForkDetected) and result.error.seq == 2
    assert result.duplicates == 1 and result.added == 0
    proofs = book.fork_proofs(feed)
    assert [p.seq for p in proofs] == [2]
    proofs[0].verify()
    # the feed is undisputed below the fork: that is all anyone serves or reads
    assert book.extent(feed) == 1 and book.head(feed) == a[0]
    assert [e.seq for e, _ in book.read(feed)] == [1]
    assert book.feeds()[0].forked_at == 2 and book.feeds()[0].latest_seq == 1
    assert not book.verify(feed)[0].ok


def test_a_conflict_that_does_not_show_the_split_asks_for_more() -> None:
    """Given only branch b's entry 3 (whose backlink differs), the node cannot tell
    where the histories split: no proof yet, the error says to look below seq 3."""
    a, b = two_branches()
    book = Logbook(MemoryStore())
    book.ingest(a[0].feed, [(e.raw, None) for e in a]).raise_error()
    result = book.ingest(a[0].feed, [(b[2].raw, None)])
    assert isinstance(result.error, ForkDetected) and result.error.proof is None
    assert result.split_below == 3 and not book.fork_proofs()


def test_a_proof_travels_to_a_node_that_never_saw_the_fork(store: Store) -> None:
    a, b = two_branches()
    proof = ForkProof.from_runs(a[1:], b[1:])
    receiver = Logbook(store)
    assert receiver.add_fork_proof(ForkProof.from_bytes(proof.to_bytes()))
    assert not receiver.add_fork_proof(proof)  # already known
    result = receiver.ingest(a[0].feed, [(e.raw, None) for e in a])
    # Entry 1 is unsigned, but both branches of the proof link to it: it is vouched for.
    assert isinstance(result.error, ForkedFeed) and result.added == 1


def test_alternating_signatures_still_make_a_proof() -> None:
    """Branch A signed only at odd seqs, branch B only at even seqs: no seq has two
    signed entries, but each branch's run up to its next signature proves the fork."""
    who = author(1)
    base = decode_entry(forge(who, seq=1))
    branches = []
    for stamp, signed_when in ((1, 1), (2, 0)):
        run: list[Entry] = []
        for seq in range(2, 8):
            from tidings.core.lipmaa import link_target

            target = link_target(seq)
            link = None if target is None else (base.hash if target == 1 else run[target - 2].hash)
            run.append(decode_entry(forge(
                who, flags=2 if seq % 2 == signed_when or seq == 7 else 0, seq=seq,
                timestamp=stamp, backlink=run[-1].hash if run else base.hash, lipmaa_link=link)))
        branches.append(run)
    a, b = branches
    assert a[1].signed and not a[0].signed and b[0].signed  # seq 2: A unsigned, B signed
    book = Logbook(MemoryStore())
    feed = base.feed
    book.ingest(feed, [(base.raw, None)] + [(e.raw, None) for e in a]).raise_error()
    result = book.ingest(feed, [(base.raw, None)] + [(e.raw, None) for e in b])
    assert isinstance(result.error, ForkDetected)
    proof = result.error.proof
    assert isinstance(proof, ForkProof) and proof.seq == 2
    assert sorted(len(run) for run in (proof.first, proof.second)) == [1, 2]


def test_you_cannot_publish_to_your_own_forked_feed() -> None:
    a, b = two_branches()
    book = Logbook(MemoryStore(), author(1))
    book.ingest(a[0].feed, [(e.raw, None) for e in a]).raise_error()
    book.add_fork_proof(ForkProof.from_runs(a[1:], b[1:]))
    with pytest.raises(UsageError, match="forked"):
        book.publish(b"more", "blog")
