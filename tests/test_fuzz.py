"""Fuzzing in CI: what a stranger's bytes can do to the three decoders (docs/fuzzing.md).

- the entry decoder, ``decode_entry``: structured mutations of valid entries
  (byte edits, any CBOR value in any field, re-signed or not, non-canonical
  re-encodings) raise only ``InvalidEntry`` subclasses, and what it accepts is
  canonical;
- the handshake: a responder ``Channel`` (and an initiator after ``start()``)
  fed arbitrary bytes, or an honest transcript with bytes edited, raises only
  ``PeerError`` subclasses and never completes a handshake with any key but the
  honest initiator's;
- the wire after a handshake: arbitrary ciphertext into ``Session.receive_data``,
  and arbitrary *plaintext*, properly sealed, into a ``Replicator`` that follows
  a feed (valid messages, near-valid ones, raw msgpack and raw bytes, cut
  anywhere): only ``PeerError`` subclasses escape, whatever the node sends back
  decodes, and its store still verifies.

Random bytes into ``decode_message``, one field of a valid body replaced, and any
chunking of a valid stream are in tests/test_messages.py and
tests/test_channel.py; random bytes and single byte flips into ``decode_entry``
are in tests/test_entries.py. They are not repeated here.

Every property runs with ``derandomize=True`` and no example database, so CI
sees the same examples on every run; each example runs under a SIGALRM watchdog
(``HANG_S``), so a hang fails the test instead of stalling CI. A longer local
run with fresh examples::

    TIDINGS_FUZZ_SCALE=20 TIDINGS_FUZZ_RANDOM=1 .venv/bin/pytest tests/test_fuzz.py

The tests at the end are regressions for deeply nested CBOR (RecursionError in the
strict CBOR reader, fixed in 3afd860).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import signal
import struct
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import cbor2
import msgpack
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.helpers import examples as scaled
from tidings import ForkProof, Logbook, MemoryStore
from tidings.core.entry import (
    MAX_PAYLOAD_SIZE,
    MAX_SEQ,
    MAX_TIMESTAMP,
    SIG_HEAD,
    Entry,
    decode_entry,
    encode_body,
    entry_hash,
)
from tidings.core.ids import FeedId
from tidings.core.lipmaa import link_target
from tidings.core.verify import partial_seqs
from tidings.errors import (
    BadSignature,
    InvalidEntry,
    InvalidForkProof,
    NonCanonicalEncoding,
    PeerError,
)
from tidings.replication.replicator import Replicator
from tidings.replication.session import TERMINAL, Authenticated, Failed, Session
from tidings.transport.channel import Channel
from tidings.transport.network import DEFAULT_NETWORK_KEY
from tidings.wire.messages import (
    EAGER,
    WANT,
    Clock,
    Entries,
    ErrorMessage,
    ForkProofMessage,
    Hello,
    Message,
    Note,
    PartialRequest,
    PartialResponse,
    Peers,
    Ping,
    encode_message,
)

from .helpers import author, forge, make_log, sign_raw_body
from .test_cli import tidings
from .test_messages import messages as any_message
from .test_messages import values as any_msgpack_value

#: Seconds one example may take before the watchdog calls it a hang.
HANG_S = 10.0


#: More examples per property for a longer local run (docs/fuzzing.md).
SCALE = float(os.environ.get("TIDINGS_FUZZ_SCALE", "1"))
#: TIDINGS_FUZZ_RANDOM=1: fresh random examples each run instead of CI's fixed ones.
RANDOM = os.environ.get("TIDINGS_FUZZ_RANDOM", "") not in ("", "0")


def fuzz(examples: int) -> settings:
    """Deterministic Hypothesis settings: same examples every run, no database."""
    return settings(
        max_examples=max(1, int(scaled(examples) * SCALE)), derandomize=not RANDOM,
        database=None,
        deadline=None, print_blob=RANDOM,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


class Hang(BaseException):
    """An example ran longer than HANG_S (a BaseException: `except Exception` can't eat it)."""


@contextlib.contextmanager
def no_hang(seconds: float = HANG_S) -> Iterator[None]:
    def alarm(signum: int, frame: FrameType | None) -> None:
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# -- the entry decoder ---------------------------------------------------------------

WHO = author(1)
LOG, PAYLOADS = make_log(40, per_append=3)  # signed at every third entry and at 40
FEED = LOG[0].feed


def _target(seq: int) -> int:
    target = link_target(seq)
    assert target is not None
    return target


def _seeds() -> list[Entry]:
    """Valid entries of every shape: first, backlink only, both links, end of log, bounds."""
    picked = [LOG[i - 1] for i in (1, 2, 3, 4, 5, 13, 40)]
    forged = [
        forge(WHO, log_id="a" * 64, timestamp=MAX_TIMESTAMP, payload_size=MAX_PAYLOAD_SIZE),
        forge(WHO, flags=3, seq=2, backlink=LOG[0].hash),
        forge(WHO, flags=0, seq=2, backlink=LOG[0].hash),
        forge(WHO, seq=MAX_SEQ, backlink=bytes(32),
              lipmaa_link=bytes(range(32)) if link_target(MAX_SEQ) else None),
        forge(WHO, seq=MAX_SEQ - 1, backlink=bytes(32),
              lipmaa_link=bytes(range(32)) if link_target(MAX_SEQ - 1) else None),
        # Another entry 40 (another timestamp): both links, a fork of LOG.
        forge(WHO, seq=40, timestamp=7, backlink=LOG[38].hash,
              lipmaa_link=LOG[_target(40) - 1].hash),
    ]
    return picked + [decode_entry(raw) for raw in forged]


SEEDS = _seeds()
seed_entries = st.sampled_from(SEEDS)

BYTE_OPS = st.lists(
    st.tuples(
        st.sampled_from(["flip", "set", "insert", "delete", "truncate", "duplicate", "append"]),
        st.integers(0, 600), st.integers(0, 255), st.integers(1, 24),
    ),
    min_size=1, max_size=6,
)


def edit_bytes(raw: bytes, ops: list[tuple[str, int, int, int]]) -> bytes:
    data = bytearray(raw)
    for op, at, byte, length in ops:
        at = at % (len(data) + 1)
        if op == "flip" and data:
            data[at % len(data)] ^= byte or 1
        elif op == "set" and data:
            data[at % len(data)] = byte
        elif op == "insert":
            data[at:at] = bytes([byte]) * length
        elif op == "delete":
            del data[at:at + length]
        elif op == "truncate":
            del data[at:]
        elif op == "duplicate":
            data[at:at] = data[at:at + length]
        elif op == "append":
            data += bytes([byte]) * length
    return bytes(data)


def decodes_cleanly(raw: bytes) -> Entry | None:
    """decode_entry's contract: an Entry that re-encodes to ``raw``, or an InvalidEntry."""
    with no_hang():
        try:
            entry = decode_entry(raw)
        except InvalidEntry:
            return None
    assert entry.raw == raw and entry.hash == entry_hash(raw)
    body = encode_body(
        flags=entry.flags, author=entry.author, log_id=entry.log_id, seq=entry.seq,
        timestamp=entry.timestamp, backlink=entry.backlink, lipmaa_link=entry.lipmaa_link,
        payload_size=entry.payload_size, payload_hash=entry.payload_hash,
    )
    signed = body + SIG_HEAD + entry.signature if entry.signed else body
    assert signed == raw, "accepted bytes that are not canonical"
    with no_hang(), contextlib.suppress(BadSignature):
        entry.check_signature()  # the only way a signature check may fail
    return entry


@fuzz(800)
@given(seed_entries, BYTE_OPS)
def test_edited_entries_raise_only_invalid_entry(entry: Entry, ops: list[Any]) -> None:
    edited = edit_bytes(entry.raw, ops)
    decoded = decodes_cleanly(edited)
    if decoded is not None and edited != entry.raw:
        assert decoded.hash != entry.hash


cbor_tags = st.builds(cbor2.CBORTag, st.integers(0, 300), st.integers(0, 2**64 - 1))
field_values = st.one_of(
    st.none(), st.booleans(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, 1, 2, 23, 24, 255, 256, 2**32, MAX_SEQ, MAX_SEQ + 1, 2**64 - 1, 2**64,
                     MAX_PAYLOAD_SIZE, MAX_PAYLOAD_SIZE + 1]),
    st.binary(max_size=70), st.binary(min_size=31, max_size=33),
    st.text(max_size=70), st.from_regex(r"[a-z0-9_-]{0,66}", fullmatch=True),
    st.floats(), cbor_tags,
    st.lists(st.integers(-5, 5) | st.none() | st.binary(max_size=4), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(0, 3), max_size=2),
)


@fuzz(800)
@given(seed_entries, st.data())
def test_any_value_in_any_field_signed_or_not_raises_only_invalid_entry(
    entry: Entry, data: st.DataObject
) -> None:
    fields = cbor2.loads(entry.body)
    for _ in range(data.draw(st.integers(1, 3))):
        action = data.draw(st.sampled_from(["replace", "replace", "drop", "add"]))
        if action == "replace" and fields:
            fields[data.draw(st.integers(0, len(fields) - 1))] = data.draw(field_values)
        elif action == "drop" and fields:
            del fields[data.draw(st.integers(0, len(fields) - 1))]
        else:
            fields.insert(data.draw(st.integers(0, len(fields))), data.draw(field_values))
    body = cbor2.dumps(fields)
    resign = data.draw(st.booleans())
    raw = sign_raw_body(WHO, body) if resign else body + SIG_HEAD + entry.signature
    decoded = decodes_cleanly(raw)
    if decoded is not None and resign and decoded.author == WHO.author.key:
        decoded.check_signature()  # accepted and signed by its author: the signature holds


def _head(major: int, argument: int, wider: int) -> bytes:
    """A CBOR head, in its shortest form or ``wider`` steps longer (non-canonical)."""
    forms = [(24, 1), (25, 2), (26, 4), (27, 8)]
    if argument < 24:
        shortest = -1
    else:
        shortest = next(i for i, (_, size) in enumerate(forms) if argument < 1 << (8 * size))
    choice = min(shortest + wider, len(forms) - 1)
    if choice < 0:
        return bytes([major << 5 | argument])
    info, size = forms[choice]
    return bytes([major << 5 | info]) + argument.to_bytes(size, "big")


def encode_loosely(value: Any, rng: random.Random, odds: float) -> bytes:
    """Well-formed CBOR for ``value`` where, with probability ``odds`` per item, a
    head is longer than needed or a string or array has indefinite length."""
    def wider() -> int:
        return rng.randint(1, 4) if rng.random() < odds else 0

    def indefinite() -> bool:
        return rng.random() < odds

    if value is None:
        return b"\xf6"
    if isinstance(value, int):
        return _head(0, value, wider()) if value >= 0 else _head(1, -1 - value, wider())
    if isinstance(value, bytes | str):
        major = 2 if isinstance(value, bytes) else 3
        raw = value if isinstance(value, bytes) else value.encode()
        if indefinite():
            cut = rng.randint(0, len(value))
            parts = [value[:cut], value[cut:]]
            chunks = [p if isinstance(p, bytes) else p.encode() for p in parts]
            return (bytes([major << 5 | 31])
                    + b"".join(_head(major, len(c), wider()) + c for c in chunks) + b"\xff")
        return _head(major, len(raw), wider()) + raw
    assert isinstance(value, list)
    items = b"".join(encode_loosely(v, rng, odds) for v in value)
    if indefinite():
        return b"\x9f" + items + b"\xff"
    return _head(4, len(value), wider()) + items


@fuzz(500)
@given(seed_entries, st.randoms(use_true_random=False), st.sampled_from([0.05, 0.2, 0.6]))
def test_a_non_canonical_encoding_is_never_accepted(
    entry: Entry, rng: random.Random, odds: float
) -> None:
    fields = cbor2.loads(entry.body)
    body = encode_loosely(fields, rng, odds)
    raw = sign_raw_body(WHO, body) if entry.signed else body
    decoded = decodes_cleanly(raw)
    if body == entry.body:
        assert decoded is not None and decoded.hash == entry.hash
    else:
        assert decoded is None, "a non-canonical body was accepted"
        with pytest.raises(NonCanonicalEncoding):
            decode_entry(raw)


# -- the handshake ---------------------------------------------------------------------

def key(name: str) -> bytes:
    return hashlib.blake2b(name.encode(), digest_size=32).digest()


def responder() -> Channel:
    return Channel(initiator=False, static_private=key("r"), network_key=DEFAULT_NETWORK_KEY,
                   ephemeral_private=key("re"))


def initiator() -> Channel:
    return Channel(initiator=True, static_private=key("i"), network_key=DEFAULT_NETWORK_KEY,
                   ephemeral_private=key("ie"))


HONEST_MESSAGES: list[Message] = [
    Hello((2,), False, None), Ping(), Entries(FEED, ((LOG[0].raw, PAYLOADS[0]),)),
]


def _transcript() -> bytes:
    """Everything an honest initiator sends a responder(): message 1, message 3, frames."""
    sender, receiver = initiator(), responder()
    sender.start()
    first = sender.data_to_send()
    receiver.receive_data(first)
    sender.receive_data(receiver.data_to_send())
    for message in HONEST_MESSAGES:
        sender.send(message)
    return first + sender.data_to_send()


TRANSCRIPT = _transcript()
INITIATOR_KEY = initiator().local_static
cuts = st.lists(st.integers(1, 300), min_size=1, max_size=20)


def feed_channel(channel: Channel, data: bytes, sizes: list[int]) -> list[Message]:
    """Feed ``data`` cut into pieces; stop at the first PeerError (as the node does)."""
    received: list[Message] = []
    start = index = 0
    with no_hang():
        try:
            while start < len(data):
                end = start + sizes[index % len(sizes)]
                channel.receive_data(data[start:end])
                received += channel.messages()
                channel.data_to_send()
                start, index = end, index + 1
        except PeerError:
            pass
    return received


@fuzz(500)
@given(st.binary(max_size=400), cuts)
def test_a_responder_fed_any_bytes_raises_only_peer_errors(data: bytes, sizes: list[int]) -> None:
    channel = responder()
    assert feed_channel(channel, data, sizes) == []
    assert not channel.established


@fuzz(500)
@given(BYTE_OPS, cuts)
def test_an_edited_handshake_fails_or_completes_with_the_honest_key_only(
    ops: list[Any], sizes: list[int]
) -> None:
    channel = responder()
    data = edit_bytes(TRANSCRIPT, ops)
    received = feed_channel(channel, data, sizes)
    if channel.established:
        assert channel.remote_static == INITIATOR_KEY
    assert received == HONEST_MESSAGES[:len(received)]


@fuzz(300)
@given(st.binary(max_size=400), cuts)
def test_an_initiator_fed_any_reply_raises_only_peer_errors(data: bytes, sizes: list[int]) -> None:
    channel = initiator()
    channel.start()
    channel.data_to_send()
    assert feed_channel(channel, data, sizes) == []
    assert not channel.established


# -- the wire after a handshake ---------------------------------------------------------

OTHER_FEED = FeedId(author(2).author.key, "blog")
FORK_PROOF = ForkProof.from_runs(
    LOG[1:3], make_log(2, payload=lambda i: b"entry 1" if i == 1 else b"other")[0][1:]
).to_bytes()


def established_node(held: int) -> tuple[Replicator, Session, Channel]:
    """A node following FEED (holding its first ``held`` entries) and a peer, handshake done
    but for message 3, which leads the peer's next bytes."""
    book = Logbook(MemoryStore())
    if held:
        book.ingest(FEED, list(zip([e.raw for e in LOG[:held]], PAYLOADS[:held], strict=True)))
    node = Replicator(book, static_private=key("node"), follows=[FEED])
    session = node.open_session(initiator=False, ephemeral_private=key("node e"))
    peer = initiator()
    peer.start()
    node.receive(session, peer.data_to_send())
    peer.receive_data(session.data_to_send())
    assert peer.established
    return node, session, peer


@fuzz(300)
@given(st.integers(0, 40), st.binary(max_size=600), cuts)
def test_a_session_fed_any_ciphertext_raises_only_peer_errors(
    held: int, data: bytes, sizes: list[int]
) -> None:
    _, session, peer = established_node(held)
    stream = peer.data_to_send() + data  # message 3, then anything
    start = index = 0
    with no_hang():
        while start < len(stream):
            end = start + sizes[index % len(sizes)]
            events = session.receive_data(stream[start:end])  # raises nothing for the peer
            if any(isinstance(e, Authenticated) for e in events):
                session.start()
            if session.state in TERMINAL:
                assert isinstance(events[-1], Failed)
                assert isinstance(events[-1].error, PeerError)
                break
            start, index = end, index + 1


def _items(data: st.DataObject, seqs: list[int]) -> tuple[tuple[bytes, bytes | None], ...]:
    """Entries of LOG at ``seqs`` with their payload, none, or a wrong one; now and then
    an entry is edited or taken from another log."""
    found = []
    for seq in seqs:
        raw = LOG[seq - 1].raw
        how = data.draw(st.sampled_from(["ok"] * 6 + ["edit", "other"]))
        if how == "edit":
            raw = edit_bytes(raw, data.draw(BYTE_OPS)) or raw
        elif how == "other":
            raw = data.draw(st.sampled_from(SEEDS)).raw
        payload = data.draw(st.sampled_from([PAYLOADS[seq - 1]] * 8 + [None, b"", b"wrong"]))
        found.append((raw[:512], payload))
    return tuple(found)


def near_valid_message(data: st.DataObject, held: int) -> Message:
    """Messages a node can act on: notes, runs and partial answers of FEED, proofs..."""
    feeds = st.sampled_from([FEED, FEED, OTHER_FEED])
    seqs = st.sampled_from([0, 1, 2, 5, 13, 39, 40, 41, 1000, 2**64 - 1])
    kind = data.draw(st.sampled_from(
        ["hello", "clock", "clock", "entries", "entries", "entries", "request", "response",
         "proof", "peers", "ping", "error", "any"]
    ))
    if kind == "hello":
        return Hello(tuple(data.draw(st.lists(st.sampled_from([1, 2, 7]), min_size=1,
                                              max_size=3))),
                     data.draw(st.booleans()), data.draw(st.none() | st.binary(min_size=32,
                                                                              max_size=32)))
    if kind == "clock":
        notes = data.draw(st.lists(st.tuples(feeds, st.builds(Note, seqs, st.sampled_from(
            [0, WANT, WANT | EAGER, EAGER]))), max_size=4))
        return Clock(data.draw(st.booleans()), tuple(notes), data.draw(st.booleans()))
    if kind == "entries":
        # Mostly what extends the node's log; also duplicates, gaps and entries past the end.
        first = data.draw(st.sampled_from([min(held + 1, 40)] * 3) | st.integers(1, 40))
        count = data.draw(st.integers(1, 8))
        run = [s for s in range(first, first + count) if s <= 40]
        if data.draw(st.booleans()) and len(run) > 1:
            run.pop(data.draw(st.integers(0, len(run) - 1)))  # a gap
        return Entries(data.draw(feeds), _items(data, run))
    if kind == "request":
        return PartialRequest(data.draw(st.integers(0, 3)), data.draw(feeds),
                              data.draw(st.integers(1, 50)))
    if kind == "response":
        head = data.draw(st.integers(1, 40))
        wanted = partial_seqs(head, data.draw(st.integers(1, 10)))
        if data.draw(st.booleans()) and len(wanted) > 1:
            wanted.pop(data.draw(st.integers(0, len(wanted) - 1)))
        return PartialResponse(data.draw(st.integers(0, 3)), _items(data, wanted))
    if kind == "proof":
        proof = data.draw(st.sampled_from([FORK_PROOF, edit_bytes(FORK_PROOF, data.draw(BYTE_OPS))
                                           or FORK_PROOF]))
        return ForkProofMessage(proof[:1040])
    if kind == "peers":
        return Peers((("127.0.0.1", 1), ("example.org", 7654)))
    if kind == "ping":
        return Ping()
    if kind == "error":
        return ErrorMessage("flood", "bye")
    return data.draw(any_message)


def plaintext_part(data: st.DataObject, held: int) -> bytes:
    """One piece of the peer's plaintext stream: a message, or bytes no sender would write."""
    how = data.draw(st.sampled_from(["message"] * 8 + ["msgpack", "raw", "length"]))
    if how == "message":
        body = encode_message(near_valid_message(data, held))
    elif how == "msgpack":
        body = msgpack.packb(data.draw(st.lists(any_msgpack_value, max_size=5)), use_bin_type=True)
    elif how == "raw":
        return data.draw(st.binary(max_size=64))
    else:  # a length prefix that does not fit what follows
        return struct.pack(">I", data.draw(st.integers(0, 2**32 - 1))) + data.draw(
            st.binary(max_size=16))
    return struct.pack(">I", len(body)) + body


@fuzz(500)
@given(st.integers(0, 40), st.integers(0, 2), st.data())
def test_a_node_fed_any_plaintext_after_the_handshake_raises_only_peer_errors(
    held: int, requests: int, data: st.DataObject
) -> None:
    """The replicator's whole receive path; its answers decode, its store stays valid."""
    node, session, peer = established_node(held)
    for _ in range(requests):
        node.request_partial(session, FEED, data.draw(st.integers(1, 20)))
    if data.draw(st.integers(0, 9)):  # mostly a proper opening
        peer.send(Hello((2,), False, None))
        if held < 40 and data.draw(st.booleans()):  # a clean start the rest can build on
            run = range(held, min(40, held + data.draw(st.integers(1, 8))))
            peer.send(Entries(FEED, tuple((LOG[i].raw, PAYLOADS[i]) for i in run)))
    stream = peer.data_to_send()  # message 3 (and maybe a hello and entries)
    for _ in range(data.draw(st.integers(1, 8))):
        peer._plaintext_out += plaintext_part(data, held)
        stream += peer.data_to_send()
    sizes = data.draw(cuts)
    start = index = 0
    with no_hang():
        try:
            while start < len(stream):
                end = start + sizes[index % len(sizes)]
                node.receive(session, stream[start:end])
                peer.receive_data(node.pump(session))  # what the node says must decode
                peer.messages()
                start, index = end, index + 1
        except PeerError as error:
            event(f"closed: {error.code}")
            session.fail(error)
            peer.receive_data(session.data_to_send())
        else:
            event("no error")
        event(f"entries stored: {'some' if node.entries_received else 'none'}")
        node.close_session(session)
        for report in node.logbook.verify():  # a valid proof may come for a feed not held
            assert report.ok or report.forked_at is not None, report.error


# -- regression: a malformed entry sent without its payload ------------------------
#
# The replicator read every entry that came without its payload (to fetch the payload
# later) before it reported the run's error, so a malformed one raised MalformedEntry
# out of receive(), not a PeerError (found by the property above in a full run).


@pytest.mark.parametrize("held", [0, 2])
def test_a_malformed_entry_without_its_payload_is_the_peers_fault(held: int) -> None:
    node, session, peer = established_node(held)
    peer.send(Hello((2,), False, None))
    damaged = bytearray(LOG[held].raw)
    damaged[0] ^= 1  # the body is no longer a 10-field array
    peer.send(Entries(FEED, ((LOG[held].raw, None), (bytes(damaged), None))))
    with pytest.raises(PeerError):
        node.receive(session, peer.data_to_send())
    assert node.logbook.store.head(FEED) is None or node.logbook.store.head(FEED).seq <= held + 1


# -- regressions: deeply nested CBOR ---------------------------------------------------
#
# strict_cbor_item (tidings.core.entry) recursed once per nesting level of a
# definite-length array and twice per level of an indefinite-length one, so a
# few hundred bytes of 0x9f exhausted Python's recursion limit: ForkProof.from_bytes
# raised RecursionError at any stack depth (one `fork-proof` message ended a node;
# a bundle's proof record made `tidings import` print a traceback), decode_entry
# once its caller was ~100 frames deep. Fixed in 3afd860 (nesting bounded at
# MAX_CBOR_DEPTH). The properties above do not make such nesting by chance.

#: Stack frames under the decoders here: a library caller deep in a framework.
CALLER_DEPTH = 150
#: CPython's default, which a node runs with.
DEFAULT_RECURSION_LIMIT = 1000


def _at_depth(depth: int, call: Callable[[], object]) -> object:
    return call() if depth == 0 else _at_depth(depth - 1, call)


def deep_call(call: Callable[[], object]) -> object:
    """``call()`` under CALLER_DEPTH frames of a fresh thread, with Python's default
    recursion limit: the same stack every time, whatever the runner's own.

    Hypothesis raises the recursion limit while it runs a test (it needs room
    itself), which hides exactly this kind of bug; the limit is put back to the
    default for the call and restored after.
    """
    outcome: list[BaseException | object] = []

    def run() -> None:
        try:
            outcome.append(_at_depth(CALLER_DEPTH, call))
        except BaseException as exc:
            outcome.append(exc)

    raised = sys.getrecursionlimit()
    sys.setrecursionlimit(DEFAULT_RECURSION_LIMIT)
    try:
        thread = threading.Thread(target=run)
        thread.start()
        thread.join(HANG_S)
    finally:
        sys.setrecursionlimit(raised)
    if thread.is_alive():
        raise Hang(f"still running after {HANG_S} s")
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


def nested(levels: int, indefinite: bool, inner: bytes = b"\x00") -> bytes:
    """``levels`` arrays one inside the other around ``inner``, closed or cut short."""
    if indefinite:
        return b"\x9f" * levels + inner + b"\xff" * levels
    return b"\x81" * levels + inner


#: Mostly deep: ~420 levels of indefinite arrays were enough to break the old reader here.
entry_levels = st.integers(1, 40) | st.integers(380, 445)
proof_levels = st.integers(1, 40) | st.integers(400, 1040)


@fuzz(200)
@given(entry_levels, st.booleans(), st.booleans())
def test_nested_arrays_in_an_entry_are_malformed_at_any_depth(
    levels: int, indefinite: bool, cut: bool
) -> None:
    body = nested(levels, indefinite)[: levels if cut else 446]  # cut: only the openings
    raw = body + SIG_HEAD + bytes(64)
    with pytest.raises(InvalidEntry):
        deep_call(lambda: decode_entry(raw))


@fuzz(200)
@given(proof_levels, st.booleans(), st.booleans())
def test_nested_arrays_in_a_fork_proof_are_an_invalid_fork_proof_at_any_depth(
    levels: int, indefinite: bool, cut: bool
) -> None:
    proof = nested(levels, indefinite)[: levels if cut else None][:1040]
    with pytest.raises(InvalidForkProof):
        deep_call(lambda: ForkProof.from_bytes(proof))


NESTED_PROOFS = [b"\x9f" * 500, b"\x81" * 1040, b"\x9f" * 1040]


@pytest.mark.parametrize("proof", NESTED_PROOFS, ids=["indefinite-500", "definite-1040",
                                                      "indefinite-1040"])
def test_a_deeply_nested_fork_proof_is_an_invalid_fork_proof(proof: bytes) -> None:
    with pytest.raises(InvalidForkProof):
        ForkProof.from_bytes(proof)


def test_a_peer_sending_a_deeply_nested_fork_proof_gets_a_peer_error() -> None:
    """What ended a running node (tests/test_faults.py has the end-to-end test)."""
    node, session, peer = established_node(0)
    peer.send(Hello((2,), False, None))
    peer.send(ForkProofMessage(NESTED_PROOFS[0]))
    with pytest.raises(PeerError) as caught:
        node.receive(session, peer.data_to_send())
    assert caught.value.code == "invalid-data"


def test_a_deeply_nested_entry_is_malformed_even_for_a_caller_deep_in_its_stack() -> None:
    """446 levels of indefinite-length arrays fill an entry's body (~900 frames unbounded)."""
    raw = b"\x9f" * 446 + SIG_HEAD + bytes(64)
    with pytest.raises(InvalidEntry):
        deep_call(lambda: decode_entry(raw))


def test_importing_a_bundle_with_a_deeply_nested_proof_is_bad_data_not_a_traceback(
    tmp_path: Path,
) -> None:
    from tidings.core.bundle import HEADER, encode_proof_record

    bundle = tmp_path / "nested.bundle"
    bundle.write_bytes(HEADER + encode_proof_record(NESTED_PROOFS[0]))
    result = tidings(tmp_path / "home", "import", str(bundle))  # asserts: no traceback
    assert result.code == 1, result.err
