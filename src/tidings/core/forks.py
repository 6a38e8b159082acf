"""Fork proofs (spec/06-forks.md).

Two entries of one feed at one sequence number, both validly signed, with
different hashes: only the author could have made them, so together they prove
the author forked the log. A proof stands on its own: anyone can check it with
no other data, store it and hand it on.
"""

from __future__ import annotations

from dataclasses import dataclass

import cbor2

from tidings.core.entry import (
    MAX_ENTRY_SIZE,
    Entry,
    check_signature,
    decode_entry,
    strict_cbor_item,
)
from tidings.core.ids import FeedId
from tidings.errors import InvalidEntry, InvalidForkProof

PROOF_VERSION = 1
#: Two entries and a few bytes of framing.
MAX_PROOF_SIZE = 2 * MAX_ENTRY_SIZE + 16


@dataclass(frozen=True, slots=True)
class ForkProof:
    """Two conflicting entries, ordered by hash so each fork has one proof."""

    first: Entry
    second: Entry

    @classmethod
    def from_entries(cls, a: Entry, b: Entry) -> ForkProof:
        """Build and check a proof from two entries (in any order)."""
        first, second = (a, b) if a.hash < b.hash else (b, a)
        proof = cls(first, second)
        proof.verify()
        return proof

    @property
    def feed(self) -> FeedId:
        return self.first.feed

    @property
    def seq(self) -> int:
        return self.first.seq

    def verify(self) -> None:
        """Raise :class:`InvalidForkProof` unless this proves a fork (spec checks F8-F12)."""
        a, b = self.first, self.second
        if a.author != b.author or a.log_id != b.log_id:
            raise InvalidForkProof("the two entries belong to different feeds", "different-feeds")
        if a.seq != b.seq:
            raise InvalidForkProof(
                f"the entries are at seq {a.seq} and {b.seq}, not one seq", "different-seqs"
            )
        if a.hash == b.hash:
            raise InvalidForkProof("the two entries are the same entry", "same-entry")
        if not a.hash < b.hash:
            raise InvalidForkProof(
                "the entries must be ordered by hash (first < second)", "wrong-order"
            )
        for entry in (a, b):
            try:
                check_signature(entry)
            except InvalidEntry as exc:
                raise InvalidForkProof(
                    f"an entry of the proof is not authentic: {exc}", "bad-signature"
                ) from None

    def to_bytes(self) -> bytes:
        """``[1, first entry bytes, second entry bytes]`` in deterministic CBOR."""
        return bytes(cbor2.dumps([PROOF_VERSION, self.first.raw, self.second.raw]))

    @classmethod
    def from_bytes(cls, data: bytes) -> ForkProof:
        """Decode strictly and verify (spec checks F1-F12); raises :class:`InvalidForkProof`."""
        if len(data) > MAX_PROOF_SIZE:
            raise InvalidForkProof(
                f"proof is {len(data)} bytes, the bound is {MAX_PROOF_SIZE}", "oversize"
            )
        try:
            items, end = strict_cbor_item(data, 0)
        except InvalidEntry as exc:
            raise InvalidForkProof(f"not well-formed CBOR: {exc.detail}", "malformed") from None
        if end != len(data):
            raise InvalidForkProof(f"{len(data) - end} bytes follow the proof", "trailing-bytes")
        if (
            type(items) is not list
            or len(items) != 3
            or type(items[0]) is not int
            or type(items[1]) is not bytes
            or type(items[2]) is not bytes
        ):
            raise InvalidForkProof("a fork proof is the array [version, entry, entry]", "malformed")
        if items[0] != PROOF_VERSION:
            raise InvalidForkProof(f"unknown fork proof version {items[0]}", "unknown-version")
        if cbor2.dumps(items) != data:
            raise InvalidForkProof("non-canonical encoding", "non-canonical")
        try:
            first, second = decode_entry(items[1]), decode_entry(items[2])
        except InvalidEntry as exc:
            raise InvalidForkProof(
                f"an entry of the proof is invalid: {exc}", "invalid-entry"
            ) from None
        proof = cls(first, second)
        proof.verify()
        return proof
