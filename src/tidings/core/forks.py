"""Fork proofs (spec/06-forks.md).

A feed has one writer, so one entry at each seq. When the author makes two
histories that split at seq ``f``, each is vouched for by its author's
signature: on each branch, the entry at ``f`` is signed itself or linked to by
the next signed entry. The two *runs*, each from ``f`` up to its branch's first
signed entry (at most 64 entries, as authors sign every 64th entry at least),
prove the fork: only the author could have made them. A proof stands on its
own: anyone can check it with no other data, store it and hand it on.

Both runs start at the same seq and their first entries link to the same entry
before it, so the proof also says *where* the histories split: every node that
learns of it agrees that the feed is undisputed below ``f`` and forked from ``f``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import cbor2

from tidings.core.entry import (
    MAX_ENTRY_SIZE,
    MAX_UNSIGNED_RUN,
    Entry,
    check_signature,
    decode_entry,
    strict_cbor_item,
)
from tidings.core.ids import FeedId
from tidings.core.records import record
from tidings.errors import InvalidEntry, InvalidForkProof

PROOF_VERSION = 2
#: Entries in one branch of a proof: the entry at the fork and the unsigned
#: entries after it, up to the first signed one.
MAX_RUN = MAX_UNSIGNED_RUN + 1
#: ``[2, [64 entries], [64 entries]]``: array and version heads, and for each run
#: an array head of 2 bytes and 64 byte strings of at most 3 + 512 bytes.
MAX_PROOF_SIZE = 2 + 2 * (2 + MAX_RUN * (3 + MAX_ENTRY_SIZE))


@record
class ForkProof:
    """Two branches of one feed from the seq where they split, ordered by hash."""

    first: tuple[Entry, ...]
    second: tuple[Entry, ...]

    @classmethod
    def from_runs(cls, a: Sequence[Entry], b: Sequence[Entry]) -> ForkProof:
        """Build and check a proof from two branch runs (in any order)."""
        if not a or not b:
            raise InvalidForkProof("a branch of a fork proof holds at least one entry",
                                   "malformed")
        first, second = (a, b) if a[0].hash < b[0].hash else (b, a)
        proof = cls(tuple(first), tuple(second))
        proof.verify()
        return proof

    @property
    def feed(self) -> FeedId:
        return self.first[0].feed

    @property
    def seq(self) -> int:
        """The fork seq: the first seq at which the two histories differ."""
        return self.first[0].seq

    def verify(self) -> None:
        """Raise :class:`InvalidForkProof` unless this proves a fork (spec checks F8-F15)."""
        a, b = self.first, self.second
        for run in (a, b):
            if not 1 <= len(run) <= MAX_RUN:
                raise InvalidForkProof(f"a branch holds 1 to {MAX_RUN} entries, not {len(run)}",
                                       "malformed")
        feed = (a[0].author, a[0].log_id)
        if any((e.author, e.log_id) != feed for e in (*a, *b)):
            raise InvalidForkProof("the entries belong to different feeds", "different-feeds")
        for run in (a, b):
            for before, after in itertools.pairwise(run):
                if after.seq != before.seq + 1 or after.backlink != before.hash:
                    raise InvalidForkProof(
                        f"a branch must be consecutive entries, each linking to the one before "
                        f"(seq {after.seq} does not follow {before.seq})", "broken-run",
                    )
        if a[0].seq != b[0].seq:
            raise InvalidForkProof(
                f"the branches start at seq {a[0].seq} and {b[0].seq}, not one seq",
                "different-seqs",
            )
        if a[0].backlink != b[0].backlink:
            raise InvalidForkProof(
                "the branches' first entries link to different entries: the histories split "
                "earlier, and a proof starts where they split", "not-fork-point",
            )
        if a[0].hash == b[0].hash:
            raise InvalidForkProof("the two branches start with the same entry", "same-entry")
        if not a[0].hash < b[0].hash:
            raise InvalidForkProof(
                "the branches must be ordered by the hash of their first entries", "wrong-order"
            )
        for run in (a, b):
            if not run[-1].signed:
                raise InvalidForkProof(
                    "a branch must end at a signed entry (nothing else vouches for it)",
                    "unsigned-end",
                )
            if any(e.signed for e in run[:-1]):
                raise InvalidForkProof(
                    "a branch ends at its first signed entry", "not-minimal"
                )
        for run in (a, b):
            try:
                check_signature(run[-1])
            except InvalidEntry as exc:
                raise InvalidForkProof(
                    f"a branch is not the author's: {exc}", "bad-signature"
                ) from None

    def to_bytes(self) -> bytes:
        """``[2, [first branch], [second branch]]`` in deterministic CBOR."""
        return bytes(cbor2.dumps([
            PROOF_VERSION, [e.raw for e in self.first], [e.raw for e in self.second],
        ]))

    @classmethod
    def from_bytes(cls, data: bytes) -> ForkProof:
        """Decode strictly and verify (spec checks F1-F15); raises :class:`InvalidForkProof`."""
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
        if not (
            type(items) is list
            and len(items) == 3
            and type(items[0]) is int
            and all(
                type(run) is list and 1 <= len(run) <= MAX_RUN
                and all(type(raw) is bytes for raw in run)
                for run in items[1:]
            )
        ):
            raise InvalidForkProof(
                f"a fork proof is the array [version, [1 to {MAX_RUN} entries], "
                f"[1 to {MAX_RUN} entries]]", "malformed",
            )
        if items[0] != PROOF_VERSION:
            raise InvalidForkProof(f"unknown fork proof version {items[0]}", "unknown-version")
        if cbor2.dumps(items) != data:
            raise InvalidForkProof("non-canonical encoding", "non-canonical")
        try:
            first = tuple(decode_entry(raw) for raw in items[1])
            second = tuple(decode_entry(raw) for raw in items[2])
        except InvalidEntry as exc:
            raise InvalidForkProof(
                f"an entry of the proof is invalid: {exc}", "invalid-entry"
            ) from None
        proof = cls(first, second)
        proof.verify()
        return proof


def branch_run(entries: Sequence[Entry]) -> tuple[Entry, ...]:
    """The leading entries up to and including the first signed one (a proof's branch)."""
    for index, entry in enumerate(entries):
        if entry.signed:
            return tuple(entries[:index + 1])
    return ()
