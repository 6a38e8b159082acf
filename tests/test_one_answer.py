"""spec/05 §2: one answer everywhere. For any log, however it is cut and delivered, every
way a node takes entries in accepts exactly the same entries.

Random logs: signed and unsigned entries, bad signatures, another history's
entries (forks), gaps, swapped entries, damaged payloads, runs of unsigned
entries over the bound. Each is fed, in random pieces, to:

* one call of ``Logbook.ingest``;
* several calls, each piece's pending entries leading the next (as a bundle
  reader carries them);
* a bundle import with random chunk sizes;
* replication: ``entries`` messages cut at random after signed entries (what an
  honest sender does), into a real Replicator;
* partial verification of the accepted part, and of sets holding the first
  entry that fails.

The reference answer is ``check_run`` over the whole input: its accepted prefix.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

import tidings.storage.logbook as logbook_module
from tidings import Logbook, MemoryStore
from tidings.core.bundle import HEADER, encode_entry_record
from tidings.core.entry import Entry, decode_entry, payload_hash, sign_entry
from tidings.core.ids import FeedId
from tidings.core.lipmaa import link_target
from tidings.core.verify import Anchor, check_run, partial_seqs, verify_partial
from tidings.errors import InvalidEntry, PeerError
from tidings.wire.messages import VERSIONS, Clock, Entries, Hello

from .helpers import author, examples
from .replication_helpers import node
from .test_replication import bare_peer

WHO = author(7)
FEED = WHO.author.feed("log")
Item = tuple[bytes, bytes | None]


@dataclass
class Built:
    items: list[Item]

    def entries(self) -> list[Entry | None]:
        out: list[Entry | None] = []
        for raw, _ in self.items:
            try:
                out.append(decode_entry(raw))
            except InvalidEntry:
                out.append(None)
        return out


def build(draw: st.DrawFn) -> Built:
    """A log of ``n`` entries by one author, then damage of several kinds."""
    count = draw(st.integers(1, 90), label="entries")
    sign_odds = draw(st.sampled_from([0.02, 0.2, 0.6, 1.0]), label="sign odds")
    heavy = draw(st.booleans(), label="heavy payload sizes")
    history: list[Entry] = []
    payloads: list[bytes] = []
    for seq in range(1, count + 1):
        signed = seq == count or draw(st.floats(0, 1)) < sign_odds
        payload = bytes([seq % 256]) * draw(st.integers(0, 40))
        target = link_target(seq)
        entry = sign_entry(
            WHO.secret_key, log_id="log", seq=seq, timestamp=1, payload=payload,
            backlink=history[-1].hash if history else None,
            lipmaa_link=history[target - 1].hash if target else None, signed=signed,
        )
        if heavy and not signed:  # a body claiming a large payload (absent): the byte bound
            size = draw(st.integers(0, 120_000))
            entry = sign_entry(
                WHO.secret_key, log_id="log", seq=seq, timestamp=1, payload=bytes(size),
                backlink=entry.backlink, lipmaa_link=entry.lipmaa_link, signed=False,
            )
            payload = bytes(size)
        history.append(entry)
        payloads.append(payload)
    items: list[Item] = [
        (e.raw, p if draw(st.booleans()) and len(p) < 200 else None)
        for e, p in zip(history, payloads, strict=True)
    ]
    for _ in range(draw(st.integers(0, 3), label="damages")):
        kind = draw(st.sampled_from(["bad-signature", "fork", "gap", "swap", "payload"]))
        index = draw(st.integers(0, len(items) - 1))
        raw, payload = items[index]
        entry = decode_entry(raw)
        if kind == "bad-signature" and entry.signed:
            items[index] = (raw[:-1] + bytes([raw[-1] ^ 1]), payload)
        elif kind == "fork":  # the author's other entry at this seq, then more of it
            other = sign_entry(
                WHO.secret_key, log_id="log", seq=entry.seq, timestamp=2,
                payload=b"other", backlink=entry.backlink, lipmaa_link=entry.lipmaa_link,
                signed=draw(st.booleans()),
            )
            items[index] = (other.raw, None)
        elif kind == "gap" and len(items) > 1:
            del items[index]
        elif kind == "swap" and index + 1 < len(items):
            items[index], items[index + 1] = items[index + 1], items[index]
        elif kind == "payload" and payload:
            items[index] = (raw, payload[:-1] + bytes([payload[-1] ^ 1]))
    return Built(items)


def reference(built: Built) -> int:
    """How many leading input entries a verifier holding nothing accepts."""
    entries = built.entries()
    decoded = []
    for entry in entries:
        if entry is None:
            break
        decoded.append(entry)
    payloads = [p for _, p in built.items[:len(decoded)]]
    return check_run(decoded, Anchor(FEED.author_key, FEED.log_id), payloads).accepted


def held(book: Logbook) -> list[bytes]:
    return [row.raw for row in book.store.entries(FEED)]


def cuts(draw: st.DrawFn, length: int) -> list[int]:
    points = draw(st.lists(st.integers(1, max(1, length - 1)), max_size=6, unique=True))
    return sorted(p for p in points if 0 < p < length)


@settings(max_examples=examples(300), deadline=None)
@given(st.data())
def test_every_way_in_accepts_the_same_entries(data: st.DataObject) -> None:
    built = build(data.draw)
    accepted = reference(built)
    want = [raw for raw, _ in built.items[:accepted]]

    # One call.
    whole = Logbook(MemoryStore())
    whole.ingest(FEED, built.items)
    assert held(whole) == want

    # Pieces, each one's pending entries leading the next.
    pieces = Logbook(MemoryStore())
    carried: list[Item] = []
    start = 0
    for end in [*cuts(data.draw, len(built.items)), len(built.items)]:
        chunk = carried + built.items[start:end]
        result = pieces.ingest(FEED, chunk)
        if result.error is not None:
            break
        carried = chunk[len(chunk) - result.pending:] if result.pending else []
        start = end
    assert held(pieces) == want

    # A bundle, imported in chunks of a random size.
    bundle = HEADER + b"".join(encode_entry_record(raw, p) for raw, p in built.items)
    size = data.draw(st.integers(1, 40), label="bundle chunk")
    saved = logbook_module.BATCH_SIZE
    logbook_module.BATCH_SIZE = size
    try:
        imported = Logbook(MemoryStore())
        imported.import_bundle(io.BytesIO(bundle).read)
    finally:
        logbook_module.BATCH_SIZE = saved
    assert held(imported) == want

    # Replication: messages cut after signed entries, into a real replicator.
    receiver = node("receiver", follows=[FEED])
    channel, session = bare_peer(receiver)
    channel.send(Hello(VERSIONS, False, None))
    channel.send(Clock(True, (), True))
    entries = built.entries()
    signed_ends = [i + 1 for i, e in enumerate(entries) if e is not None and e.signed]
    ends = sorted(set(data.draw(st.lists(st.sampled_from(signed_ends), max_size=5))
                      if signed_ends else []) | ({len(built.items)} if not signed_ends
                                                 else {signed_ends[-1]}))
    start = 0
    for end in ends:
        if end > start:
            channel.send(Entries(FEED, tuple(built.items[start:end])))
            start = end
    # When the sender sent something invalid, what came before it stays.
    with contextlib.suppress(PeerError):
        receiver.receive(session, channel.data_to_send())
    assert held(receiver.logbook) == want[:len(held(receiver.logbook))]
    if not entries or entries[-1] is None or not entries[-1].signed or start < len(built.items):
        pass  # the input (or what was sent of it) does not end at a signed entry
    else:
        assert held(receiver.logbook) == want

    # Partial verification: the accepted part verifies; the first failure is refused.
    if accepted:
        chosen = [decode_entry(raw) for raw in want]
        head = len(chosen)
        count = data.draw(st.integers(1, head), label="partial count")
        subset = [chosen[s - 1] for s in partial_seqs(head, count)]
        assert [e.seq for e in verify_partial(subset)] == partial_seqs(head, count)


@settings(max_examples=examples(100), deadline=None)
@given(st.data())
def test_a_relay_and_its_readers_agree(data: st.DataObject) -> None:
    """Whatever an author gives a relay, readers replicating from the relay end with
    exactly what the relay holds, and never find anything in it to refuse."""
    built = build(data.draw)
    relay = Logbook(MemoryStore())
    relay.ingest(FEED, built.items)
    stored = [(row.raw, row.payload) for row in relay.store.entries(FEED)]
    assert not any(report.error for report in relay.verify(FEED))
    reader = Logbook(MemoryStore())
    start = 0
    for end in [*cuts(data.draw, len(stored)), len(stored)]:
        if end <= start:
            continue
        # A relay ends each message at a signed entry: extend the cut to one.
        while end < len(stored) and not decode_entry(stored[end - 1][0]).signed:
            end += 1
        result = reader.ingest(FEED, stored[start:end])
        assert result.error is None and result.pending == 0
        start = end
    assert held(reader) == [raw for raw, _ in stored]


def test_the_reference_is_not_trivially_empty() -> None:
    """A control: an undamaged log is accepted whole by the reference."""
    entries = []
    for seq in range(1, 6):
        entries.append(sign_entry(
            WHO.secret_key, log_id="log", seq=seq, timestamp=1, payload=b"x",
            backlink=entries[-1].hash if entries else None,
            lipmaa_link=entries[link_target(seq) - 1].hash if link_target(seq) else None,
            signed=seq in (2, 5),
        ))
    built = Built([(e.raw, b"x") for e in entries])
    assert reference(built) == 5
    assert payload_hash(b"x") == entries[0].payload_hash
    assert FeedId.parse(str(FEED)) == FEED
