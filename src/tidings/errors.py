"""One error hierarchy for tidings, rooted in :class:`TidingsError`.

Whose fault an error is, is carried by its class:

* :class:`UsageError`: the caller asked for something that cannot be done
  (publishing to an ended log, opening a missing home). Its message says what to
  do next.
* :class:`InvalidEntry` and its subclasses: data broke a validity rule of the
  spec (``spec/04-validity.md``). Each names the rule, the feed and the sequence
  number, so a node can drop the data (and the peer that sent it) and go on.
  :class:`InvalidBundle` and :class:`InvalidForkProof` are their kin for
  bundles and fork proofs.
* :class:`PeerError`: a connection ended. :class:`RemoteProtocolError` and its
  subclasses mean the peer broke the protocol (h11's vocabulary: "remote" is
  the peer's fault); the others (a timeout, a second connection, an ``error``
  message from the peer: :class:`ClosedByPeer`) are nobody's.
* :class:`LocalProtocolError`: this side misused a protocol object (a bug).
* :class:`StoredEntryDamaged`: the disk under a store changed bytes.
"""

from __future__ import annotations

from typing import ClassVar, TypeVar

E = TypeVar("E", bound=BaseException)


class TidingsError(Exception):
    """Base class of every error tidings raises on purpose."""


class UsageError(TidingsError):
    """The caller asked for something impossible; the message says what to do."""


class InvalidId(UsageError, ValueError):
    """A text author id, feed id or log id does not parse.

    ``reason`` is the check that failed, as spec/01-identifiers.md §4 names it
    (``wrong-prefix``, ``bad-length``, ``bad-chars``, ``non-canonical-base32``,
    ``bad-checksum``, ``bad-separator``, ``bad-log-id``, or ``bad-key``).
    """

    def __init__(self, message: str, reason: str = "invalid-id") -> None:
        super().__init__(message)
        self.reason = reason


class InvalidContent(UsageError, ValueError):
    """Content to be written breaks a rule of spec/content.md.

    ``field`` names the bad value as a path (``post.tags[2]``, ``about.avatar``),
    ``problem`` says what is wrong with it; the message is ``field: problem``.
    Only writers see this error: a reader skips content it cannot use.
    """

    code = "invalid-content"

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class MissingAnchor(UsageError):
    """Verification was asked to check a link to an entry the caller did not supply."""


class InvalidBundle(TidingsError):
    """A bundle file's framing is broken (bad magic, truncated record, bad record kind)."""


class InvalidForkProof(TidingsError):
    """A fork proof does not prove a fork.

    ``reason`` names the failed check of spec/06-forks.md §3 (``oversize``,
    ``malformed``, ``trailing-bytes``, ``unknown-version``, ``non-canonical``,
    ``invalid-entry``, ``different-feeds``, ``different-seqs``, ``same-entry``,
    ``wrong-order``, ``bad-signature``).
    """

    def __init__(self, message: str, reason: str = "invalid-fork-proof") -> None:
        super().__init__(message)
        self.reason = reason


class InvalidEntry(TidingsError):
    """An entry (or its payload) breaks a validity rule.

    ``rule`` is the rule's stable name from the spec. ``feed`` (text feed id) and
    ``seq`` say where; either can be ``None`` when the bytes are too broken to
    tell and the caller had no expectation to fill in.
    """

    rule = "invalid-entry"

    def __init__(self, detail: str, *, feed: str | None = None, seq: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.feed = feed
        self.seq = seq

    def at(self, feed: str | None, seq: int | None) -> InvalidEntry:
        """Fill in the location where the raiser could not know it; returns self."""
        if self.feed is None:
            self.feed = feed
        if self.seq is None:
            self.seq = seq
        return self

    def __str__(self) -> str:
        where = []
        if self.feed is not None:
            where.append(f"feed {self.feed}")
        if self.seq is not None:
            where.append(f"seq {self.seq}")
        prefix = " ".join(where)
        return f"{prefix}: {self.rule}: {self.detail}" if prefix else f"{self.rule}: {self.detail}"


class MalformedEntry(InvalidEntry):
    """The bytes are not an entry: not CBOR, wrong shape, a field of the wrong type or range."""

    rule = "malformed"


class NonCanonicalEncoding(InvalidEntry):
    """The entry decodes, but re-encoding it gives other bytes."""

    rule = "non-canonical"


class UnknownVersion(InvalidEntry):
    """The entry's format version is not one this implementation knows."""

    rule = "unknown-version"


class Oversize(InvalidEntry):
    """The entry, its log id or its declared payload size is over the spec's bound."""

    rule = "oversize"


class BadSignature(InvalidEntry):
    """A signature the entry carries does not verify against the author key."""

    rule = "bad-signature"


class UnsignedRun(InvalidEntry):
    """Too many unsigned entries in a row (at most 63, with at most 256 KiB of payloads)."""

    rule = "unsigned-run"


class UnsignedTail(InvalidEntry):
    """Entries that must be vouched for end without a signed entry (a message, a partial answer)."""

    rule = "unsigned-tail"


class WrongBacklink(InvalidEntry):
    """The backlink is not the hash of the entry at seq - 1."""

    rule = "wrong-backlink"


class WrongLipmaaLink(InvalidEntry):
    """The lipmaa link is not the hash of the entry at lipmaa(seq)."""

    rule = "wrong-lipmaa-link"


class LinkedSeqMismatch(InvalidEntry):
    """A link resolves to an entry whose sequence number is not the one the link must reach."""

    rule = "linked-seq-mismatch"


class SequenceGap(InvalidEntry):
    """The entry's seq does not follow the entry before it."""

    rule = "gap"


class WrongFeed(InvalidEntry):
    """The entry belongs to another feed than the one being verified."""

    rule = "wrong-feed"


class PayloadSizeMismatch(InvalidEntry):
    """The payload's length differs from the signed payload size."""

    rule = "payload-size-mismatch"


class PayloadHashMismatch(InvalidEntry):
    """The payload's hash differs from the signed payload hash."""

    rule = "payload-hash-mismatch"


class EntryAfterEndOfLog(InvalidEntry):
    """An entry follows an end-of-log entry."""

    rule = "after-end-of-log"


class ForkDetected(InvalidEntry):
    """Two valid entries of one feed conflict at one seq; ``proof`` is their fork proof, if made."""

    rule = "fork"

    def __init__(self, detail: str, proof: object, *, feed: str | None = None,
                 seq: int | None = None) -> None:
        super().__init__(detail, feed=feed, seq=seq)
        self.proof = proof


class ForkedFeed(InvalidEntry):
    """The feed holds a fork proof at or before this seq; nothing past the fork is accepted."""

    rule = "forked-feed"


class StoredEntryDamaged(TidingsError):
    """A stored entry's bytes no longer hash to the hash stored beside them (disk damage).

    Not a protocol rule: the store itself is damaged. The node stops serving the
    feed from ``seq`` on and logs it; ``tidings verify`` reports it.
    """

    def __init__(self, detail: str, *, feed: str, seq: int) -> None:
        super().__init__(f"feed {feed} seq {seq}: {detail}")
        self.feed = feed
        self.seq = seq


class StorageFull(TidingsError):
    """The disk (or the store's page limit) is full: nothing was written.

    The node stops taking entries, keeps serving what it holds, and takes entries
    again once a write succeeds (spec/14 §4).
    """


class PeerError(TidingsError):
    """A connection to a peer ended; the node goes on with its other peers.

    ``code`` is the stable error code of spec/09-wire.md §6, sent to the peer in
    an ``error`` message where the connection still allows it. ``peer`` names the
    peer (its address or transport key) once the node knows it. Whose fault it
    is, is carried by the class: a :class:`RemoteProtocolError` is the peer's
    (the node refuses its key for a while); the others are nobody's (a
    timeout, another network, a second connection).
    """

    code = "protocol"
    #: The peer broke the protocol: refuse its key for a while, forget its clock.
    misbehaviour: ClassVar[bool] = False

    def __init__(self, detail: str, *, peer: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.peer = peer
        #: The peer's public transport key, once the handshake told it.
        self.node_key: bytes | None = None

    def __str__(self) -> str:
        prefix = f"peer {self.peer}: " if self.peer else ""
        return f"{prefix}{self.code}: {self.detail}"


class RemoteProtocolError(PeerError):
    """The peer broke the transport or wire protocol (h11's meaning of "remote")."""

    misbehaviour = True


class HandshakeFailed(PeerError):
    """The Noise handshake failed: another network key or protocol version, or a broken message."""

    code = "handshake"


class UnsupportedVersion(PeerError):
    """The peers share no wire protocol version."""

    code = "version"


class PeerTimeout(PeerError):
    """The peer was silent past a deadline (handshake or idle)."""

    code = "timeout"


class DuplicateConnection(PeerError):
    """A second connection to a peer this node is already connected to (spec/08 §2)."""

    code = "duplicate"


class SelfConnection(DuplicateConnection):
    """This node dialed one of its own addresses."""


class PeerRefused(PeerError):
    """This node refuses the peer's key for a while: it sent invalid data before."""

    code = "refused"


class StoreBusy(PeerError):
    """This node cannot store what the peer sends now (its disk is full): the
    connection ends, not the peer's fault; it serves again once space returns."""

    code = "busy"


class NotesFull(PeerError):
    """This node keeps the notes of a bounded number of feeds across all its
    connections (spec/14 §3) and this peer's clock went over it: the connection
    ends, not the peer's fault; connect again later."""

    code = "busy"


class PeerEvicted(PeerError):
    """This node is at its bound of inbound connections and closed this one, the
    least proven, for a newcomer (spec/14 §2). Not a fault: connect again later."""

    code = "busy"


class ClosedByPeer(PeerError):
    """The peer closed the connection with an ``error`` message (spec/09 §6).

    ``remote_code`` is the code it sent: what it says this side did wrong.
    """

    code = "remote-error"

    def __init__(self, remote_code: str, detail: str, *, peer: str | None = None) -> None:
        super().__init__(f"{remote_code}: {detail}", peer=peer)
        self.remote_code = remote_code


class BadFrame(RemoteProtocolError):
    """A transport frame is malformed: truncated, empty, or failing decryption."""

    code = "bad-frame"


class MessageTooLarge(RemoteProtocolError):
    """A message's declared length is over the bound (a long list inside one is malformed)."""

    code = "oversize"


class MalformedMessage(RemoteProtocolError):
    """A message is not valid msgpack, or has the wrong shape, types or ranges."""

    code = "malformed"


class UnexpectedMessage(RemoteProtocolError):
    """A valid message arrived where the protocol does not allow it."""

    code = "unexpected"


class PeerFlooding(RemoteProtocolError):
    """The peer sent more requests or notes than the spec's bounds allow."""

    code = "flood"


class InvalidData(RemoteProtocolError):
    """The peer sent an entry, payload or fork proof that does not verify.

    ``cause`` is the :class:`InvalidEntry` (naming the feed, seq and rule) or
    the :class:`InvalidForkProof`.
    """

    code = "invalid-data"

    def __init__(self, cause: TidingsError, *, peer: str | None = None) -> None:
        super().__init__(str(cause), peer=peer)
        self.cause = cause


class LocalProtocolError(TidingsError):
    """This side misused a protocol object: a bug in the caller, not the peer's fault
    (a message too large to send, a call on a session that failed)."""


class ListenError(UsageError):
    """A node could not bind the address it was asked to listen on (peers or the local API)."""


#: Every validity rule by its stable name, as the spec and the vectors use them.
RULES: dict[str, type[InvalidEntry]] = {
    cls.rule: cls
    for cls in (
        MalformedEntry, NonCanonicalEncoding, UnknownVersion, Oversize, BadSignature,
        UnsignedRun, UnsignedTail, WrongBacklink, WrongLipmaaLink, LinkedSeqMismatch,
        SequenceGap, WrongFeed,
        PayloadSizeMismatch, PayloadHashMismatch, EntryAfterEndOfLog, ForkDetected,
        ForkedFeed,
    )
}


def first_error(error: BaseException, kind: type[E]) -> E | None:
    """``error`` if it is a ``kind``, else the first ``kind`` inside the exception
    groups it holds (trio wraps a task's error in its nursery's group), else None."""
    if isinstance(error, kind):
        return error
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            found = first_error(inner, kind)
            if found is not None:
                return found
    return None
