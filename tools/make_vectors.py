#!/usr/bin/env python3
"""Write the published test vectors in ``spec/vectors/`` (described in its README.md).

    python tools/make_vectors.py            # (re)write the files
    python tools/make_vectors.py --check    # exit 1 if a file differs from what this makes

Every run writes the same bytes: keys come from fixed seeds, timestamps are
fixed, Ed25519 signatures are deterministic and the JSON is written with sorted
keys. Valid data is made with the library; the expected outcome of every
invalid case (rule, sequence number, what a node stores) is written down here
from the spec, never read back from the library, so a library bug shows up as a
failing test rather than as a wrong vector.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cbor2
import msgpack
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tidings import Identity, Logbook, MemoryStore, content
from tidings.core.bundle import (
    HEADER,
    HEADER_V2,
    encode_entry_record,
    encode_identity_record,
    encode_proof_record,
)
from tidings.core.corrections import Seq, effective_view
from tidings.core.entry import (
    FLAG_END_OF_LOG,
    FLAG_SIGNED,
    MAX_ENTRY_SIZE,
    MAX_PAYLOAD_SIZE,
    MAX_UNSIGNED_BYTES,
    MAX_UNSIGNED_RUN,
    SIG_HEAD,
    VERSION,
    Entry,
    encode_body,
    payload_hash,
    sign_entry,
)
from tidings.core.forks import MAX_PROOF_SIZE, MAX_RUN, ForkProof
from tidings.core.ids import FeedId
from tidings.core.lipmaa import certificate_pool, link_target, links_needed, lipmaa
from tidings.core.verify import partial_seqs
from tidings.replication.clock import LocalClock, clock_digest
from tidings.replication.session import Session
from tidings.transport.beacon import make_beacon
from tidings.transport.channel import (
    PROLOGUE,
    Channel,
    public_key,
)
from tidings.transport.network import DEFAULT_NETWORK_KEY
from tidings.transport.noise import PROTOCOL_NAME, CipherState, NoiseHandshake
from tidings.wire.messages import (
    EAGER,
    MAX_ADDRESSES,
    MAX_ERROR_CODE_LEN,
    MAX_ERROR_DETAIL_LEN,
    MAX_HOST_LEN,
    MAX_ITEMS,
    MAX_MESSAGE_SIZE,
    MAX_NOTES,
    MAX_PARTIAL,
    MAX_PARTIAL_ITEMS,
    MAX_SEQ_REQUEST,
    VERSIONS,
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
    SeqRequest,
    SeqResponse,
    encode_message,
)

VECTORS_DIR = Path(__file__).resolve().parents[1] / "spec" / "vectors"
sys.path.insert(0, str(Path(__file__).resolve().parent))  # tools/ed25519_edges.py, blob_vectors.py

#: RFC 8032 section 7.1, TEST 1: pins our seed -> public key step to a published value.
RFC8032_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
ALICE_SEED = bytes(range(32))
BOB_SEED = bytes(range(32, 64))
ALICE = Identity.from_seed(ALICE_SEED)
BOB = Identity.from_seed(BOB_SEED)

#: 2023-11-14T22:13:20Z in microseconds; entries are one minute apart.
T0 = 1_700_000_000_000_000
MINUTE = 60_000_000


def blog_payload(seq: int) -> bytes:
    """Payloads of the "blog" log: text, empty, binary and CBOR length-head boundaries."""
    special = {
        1: b"hello, tidings",
        2: b"",
        3: bytes(range(256)),  # binary; length 256 takes a 2-byte CBOR head
        4: "grüße, 水".encode(),
        5: b"\x00" * 23,  # the largest length with the head inline
        6: b"\xff" * 24,  # the smallest length with a 1-byte head
        7: b"",
        13: b"",
        20: hashlib.shake_256(b"tidings vector payload").digest(1000),
        27: cbor2.dumps({"text": "a post", "type": "post"}),
        30: b"last one for now",
    }
    return special.get(seq, b"entry %d" % seq)


BLOG_LENGTH = 30
#: The blog's appends: each ends with a signed entry, the others are unsigned
#: (spec/02 §1): entries 6-7, 10-11, 15-19, 22-26 and 28-29 are vouched for by
#: the next signed entry. Every append has one timestamp, as a publisher's has.
BLOG_SIGNED = (1, 2, 3, 4, 5, 8, 9, 12, 13, 14, 20, 21, 27, 30)
NOTES_PAYLOADS = [b"first note", b"", b"second note", b"this log ends here; see log blog"]
#: The notes' appends: [1], [2, 3], [4] (which ends the log).
NOTES_SIGNED = (1, 3, 4)


def hx(data: bytes | None) -> str | None:
    return None if data is None else data.hex()


# -- logs -------------------------------------------------------------------


@dataclass
class Log:
    """One feed's entries and payloads, built entry by entry with ``sign_entry``."""

    identity: Identity
    log_id: str
    entries: list[Entry] = field(default_factory=list)
    payloads: list[bytes] = field(default_factory=list)

    @property
    def feed(self) -> FeedId:
        return self.identity.author.feed(self.log_id)

    def hashes(self, upto: int | None = None) -> dict[int, bytes]:
        return {e.seq: e.hash for e in self.entries[:upto]}

    def fields(
        self, seq: int, payload: bytes, *, timestamp: int, flags: int = FLAG_SIGNED
    ) -> dict[str, Any]:
        """The body fields (as ``encode_body`` takes them) of a correctly linked entry."""
        hashes = self.hashes(seq - 1)
        target = link_target(seq)
        return {
            "flags": flags, "author": self.identity.author.key, "log_id": self.log_id,
            "seq": seq, "timestamp": timestamp,
            "backlink": hashes[seq - 1] if seq > 1 else None,
            "lipmaa_link": hashes[target] if target is not None else None,
            "payload_size": len(payload), "payload_hash": payload_hash(payload),
        }

    def sign(self, seq: int, payload: bytes, *, timestamp: int, flags: int = FLAG_SIGNED
             ) -> Entry:
        """A valid entry at ``seq`` (also for conflicting ones), made by ``sign_entry``."""
        values = self.fields(seq, payload, timestamp=timestamp, flags=flags)
        entry = sign_entry(
            self.identity.secret_key, log_id=self.log_id, seq=seq, timestamp=timestamp,
            payload=payload, backlink=values["backlink"], lipmaa_link=values["lipmaa_link"],
            end_of_log=bool(flags & FLAG_END_OF_LOG), signed=bool(flags & FLAG_SIGNED),
        )
        # The hand encoder below must agree with the library where both are canonical.
        assert entry.body == array(body_parts(values))
        return entry

    def append(self, payload: bytes, timestamp: int, flags: int = FLAG_SIGNED) -> Entry:
        entry = self.sign(len(self.entries) + 1, payload, timestamp=timestamp, flags=flags)
        self.entries.append(entry)
        self.payloads.append(payload)
        return entry

    def item(self, seq: int) -> tuple[bytes, bytes]:
        return self.entries[seq - 1].raw, self.payloads[seq - 1]


def appends(signed: Sequence[int]) -> list[list[int]]:
    """The seqs of each append of a log whose appends end at the ``signed`` seqs."""
    out, start = [], 1
    for last in signed:
        out.append(list(range(start, last + 1)))
        start = last + 1
    return out


def build_logs() -> tuple[Log, Log, Log]:
    blog = Log(ALICE, "blog")
    for batch in appends(BLOG_SIGNED):
        for seq in batch:
            blog.append(blog_payload(seq), T0 + batch[-1] * MINUTE,
                        FLAG_SIGNED if seq == batch[-1] else 0)
    notes = Log(ALICE, "notes")
    for batch in appends(NOTES_SIGNED):
        for seq in batch:
            last = seq == len(NOTES_PAYLOADS)
            notes.append(NOTES_PAYLOADS[seq - 1], T0 + 1000 * MINUTE + batch[-1] * MINUTE,
                         FLAG_SIGNED | (FLAG_END_OF_LOG if last else 0)
                         if seq == batch[-1] else 0)
    bob = Log(BOB, "blog")
    bob.append(b"hello from bob", T0 + 5 * MINUTE)
    return blog, notes, bob


# -- hand-made bodies ---------------------------------------------------------

FIELD_ORDER = ("flags", "author", "log_id", "seq", "timestamp", "backlink", "lipmaa_link",
               "payload_size", "payload_hash")


def head(major: int, value: int, size: int | None = None) -> bytes:
    """A CBOR head; ``size`` (0, 1, 2, 4 or 8 argument bytes) forces a non-shortest form."""
    if size is None:
        size = 0 if value < 24 else next(s for s in (1, 2, 4, 8) if value < 1 << (8 * s))
    if size == 0:
        return bytes([major << 5 | value])
    info = {1: 24, 2: 25, 4: 26, 8: 27}[size]
    return bytes([major << 5 | info]) + value.to_bytes(size, "big")


def body_parts(values: dict[str, Any], version: Any = VERSION) -> list[bytes]:
    """Each body field canonically encoded, version first."""
    return [cbor2.dumps(version)] + [cbor2.dumps(values[name]) for name in FIELD_ORDER]


def array(parts: Sequence[bytes], *, indefinite: bool = False, head_size: int | None = None,
          ) -> bytes:
    if indefinite:
        return b"\x9f" + b"".join(parts) + b"\xff"
    return head(4, len(parts), head_size) + b"".join(parts)


def signed(who: Identity, body: bytes) -> bytes:
    """``body`` followed by ``who``'s signature over it: an author-signed entry."""
    return body + SIG_HEAD + who.secret_key.sign(body)


def forge(who: Identity, values: dict[str, Any], **overrides: Any) -> bytes:
    """An author-signed entry from canonical fields (any values, valid or not); the
    signature is appended when the flags (if an integer) say the entry is signed."""
    values = {**values, **overrides}
    body = array(body_parts(values))
    flags = values["flags"]
    return signed(who, body) if type(flags) is not int or flags & FLAG_SIGNED else body


def forge_parts(who: Identity, values: dict[str, Any], replace: dict[str, bytes],
                **array_options: Any) -> bytes:
    """An author-signed entry with some fields' encodings replaced by raw bytes."""
    parts = body_parts(values)
    for name, raw in replace.items():
        index = 0 if name == "version" else FIELD_ORDER.index(name) + 1
        parts[index] = raw
    return signed(who, array(parts, **array_options))


def flip(data: bytes, index: int, mask: int = 0x01) -> bytes:
    out = bytearray(data)
    out[index] ^= mask
    return bytes(out)


def padded_entry(who: Identity, values: dict[str, Any], size: int) -> bytes:
    """An author-signed, non-canonical entry of exactly ``size`` bytes.

    The author key is written as an indefinite-length byte string led by empty
    chunks (``0x40``), one byte each, so the length can be set to the byte.
    """
    key = values["author"]
    base = forge_parts(who, values, {"author": b"\x5f" + cbor2.dumps(key) + b"\xff"})
    padding = size - len(base)
    assert padding >= 0
    author = b"\x5f" + b"\x40" * padding + cbor2.dumps(key) + b"\xff"
    entry = forge_parts(who, values, {"author": author})
    assert len(entry) == size
    return entry


# -- ids.json -------------------------------------------------------------------

ID_SEEDS = [
    ("rfc8032-test-1", RFC8032_SEED),
    ("alice", ALICE_SEED),
    ("bob", BOB_SEED),
    ("zeros", bytes(32)),
    ("ones", b"\xff" * 32),
]
FEED_LOG_IDS = ["main", "blog", "0", "a", "my_log-2", "x" * 64]


def _replace_at(text: str, index: int, char: str) -> str:
    assert text[index] != char
    return text[:index] + char + text[index + 1:]


def make_ids() -> dict[str, Any]:
    authors = []
    for name, seed in ID_SEEDS:
        author = Identity.from_seed(seed).author
        authors.append({
            "name": name,
            "seed": seed.hex(),
            "public_key": author.key.hex(),
            "author_id": str(author),
            "feeds": [{"log_id": log_id, "feed_id": str(author.feed(log_id))}
                      for log_id in FEED_LOG_IDS],
        })
    alice = str(ALICE.author)
    alice_feed = str(ALICE.author.feed("blog"))
    key_part = alice[3:]
    # The last of the 55 key characters carries 2 data bits and 3 zero bits.
    last = key_part[-1]
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    same_zero_bits = next(c for c in "aiqy" if c != last)
    nonzero_bits = alphabet[alphabet.index(last) | 1]
    middle = 20
    other = "b" if key_part[middle] != "b" else "c"
    invalid_authors = [
        ("bad-checksum", "ta1" + _replace_at(key_part, middle, other),
         "one key character changed: the checksum does not match"),
        ("bad-checksum", "ta1" + _replace_at(key_part, 54, same_zero_bits),
         "a checksum character changed"),
        ("non-canonical-base32", "ta1" + _replace_at(key_part, 54, nonzero_bits),
         "the last character has non-zero trailing bits"),
        ("wrong-prefix", "tx1" + key_part, "unknown type prefix"),
        ("wrong-prefix", "ta2" + key_part, "unknown version in the prefix"),
        ("wrong-prefix", alice.upper(), "upper case: ids are lower case only"),
        ("wrong-prefix", alice_feed, "a feed id is not an author id"),
        ("wrong-prefix", "", "empty"),
        ("bad-chars", "ta1" + _replace_at(key_part, middle, "A"), "an upper-case letter"),
        ("bad-chars", "ta1" + _replace_at(key_part, middle, "1"), "'1' is not in base32"),
        ("bad-chars", "ta1" + _replace_at(key_part, middle, "8"), "'8' is not in base32"),
        ("bad-chars", "ta1" + _replace_at(key_part, middle, "="), "padding is not written"),
        ("bad-length", alice[:-1], "one character short"),
        ("bad-length", alice + "a", "one character too many"),
    ]
    feed_key = alice_feed[3:58]
    invalid_feeds = [
        ("bad-checksum", alice_feed[:-4] + "blag",
         "the log id changed: the checksum covers it"),
        ("bad-checksum", "tf1" + key_part + "_blog",
         "the key part of the author id: author and feed checksums differ"),
        ("bad-checksum", "tf1" + _replace_at(feed_key, middle, other) + "_blog",
         "one key character changed"),
        ("wrong-prefix", alice, "an author id is not a feed id"),
        ("wrong-prefix", "tx1" + alice_feed[3:], "unknown type prefix"),
        ("bad-chars", "tf1" + _replace_at(feed_key, middle, "1") + "_blog",
         "'1' is not in base32"),
        ("bad-separator", "tf1" + feed_key + "-blog", "the separator is '_'"),
        ("bad-separator", "tf1" + feed_key + "blog", "no separator"),
        ("bad-log-id", "tf1" + feed_key + "_", "empty log id"),
        ("bad-log-id", "tf1" + feed_key + "_Blog", "upper case in the log id"),
        ("bad-log-id", "tf1" + feed_key + "_" + "x" * 65, "log id of 65 characters"),
        ("bad-log-id", "tf1" + feed_key + "__blog", "log id starting with '_'"),
    ]
    invalid_log_ids = [
        ("", "empty"),
        ("x" * 65, "65 characters; the bound is 64"),
        ("Blog", "upper case"),
        ("_blog", "starts with '_'"),
        ("-blog", "starts with '-'"),
        ("my log", "space"),
        ("a.b", "'.'"),
        ("blög", "non-ASCII letter"),
        ("blog\n", "trailing newline"),
    ]
    # spec/01 §4: ids in signed data are read exactly; typed or pasted ids lose
    # ASCII whitespace (space, tab, LF, CR) at both ends, and nothing else.
    exact = [
        ("wrong-prefix", " " + alice_feed, "a leading space"),
        ("bad-log-id", alice_feed + " ", "a trailing space (part of the log id)"),
        ("bad-log-id", alice_feed + "\n", "a trailing line feed"),
        ("bad-log-id", alice_feed + "\u3000", "a trailing ideographic space (U+3000)"),
        ("bad-log-id", alice_feed + "\x1f", "a trailing unit separator (U+001F)"),
        ("wrong-prefix", "\u00a0" + alice_feed, "a leading no-break space (U+00A0)"),
    ]
    typed = [  # (text, the id it is, or the reason it is refused, description)
        (" " + alice_feed + " ", alice_feed, "spaces around it"),
        ("\t" + alice_feed + "\r\n", alice_feed, "a tab before it and CR LF after it"),
        ("  " + alice + "\n", alice, "an author id with spaces and a line feed"),
        (alice_feed + "\u3000", "bad-log-id", "U+3000 is not trimmed: refused"),
        ("\u00a0" + alice_feed, "wrong-prefix", "U+00A0 is not trimmed: refused"),
        (_replace_at(alice_feed, 30, " "), "bad-chars", "a space inside is never trimmed"),
    ]
    return {
        "exact": [{"reason": r, "text": t, "description": d} for r, t, d in exact],
        "typed": [{"text": t, "result": r, "description": d} for t, r, d in typed],
        "authors": authors,
        "valid_log_ids": ["main", "blog", "0", "a", "my_log-2", "9-_", "x" * 64],
        "invalid_author_ids": [{"reason": r, "text": t, "description": d}
                               for r, t, d in invalid_authors],
        "invalid_feed_ids": [{"reason": r, "text": t, "description": d}
                             for r, t, d in invalid_feeds],
        "invalid_log_ids": [{"log_id": t, "description": d} for t, d in invalid_log_ids],
    }


# -- lipmaa.json -----------------------------------------------------------------

LARGE_SEQS = [242, 243, 364, 365, 1000, 1093, 3280, 3281, 9841, 29524, 10**6, 2**32,
              2**63 - 1]
POOL_SEQS = [1, 2, 3, 4, 5, 13, 14, 40, 41, 100, 121, 1000, 3280, 10**6]
PARTIAL_EXAMPLES = [(1, 1), (5, 2), (13, 1), (30, 5), (100, 10), (1000, 3), (10**6, 20),
                    (7, 100)]


def make_lipmaa() -> dict[str, Any]:
    seqs = list(range(1, 201)) + LARGE_SEQS
    return {
        "lipmaa": [{"n": n, "lipmaa": lipmaa(n), "link_target": link_target(n)} for n in seqs],
        "certificate_pool": [{"n": n, "pool": certificate_pool(n)} for n in POOL_SEQS],
        "partial_seqs": [{"head_seq": h, "count": c, "seqs": partial_seqs(h, c)}
                         for h, c in PARTIAL_EXAMPLES],
    }


# -- entries.json ------------------------------------------------------------------


def entry_json(entry: Entry, payload: bytes) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "entry": entry.raw.hex(),
        "hash": entry.hash.hex(),
        "body": entry.body.hex(),
        "signature": entry.signature.hex() if entry.signed else None,
        "payload": payload.hex(),
        "fields": {
            "version": entry.version,
            "flags": entry.flags,
            "author": entry.author.hex(),
            "log_id": entry.log_id,
            "seq": entry.seq,
            "timestamp": entry.timestamp,
            "backlink": hx(entry.backlink),
            "lipmaa_link": hx(entry.lipmaa_link),
            "payload_size": entry.payload_size,
            "payload_hash": entry.payload_hash.hex(),
        },
    }


def make_entries(blog: Log, notes: Log) -> dict[str, Any]:
    return {
        "author": {
            "seed": ALICE_SEED.hex(),
            "public_key": ALICE.author.key.hex(),
            "author_id": str(ALICE.author),
        },
        "logs": [
            {
                "log_id": log.log_id,
                "feed_id": str(log.feed),
                "entries": [entry_json(e, p) for e, p in zip(log.entries, log.payloads,
                                                              strict=True)],
            }
            for log in (blog, notes)
        ],
    }


# -- invalid.json ------------------------------------------------------------------

Item = tuple[bytes, bytes | None]


def item_json(item: Item) -> dict[str, Any]:
    return {"entry": item[0].hex(), "payload": hx(item[1])}


def ingest_case(
    name: str, rule: str, description: str, *, log: Log, context: int, inputs: list[Item],
    seq: int | None, stored: int = 0, index: int | None = None, standalone: bool = False,
    run: bool = True, fork_proofs: Sequence[bytes] = (), fork_proof: bytes | None = None,
    context_items: list[Item] | None = None, pending: int = 0,
    split_below: int | None = None,
) -> dict[str, Any]:
    """A node holding ``log``'s first ``context`` entries receives ``inputs`` for its feed.

    ``rule`` None: no entry fails (``seq`` None); ``pending`` entries at the end
    are vouched for by no signature yet. ``index`` is the input entry the error
    is about; by default the one at position ``seq``. ``run`` is False where
    only a node's stored entries or fork proofs decide the outcome, so a run
    verifier given the anchor cannot.
    """
    first, last = context + 1, context + len(inputs)
    known = links_needed(first, last) | ({context} if context else set())
    if context_items is None:
        context_items = [log.item(s) for s in range(1, context + 1)]
    hashes = {
        n: hashlib.blake2b(raw, digest_size=32).digest()
        for n, (raw, _) in enumerate(context_items, 1)
    }
    expected: dict[str, Any] = {"seq": seq, "stored": stored, "pending": pending}
    if seq is not None:
        if index is None:
            index = seq - first
        assert 0 <= index < len(inputs) and stored <= index
        expected["index"] = index
    else:
        assert rule is None and stored + pending == len(inputs)
    if fork_proof is not None:
        expected["fork_proof"] = fork_proof.hex()
    if split_below is not None:
        expected["split_below"] = split_below
    return {
        "name": name,
        "kind": "ingest",
        "rule": rule,
        "description": description,
        "feed": str(log.feed),
        "context": {
            "entries": [item_json(item) for item in context_items],
            "fork_proofs": [p.hex() for p in fork_proofs],
            "anchor": {
                "head_seq": context,
                "ended": bool(context) and log.entries[context - 1].is_end_of_log,
                "known": [{"seq": s, "hash": hashes[s].hex()} for s in sorted(known)],
            },
        },
        "input": [item_json(i) for i in inputs],
        "standalone": standalone,
        "run": run,
        "expected": expected,
    }


def partial_case(name: str, rule: str, description: str, *, log: Log, inputs: list[Item],
                 seq: int | None) -> dict[str, Any]:
    return {
        "name": name,
        "kind": "partial",
        "rule": rule,
        "description": description,
        "feed": str(log.feed),
        "input": [item_json(i) for i in inputs],
        "standalone": False,
        "expected": {"seq": seq},
    }


@dataclass
class Forgeries:
    """Author-made entries that conflict with the logs (shared by several files)."""

    alt1: Entry
    alt3: Entry
    alt4: Entry
    alt_payloads: dict[int, bytes]
    notes5: bytes
    proof3: ForkProof
    proof1: ForkProof
    proof4: ForkProof
    #: Another history of the blog from seq 6: 6 unsigned, 7 signed (an append of two).
    branch6: list[Entry]
    proof6: ForkProof
    #: Another history from seq 3 (3 and 4 signed): its entry 4 links to its own 3.
    branch3: list[Entry]


def other_history(blog: Log, first: int, payloads: list[bytes], signed_last: bool = True
                  ) -> list[Entry]:
    """The author's other history of the blog: blog's entries below ``first``, then
    one append of ``payloads`` (at another time)."""
    other = Log(ALICE, "blog", blog.entries[:first - 1], blog.payloads[:first - 1])
    timestamp = T0 + (first + len(payloads)) * MINUTE + 1
    for index, payload in enumerate(payloads):
        last = index == len(payloads) - 1
        other.append(payload, timestamp, FLAG_SIGNED if last and signed_last else 0)
    return other.entries[first - 1:]


def make_forgeries(blog: Log, notes: Log) -> Forgeries:
    payloads = {1: b"starting over", 3: b"another third entry", 4: b"another fourth entry"}
    alts = {}
    for seq, payload in payloads.items():
        timestamp = T0 + 10 * 24 * 60 * MINUTE if seq == 1 else T0 + seq * MINUTE + 1
        alts[seq] = blog.sign(seq, payload, timestamp=timestamp)
    notes5 = forge(ALICE, notes.fields(5, b"after the end", timestamp=T0 + 1100 * MINUTE))
    branch6 = other_history(blog, 6, [b"another sixth", b"another seventh"])
    ours6 = tuple(blog.entries[5:8])  # 6 and 7 unsigned, 8 signed
    branch3 = other_history(blog, 3, [b"third, again"])
    branch3 += [Log(ALICE, "blog", [*blog.entries[:2], *branch3],
                    [*blog.payloads[:2], b"third, again"]).sign(
        4, b"fourth, again", timestamp=T0 + 4 * MINUTE + 2)]
    return Forgeries(
        alts[1], alts[3], alts[4], payloads, notes5,
        ForkProof.from_runs([blog.entries[2]], [alts[3]]),
        ForkProof.from_runs([blog.entries[0]], [alts[1]]),
        ForkProof.from_runs([blog.entries[3]], [alts[4]]),
        branch6, ForkProof.from_runs(ours6, branch6), branch3,
    )


def make_invalid(blog: Log, notes: Log, bob: Log, forged: Forgeries) -> dict[str, Any]:
    cases: list[dict[str, Any]] = []
    p = b"forged entry"

    def at(seq: int, **overrides: Any) -> dict[str, Any]:
        """Fields of a correctly linked blog entry at ``seq`` for payload ``p``."""
        return {**blog.fields(seq, p, timestamp=T0 + seq * MINUTE), **overrides}

    def one(name: str, rule: str, description: str, entry: bytes, *, context: int,
            payload: bytes | None = None, standalone: bool = True) -> None:
        """One bad entry at the position after blog's first ``context`` entries."""
        cases.append(ingest_case(name, rule, description, log=blog, context=context,
                                 inputs=[(entry, payload)], seq=context + 1,
                                 standalone=standalone))

    # malformed: the bytes are not an entry of the right shape.
    sig64 = bytes(64)
    one("malformed-not-cbor", "malformed",
        "the body is the single byte 0x1c (reserved additional information 28)",
        b"\x1c" + SIG_HEAD + sig64, context=2)
    one("malformed-too-short", "malformed", "62 bytes: no room for a body and a signature",
        SIG_HEAD + bytes(60), context=2)
    one("malformed-signature-cut", "malformed",
        "the real entry 3 without its last byte: it no longer ends with 0x58 0x40 and 64 "
        "bytes", blog.entries[2].raw[:-1], context=2)
    one("malformed-byte-after-signature", "malformed",
        "the real entry 3 followed by one 0x00 byte", blog.entries[2].raw + b"\x00", context=2)
    one("malformed-body-not-array", "malformed", "the body is a CBOR map",
        signed(ALICE, cbor2.dumps({"seq": 3})), context=2)
    one("malformed-body-empty-array", "malformed", "the body is an empty array",
        signed(ALICE, b"\x80"), context=2)
    one("malformed-nine-fields", "malformed", "the payload hash is left out: 9 fields",
        signed(ALICE, array(body_parts(at(3))[:-1])), context=2)
    one("malformed-eleven-fields", "malformed", "an 11th field (0) after the payload hash",
        signed(ALICE, array([*body_parts(at(3)), b"\x00"])), context=2)
    one("malformed-version-text", "malformed", "the version is the text string \"1\"",
        forge_parts(ALICE, at(3), {"version": cbor2.dumps("1")}), context=2)
    one("malformed-flags-1", "malformed",
        "flags 1: an end of log without a signature (an end of log is always signed)",
        signed(ALICE, array(body_parts(at(3, flags=FLAG_END_OF_LOG)))), context=2)
    one("malformed-flags-4", "malformed", "flags 4 (only 0, 2 and 3 exist)",
        forge(ALICE, at(3), flags=4), context=2)
    one("malformed-signed-without-signature", "malformed",
        "flags 2 (signed), but the body is all there is: a stripped signature",
        array(body_parts(at(3))), context=2)
    one("malformed-unsigned-with-signature", "malformed",
        "flags 0 (unsigned), and a signature follows the body",
        signed(ALICE, array(body_parts(at(3, flags=0)))), context=2)
    one("malformed-tail-not-a-signature", "malformed",
        "a signed entry 3 whose 66 bytes after the body start 58 41 (a 65-byte string)",
        array(body_parts(at(3))) + b"\x58\x41" + bytes(64), context=2)
    one("malformed-author-31-bytes", "malformed", "the author key is 31 bytes",
        forge(ALICE, at(3), author=ALICE.author.key[:31]), context=2)
    one("malformed-log-id-upper-case", "malformed", "log id \"Blog\"",
        forge(ALICE, at(3), log_id="Blog"), context=2)
    one("malformed-log-id-non-ascii", "malformed", "log id \"blög\" (5 bytes of UTF-8)",
        forge(ALICE, at(3), log_id="blög"), context=2)
    one("malformed-log-id-empty", "malformed", "log id \"\"",
        forge(ALICE, at(3), log_id=""), context=2)
    one("malformed-log-id-bytes", "malformed", "the log id is a byte string h'626c6f67'",
        forge(ALICE, at(3), log_id=b"blog"), context=2)
    one("malformed-log-id-bad-utf8", "malformed",
        "the log id is a text string whose bytes are not UTF-8 (62 6c ff 67)",
        forge_parts(ALICE, at(3), {"log_id": b"\x64bl\xffg"}), context=2)
    one("malformed-seq-zero", "malformed", "seq 0 (sequence numbers start at 1)",
        forge(ALICE, at(3), seq=0, backlink=None, lipmaa_link=None), context=2)
    big = 2**63
    one("malformed-seq-2-63", "malformed", "seq 2^63 (the bound is 2^63 - 1)",
        forge(ALICE, at(3), seq=big, lipmaa_link=blog.entries[0].hash
              if link_target(big) is not None else None), context=2)
    one("malformed-timestamp-negative", "malformed", "timestamp -1",
        forge(ALICE, at(3), timestamp=-1), context=2)
    one("malformed-timestamp-float", "malformed", "timestamp 1.5 (a CBOR float)",
        forge(ALICE, at(3), timestamp=1.5), context=2)
    one("malformed-payload-size-negative", "malformed", "payload size -1",
        forge(ALICE, at(3), payload_size=-1), context=2)
    one("malformed-payload-hash-31-bytes", "malformed", "the payload hash is 31 bytes",
        forge(ALICE, at(3), payload_hash=payload_hash(p)[:31]), context=2)
    one("malformed-backlink-33-bytes", "malformed", "the backlink is 33 bytes",
        forge(ALICE, at(3), backlink=blog.entries[1].hash + b"\x00"), context=2)
    one("malformed-entry-1-with-backlink", "malformed",
        "entry 1 carries a backlink (32 zero bytes); entry 1 has no links",
        forge(ALICE, at(1), backlink=bytes(32)), context=0)
    one("malformed-backlink-null", "malformed", "entry 3 with a null backlink",
        forge(ALICE, at(3), backlink=None), context=2)
    one("malformed-lipmaa-link-missing", "malformed",
        "entry 4 (link_target 1) with a null lipmaa link",
        forge(ALICE, at(4), lipmaa_link=None), context=3)
    one("malformed-lipmaa-link-not-allowed", "malformed",
        "entry 3 (lipmaa(3) = 2 = seq - 1, so no lipmaa link) carries one equal to its backlink",
        forge(ALICE, at(3), lipmaa_link=blog.entries[1].hash), context=2)
    one("malformed-trailing-bytes-in-body", "malformed",
        "a byte (0x00) after the body's array, inside the signed part: the body is not one "
        "CBOR data item", signed(ALICE, array(body_parts(at(3))) + b"\x00"), context=2)
    one("malformed-tagged-timestamp", "malformed",
        "the timestamp wrapped in tag 1 (epoch time): tags are never allowed",
        forge_parts(ALICE, at(3), {"timestamp": b"\xc1" + cbor2.dumps(T0 + 3 * MINUTE)}),
        context=2)
    one("malformed-tagged-seq", "malformed",
        "seq 3 as a tag-2 bignum h'03': tags are never allowed, even around a right value",
        forge_parts(ALICE, at(3), {"seq": b"\xc2\x41\x03"}), context=2)
    big = b"\xc2\x49\x01" + bytes(8)  # 2^64: the shortest form of that bignum
    one("malformed-bignum-version", "malformed",
        "version 2^64 as a tag-2 bignum in its shortest form (a decoder that writes it "
        "back the same way must still refuse the tag; not unknown-version)",
        forge_parts(ALICE, at(3), {"version": big}), context=2)
    one("malformed-bignum-payload-size", "malformed",
        "payload size 2^64 as a tag-2 bignum: malformed, not oversize",
        forge_parts(ALICE, at(3), {"payload_size": big}), context=2)
    one("malformed-two-byte-simple-value", "malformed",
        "the null lipmaa link of entry 3 written 0xf8 0x16 (not well-formed)",
        forge_parts(ALICE, at(3), {"lipmaa_link": b"\xf8\x16"}), context=2)
    one("malformed-chunk-of-other-type", "malformed",
        "the payload hash as an indefinite-length byte string holding a text chunk",
        forge_parts(ALICE, at(3), {"payload_hash": b"\x5f\x61a\xff"}), context=2)
    one("malformed-and-non-canonical", "malformed",
        "flags 4 and seq written 0x18 0x03: a bad field wins over the encoding",
        forge_parts(ALICE, at(3, flags=4), {"seq": head(0, 3, 1)}), context=2)
    cases.append(ingest_case(
        "malformed-after-a-valid-entry", "malformed",
        "valid entry 3, then bytes that are not CBOR at position 4: entry 3 is stored",
        log=blog, context=2, inputs=[blog.item(3), (b"\x1c" + SIG_HEAD + sig64, None)],
        seq=4, stored=1, standalone=True))

    # non-canonical: decodes to valid fields, but not in the one canonical encoding.
    # Each is signed by the author over exactly these body bytes.
    one("non-canonical-uint-head", "non-canonical",
        "seq 3 written 0x18 0x03 (a 1-byte argument for a value below 24)",
        forge_parts(ALICE, at(3), {"seq": head(0, 3, 1)}), context=2)
    one("non-canonical-uint-4-byte-head", "non-canonical",
        "payload size 12 written with a 4-byte argument (0x1a 0x0000000c)",
        forge_parts(ALICE, at(3), {"payload_size": head(0, len(p), 4)}), context=2)
    one("non-canonical-version-head", "non-canonical", "version 2 written 0x18 0x02",
        forge_parts(ALICE, at(3), {"version": head(0, 2, 1)}), context=2)
    one("non-canonical-unsigned", "non-canonical",
        "an unsigned entry 3 whose seq is written 0x18 0x03",
        forge_parts(ALICE, at(3, flags=0), {"seq": head(0, 3, 1)})[:-66], context=2)
    one("non-canonical-array-head", "non-canonical",
        "the body array's length 10 written 0x98 0x0a",
        signed(ALICE, array(body_parts(at(3)), head_size=1)), context=2)
    one("non-canonical-indefinite-array", "non-canonical",
        "the body is an indefinite-length array (0x9f ... 0xff)",
        signed(ALICE, array(body_parts(at(3)), indefinite=True)), context=2)
    one("non-canonical-bytes-length-head", "non-canonical",
        "the author key's length 32 written 0x59 0x0020",
        forge_parts(ALICE, at(3), {"author": head(2, 32, 2) + ALICE.author.key}), context=2)
    hash_p = payload_hash(p)
    one("non-canonical-indefinite-bytes", "non-canonical",
        "the payload hash as an indefinite-length byte string of two 16-byte chunks",
        forge_parts(ALICE, at(3), {"payload_hash": b"\x5f" + cbor2.dumps(hash_p[:16])
                                   + cbor2.dumps(hash_p[16:]) + b"\xff"}), context=2)
    one("non-canonical-indefinite-text", "non-canonical",
        "the log id as an indefinite-length text string \"bl\" \"og\"",
        forge_parts(ALICE, at(3), {"log_id": b"\x7f\x62bl\x62og\xff"}), context=2)
    one("non-canonical-text-length-head", "non-canonical",
        "the log id's length 4 written 0x78 0x04",
        forge_parts(ALICE, at(3), {"log_id": head(3, 4, 1) + b"blog"}), context=2)
    one("non-canonical-512-bytes", "non-canonical",
        f"exactly {MAX_ENTRY_SIZE} bytes (the bound, so not oversize): the author key as an "
        "indefinite-length byte string led by empty chunks",
        padded_entry(ALICE, at(3), MAX_ENTRY_SIZE), context=2)

    # unknown-version
    one("unknown-version-3", "unknown-version", "version 3 with version 2's ten fields",
        forge_parts(ALICE, at(3), {"version": cbor2.dumps(3)}), context=2)
    one("unknown-version-1", "unknown-version",
        "a version-1 entry (tag 0, then a signature): the format before this one",
        forge_parts(ALICE, at(3, flags=0), {"version": cbor2.dumps(1)}), context=2)
    one("unknown-version-0", "unknown-version", "version 0 with version 2's ten fields",
        forge_parts(ALICE, at(3), {"version": cbor2.dumps(0)}), context=2)
    one("unknown-version-before-the-tail", "unknown-version",
        "version 3 followed by 5 bytes that are no signature: the version is read first",
        array(body_parts(at(3), version=3)) + b"later", context=2)
    one("unknown-version-negative", "unknown-version",
        "version -1: an integer, so the version is unknown rather than malformed",
        forge_parts(ALICE, at(3), {"version": cbor2.dumps(-1)}), context=2)
    one("unknown-version-other-shape", "unknown-version",
        "[3, \"future\", h'00']: the version is checked before the shape of the rest",
        signed(ALICE, cbor2.dumps([3, "future", b"\x00"])), context=2)

    # oversize
    one("oversize-entry-513-bytes", "oversize",
        f"{MAX_ENTRY_SIZE + 1} bytes: one empty chunk more than non-canonical-512-bytes",
        padded_entry(ALICE, at(3), MAX_ENTRY_SIZE + 1), context=2)
    one("oversize-entry-before-parsing", "oversize",
        "1000 zero bytes: an entry over the bound is refused before it is parsed",
        bytes(1000), context=2)
    one("oversize-payload-size", "oversize",
        f"payload size {MAX_PAYLOAD_SIZE + 1} (the bound is {MAX_PAYLOAD_SIZE}), author-signed",
        forge(ALICE, at(3), payload_size=MAX_PAYLOAD_SIZE + 1), context=2)
    one("oversize-log-id", "oversize",
        "log id of 65 characters (the bound is 64 bytes), author-signed entry 1",
        forge(ALICE, at(1), log_id="a" * 65), context=0)

    one("oversize-log-id-bad-chars", "oversize",
        "log id of 65 upper-case letters: the length is checked before the characters",
        forge(ALICE, at(1), log_id="A" * 65), context=0)

    # bad-signature
    real5 = blog.entries[4]
    one("bad-signature-flipped-bit", "bad-signature",
        "the real entry 5 with the lowest bit of its signature's first byte flipped",
        flip(real5.raw, len(real5.raw) - 64), payload=blog.payloads[4], context=4)
    one("bad-signature-other-key", "bad-signature",
        "entry 5 with alice's key as author, signed by bob",
        forge(BOB, at(5)), payload=p, context=4)
    changed = encode_body(**blog.fields(5, blog.payloads[4], timestamp=real5.timestamp + 1))
    one("bad-signature-body-changed", "bad-signature",
        "the real entry 5 with its timestamp raised by 1 and its old signature",
        changed + SIG_HEAD + real5.signature, payload=blog.payloads[4], context=4)
    bad4 = flip(blog.entries[3].raw, len(blog.entries[3].raw) - 1)
    cases.append(ingest_case(
        "bad-signature-in-a-run", "bad-signature",
        "entries 3, 4, 5 where 4's signature has a flipped bit (so 5's backlink is wrong "
        "too): 4 is the first bad entry, 3 is stored",
        log=blog, context=2, inputs=[blog.item(3), (bad4, blog.payloads[3]), blog.item(5)],
        seq=4, stored=1, standalone=True))
    bad3 = flip(blog.entries[2].raw, len(blog.entries[2].raw) - 1)
    after_bad3 = forge(ALICE, at(4, backlink=hashlib.blake2b(bad3, digest_size=32).digest()))
    cases.append(ingest_case(
        "bad-signature-vouched-for-is-still-refused", "bad-signature",
        "entry 3 with a flipped signature bit and an author-signed entry 4 linking to it: "
        "every signature an entry carries must verify, whatever follows it (spec 05 §2)",
        log=blog, context=2, inputs=[(bad3, blog.payloads[2]), (after_bad3, p)],
        seq=3, stored=0, standalone=True))

    bad_alt3 = flip(forged.alt3.raw, len(forged.alt3.raw) - 64)
    cases.append(ingest_case(
        "bad-signature-conflicting-entry", "bad-signature",
        "the node holds 1 to 5 and receives another entry 3 with a bad signature: no fork "
        "proof", log=blog, context=5, inputs=[(bad_alt3, forged.alt_payloads[3])], seq=3,
        index=0, standalone=True, run=False))
    cases.append(partial_case(
        "bad-signature-partial-head", "bad-signature",
        "entries 1, 2 and the real entry 3 with a flipped signature bit", log=blog,
        inputs=[blog.item(1), blog.item(2),
                (flip(blog.entries[2].raw, len(blog.entries[2].raw) - 64), blog.payloads[2])],
        seq=3))
    bad2 = flip(blog.entries[1].raw, len(blog.entries[1].raw) - 1)
    cases.append(partial_case(
        "bad-signature-partial-inner", "bad-signature",
        "entries 1, 2 (a flipped signature bit) and 3: the head's signature vouches for "
        "2's bytes, but every signature present must verify", log=blog,
        inputs=[blog.item(1), (bad2, None), (forge(ALICE, at(3, backlink=hashlib.blake2b(
            bad2, digest_size=32).digest())), p)], seq=2))

    # Author keys no honest author has: small order, or y >= p. With R = the
    # identity and S = 0, a plain RFC 8032 check accepts whenever [k]A is the
    # identity, i.e. k = H(R || A || body) is a multiple of A's order: the
    # timestamp is chosen so that it is, and each case really needs the rule
    # of spec 02 §2 (the raw primitive accepts every one of these signatures).
    field_prime = 2**255 - 19
    group_order = 2**252 + 27742317777372353535851937790883648493
    y8 = 0x7A03AC9277FDC74EC6CC392CFA53202A0F67100D760B3CBA4FD84D3D706A17C7
    identity_r = b"\x01" + bytes(31)
    for name, key, order, what in (
        ("identity", b"\x01" + bytes(31), 1, "the identity point (order 1)"),
        ("order-2", (field_prime - 1).to_bytes(32, "little"), 2, "the point of order 2"),
        ("order-4", bytes(32), 4, "a point of order 4 (y = 0)"),
        ("order-8", y8.to_bytes(32, "little"), 8, "a point of order 8"),
        ("order-8-other", (field_prime - y8).to_bytes(32, "little"), 8,
         "the other order-8 y-coordinate"),
        ("y-not-canonical", (field_prime + 1).to_bytes(32, "little"), 1,
         "y = p + 1, a non-canonical encoding of the identity"),
    ):
        for tick in range(10_000):
            key_body = encode_body(flags=FLAG_SIGNED, author=key, log_id="blog", seq=1,
                                   timestamp=T0 + tick, backlink=None, lipmaa_link=None,
                                   payload_size=0, payload_hash=payload_hash(b""))
            k = int.from_bytes(hashlib.sha512(identity_r + key + key_body).digest(), "little")
            if k % group_order % order == 0:
                break
        signature = identity_r + bytes(32)
        Ed25519PublicKey.from_public_bytes(key).verify(signature, key_body)  # accepted raw
        cases.append({
            "name": f"bad-signature-small-order-key-{name}",
            "kind": "partial",
            "rule": "bad-signature",
            "description": f"entry 1 whose author key is {what}; the signature (R = the "
                           "identity 01 00..00, S = 0) passes a plain RFC 8032 check, but "
                           "the key is refused",
            "feed": str(FeedId(key, "blog")),
            "input": [item_json((key_body + SIG_HEAD + signature, None))],
            "standalone": False,
            "expected": {"seq": 1},
        })

    # Unsigned entries (spec 05 §1): vouched for by the next signed entry, and
    # until then pending (neither stored nor an error); runs of them are bounded.
    cases.append(ingest_case(
        "pending-until-signed", None,
        "entries 6 and 7 (both unsigned) after 1 to 5: nothing vouches for them yet, so "
        "neither is stored and neither is an error", log=blog, context=5,
        inputs=[blog.item(6), blog.item(7)], seq=None, pending=2))
    cases.append(ingest_case(
        "vouched-by-the-next-signed", None,
        "entries 6, 7 (unsigned) and 8 (signed) after 1 to 5: 8's signature vouches for "
        "all three", log=blog, context=5, inputs=[blog.item(s) for s in (6, 7, 8)],
        seq=None, stored=3))
    cases.append(ingest_case(
        "a-failure-drops-what-nothing-vouched-for", "wrong-backlink",
        "entries 6, 7 (unsigned) and an author-signed entry 8 whose backlink is wrong: the "
        "run fails at 8 and 6 and 7 are not stored: no signature vouches for them",
        log=blog, context=5,
        inputs=[blog.item(6), blog.item(7), (forge(ALICE, at(8, backlink=bytes(32))), p)],
        seq=8, stored=0))
    long = Log(ALICE, "long")
    for _ in range(MAX_UNSIGNED_RUN + 1):
        long.append(b"", T0 + 2000 * MINUTE, 0)
    cases.append(ingest_case(
        "unsigned-run-64-entries", "unsigned-run",
        f"alice's log \"long\": {MAX_UNSIGNED_RUN + 1} unsigned entries in a row; the "
        f"{MAX_UNSIGNED_RUN + 1}th breaks the bound of {MAX_UNSIGNED_RUN}", log=long,
        context=0, inputs=[(e.raw, None) for e in long.entries],
        seq=MAX_UNSIGNED_RUN + 1, stored=0))
    heavy = Log(ALICE, "heavy")
    third = MAX_UNSIGNED_BYTES // 3 + 1
    for _ in range(3):
        heavy.append(bytes(third), T0 + 2001 * MINUTE, 0)
    cases.append(ingest_case(
        "unsigned-run-payload-bytes", "unsigned-run",
        f"alice's log \"heavy\": three unsigned entries of {third}-byte payloads (absent "
        f"here: the signed sizes count): the third makes {3 * third} bytes, over "
        f"{MAX_UNSIGNED_BYTES}", log=heavy, context=0,
        inputs=[(e.raw, None) for e in heavy.entries], seq=3, stored=0))
    cases.append(partial_case(
        "unsigned-tail-partial", "unsigned-tail",
        "partial_seqs(7, 2) of the blog: its head, entry 7, is unsigned, so nothing "
        "vouches for the set", log=blog,
        inputs=[blog.item(s) for s in partial_seqs(7, 2)], seq=7))
    cases.append(partial_case(
        "unsigned-run-partial", "unsigned-run",
        f"alice's log \"long\", entries 1 to {MAX_UNSIGNED_RUN + 1} (unsigned) and a "
        f"signed head {MAX_UNSIGNED_RUN + 2}: the set shows {MAX_UNSIGNED_RUN + 1} unsigned "
        "entries in a row", log=long,
        inputs=[*((e.raw, None) for e in long.entries),
                (Log(ALICE, "long", list(long.entries), list(long.payloads)).sign(
                    MAX_UNSIGNED_RUN + 2, b"", timestamp=T0 + 2000 * MINUTE).raw, None)],
        seq=MAX_UNSIGNED_RUN + 1))

    # Conflicts with held entries (spec 06 §4).
    cases.append(ingest_case(
        "fork-at-6-unsigned", "fork",
        "the node holds 1 to 8 (6 and 7 unsigned) and receives 5 and the author's other "
        "history from 6: another unsigned 6 and a signed 7. The proof's branches run from "
        "6 to each history's next signed entry: 6, 7, 8 and 6', 7'",
        log=blog, context=8, inputs=[blog.item(5), *((e.raw, None) for e in forged.branch6)],
        seq=6, index=1, run=False, fork_proof=forged.proof6.to_bytes(), stored=0))
    cases.append(ingest_case(
        "fork-split-below-the-input", "fork",
        "the node holds 1 to 5 and receives another history's entry 4 alone, which links "
        "to another entry 3 than the held one: a fork, but the input does not show where "
        "the histories split, so no proof is made (a node asks its peer, spec 10 §8)",
        log=blog, context=5, inputs=[(forged.branch3[1].raw, None)], seq=4, index=0,
        run=False, split_below=4))
    cases.append(ingest_case(
        "fork-conflict-not-vouched-for", "unsigned-tail",
        "the node holds 1 to 5 and receives another entry 3, unsigned, with nothing after "
        "it: no signature vouches for it, so it is no evidence of anything",
        log=blog, context=5,
        inputs=[(blog.sign(3, b"unsigned other", timestamp=T0 + 3 * MINUTE + 5, flags=0).raw,
                 None)], seq=3, index=0, run=False))

    # A duplicate that brings the payload the node lacks (spec 07 §3).
    cases.append(ingest_case(
        "payload-hash-mismatch-on-a-duplicate", "payload-hash-mismatch",
        "the node holds entries 1 to 3 without payloads; entry 1 arrives again with a "
        "payload of the right size whose hash is not the signed one",
        log=blog, context=3, context_items=[(blog.entries[i].raw, None) for i in range(3)],
        inputs=[(blog.entries[0].raw, flip(blog.payloads[0], 0))],
        seq=1, index=0, standalone=True, run=False))

    # wrong-backlink (author-signed: only the link is wrong)
    cases.append(ingest_case(
        "wrong-backlink-older-entry", "wrong-backlink",
        "an author-signed entry 5 whose backlink is the hash of entry 3: on its own it is "
        "the author's, so the author's histories split below 5 (a node looks for where)",
        log=blog, context=4, inputs=[(forge(ALICE, at(5, backlink=blog.entries[2].hash)), p)],
        seq=5, split_below=5))
    cases.append(ingest_case(
        "wrong-backlink-zeros", "wrong-backlink",
        "an author-signed entry 5 whose backlink is 32 zero bytes", log=blog, context=4,
        inputs=[(forge(ALICE, at(5, backlink=bytes(32))), p)], seq=5, split_below=5))
    cases.append(ingest_case(
        "wrong-backlink-unvouched", "wrong-backlink",
        "an unsigned entry 6 whose backlink is 32 zero bytes: nothing vouches for it, so it "
        "says nothing about the author", log=blog, context=5,
        inputs=[(forge(ALICE, at(6, flags=0, backlink=bytes(32))), p)], seq=6))
    cases.append(ingest_case(
        "wrong-backlink-in-a-run", "wrong-backlink",
        "entry 5, then an entry 6 whose backlink is the hash of entry 4: 5 is stored",
        log=blog, context=4,
        inputs=[blog.item(5), (forge(ALICE, at(6, backlink=blog.entries[3].hash)), p)],
        seq=6, stored=1))

    cases.append(partial_case(
        "wrong-backlink-partial", "wrong-backlink",
        "entries 1, 2 and an author-signed head 3 whose backlink is 32 zero bytes", log=blog,
        inputs=[blog.item(1), blog.item(2), (forge(ALICE, at(3, backlink=bytes(32))), p)],
        seq=3))

    # wrong-lipmaa-link (author-signed, backlink right)
    one("wrong-lipmaa-link-13", "wrong-lipmaa-link",
        "entry 13 (link_target 4) whose lipmaa link is the hash of entry 12",
        forge(ALICE, at(13, lipmaa_link=blog.entries[11].hash)), payload=p, context=12,
        standalone=False)
    one("wrong-lipmaa-link-zeros", "wrong-lipmaa-link",
        "entry 4 (link_target 1) whose lipmaa link is 32 zero bytes",
        forge(ALICE, at(4, lipmaa_link=bytes(32))), payload=p, context=3, standalone=False)
    cases.append(ingest_case(
        "wrong-lipmaa-link-in-a-run", "wrong-lipmaa-link",
        "entries 4 to 7 (6 and 7 unsigned), then an entry 8 (link_target 4) linking to "
        "entry 5: 4 and 5 are stored", log=blog, context=3,
        inputs=[*(blog.item(s) for s in range(4, 8)),
                (forge(ALICE, at(8, lipmaa_link=blog.entries[4].hash)), p)],
        seq=8, stored=2))

    cases.append(partial_case(
        "wrong-lipmaa-link-partial", "wrong-lipmaa-link",
        "entries 1, 4 and an author-signed head 13 whose lipmaa link is 32 zero bytes",
        log=blog, inputs=[blog.item(1), blog.item(4),
                          (forge(ALICE, at(13, lipmaa_link=bytes(32))), p)], seq=13))

    # linked-seq-mismatch (partial verification)
    cases.append(partial_case(
        "linked-seq-mismatch-lipmaa", "linked-seq-mismatch",
        "entries 1, 4 and an author-signed head 13 whose lipmaa link (which must reach 4) is "
        "the hash of entry 1", log=blog,
        inputs=[blog.item(1), blog.item(4),
                (forge(ALICE, at(13, lipmaa_link=blog.entries[0].hash)), p)], seq=13))
    cases.append(partial_case(
        "linked-seq-mismatch-backlink", "linked-seq-mismatch",
        "entries 1, 2 and an author-signed head 3 whose backlink (which must reach 2) is the "
        "hash of entry 1", log=blog,
        inputs=[blog.item(1), blog.item(2),
                (forge(ALICE, at(3, backlink=blog.entries[0].hash)), p)], seq=3))

    # gap
    cases.append(ingest_case(
        "gap-skipped-entry", "gap", "the node holds 1 to 5 and receives the real entry 7",
        log=blog, context=5, inputs=[blog.item(7)], seq=6))
    cases.append(ingest_case(
        "gap-in-a-run", "gap", "entries 4 and 6 after 1 to 3: 4 is stored, position 5 is bad",
        log=blog, context=3, inputs=[blog.item(4), blog.item(6)], seq=5, stored=1))
    cases.append(ingest_case(
        "gap-first-entry-missing", "gap", "an empty node receives the real entry 2",
        log=blog, context=0, inputs=[blog.item(2)], seq=1))
    cases.append(partial_case(
        "gap-partial-unreached", "gap",
        "entries 1, 4, 5 and 13: from 13 the links reach 4 and 1, nothing reaches 5",
        log=blog, inputs=[blog.item(s) for s in (1, 4, 5, 13)], seq=5))
    cases.append(partial_case(
        "gap-partial-no-entry-1", "gap",
        "entries 4 and 13 link correctly but entry 1 is missing", log=blog,
        inputs=[blog.item(4), blog.item(13)], seq=1))

    # wrong-feed
    cases.append(ingest_case(
        "wrong-feed-other-log", "wrong-feed",
        "the node holds blog 1 to 3 and receives entry 4 of the same author's log \"notes\"",
        log=blog, context=3, inputs=[notes.item(4)], seq=4))
    cases.append(ingest_case(
        "wrong-feed-other-author", "wrong-feed",
        "an empty node for alice's \"blog\" receives entry 1 of bob's \"blog\"",
        log=blog, context=0, inputs=[bob.item(1)], seq=1))

    cases.append(partial_case(
        "wrong-feed-partial", "wrong-feed",
        "entry 1 of alice's notes with entries 2 and 3 of her blog (the head)", log=blog,
        inputs=[notes.item(1), blog.item(2), blog.item(3)], seq=1))
    cases.append(partial_case(
        "wrong-feed-partial-same-seq", "wrong-feed",
        "entries 1, 2 of alice's blog and entry 1 of bob's blog: two entries at seq 1 of "
        "different feeds are not a fork", log=blog,
        inputs=[blog.item(1), blog.item(2), bob.item(1)], seq=1))
    cases.append(partial_case(
        "decode-failure-partial", "malformed",
        "entries 1, 2, 3 and 70 zero bytes: an answer whose entry does not decode is "
        "reported with no seq (bytes that do not decode have none)", log=blog,
        inputs=[blog.item(1), blog.item(2), blog.item(3), (bytes(70), None)], seq=None))

    # payload-size-mismatch / payload-hash-mismatch (the entries are valid)
    one("payload-size-mismatch-longer", "payload-size-mismatch",
        "the real entry 5 with its payload and one byte more",
        real5.raw, payload=blog.payloads[4] + b"!", context=4)
    one("payload-size-mismatch-empty", "payload-size-mismatch",
        "the real entry 5 with an empty payload (absent would be null, not empty)",
        real5.raw, payload=b"", context=4)
    one("payload-hash-mismatch", "payload-hash-mismatch",
        "the real entry 5 with a payload of the right size, one bit flipped",
        real5.raw, payload=flip(blog.payloads[4], 0), context=4)
    cases.append(ingest_case(
        "payload-hash-mismatch-in-a-run", "payload-hash-mismatch",
        "entries 5, 6, 7 where 6's payload has a flipped bit: 5 is stored",
        log=blog, context=4,
        inputs=[blog.item(5), (blog.entries[5].raw, flip(blog.payloads[5], 2)), blog.item(7)],
        seq=6, stored=1, standalone=True))

    cases.append(partial_case(
        "payload-size-mismatch-partial", "payload-size-mismatch",
        "entries 1, 2, 3 with entry 3's payload one byte longer", log=blog,
        inputs=[blog.item(1), blog.item(2), (blog.entries[2].raw, blog.payloads[2] + b"!")],
        seq=3))
    cases.append(partial_case(
        "payload-hash-mismatch-partial", "payload-hash-mismatch",
        "entries 1, 2, 3 with one bit of entry 1's payload flipped", log=blog,
        inputs=[(blog.entries[0].raw, flip(blog.payloads[0], 0)), blog.item(2), blog.item(3)],
        seq=1))

    # after-end-of-log
    cases.append(ingest_case(
        "after-end-of-log", "after-end-of-log",
        "the node holds notes 1 to 4 (4 ends the log) and receives an author-signed, "
        "correctly linked entry 5", log=notes, context=4,
        inputs=[(forged.notes5, b"after the end")], seq=5))
    cases.append(ingest_case(
        "after-end-of-log-in-a-run", "after-end-of-log",
        "notes 4 (end of log) and an entry 5 after notes 1 to 3: 4 is stored",
        log=notes, context=3, inputs=[notes.item(4), (forged.notes5, b"after the end")],
        seq=5, stored=1))
    cases.append(partial_case(
        "after-end-of-log-partial", "after-end-of-log",
        "notes 1 to 4 and a correctly linked head 5", log=notes,
        inputs=[*(notes.item(s) for s in range(1, 5)), (forged.notes5, b"after the end")],
        seq=5))

    # fork
    alt3 = (forged.alt3.raw, forged.alt_payloads[3])
    cases.append(ingest_case(
        "fork-at-3", "fork",
        "the node holds 1 to 5 and receives another author-signed, correctly linked entry 3",
        log=blog, context=5, inputs=[alt3], seq=3, index=0, run=False,
        fork_proof=forged.proof3.to_bytes()))
    cases.append(ingest_case(
        "fork-at-1", "fork",
        "the node holds 1 to 5 and receives another entry 1 (a key restored from a backup "
        "starting over)", log=blog, context=5,
        inputs=[(forged.alt1.raw, forged.alt_payloads[1])], seq=1, index=0, run=False,
        fork_proof=forged.proof1.to_bytes()))
    cases.append(partial_case(
        "fork-partial", "fork", "entries 1, 2, 3 and another entry 3: an answer holds one "
        "entry per seq (no fork proof is made from it)", log=blog,
        inputs=[blog.item(1), blog.item(2), blog.item(3), alt3], seq=3))
    cases.append(partial_case(
        "fork-partial-three-at-one-seq", "fork",
        "entries 1, 2, 3, another entry 3 and a third entry 3: the lowest seq with more than "
        "one entry, all of the head's feed", log=blog,
        inputs=[blog.item(1), blog.item(2), blog.item(3), alt3,
                (forged.branch3[0].raw, None)], seq=3))

    # forked-feed
    cases.append(ingest_case(
        "forked-feed-after-fork", "forked-feed",
        "the node holds 1 to 5 and a fork proof at seq 3, and receives entry 6",
        log=blog, context=5, inputs=[blog.item(6)], seq=6, run=False,
        fork_proofs=[forged.proof3.to_bytes()]))
    cases.append(ingest_case(
        "forked-feed-from-the-fork", "forked-feed",
        "the node holds 1 and 2 and a fork proof at seq 4, and receives 3, 4, 5: 3 is stored",
        log=blog, context=2, inputs=[blog.item(s) for s in (3, 4, 5)], seq=4, stored=1,
        run=False, fork_proofs=[forged.proof4.to_bytes()]))
    return {"cases": cases}


# -- ed25519.json ------------------------------------------------------------------


def make_ed25519() -> dict[str, Any]:
    """Signatures implementations disagree on, and how spec/02 §2 decides them."""
    from ed25519_edges import edge_cases

    def body_of(key: bytes, stamp: int) -> bytes:
        return encode_body(flags=FLAG_SIGNED, author=key, log_id="blog", seq=1,
                           timestamp=T0 + stamp, backlink=None, lipmaa_link=None,
                           payload_size=0, payload_hash=payload_hash(b""))

    cases = []
    for name, body, signature, valid, description in edge_cases(ALICE_SEED, body_of):
        author = cbor2.loads(body)[2]
        try:
            Ed25519PublicKey.from_public_bytes(author).verify(signature, body)
            raw_accepts = True
        except Exception:  # InvalidSignature
            raw_accepts = False
        expected_raw = {"honest": True, "s-not-reduced": False, "mixed-order-key": True,
                        "cofactored-only": False, "small-order-r": True,
                        "non-canonical-r": False}[name]
        assert raw_accepts == expected_raw, name  # what OpenSSL's RFC 8032 check says
        cases.append({
            "name": name, "description": description, "author": author.hex(),
            "entry": (body + SIG_HEAD + signature).hex(), "valid": valid,
            "rule": None if valid else "bad-signature", "openssl_accepts": raw_accepts,
        })
    return {"cases": cases}


# -- forks.json --------------------------------------------------------------------


def make_forks(blog: Log, notes: Log, bob: Log, forged: Forgeries) -> dict[str, Any]:
    def proof_bytes(a: Sequence[bytes], b: Sequence[bytes], version: int = 2) -> bytes:
        return cbor2.dumps([version, list(a), list(b)])

    def by_hash(a: Sequence[bytes], b: Sequence[bytes]) -> tuple[Sequence[bytes], Sequence[bytes]]:
        return (a, b) if hashlib.blake2b(a[0], digest_size=32).digest() < hashlib.blake2b(
            b[0], digest_size=32).digest() else (b, a)

    valid = []
    for description, proof in (
        ("two entries 3 of alice's blog, each signed", forged.proof3),
        ("two entries 1 of alice's blog (a restored key starting over)", forged.proof1),
        ("two entries 4 of alice's blog (both with a lipmaa link)", forged.proof4),
        ("two histories from seq 6, where neither entry 6 is signed: the branches run to "
         "the next signed entries (6, 7, 8 and 6', 7')", forged.proof6),
    ):
        valid.append({
            "description": description,
            "proof": proof.to_bytes().hex(),
            "feed": str(proof.feed),
            "seq": proof.seq,
            "first": [e.raw.hex() for e in proof.first],
            "second": [e.raw.hex() for e in proof.second],
        })
    first = [e.raw for e in forged.proof3.first]
    second = [e.raw for e in forged.proof3.second]
    b3 = [blog.entries[2].raw]
    ours6 = [e.raw for e in blog.entries[5:8]]
    theirs6 = [e.raw for e in forged.branch6]
    bad_alt = [flip(forged.alt3.raw, len(forged.alt3.raw) - 64)]
    max_run = [bytes(MAX_ENTRY_SIZE)] * MAX_RUN
    invalid = [  # (reason, the check of spec 06 section 3 that fails, description, bytes)
        ("same-entry", "F12", "the real entry 3 in both branches", proof_bytes(b3, b3)),
        ("different-seqs", "F10", "entries 2 and 3 of one feed",
         proof_bytes(*by_hash([blog.entries[1].raw], b3))),
        ("different-feeds", "F8", "entry 1 of alice's blog and entry 1 of alice's notes",
         proof_bytes(*by_hash([blog.entries[0].raw], [notes.entries[0].raw]))),
        ("different-feeds", "F8", "entry 1 of alice's blog and entry 1 of bob's blog",
         proof_bytes(*by_hash([blog.entries[0].raw], [bob.entries[0].raw]))),
        ("broken-run", "F9", "a branch whose entries do not link: entries 6 and 8",
         proof_bytes(*by_hash([ours6[0], ours6[2]], theirs6))),
        ("not-fork-point", "F11", "entries 4 of the two histories from seq 3: their "
         "backlinks differ, so the histories split before seq 4",
         proof_bytes(*by_hash([blog.entries[3].raw], [forged.branch3[1].raw]))),
        ("unsigned-end", "F14", "a branch that ends at an unsigned entry: 6 and 7 alone",
         proof_bytes(*by_hash(ours6[:2], theirs6))),
        ("not-minimal", "F14", "a branch that goes on past its first signed entry: the "
         "blog's 3 (signed) and 4 against another 3",
         proof_bytes(*by_hash([blog.entries[2].raw, blog.entries[3].raw],
                              [forged.alt3.raw]))),
        ("bad-signature", "F15", "entry 3 and the other entry 3 with a flipped signature bit",
         proof_bytes(*by_hash(b3, bad_alt))),
        ("wrong-order", "F13", "a valid fork's branches with the larger first hash first",
         proof_bytes(second, first)),
        ("unknown-version", "F5", "version 1 (the format before this one)",
         proof_bytes(first, second, 1)),
        ("unknown-version", "F5", "version 3", proof_bytes(first, second, 3)),
        ("non-canonical", "F6", "an indefinite-length array",
         b"\x9f" + proof_bytes(first, second)[1:] + b"\xff"),
        ("trailing-bytes", "F3", "a valid proof followed by 0x00",
         proof_bytes(first, second) + b"\x00"),
        ("malformed", "F4", "two items: [2, [entry]]", cbor2.dumps([2, first])),
        ("malformed", "F4", "the branches as byte strings, not arrays",
         cbor2.dumps([2, first[0], second[0]])),
        ("malformed", "F4", "an empty branch", proof_bytes(first, [])),
        ("malformed", "F4", f"a branch of {MAX_RUN + 1} entries",
         proof_bytes(first, [second[0]] * (MAX_RUN + 1))),
        ("malformed", "F2", "not CBOR: the single byte 0xff", b"\xff"),
        ("invalid-entry", "F7", "the second branch's entry is 70 zero bytes",
         proof_bytes(first, [bytes(70)])),
        ("oversize", "F1", f"over {MAX_PROOF_SIZE} bytes (two branches of {MAX_RUN} "
         f"{MAX_ENTRY_SIZE}-byte strings and a version of 9 bytes)",
         cbor2.dumps([2**64 - 1, max_run, max_run])),
    ]
    assert len(invalid[-1][3]) > MAX_PROOF_SIZE
    assert len(proof_bytes(max_run, max_run)) == MAX_PROOF_SIZE
    return {
        "max_proof_size": MAX_PROOF_SIZE,
        "valid": valid,
        "invalid": [{"reason": r, "step": step, "description": d, "proof": b.hex()}
                    for r, step, d, b in invalid],
    }


# -- bundles.json ------------------------------------------------------------------


def export(book: Logbook, feed: FeedId) -> bytes:
    out = io.BytesIO()
    book.export_bundle(feed, out.write)
    return out.getvalue()


#: A bundle's records: ("entry", entry bytes, payload or None) or ("fork_proof", proof, None).
Record = tuple[str, bytes, bytes | None]


def encode_bundle(records: Sequence[Record]) -> bytes:
    return HEADER + b"".join(
        encode_entry_record(raw, payload) if kind == "entry" else encode_proof_record(raw)
        for kind, raw, payload in records
    )


def records_json(records: Sequence[Record]) -> list[dict[str, Any]]:
    return [
        {"kind": "entry", "entry": raw.hex(), "payload": hx(payload)} if kind == "entry"
        else {"kind": "fork_proof", "proof": raw.hex()}
        for kind, raw, payload in records
    ]


def make_bundles(blog: Log, forged: Forgeries) -> dict[str, Any]:
    feed = blog.feed
    proof: Record = ("fork_proof", forged.proof3.to_bytes(), None)

    def entries(last: int, absent: int | None = None) -> list[Record]:
        return [("entry", blog.entries[s - 1].raw, None if s == absent else blog.payloads[s - 1])
                for s in range(1, last + 1)]

    # What the reference writer makes; the asserts stop the script, rather than
    # write inconsistent vectors, if it changes.
    plain = Logbook(MemoryStore())
    plain.ingest(feed, [blog.item(s) for s in range(1, 9)]).raise_error()
    plain.delete_payload(feed, 4)
    contents = entries(8, absent=4)
    bundle = export(plain, feed)
    assert bundle == encode_bundle(contents)
    forked = Logbook(MemoryStore())
    forked.ingest(feed, [blog.item(s) for s in range(1, 6)]).raise_error()
    forked.add_fork_proof(forged.proof3)
    forked_contents = [proof, *entries(2)]  # a writer writes what is undisputed
    assert export(forked, feed) == encode_bundle(forked_contents)
    assert export(Logbook(MemoryStore()), feed) == HEADER

    def outcome(added: int, forked_at: int | None = None, fork_proofs: int = 0,
                error: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"added": added, "fork_proofs": fork_proofs, "forked_at": forked_at,
                "error": error}

    def bad_entry(rule: str, seq: int | None, feed_id: FeedId | None = feed) -> dict[str, Any]:
        return {"kind": "InvalidEntry", "rule": rule, "seq": seq,
                "feed": None if feed_id is None else str(feed_id)}

    valid = [
        ("entries 1 to 8 of alice's blog (6 and 7 unsigned); the payload of entry 4 is "
         "absent", contents, contents, outcome(8)),
        ("a forked feed as the writer puts it: the fork proof at seq 3, then entries 1 "
         "and 2, the part before the fork", forked_contents, forked_contents,
         outcome(2, forked_at=3, fork_proofs=1)),
        ("the fork proof at seq 3, then entries 1 to 5: the importer keeps 1 and 2 and "
         "refuses 3 on", [proof, *entries(5)], forked_contents,
         outcome(2, forked_at=3, fork_proofs=1, error=bad_entry("forked-feed", 3))),
        ("entries 1 to 5, then the fork proof at seq 3: a reader accepts proofs anywhere, "
         "and the entries came before it (held, but not written again)",
         [*entries(5), proof], forked_contents, outcome(5, forked_at=3, fork_proofs=1)),
        ("the header alone: a bundle with no records", [], [], outcome(0)),
    ]
    # Offsets into the valid bundle, record by record.
    offsets = [len(HEADER)]
    for _, raw, pl in contents:
        offsets.append(offsets[-1] + len(encode_entry_record(raw, pl)))

    def record_at(seq: int) -> int:
        return offsets[seq - 1]

    def entry_start(seq: int) -> int:
        """Offset of entry ``seq``'s bytes: after 0x83 0x00 and the byte string head."""
        raw = contents[seq - 1][1]
        return record_at(seq) + 2 + len(head(2, len(raw)))

    bad_bundle = {"kind": "InvalidBundle"}
    # Alice's blog as a device feed of an identity: the inception and the device-add
    # that place it, first, in a version 2 bundle (spec/07 §1).
    from tidings.core import kel

    root = Identity.from_seed(hashlib.blake2b(b"bundle root", digest_size=32).digest())
    following = Identity.from_seed(hashlib.blake2b(b"bundle next", digest_size=32).digest())
    inception = kel.make_inception(root.secret_key, following.author.key)
    identity_id = inception.hash
    add = kel.make_device_add(
        root.secret_key, kel.fold(identity_id, [inception.raw]), feed.author_key, "laptop",
        kel.sign_device_claim(blog.identity.secret_key, identity_id, "laptop"))
    identity_log = [inception.raw, add.raw]
    identity_records = b"".join(encode_identity_record(identity_id, raw)
                                for raw in identity_log)
    with_identity = HEADER_V2 + identity_records + bundle[len(HEADER):]
    written = io.BytesIO()
    plain.export_bundle(feed, written.write,
                        identity_events=[(identity_id, raw) for raw in identity_log])
    assert written.getvalue() == with_identity
    identity_cases = [{
        "description": "alice's blog (as in the first valid bundle) as the device feed of an "
        "identity: its inception and the device-add of alice's key, then the entries",
        "bundle": with_identity.hex(), "feed": str(feed),
        "records": [{"kind": "identity", "identity": identity_id.hex(), "event": raw.hex()}
                    for raw in identity_log] + records_json(contents),
        "identity": identity_id.hex(), "devices": [feed.author_key.hex()],
        "expected": outcome(8) | {"identity_events": 2},
    }]
    e3_payload = entry_start(3) + len(contents[2][1]) + len(head(2, len(contents[2][2] or b"")))
    e5_sig_end = entry_start(5) + len(contents[4][1])
    reordered = [contents[i] for i in (0, 1, 3, 2, 4, 5, 6, 7)]
    rec1 = HEADER + b"\x83\x00"
    entry1 = blog.entries[0].raw
    damaged = [
        ("payload-byte-flipped", "one bit of entry 3's payload flipped",
         flip(bundle, e3_payload + 5), outcome(2, error=bad_entry("payload-hash-mismatch", 3))),
        ("signature-byte-flipped", "one bit of entry 5's signature flipped",
         flip(bundle, e5_sig_end - 1), outcome(4, error=bad_entry("bad-signature", 5))),
        ("entry-not-decodable", "entry 2's body array head 0x8a changed to 0x89 (9 items)",
         flip(bundle, entry_start(2), 0x8A ^ 0x89), outcome(1, error=bad_entry("malformed", 2))),
        ("records-out-of-order", "the records in the order 1, 2, 4, 3, 5 to 8",
         encode_bundle(reordered),
         outcome(2, error=bad_entry("gap", 3))),
        ("first-entry-not-decodable", "the first record's entry is 70 zero bytes: no feed "
         "is known, so neither feed nor seq can be reported",
         rec1 + cbor2.dumps(bytes(70)) + b"\xf6",
         outcome(0, error=bad_entry("malformed", None, None))),
        ("missing-first-entry", "the records of entries 2 to 8 only",
         HEADER + bundle[record_at(2):], outcome(0, error=bad_entry("gap", 1))),
        ("truncated-in-a-record", "cut 10 bytes into the record of entry 5",
         bundle[:record_at(5) + 10], outcome(4, error=bad_bundle)),
        ("truncated-after-unsigned", "cut 10 bytes into the record of entry 8: 6 and 7 "
         "wait for a signature that never comes; the framing error is reported",
         bundle[:record_at(8) + 10], outcome(5, error=bad_bundle)),
        ("bad-entry-then-truncated", "one bit of entry 3's payload flipped, and the bundle "
         "cut inside entry 5's record: the bad entry comes first, so it is the error",
         flip(bundle, e3_payload + 5)[:record_at(5) + 10],
         outcome(2, error=bad_entry("payload-hash-mismatch", 3))),
        ("ends-unsigned", "the records of entries 1 to 7: the run ends with 6 and 7, which "
         "no signed entry vouches for; they are not stored",
         encode_bundle(contents[:7]), outcome(5, error=bad_entry("unsigned-tail", 6))),
        ("truncated-header", "the first 5 bytes", bundle[:5], outcome(0, error=bad_bundle)),
        ("empty", "no bytes at all", b"", outcome(0, error=bad_bundle)),
        ("bad-magic", "the header's text is \"tidings-bundlf\"",
         cbor2.dumps(["tidings-bundlf", 1]) + bundle[len(HEADER):],
         outcome(0, error=bad_bundle)),
        ("unknown-version", "the header's version is 3",
         cbor2.dumps(["tidings-bundle", 3]) + bundle[len(HEADER):],
         outcome(0, error=bad_bundle)),
        ("identity-record-in-version-1", "an identity record (kind 2) in a version 1 "
         "bundle", HEADER + identity_records, outcome(0, error=bad_bundle)),
        ("identity-not-32-bytes", "a version 2 bundle whose identity record names a "
         "31-byte identity", HEADER_V2 + b"\x83\x02" + cbor2.dumps(identity_id[:31])
         + cbor2.dumps(identity_log[0]), outcome(0, error=bad_bundle)),
        ("oversize-identity-event", "a version 2 bundle whose identity record declares an "
         "8193-byte event (the bytes are not there)", HEADER_V2 + b"\x83\x02"
         + cbor2.dumps(identity_id) + head(2, 8193), outcome(0, error=bad_bundle)),
        ("oversize-entry", f"the first record holds a {MAX_ENTRY_SIZE + 1}-byte entry",
         rec1 + head(2, MAX_ENTRY_SIZE + 1) + bytes(MAX_ENTRY_SIZE + 1) + b"\xf6",
         outcome(0, error=bad_bundle)),
        ("oversize-payload", f"the first record declares a {MAX_PAYLOAD_SIZE + 1}-byte "
         "payload (the bytes are not there: the length alone must be refused)",
         rec1 + cbor2.dumps(entry1) + head(2, MAX_PAYLOAD_SIZE + 1),
         outcome(0, error=bad_bundle)),
        ("non-canonical-length", "entry 1's length written with a 2-byte head",
         rec1 + head(2, len(entry1), 2) + entry1 + cbor2.dumps(blog.payloads[0]),
         outcome(0, error=bad_bundle)),
        ("indefinite-length", "entry 1 as an indefinite-length byte string",
         rec1 + b"\x5f" + cbor2.dumps(entry1) + b"\xff" + cbor2.dumps(blog.payloads[0]),
         outcome(0, error=bad_bundle)),
        ("payload-not-bytes", "entry 1's payload as a text string",
         rec1 + cbor2.dumps(entry1) + cbor2.dumps(blog.payloads[0].decode()),
         outcome(0, error=bad_bundle)),
        ("bad-record-kind", "a 3-item record of kind 1",
         HEADER + b"\x83\x01" + bundle[len(HEADER) + 2:], outcome(0, error=bad_bundle)),
        ("not-a-record", "the first record is a 4-item array",
         HEADER + b"\x84" + bundle[len(HEADER) + 1:], outcome(0, error=bad_bundle)),
        ("invalid-fork-proof", "entries 1 to 8, then a fork proof record whose branches are "
         "in the wrong order", bundle + encode_proof_record(cbor2.dumps(
             [2, [e.raw for e in forged.proof3.second], [e.raw for e in forged.proof3.first]])),
         outcome(8, error={"kind": "InvalidForkProof"})),
    ]
    return {
        "valid": [{"description": d, "bundle": encode_bundle(r).hex(), "feed": str(feed),
                   "records": records_json(r), "reexport": encode_bundle(again).hex(),
                   "expected": e} for d, r, again, e in valid],
        "damaged": [{"name": n, "description": d, "bundle": b.hex(), "expected": e}
                    for n, d, b, e in damaged],
        "identity": identity_cases,
    }


# -- handshake.json (spec 08) ------------------------------------------------------

#: Raw X25519 private keys of the two nodes of handshake.json, and their network key.
NETWORK_KEY = bytes(range(0xC0, 0xE0))
INITIATOR_STATIC = bytes(range(0x40, 0x60))
INITIATOR_EPHEMERAL = bytes(range(0x60, 0x80))
RESPONDER_STATIC = bytes(range(0x80, 0xA0))
RESPONDER_EPHEMERAL = bytes(range(0xA0, 0xC0))
#: The text the default network key is hashed from (spec 08 section 1.1).
DEFAULT_NETWORK_TEXT = b"tidings public network 1"


def frame(message: bytes) -> bytes:
    """A Noise message on the wire: 2-byte big-endian length, then the message."""
    return len(message).to_bytes(2, "big") + message


def framed(body: bytes) -> bytes:
    """A wire message in the plaintext stream: 4-byte big-endian length, then the body."""
    return len(body).to_bytes(4, "big") + body


def channel_pair() -> tuple[Channel, Channel]:
    """The initiator and responder of handshake.json, before the handshake."""
    return (
        Channel(initiator=True, static_private=INITIATOR_STATIC, network_key=NETWORK_KEY,
                ephemeral_private=INITIATOR_EPHEMERAL),
        Channel(initiator=False, static_private=RESPONDER_STATIC, network_key=NETWORK_KEY,
                ephemeral_private=RESPONDER_EPHEMERAL),
    )


def run_handshake(initiator: Channel, responder: Channel) -> list[bytes]:
    """Move the three framed handshake messages; returns them in order."""
    initiator.start()
    sent = [initiator.data_to_send()]
    responder.receive_data(sent[0])
    sent.append(responder.data_to_send())
    initiator.receive_data(sent[1])
    sent.append(initiator.data_to_send())
    responder.receive_data(sent[2])
    assert initiator.established and responder.established
    return sent


MESSAGE_KINDS: dict[type, str] = {
    Hello: "hello", Clock: "clock", Entries: "entries", PartialRequest: "partial-request",
    PartialResponse: "partial-response", ForkProofMessage: "fork-proof", Peers: "peers",
    Ping: "ping", ErrorMessage: "error", SeqRequest: "seq-request", SeqResponse: "seq-response",
}


def make_handshake(blog: Log, notes: Log) -> dict[str, Any]:
    assert PROLOGUE == b"tidings/transport/2"
    psks = (NETWORK_KEY,)

    # Noise alone gives the messages, the handshake hash and the transport keys...
    sides = [NoiseHandshake(initiator=True, static_private=INITIATOR_STATIC, prologue=PROLOGUE,
                            ephemeral_private=INITIATOR_EPHEMERAL, psks=psks),
             NoiseHandshake(initiator=False, static_private=RESPONDER_STATIC, prologue=PROLOGUE,
                            ephemeral_private=RESPONDER_EPHEMERAL, psks=psks)]
    raw = []
    for step in range(3):
        sender, receiver = sides[step % 2], sides[1 - step % 2]
        raw.append(sender.write_message(b""))
        assert receiver.read_message(raw[-1]) == b""
    assert [len(m) for m in raw] == [48, 96, 64]
    handshake_hash = sides[0].handshake_hash
    assert handshake_hash == sides[1].handshake_hash
    to_responder, to_initiator = sides[0].split()
    assert to_responder.k is not None and to_initiator.k is not None

    # ...and the channel, which adds the frames, must send the same bytes.
    initiator, responder = channel_pair()
    assert run_handshake(initiator, responder) == [frame(m) for m in raw]
    assert initiator.remote_static == public_key(RESPONDER_STATIC)
    assert responder.remote_static == public_key(INITIATOR_STATIC)

    frames = []
    nonces = {"initiator": 0, "responder": 0}

    def transport(who: str, messages: list[Message]) -> bytes:
        sender, receiver = (initiator, responder) if who == "initiator" else (responder, initiator)
        for message in messages:
            sender.send(message)
        data = sender.data_to_send()
        receiver.receive_data(data)
        assert receiver.messages() == messages
        bodies = [encode_message(m) for m in messages]
        frames.append({
            "from": who, "nonce": nonces[who],
            "messages": [{"kind": MESSAGE_KINDS[type(m)], "body": b.hex()}
                         for m, b in zip(messages, bodies, strict=True)],
            "plaintext": b"".join(framed(b) for b in bodies).hex(), "frame": data.hex(),
        })
        nonces[who] += 1
        return data

    head = blog.entries[-1].hash[:8]
    hello_frame = transport("initiator", [Hello((2,), False, None)])
    responder_frame = transport("responder", [Hello((2,), True, None)])
    transport("initiator", [Clock(True, ((blog.feed, Note(BLOG_LENGTH, WANT, head)),), True),
                            PartialRequest(0, notes.feed, 2)])

    # Failures: what each side gets, at which stage, and the error it must end with.
    def message_1(psk: bytes, prologue: bytes = PROLOGUE, ephemeral: bytes = INITIATOR_EPHEMERAL
                  ) -> bytes:
        return NoiseHandshake(initiator=True, static_private=INITIATOR_STATIC,
                              prologue=prologue, ephemeral_private=ephemeral,
                              psks=(psk,)).write_message(b"")

    other_network = NoiseHandshake(initiator=False, static_private=RESPONDER_STATIC,
                                   prologue=PROLOGUE, ephemeral_private=RESPONDER_EPHEMERAL,
                                   psks=(DEFAULT_NETWORK_KEY,))
    other_network.read_message(message_1(DEFAULT_NETWORK_KEY))  # its own network's message 1
    other_message_2 = other_network.write_message(b"")
    tag_only = CipherState(to_responder.k).encrypt_with_ad(b"", b"")
    initiator_e = public_key(INITIATOR_EPHEMERAL)
    version_1 = initiator_e + hashlib.blake2b(b"tidings/network-proof/1" + initiator_e,
                                              key=NETWORK_KEY, digest_size=32).digest()
    invalid = [  # (name, stage, input, code, description)
        ("message-1-of-another-network", "message-1", frame(message_1(DEFAULT_NETWORK_KEY)),
         "handshake",
         "message 1 made with the default network key as the PSK, not this network's: its "
         "tag does not verify, and the responder sends nothing"),
        ("message-1-of-another-version", "message-1",
         frame(message_1(NETWORK_KEY, b"tidings/transport/1")), "handshake",
         "message 1 with the prologue tidings/transport/1: the tag does not verify"),
        ("message-1-version-1", "message-1", frame(version_1), "handshake",
         "a version 1 message 1 (the ephemeral key and a 32-byte network proof, 64 bytes): "
         "not 48 bytes"),
        ("message-1-bit-flipped", "message-1", frame(flip(raw[0], 40)), "handshake",
         "message 1 with one bit of its tag flipped"),
        ("message-1-ephemeral-key-flipped", "message-1", frame(flip(raw[0], 3)), "handshake",
         "message 1 with one bit of the ephemeral key flipped: the key is mixed into the "
         "tag's key, so the tag fails"),
        ("message-1-without-tag", "message-1", frame(initiator_e), "handshake",
         "message 1 with the ephemeral key alone (32 bytes)"),
        ("message-1-too-long", "message-1", frame(raw[0] + b"\x00"), "handshake",
         "message 1 of 49 bytes: a payload where none may be"),
        ("empty-frame-first", "message-1", b"\x00\x00", "bad-frame",
         "a frame of length 0 instead of message 1"),
        ("message-2-from-another-network", "message-2",
         frame(other_message_2), "handshake",
         "message 2 from a responder whose PSK is the default network key (answering a "
         "message 1 of its own network)"),
        ("message-2-bit-flipped", "message-2", frame(flip(raw[1], 40)), "handshake",
         "message 2 with one bit of the encrypted static key flipped"),
        ("message-2-truncated", "message-2", frame(raw[1][:95]), "handshake",
         "message 2 without its last byte (95 bytes)"),
        ("message-3-bit-flipped", "message-3", frame(flip(raw[2], 63)), "handshake",
         "message 3 with one bit of its payload tag flipped"),
        ("transport-frame-bit-flipped", "transport", flip(hello_frame, 2), "bad-frame",
         "the initiator's first transport frame with one ciphertext bit flipped"),
        ("transport-frame-replayed", "transport", hello_frame + hello_frame, "bad-frame",
         "the initiator's first transport frame twice: the second is read with nonce 1"),
        ("transport-frame-other-direction", "transport", responder_frame, "bad-frame",
         "the responder's own first frame sent back to it: the other direction's key"),
        ("transport-frame-tag-only", "transport", frame(tag_only), "bad-frame",
         "a 16-byte frame: an encrypted empty plaintext, carrying no data"),
        ("transport-frame-empty", "transport", b"\x00\x00", "bad-frame",
         "a frame of length 0 after the handshake"),
    ]
    assert len(tag_only) == 16
    return {
        "protocol_name": PROTOCOL_NAME.decode(),
        "default_network_key": {"text": DEFAULT_NETWORK_TEXT.decode(),
                                "key": DEFAULT_NETWORK_KEY.hex()},
        "network_key": NETWORK_KEY.hex(),
        "psk": NETWORK_KEY.hex(),
        "prologue": PROLOGUE.hex(),
        "initiator": {"static_private": INITIATOR_STATIC.hex(),
                      "static_public": public_key(INITIATOR_STATIC).hex(),
                      "ephemeral_private": INITIATOR_EPHEMERAL.hex(),
                      "ephemeral_public": initiator_e.hex()},
        "responder": {"static_private": RESPONDER_STATIC.hex(),
                      "static_public": public_key(RESPONDER_STATIC).hex(),
                      "ephemeral_private": RESPONDER_EPHEMERAL.hex(),
                      "ephemeral_public": public_key(RESPONDER_EPHEMERAL).hex()},
        "messages": [{"from": "initiator" if i % 2 == 0 else "responder",
                      "payload": "", "message": m.hex(),
                      "frame": frame(m).hex()} for i, m in enumerate(raw)],
        "handshake_hash": handshake_hash.hex(),
        "transport_keys": {"initiator_to_responder": to_responder.k.hex(),
                           "responder_to_initiator": to_initiator.k.hex()},
        "frames": frames,
        "invalid": [{"name": n, "stage": s, "input": i.hex(), "code": c, "description": d}
                    for n, s, i, c, d in invalid],
        "lan_beacons": make_beacons(),
    }


#: The LAN beacons' nonce and port (spec 08 section 7).
BEACON_NONCE = bytes(range(0xE0, 0xF0))
BEACON_PORT = 7654


def make_beacons() -> dict[str, Any]:
    """Beacons of handshake.json's network key, and datagrams a receiver must ignore."""
    beacon = make_beacon(NETWORK_KEY, BEACON_PORT, BEACON_NONCE)
    body = beacon[:-16]
    assert beacon == body + hashlib.blake2b(body, key=NETWORK_KEY, digest_size=16).digest()
    assert body == b"tidings-lan/1" + BEACON_PORT.to_bytes(2, "big") + BEACON_NONCE
    ignored = [  # (name, datagram, description)
        ("other-network", make_beacon(DEFAULT_NETWORK_KEY, BEACON_PORT, BEACON_NONCE),
         "the same beacon tagged with the default network key"),
        ("port-zero", make_beacon(NETWORK_KEY, 0, BEACON_NONCE), "port 0, correctly tagged"),
        ("tag-flipped", flip(beacon, len(beacon) - 1), "the tag's last bit flipped"),
        ("port-changed", flip(beacon, 14), "the port changed after tagging"),
        ("short", beacon[:-1], "46 bytes"),
        ("long", beacon + b"\x00", "48 bytes"),
        ("version-1-prefix-changed", b"tidings-lan/2" + beacon[13:],
         "another prefix of the same length"),
    ]
    return {
        "port": BEACON_PORT, "nonce": BEACON_NONCE.hex(), "beacon": beacon.hex(),
        "ignored": [{"name": n, "datagram": d.hex(), "description": t} for n, d, t in ignored],
    }


# -- wire.json (spec 09, 10) ---------------------------------------------------------


def pack(value: Any) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


def note_json(feed: FeedId, note: Note) -> dict[str, Any]:
    return {"author": feed.author_key.hex(), "log_id": feed.log_id, "seq": note.seq,
            "flags": note.flags, "head": hx(note.head)}


def wire_items_json(items: Sequence[tuple[bytes, bytes | None]]) -> list[dict[str, Any]]:
    return [{"entry": entry.hex(), "payload": hx(payload)} for entry, payload in items]


def message_json(message: Message) -> dict[str, Any]:
    """A message's fields as wire.json writes them (README: wire.json)."""
    if isinstance(message, Hello):
        return {"versions": list(message.versions), "relay": int(message.relay),
                "clock_digest": hx(message.clock_digest)}
    if isinstance(message, Clock):
        return {"reset": int(message.reset), "final": int(message.final),
                "notes": [note_json(f, n) for f, n in message.notes]}
    if isinstance(message, Entries):
        return {"author": message.feed.author_key.hex(), "log_id": message.feed.log_id,
                "items": wire_items_json(message.items)}
    if isinstance(message, PartialRequest):
        return {"request_id": message.request_id, "author": message.feed.author_key.hex(),
                "log_id": message.feed.log_id, "count": message.count}
    if isinstance(message, PartialResponse):
        return {"request_id": message.request_id, "items": wire_items_json(message.items)}
    if isinstance(message, ForkProofMessage):
        return {"proof": message.proof.hex()}
    if isinstance(message, Peers):
        return {"addresses": [{"host": h, "port": p} for h, p in message.addresses]}
    if isinstance(message, ErrorMessage):
        return {"code": message.code, "detail": message.detail}
    if isinstance(message, SeqRequest):
        return {"request_id": message.request_id, "author": message.feed.author_key.hex(),
                "log_id": message.feed.log_id, "seqs": list(message.seqs),
                "payloads": int(message.payloads)}
    if isinstance(message, SeqResponse):
        return {"request_id": message.request_id, "items": wire_items_json(message.items)}
    return {}


def runs(body: bytes, repeated: Sequence[tuple[bytes, int]]) -> list[list[Any]]:
    """``body`` as ``[hex, count]`` runs, so that megabyte bodies stay small in JSON."""
    parts: list[list[Any]] = []
    at = 0
    for unit, count in repeated:
        start = body.index(unit * count, at)
        if start > at:
            parts.append([body[at:start].hex(), 1])
        parts.append([unit.hex(), count])
        at = start + len(unit) * count
    if at < len(body):
        parts.append([body[at:].hex(), 1])
    assert b"".join(bytes.fromhex(h) * n for h, n in parts) == body
    return parts


def body_json(body: bytes, repeated: Sequence[tuple[bytes, int]] = ()) -> dict[str, Any]:
    """``{"body": hex}``, or ``{"body_runs": ...}`` for bodies given as repeated runs."""
    return {"body_runs": runs(body, repeated)} if repeated else {"body": body.hex()}


def digest_input(notes: Sequence[tuple[FeedId, Note]]) -> bytes:
    """The bytes the clock digest hashes, written out from spec 10 section 3."""
    ordered = sorted(notes, key=lambda fn: (fn[0].author_key, fn[0].log_id.encode()))
    return b"".join(
        f.author_key + bytes([len(f.log_id)]) + f.log_id.encode() + n.seq.to_bytes(8, "big")
        + bytes([n.flags]) + (n.head or bytes(8))
        for f, n in ordered
    )


def make_wire(blog: Log, notes: Log, bob: Log, forged: Forgeries) -> dict[str, Any]:
    alice_key = ALICE.author.key
    blog_feed, notes_feed, bob_feed = blog.feed, notes.feed, bob.feed
    long_feed = FeedId(bob.identity.author.key, "a-very-long-log-id-" + "x" * 45)
    assert len(long_feed.log_id) == 64
    e1 = blog.entries[0].raw
    both = WANT | EAGER

    def bh(seq: int) -> bytes:
        """The head a note about alice's blog at ``seq`` names."""
        return blog.entries[seq - 1].hash[:8]

    nh4 = notes.entries[3].hash[:8]
    other = bytes.fromhex("0011223344556677")  # the head of a history these logs lack

    # -- valid messages, canonical -------------------------------------------------
    head, count = BLOG_LENGTH, 3
    oldest = head - count + 1
    answer = tuple((blog.entries[s - 1].raw, blog.payloads[s - 1] if s >= oldest else None)
                   for s in partial_seqs(head, count))
    remembered = {blog_feed: Note(BLOG_LENGTH, both, bh(30)), notes_feed: Note(4, WANT, nh4)}
    valid: list[tuple[str, str, Message]] = [
        ("hello", "first meeting: version 2, not a relay, no remembered clock",
         Hello((2,), False, None)),
        ("hello-relay-with-digest", "a relay that remembers the peer's clock of the last "
         "session (the two notes of clock_digests[\"two-feeds\"])",
         Hello((2,), True, clock_digest(remembered))),
        ("hello-several-versions", "versions 2, 3 and 300 (a 2-byte integer)",
         Hello((2, 3, 300), False, None)),
        ("clock-empty", "the opening clock of a node that holds and wants nothing",
         Clock(True, (), True)),
        ("clock-notes", "one message of a longer clock: neither the first (reset 0) nor the "
         "last (final 0); flags 0, 1 and 3, seqs 0 to 2^32; a note of seq 0 names no head",
         Clock(False, ((blog_feed, Note(BLOG_LENGTH, both, bh(30))),
                       (notes_feed, Note(4, 0, nh4)), (bob_feed, Note(0, WANT)),
                       (long_feed, Note(2**32, WANT, other))), False)),
        ("clock-update", "a later note: the feed's head is now 31",
         Clock(False, ((blog_feed, Note(31, both, other)),), True)),
        ("entries", "entries 1 to 3 of alice's blog with their payloads (entry 2's is empty)",
         Entries(blog_feed, tuple(blog.item(s) for s in (1, 2, 3)))),
        ("entries-without-payloads", "entries 6 to 8 without payloads: 6 and 7 unsigned, "
         "8, which vouches for them, signed: a message ends at a signed entry",
         Entries(blog_feed, tuple((blog.entries[s - 1].raw, None) for s in (6, 7, 8)))),
        ("seq-request", "alice's blog at seqs 4, 16 and 28, entries only (a search for "
         "where two histories split)", SeqRequest(3, blog_feed, (4, 16, 28), False)),
        ("seq-request-payloads", "alice's blog at seqs 22 to 27 with payloads (what a node "
         "lacks)", SeqRequest(4, blog_feed, tuple(range(22, 28)), True)),
        ("seq-response", "the answer to seq-request from a node holding the blog",
         SeqResponse(3, tuple((blog.entries[s - 1].raw, None) for s in (4, 16, 28)))),
        ("seq-response-empty", "the answer of a node that holds none of the seqs asked for",
         SeqResponse(9, ())),
        ("partial-request", "the latest 3 entries of alice's blog",
         PartialRequest(0, blog_feed, count)),
        ("partial-response", "the answer to partial-request from a node holding the whole "
         "blog: partial_seqs(30, 3), payloads for 28 to 30 only",
         PartialResponse(0, answer)),
        ("partial-response-empty", "the answer of a node that holds none of the feed",
         PartialResponse(7, ())),
        ("fork-proof", "the fork proof of forks.json valid[0]",
         ForkProofMessage(forged.proof3.to_bytes())),
        ("peers", "an IPv4, an IPv6 and a DNS address",
         Peers((("192.0.2.7", 7654), ("2001:db8::1", 7654), ("node.example.org", 65535)))),
        ("peers-empty", "no addresses", Peers(())),
        ("ping", "no fields", Ping()),
        ("error", "closing because of a malformed message",
         ErrorMessage("malformed", "clock has 2 fields, it must have 3")),
        ("error-empty-detail", "an error without detail", ErrorMessage("timeout", "")),
    ]
    assert [e for e, _ in answer] == [blog.entries[s - 1].raw
                                      for s in (1, 4, 13, 26, 27, 28, 29, 30)]

    # -- valid messages exactly at a bound -------------------------------------------
    big_payload = bytes(MAX_PAYLOAD_SIZE)
    note = (blog_feed, Note(BLOG_LENGTH, both, bh(30)))
    note_bytes = pack([alice_key, "blog", BLOG_LENGTH, both, bh(30)])
    item = (e1, None)
    item_bytes = pack([e1, None])
    # Two payloads whose message is exactly MAX_MESSAGE_SIZE bytes.
    second = MAX_PAYLOAD_SIZE - 1024
    while True:
        exact = Entries(blog_feed, ((e1, big_payload), (blog.entries[1].raw, bytes(second))))
        size = len(pack([exact.TYPE, *exact.fields()]))
        if size == MAX_MESSAGE_SIZE:
            break
        second += MAX_MESSAGE_SIZE - size
    zero_run = bytes(1024)
    bounds: list[tuple[str, str, Message, list[tuple[bytes, int]]]] = [
        ("hello-16-versions", "versions 1 to 16", Hello(tuple(range(1, 17)), False, None), []),
        ("hello-version-65535", "the largest version number",
         Hello((2, 65535), False, None), []),
        ("clock-4096-notes", "4096 notes (the same one)",
         Clock(True, (note,) * MAX_NOTES, True), [(note_bytes, MAX_NOTES)]),
        ("clock-largest-seq-and-flags", "seq 2^63 - 1 (the largest entry seq) and flags 3",
         Clock(False, ((blog_feed, Note(2**63 - 1, 3, other)),), True), []),
        ("clock-64-character-log-id", "a 64-character log id",
         Clock(False, ((long_feed, Note(1, WANT, other)),), True), []),
        ("entries-1024-items", "entry 1 of alice's blog 1024 times, without payloads "
         "(decoding does not verify entries)",
         Entries(blog_feed, (item,) * MAX_ITEMS), [(item_bytes, MAX_ITEMS)]),
        ("entries-512-byte-entry", "a 512-byte entry of zero bytes",
         Entries(blog_feed, ((bytes(MAX_ENTRY_SIZE), None),)), []),
        ("entries-1-mib-payload", "entry 1 with a 2^20-byte payload of zeros",
         Entries(blog_feed, ((e1, big_payload),)), [(zero_run, MAX_PAYLOAD_SIZE // 1024)]),
        ("entries-2-mib-message", f"two payloads that make the body exactly "
         f"{MAX_MESSAGE_SIZE} bytes", exact,
         [(zero_run, MAX_PAYLOAD_SIZE // 1024), (zero_run, second // 1024)]),
        ("partial-request-largest", "request id 2^32 - 1, count 1000",
         PartialRequest(2**32 - 1, blog_feed, MAX_PARTIAL), []),
        ("partial-response-1130-items", "entry 1 1130 times",
         PartialResponse(1, (item,) * MAX_PARTIAL_ITEMS), [(item_bytes, MAX_PARTIAL_ITEMS)]),
        ("fork-proof-largest", f"{MAX_PROOF_SIZE} zero bytes (decoding does not verify "
         "the proof)", ForkProofMessage(bytes(MAX_PROOF_SIZE)), [(zero_run, 64)]),
        ("seq-request-64-seqs", "seqs 1 to 64, with payloads",
         SeqRequest(2**32 - 1, blog_feed, tuple(range(1, MAX_SEQ_REQUEST + 1)), True), []),
        ("seq-request-largest-seq", "seq 2^63 - 1",
         SeqRequest(0, blog_feed, (2**63 - 1,), False), []),
        ("seq-response-64-items", "entry 1 64 times",
         SeqResponse(1, (item,) * MAX_SEQ_REQUEST), [(item_bytes, MAX_SEQ_REQUEST)]),
        ("peers-32-addresses", "32 addresses",
         Peers(tuple((f"192.0.2.{i}", 1 + i) for i in range(MAX_ADDRESSES))), []),
        ("peers-253-character-host", "a 253-character DNS name and port 65535",
         Peers(((".".join(["h" * 63] * 3 + ["h" * 61]), 65535),)), []),
        ("peers-ipv6-host", "an IPv6 literal", Peers((("2001:db8::7", 7654),)), []),
        ("error-longest", "a 32-character code and a 1000-character detail of 3-byte "
         "characters", ErrorMessage("c" * MAX_ERROR_CODE_LEN, "水" * MAX_ERROR_DETAIL_LEN), []),
    ]

    # -- accepted, but not the shortest encoding ---------------------------------------
    canonical_note = pack([1, 0, [[alice_key, "blog", 30, 3, bh(30)]], 1])
    noncanonical = [  # (name, description, body, canonical body)
        ("type-as-uint8", "ping with its type in a uint8 (cc 07)", b"\x91\xcc\x07",
         pack([7])),
        ("type-as-int8", "ping with its type in an int8 (d0 07)", b"\x91\xd0\x07", pack([7])),
        ("array16-head", "ping in an array 16 (dc 00 01)", b"\xdc\x00\x01\x07", pack([7])),
        ("array32-head", "ping in an array 32 (dd 00 00 00 01)",
         b"\xdd\x00\x00\x00\x01\x07", pack([7])),
        ("seq-as-uint64", "a note's seq 30 as a uint64 (cf)",
         b"\x94\x01\x00\x91\x95\xc4\x20" + alice_key + b"\xa4blog\xcf"
         + (30).to_bytes(8, "big") + b"\x03\xc4\x08" + bh(30) + b"\x01", canonical_note),
        ("str8-log-id", "a note's log id \"blog\" as a str 8 (d9 04)",
         b"\x94\x01\x00\x91\x95\xc4\x20" + alice_key + b"\xd9\x04blog\x1e\x03\xc4\x08"
         + bh(30) + b"\x01", canonical_note),
        ("bin16-author", "a note's author key as a bin 16 (c5 00 20)",
         b"\x94\x01\x00\x91\x95\xc5\x00\x20" + alice_key + b"\xa4blog\x1e\x03\xc4\x08"
         + bh(30) + b"\x01", canonical_note),
        ("bin16-head", "a note's head as a bin 16 (c5 00 08)",
         b"\x94\x01\x00\x91\x95\xc4\x20" + alice_key + b"\xa4blog\x1e\x03\xc5\x00\x08"
         + bh(30) + b"\x01", canonical_note),
        ("str16-detail", "an error's detail as a str 16 (da 00 02)",
         b"\x93\x08\xa7timeout\xda\x00\x02hi", pack([8, "timeout", "hi"])),
    ]

    # -- invalid bodies: the expected codes are spec 09 section 4's ---------------------
    note_ok = [alice_key, "blog", 30, 3, bh(30)]
    over_payload = pack([2, alice_key, "blog", [[e1, bytes(MAX_PAYLOAD_SIZE + 1)]]])
    two_mib = pack([2, alice_key, "blog", [[e1, big_payload], [e1, big_payload]]])
    assert len(two_mib) > MAX_MESSAGE_SIZE
    invalid: list[tuple[str, str, bytes, list[tuple[bytes, int]], str]] = [
        # the body as a whole
        ("empty-body", "no bytes", b"", [], "malformed"),
        ("not-msgpack", "the byte c1, which msgpack never uses", b"\xc1", [], "malformed"),
        ("truncated", "a hello without its last byte", pack([0, [2], 0, None])[:-1], [],
         "malformed"),
        ("trailing-bytes", "a ping followed by 00", pack([7]) + b"\x00", [], "malformed"),
        ("two-messages", "two pings in one body", pack([7]) + pack([7]), [], "malformed"),
        ("not-an-array", "the integer 7", pack(7), [], "malformed"),
        ("a-map", "a map {0: [1]} instead of an array", pack({0: [1]}), [], "malformed"),
        ("empty-array", "an array with no type", pack([]), [], "malformed"),
        ("unknown-type", "type 20, unknown in versions 2 to 4", pack([20]), [], "malformed"),
        ("unknown-type-with-fields", "type 255 with two fields", pack([255, 1, 2]), [],
         "malformed"),
        ("negative-type", "type -1", pack([-1]), [], "malformed"),
        ("type-as-bool", "type true", pack([True]), [], "malformed"),
        ("type-as-string", "type \"ping\"", pack(["ping"]), [], "malformed"),
        ("type-as-float", "type 7.0 (a float 64)", pack([7.0]), [], "malformed"),
        ("over-2-mib", f"two 1 MiB payloads: {len(two_mib)} bytes, over the bound of "
         f"{MAX_MESSAGE_SIZE} (checked before decoding)", two_mib,
         [(zero_run, MAX_PAYLOAD_SIZE // 1024), (zero_run, MAX_PAYLOAD_SIZE // 1024)],
         "oversize"),
        # hello
        ("hello-two-fields", "hello without its clock digest", pack([0, [1], 0]), [],
         "malformed"),
        ("hello-four-fields", "hello with a fourth field (version 1 has no extension slot)",
         pack([0, [1], 0, None, 0]), [], "malformed"),
        ("hello-relay-bool", "relay false instead of 0", pack([0, [1], False, None]), [],
         "malformed"),
        ("hello-relay-2", "relay 2", pack([0, [1], 2, None]), [], "malformed"),
        ("hello-no-versions", "an empty versions list", pack([0, [], 0, None]), [],
         "malformed"),
        ("hello-version-0", "version 0", pack([0, [0], 0, None]), [], "malformed"),
        ("hello-version-65536", "version 65536", pack([0, [1, 65536], 0, None]), [],
         "malformed"),
        ("hello-17-versions", "versions 1 to 17", pack([0, list(range(1, 18)), 0, None]), [],
         "malformed"),
        ("hello-versions-not-a-list", "versions 1 instead of [1]", pack([0, 1, 0, None]), [],
         "malformed"),
        ("hello-digest-31-bytes", "a 31-byte clock digest", pack([0, [1], 0, bytes(31)]), [],
         "malformed"),
        ("hello-digest-as-string", "the clock digest as a hex text string",
         pack([0, [1], 0, bytes(32).hex()]), [], "malformed"),
        # clock
        ("clock-two-fields", "clock without final", pack([1, 1, []]), [], "malformed"),
        ("clock-reset-bool", "reset true instead of 1", pack([1, True, [], 1]), [],
         "malformed"),
        ("clock-final-2", "final 2", pack([1, 0, [], 2]), [], "malformed"),
        ("clock-notes-as-map", "the notes as a map from author key to seq",
         pack([1, 0, {alice_key: 30}, 1]), [], "malformed"),
        ("clock-note-four-items", "a note without its head (a version 1 note)",
         pack([1, 0, [note_ok[:4]], 1]), [], "malformed"),
        ("clock-note-three-items", "a note without flags and head",
         pack([1, 0, [note_ok[:3]], 1]), [], "malformed"),
        ("clock-note-flags-2", "flags 2: eager without want",
         pack([1, 0, [[alice_key, "blog", 30, 2, bh(30)]], 1]), [], "malformed"),
        ("clock-note-head-7-bytes", "a 7-byte head",
         pack([1, 0, [[alice_key, "blog", 30, 3, bh(30)[:7]]], 1]), [], "malformed"),
        ("clock-note-head-32-bytes", "the whole entry hash as the head",
         pack([1, 0, [[alice_key, "blog", 30, 3, blog.entries[29].hash]], 1]), [],
         "malformed"),
        ("clock-note-head-nil", "seq 30 with a nil head",
         pack([1, 0, [[alice_key, "blog", 30, 3, None]], 1]), [], "malformed"),
        ("clock-note-head-for-seq-0", "seq 0 with a head",
         pack([1, 0, [[alice_key, "blog", 0, 1, bh(30)]], 1]), [], "malformed"),
        ("clock-note-flags-4", "flags 4", pack([1, 0, [[alice_key, "blog", 30, 4, bh(30)]], 1]), [],
         "malformed"),
        ("clock-note-flags-bool", "flags true",
         pack([1, 0, [[alice_key, "blog", 30, True, bh(30)]], 1]), [], "malformed"),
        ("clock-note-seq-negative", "seq -1",
         pack([1, 0, [[alice_key, "blog", -1, 3, bh(30)]], 1]), [], "malformed"),
        ("clock-note-seq-float", "seq 30.0",
         pack([1, 0, [[alice_key, "blog", 30.0, 3, bh(30)]], 1]), [], "malformed"),
        ("clock-note-seq-2-63", "seq 2^63, past the largest entry seq",
         pack([1, 0, [[alice_key, "blog", 2**63, 3, bh(30)]], 1]), [], "malformed"),
        ("clock-note-seq-nil", "seq nil",
         pack([1, 0, [[alice_key, "blog", None, 3, bh(30)]], 1]), [], "malformed"),
        ("clock-note-author-31-bytes", "a 31-byte author key",
         pack([1, 0, [[alice_key[:31], "blog", 30, 3]], 1]), [], "malformed"),
        ("clock-note-author-33-bytes", "a 33-byte author key",
         pack([1, 0, [[alice_key + b"\x00", "blog", 30, 3, bh(30)]], 1]), [], "malformed"),
        ("clock-note-author-as-string", "the author key as a hex text string",
         pack([1, 0, [[alice_key.hex(), "blog", 30, 3, bh(30)]], 1]), [], "malformed"),
        ("clock-note-log-id-empty", "an empty log id",
         pack([1, 0, [[alice_key, "", 30, 3, bh(30)]], 1]), [], "malformed"),
        ("clock-note-log-id-65-characters", "a 65-character log id",
         pack([1, 0, [[alice_key, "x" * 65, 30, 3, bh(30)]], 1]), [], "malformed"),
        ("clock-note-log-id-uppercase", "log id \"Blog\"",
         pack([1, 0, [[alice_key, "Blog", 30, 3, bh(30)]], 1]), [], "malformed"),
        ("clock-note-log-id-as-bytes", "the log id as a bin",
         pack([1, 0, [[alice_key, b"blog", 30, 3, bh(30)]], 1]), [], "malformed"),
        ("clock-4097-notes", "4097 notes",
         pack([1, 1, [note_ok] * (MAX_NOTES + 1), 1]), [(note_bytes, MAX_NOTES + 1)],
         "malformed"),
        # entries
        ("entries-no-items", "an entries message with no entry",
         pack([2, alice_key, "blog", []]), [], "malformed"),
        ("entries-item-one-element", "an item without its payload slot",
         pack([2, alice_key, "blog", [[e1]]]), [], "malformed"),
        ("entries-item-three-elements", "an item with a third element",
         pack([2, alice_key, "blog", [[e1, None, None]]]), [], "malformed"),
        ("entries-entry-empty", "an empty entry",
         pack([2, alice_key, "blog", [[b"", None]]]), [], "malformed"),
        ("entries-entry-513-bytes", "a 513-byte entry",
         pack([2, alice_key, "blog", [[bytes(MAX_ENTRY_SIZE + 1), None]]]), [], "malformed"),
        ("entries-entry-nil", "the entry nil", pack([2, alice_key, "blog", [[None, None]]]),
         [], "malformed"),
        ("entries-payload-as-string", "the payload as a text string",
         pack([2, alice_key, "blog", [[e1, "hello, tidings"]]]), [], "malformed"),
        ("entries-payload-ext", "the payload as an ext value (fixext 1)",
         pack([2, alice_key, "blog", [[e1, msgpack.ExtType(1, b"x")]]]), [], "malformed"),
        ("entries-payload-over-1-mib", f"a {MAX_PAYLOAD_SIZE + 1}-byte payload",
         over_payload, [(zero_run, MAX_PAYLOAD_SIZE // 1024)], "malformed"),
        ("entries-1025-items", "1025 items",
         pack([2, alice_key, "blog", [[e1, None]] * (MAX_ITEMS + 1)]),
         [(item_bytes, MAX_ITEMS + 1)], "malformed"),
        ("entries-author-32-bytes-of-text", "the author key as 32 characters of text",
         pack([2, "a" * 32, "blog", [[e1, None]]]), [], "malformed"),
        # partial request and response
        ("partial-request-count-0", "count 0", pack([3, 0, alice_key, "blog", 0]), [],
         "malformed"),
        ("partial-request-count-1001", "count 1001", pack([3, 0, alice_key, "blog", 1001]),
         [], "malformed"),
        ("partial-request-id-2^32", "request id 2^32",
         pack([3, 2**32, alice_key, "blog", 3]), [], "malformed"),
        ("partial-request-id-bool", "request id true", pack([3, True, alice_key, "blog", 3]),
         [], "malformed"),
        ("partial-request-three-fields", "no count", pack([3, 0, alice_key, "blog"]), [],
         "malformed"),
        ("partial-response-items-nil", "items nil instead of []", pack([4, 0, None]), [],
         "malformed"),
        ("partial-response-1131-items", "1131 items",
         pack([4, 0, [[e1, None]] * (MAX_PARTIAL_ITEMS + 1)]),
         [(item_bytes, MAX_PARTIAL_ITEMS + 1)], "malformed"),
        # fork proof, peers, ping, error
        ("fork-proof-empty", "an empty proof", pack([5, b""]), [], "malformed"),
        ("fork-proof-over-the-bound", f"a {MAX_PROOF_SIZE + 1}-byte proof",
         pack([5, bytes(MAX_PROOF_SIZE + 1)]), [(zero_run, 64)], "malformed"),
        ("fork-proof-as-array", "the proof's CBOR items as a msgpack array",
         pack([5, [1, e1, e1]]), [], "malformed"),
        ("peers-33-addresses", "33 addresses",
         pack([6, [[f"192.0.2.{i}", 7654] for i in range(MAX_ADDRESSES + 1)]]), [],
         "malformed"),
        ("peers-host-empty", "an empty host", pack([6, [["", 7654]]]), [], "malformed"),
        ("peers-host-254-characters", "a 254-character host",
         pack([6, [["h" * (MAX_HOST_LEN + 1), 7654]]]), [], "malformed"),
        ("peers-host-label-64", "a DNS label of 64 characters",
         pack([6, [["h" * 64 + ".example", 7654]]]), [], "malformed"),
        ("peers-host-empty-label", "two dots in a row", pack([6, [["a..b", 7654]]]), [],
         "malformed"),
        ("peers-host-underscore", "an underscore", pack([6, [["x_y.example", 7654]]]), [],
         "malformed"),
        ("peers-ipv6-zone-id", "an IPv6 address with a zone id, fe80::1%eth0 (it names an "
         "interface of the sender's machine)", pack([6, [["fe80::1%eth0", 7654]]]), [],
         "malformed"),
        ("peers-ipv6-zone-id-with-space", "fe80::1%x y",
         pack([6, [["fe80::1%x y", 7654]]]), [], "malformed"),
        ("peers-port-0", "port 0", pack([6, [["192.0.2.7", 0]]]), [], "malformed"),
        ("peers-port-65536", "port 65536", pack([6, [["192.0.2.7", 65536]]]), [],
         "malformed"),
        ("peers-address-as-text", "\"192.0.2.7:7654\" instead of [host, port]",
         pack([6, ["192.0.2.7:7654"]]), [], "malformed"),
        ("ping-with-a-field", "ping with a field", pack([7, 0]), [], "malformed"),
        ("error-code-empty", "an empty code", pack([8, "", "detail"]), [], "malformed"),
        ("error-code-33-characters", "a 33-character code", pack([8, "c" * 33, ""]), [],
         "malformed"),
        ("error-detail-1001-characters", "a 1001-character detail",
         pack([8, "timeout", "d" * (MAX_ERROR_DETAIL_LEN + 1)]), [], "malformed"),
        ("error-code-as-bytes", "the code as a bin", pack([8, b"timeout", ""]), [],
         "malformed"),
        ("error-detail-nil", "detail nil", pack([8, "timeout", None]), [], "malformed"),
        ("error-detail-bad-utf-8", "a detail whose bytes ff fe are not UTF-8",
         b"\x93\x08\xa7timeout\xa2\xff\xfe", [], "malformed"),
        # seq request and response
        ("seq-request-no-seqs", "an empty seqs list", pack([9, 0, alice_key, "blog", [], 0]),
         [], "malformed"),
        ("seq-request-65-seqs", "seqs 1 to 65",
         pack([9, 0, alice_key, "blog", list(range(1, MAX_SEQ_REQUEST + 2)), 0]), [],
         "malformed"),
        ("seq-request-seq-0", "seq 0", pack([9, 0, alice_key, "blog", [0, 1], 0]), [],
         "malformed"),
        ("seq-request-descending", "seqs 5, 4", pack([9, 0, alice_key, "blog", [5, 4], 0]),
         [], "malformed"),
        ("seq-request-repeated", "seqs 4, 4", pack([9, 0, alice_key, "blog", [4, 4], 0]),
         [], "malformed"),
        ("seq-request-payloads-2", "payloads 2", pack([9, 0, alice_key, "blog", [4], 2]),
         [], "malformed"),
        ("seq-request-four-fields", "no payloads flag",
         pack([9, 0, alice_key, "blog", [4]]), [], "malformed"),
        ("seq-response-65-items", "65 items",
         pack([10, 0, [[e1, None]] * (MAX_SEQ_REQUEST + 1)]), [], "malformed"),
    ]

    # -- plaintext streams (spec 09 section 1) -----------------------------------------
    ping = encode_message(Ping())
    hello = encode_message(Hello((2,), False, None))
    streams = [  # (name, description, stream, messages decoded first, code)
        ("two-messages", "a hello and a ping", framed(hello) + framed(ping), [hello, ping],
         None),
        ("incomplete-tail", "a ping, then the first 3 bytes of a length: nothing yet",
         framed(ping) + b"\x00\x00\x00", [ping], None),
        ("incomplete-body", "a ping, then a length of 10 and 2 bytes of body",
         framed(ping) + b"\x00\x00\x00\x0a\x93\x00", [ping], None),
        ("length-over-bound", f"a length of {MAX_MESSAGE_SIZE + 1}, refused before any "
         "body byte arrives", (MAX_MESSAGE_SIZE + 1).to_bytes(4, "big"), [], "oversize"),
        ("length-ffffffff", "a length of 2^32 - 1", b"\xff\xff\xff\xff", [], "oversize"),
        ("length-zero", "a length of 0", b"\x00\x00\x00\x00", [], "malformed"),
        ("ping-then-bad-body", "a ping, then a 1-byte body c1",
         framed(ping) + b"\x00\x00\x00\x01\xc1", [ping], "malformed"),
    ]

    # -- sessions: what a node must do with the first messages (spec 10 section 4) ------
    sessions = [  # (name, description, messages, code, version)
        ("hello-then-ping", "the usual start", [hello, ping], None, 2),
        ("hello-with-future-versions", "versions 2, 3 and 9: version 3 is the highest common",
         [encode_message(Hello((2, 3, 9), False, None))], None, 3),
        ("hello-version-2-only", "a node that speaks only version 2: the session speaks 2",
         [encode_message(Hello((2,), False, None))], None, 2),
        ("ping-before-hello", "a ping first", [ping], "unexpected", None),
        ("clock-before-hello", "a clock first", [encode_message(Clock(True, (), True))],
         "unexpected", None),
        ("no-common-version", "versions 1 and 5 only",
         [encode_message(Hello((1, 5), False, None))], "version", None),
        ("second-hello", "two hellos", [hello, hello], "unexpected", None),
        ("partial-response-not-requested", "an answer to a request the node never made",
         [hello, encode_message(PartialResponse(7, ()))], "unexpected", None),
        ("seq-response-not-requested", "an answer to a seq request the node never made",
         [hello, encode_message(SeqResponse(7, ()))], "unexpected", None),
        ("error-before-hello", "the peer closes at once",
         [encode_message(ErrorMessage("duplicate", "already connected to this node"))],
         "remote-error", None),
        ("error-after-hello", "the peer closes after the hello",
         [hello, encode_message(ErrorMessage("flood", "too many notes"))], "remote-error",
         None),
    ]

    # -- the opening clock: reset or delta (spec 10 section 4) -------------------------
    current = {blog_feed: Note(BLOG_LENGTH, WANT, bh(30)), notes_feed: Note(4, WANT, nh4),
               bob_feed: Note(0, WANT)}
    dropped = FeedId(bob.identity.author.key, "photos")
    older = {**current, blog_feed: Note(25, WANT, bh(25))}
    seen = {blog_feed: Note(BLOG_LENGTH, both, bh(30))}
    opening = [  # (name, description, sent, received, peer's digest, reset, notes)
        ("first-meeting", "nothing remembered: a reset with every note",
         {}, {}, None, True, current),
        ("reconnect-delta", "the peer's digest matches what this node remembers sending: "
         "only the blog's note changed (25 then, 30 now)",
         older, seen, clock_digest(older), False, {blog_feed: current[blog_feed]}),
        ("reconnect-unchanged", "the digest matches and nothing changed: one empty clock "
         "message", current, seen, clock_digest(current), False, {}),
        ("reconnect-stopped-wanting", "the digest matches; bob's photos, noted last time, "
         "is neither held nor wanted now: note (0, 0)",
         {**current, dropped: Note(7, WANT, other)}, seen,
         clock_digest({**current, dropped: Note(7, WANT, other)}), False,
         {dropped: Note(0, 0)}),
        ("reconnect-peer-forgot", "the peer sends no digest: a reset", older, seen, None,
         True, current),
        ("reconnect-digest-differs", "the peer's digest is of other notes: a reset",
         older, seen, clock_digest(current), True, current),
    ]
    local = opening_local()
    local_json = {
        "heads": [{"author": f.author_key.hex(), "log_id": f.log_id, "seq": s,
                   "head": local.head_hashes[f].hex()}
                  for f, s in sorted(local.heads.items(), key=lambda fs: str(fs[0]))],
        "wanted": [{"author": f.author_key.hex(), "log_id": f.log_id}
                   for f in sorted(local.wanted, key=str)],
    }
    opening_json = []
    for name, description, sent, received, digest, reset, expected in opening:
        heard = run_opening(sent, received, digest)
        assert heard[0] == Hello(VERSIONS, False, clock_digest(received) if received else None)
        assert len(heard) == 2 and isinstance(heard[1], Clock), heard
        assert (heard[1].reset, heard[1].final) == (reset, True), name
        assert dict(heard[1].notes) == expected, name
        opening_json.append({
            "name": name, "description": description, "local": local_json,
            "sent": notes_list(sent), "received": notes_list(received),
            "peer_hello": encode_message(Hello((2,), False, digest)).hex(),
            "hello": encode_message(heard[0]).hex(),
            "clock": {"reset": int(reset), "final": 1, "notes": notes_list(expected)},
        })

    # -- clock digests (spec 10 section 3) ---------------------------------------------
    digests = [
        ("empty", "no notes: BLAKE2b-256 of nothing", []),
        ("two-feeds", "the notes of hello-relay-with-digest", list(remembered.items())),
        ("sorting", "given out of order: bob's key sorts after alice's, and log id \"b\" "
         "before \"blog\" before \"blog-2\" (bytes, not length first); \"a-long-id\" "
         "before \"b\" although its length byte is larger",
         [(bob_feed, Note(1, 0, other)), (FeedId(alice_key, "blog-2"), Note(2, WANT, other)),
          (FeedId(alice_key, "b"), Note(2**63 - 1, both, other)),
          (blog_feed, Note(30, both, bh(30))), (FeedId(alice_key, "a-long-id"), Note(0, WANT))]),
    ]
    digests_json = []
    for name, description, given in digests:
        data = digest_input(given)
        digest = hashlib.blake2b(data, digest_size=32).digest()
        assert digest == clock_digest(dict(given))
        digests_json.append({"name": name, "description": description,
                             "notes": [note_json(f, n) for f, n in given],
                             "input": data.hex(), "digest": digest.hex()})

    def case(name: str, description: str, message: Message) -> dict[str, Any]:
        body = encode_message(message)
        return {"name": name, "description": description, "type": message.TYPE,
                "kind": MESSAGE_KINDS[type(message)], "fields": message_json(message),
                "body": body.hex(), "stream": framed(body).hex()}

    return {
        "messages": [case(*c) for c in valid],
        "bounds": [{"name": n, "description": d, "type": m.TYPE,
                    "kind": MESSAGE_KINDS[type(m)], **body_json(encode_message(m), r)}
                   for n, d, m, r in bounds],
        "noncanonical": [{"name": n, "description": d, "body": b.hex(), "canonical": c.hex()}
                         for n, d, b, c in noncanonical],
        "invalid": [{"name": n, "description": d, "code": c, **body_json(b, r)}
                    for n, d, b, r, c in invalid],
        "streams": [{"name": n, "description": d, "stream": s.hex(),
                     "messages": [m.hex() for m in ms], "code": c}
                    for n, d, s, ms, c in streams],
        "sessions": [{"name": n, "description": d, "messages": [m.hex() for m in ms],
                      "code": c, "version": v} for n, d, ms, c, v in sessions],
        "opening": opening_json,
        "clock_digests": digests_json,
    }


def notes_list(notes: dict[FeedId, Note]) -> list[dict[str, Any]]:
    """Notes sorted as the clock digest sorts them."""
    return [note_json(f, n) for f, n in sorted(
        notes.items(), key=lambda fn: (fn[0].author_key, fn[0].log_id.encode()))]


def opening_local() -> LocalClock:
    """The node of wire.json's opening cases: it holds alice's blog (30 entries) and notes
    (4) and wants those and bob's blog."""
    blog, notes = ALICE.author.feed("blog"), ALICE.author.feed("notes")
    blog_log, notes_log, _ = build_logs()
    return LocalClock({blog: BLOG_LENGTH, notes: 4},
                      {blog: blog_log.entries[-1].hash[:8], notes: notes_log.entries[-1].hash[:8]},
                      {blog, notes, BOB.author.feed("blog")})


def run_opening(sent: dict[FeedId, Note], received: dict[FeedId, Note],
                peer_digest: bytes | None) -> list[Message]:
    """What the responder of handshake.json sends as :func:`opening_local`, remembering
    ``sent`` and ``received``, when its peer's hello carries ``peer_digest``."""
    initiator, responder = channel_pair()
    run_handshake(initiator, responder)
    session = Session(responder, opening_local())
    session.receive_data(b"")  # the handshake is done: authenticated
    session.start(sent=sent, received=received)
    initiator.receive_data(session.data_to_send())
    initiator.send(Hello((2,), False, peer_digest))
    session.receive_data(initiator.data_to_send())
    initiator.receive_data(session.data_to_send())
    return initiator.messages()


# -- content.json ------------------------------------------------------------------------

#: The feed of spec 01 section 5 (seed 32 zero bytes, log "blog"), as in spec/content.md.
EXAMPLE_FEED = str(Identity.from_seed(bytes(32)).author.feed("blog"))


def raw_map(*parts: bytes) -> bytes:
    """A CBOR map of keys and values given as their encoded bytes, in turn."""
    assert len(parts) % 2 == 0 and len(parts) < 48
    return bytes([0xA0 + len(parts) // 2]) + b"".join(parts)


def content_map(*pairs: tuple[str, Any]) -> bytes:
    """A CBOR map of ``pairs`` in the order given, right or wrong: cbor2 keeps a dict's order."""
    return cbor2.dumps(dict(pairs))


def episode_blob() -> str:
    """The text id of the episode blob of blobs.json (24,117,248 bytes of the pattern)."""
    from blob_vectors import pattern

    from tidings.core.blob import blob_id_of

    return str(blob_id_of(pattern(24_117_248)))


def make_content() -> dict[str, Any]:
    """Content payloads (spec/content.md): what writers make, what readers make of bytes.

    The JSON of every case, and the field every refused JSON input names, are
    written here from the spec; only the bytes of valid content come from the
    library.
    """
    feed = EXAMPLE_FEED
    episode = {"url": "https://example.org/media/ep1.mp3", "media_type": "audio/mpeg",
               "size": 24_117_248, "title": "Episode 1 (MP3)"}
    blob = episode_blob()
    blob_episode = {"blob": blob, "media_type": "audio/mpeg", "size": 24_117_248,
                    "title": "Episode 2 (MP3)", "duration": 1507}
    valid_json = [
        ("post-minimal", "the smallest post: text only", {"type": "post", "text": "hello, world"}),
        ("post-empty-text", "a post's text may be empty", {"type": "post", "text": ""}),
        ("post-full", "every field of a post", {
            "type": "post", "text": "Notes from the meetup.\nSlides below; grüße, 水 🎉",
            "title": "Meetup notes", "links": ["https://example.org/slides",
                                               "http://example.com/a?b=c&d=e#f"],
            "tags": ["meetup", "notes"], "reply_to": {"feed": feed, "seq": 7},
            "attachments": [{"url": "https://example.org/slides.pdf",
                             "media_type": "application/pdf"}],
        }),
        ("post-podcast-episode", "a podcast episode: a post with an audio attachment", {
            "type": "post", "text": "In this episode: signed logs.", "title": "Episode 1",
            "tags": ["podcast"], "attachments": [episode],
        }),
        ("post-podcast-blob", "a podcast episode whose audio is a blob (spec/13): the "
         "episode blob of blobs.json, with its size and playing time", {
            "type": "post", "text": "In this episode: blobs.", "title": "Episode 2",
            "tags": ["podcast"], "attachments": [blob_episode],
        }),
        ("attachment-blob-and-url", "an attachment that is a blob and has a URL mirror", {
            "type": "post", "text": "", "attachments": [{
                "url": "https://example.org/media/ep2.mp3", "blob": blob,
                "media_type": "audio/mpeg", "size": 24_117_248}],
        }),
        ("link-minimal", "a shared link alone", {"type": "link", "url": "https://example.org/"}),
        ("link-full", "every field of a link share", {
            "type": "link", "url": "https://www.rfc-editor.org/rfc/rfc4287",
            "title": "RFC 4287: The Atom Syndication Format",
            "comment": "Still the best-specified feed format.", "tags": ["feeds", "standards"],
        }),
        ("follow", "the follow entry of spec/content.md section 7", {"type": "follow",
                                                                      "feed": feed}),
        ("unfollow", "the unfollow entry", {"type": "unfollow", "feed": feed}),
        ("about-minimal", "a name only", {"type": "about", "name": "Alice"}),
        ("about-avatar-entry", "the avatar is the payload of an entry", {
            "type": "about", "name": "Alice", "description": "Teaches maths; posts weekly.",
            "avatar": {"feed": feed, "seq": 1},
        }),
        ("about-avatar-url", "the avatar is at a URL", {
            "type": "about", "name": "Alice", "avatar": "https://example.org/alice.png"}),
        ("about-logs", "the author names and describes two of their logs", {
            "type": "about", "name": "Alice", "logs": [
                {"log": "blog", "name": "Alice's notebook",
                 "description": "What I learn, weekly."},
                {"log": "podcast", "name": "Maths aloud"}]}),
        ("about-podcast", "a log described as a podcast show, for podcast apps", {
            "type": "about", "name": "Alice", "logs": [
                {"log": "podcast", "name": "Maths aloud", "language": "en",
                 "category": "Science/Mathematics", "explicit": False,
                 "artwork": "https://example.org/maths-aloud.jpg"}]}),
        ("retract", "the author retracts entry 3 of the same feed",
         {"type": "retract", "target": 3}),
        ("replace-post", "entry 3 shows this post from now on", {
            "type": "replace", "target": 3,
            "content": {"type": "post", "text": "Week 1: what a feed is (typo fixed)",
                        "title": "Week 1", "tags": ["notes"]},
        }),
        ("replace-link", "a link share replaced by another", {
            "type": "replace", "target": 12,
            "content": {"type": "link", "url": "https://example.org/fixed",
                        "comment": "the right link"},
        }),
        ("app-type", "an application's own type: every value kind, keys in core "
         "deterministic order after \"type\" (shorter keys first), nested maps too", {
            "type": "org.example.quiz", "v": 2, "question": "2 + 2 = ?", "choices": [3, 4, -5],
            "answer": 1, "weight": 0.5, "hint": None, "open": False, "graded": True,
            "meta": {"zz": 1, "a": {"b": []}},
        }),
    ]
    valid = []
    for name, description, value in valid_json:
        made = content.from_json(value)
        assert content.to_json(made) == value, name  # the JSON is written as the spec says
        valid.append({"name": name, "description": description, "json": value,
                      "hex": content.encode(made).hex()})

    def post_with(*extra: tuple[str, Any]) -> bytes:
        return content_map(("type", "post"), ("text", "hi"), *extra)

    read = [  # bytes no writer makes, and the content a reader finds in them
        ("keys-in-another-order", "\"type\" last: readers accept any key order",
         cbor2.dumps({"text": "a post", "type": "post"}), {"type": "post", "text": "a post"}),
        ("explicit-version-1", "\"v\": 1 is the version a missing \"v\" means",
         content_map(("type", "post"), ("v", 1), ("text", "hi")),
         {"type": "post", "text": "hi"}),
        ("unknown-key-ignored", "a key the type does not define is ignored",
         post_with(("lang", "en")), {"type": "post", "text": "hi"}),
        ("null-is-absent", "an optional key with null is absent", post_with(("title", None)),
         {"type": "post", "text": "hi"}),
        ("empty-array-is-absent", "an empty array is the same as an absent one",
         post_with(("tags", [])), {"type": "post", "text": "hi"}),
        ("non-shortest-head", "seq 7 of reply_to written 18 07: heads are not checked",
         bytes.fromhex("a3") + cbor2.dumps("type") + cbor2.dumps("post") + cbor2.dumps("text")
         + cbor2.dumps("hi") + cbor2.dumps("reply_to") + bytes.fromhex("a2")
         + cbor2.dumps("feed") + cbor2.dumps(feed) + cbor2.dumps("seq") + bytes.fromhex("1807"),
         {"type": "post", "text": "hi", "reply_to": {"feed": feed, "seq": 7}}),
        ("ref-with-more-keys", "a key an entry reference does not define is ignored",
         post_with(("reply_to", {"feed": feed, "seq": 7, "hash": "00"})),
         {"type": "post", "text": "hi", "reply_to": {"feed": feed, "seq": 7}}),
        ("half-float", "1.5 as a half-precision float (f9 3e00) in an application's type",
         bytes.fromhex("a2") + cbor2.dumps("type") + cbor2.dumps("org.example.x")
         + cbor2.dumps("w") + bytes.fromhex("f93e00"), {"type": "org.example.x", "w": 1.5}),
        ("higher-version", "post version 2: content of a version the reader does not know",
         content_map(("type", "post"), ("v", 2), ("body", ["new", "shape"])),
         {"type": "post", "v": 2, "body": ["new", "shape"]}),
        ("unknown-library-type", "a bare type name this reader does not know",
         content_map(("type", "poll"), ("options", ["yes", "no"])),
         {"type": "poll", "options": ["yes", "no"]}),
        ("unknown-type-any-text", "any text is a type name to a reader",
         content_map(("type", "")), {"type": ""}),
        ("unknown-type-bad-version", "an unknown type's \"v\" is not the reader's to check",
         content_map(("type", "org.example.x"), ("v", "two")),
         {"type": "org.example.x", "v": "two"}),
        ("attachment-keys-in-another-order", "an attachment's keys in another order, and "
         "a null duration (absent)",
         post_with(("attachments", [{"duration": None, "size": 24_117_248,
                                     "media_type": "audio/mpeg", "blob": blob}])),
         {"type": "post", "text": "hi", "attachments": [{
             "blob": blob, "media_type": "audio/mpeg", "size": 24_117_248}]}),
        ("replace-inner-keys-ignored", "keys a post does not define, inside a replace, "
         "are ignored like any other", content_map(
             ("type", "replace"), ("target", 3),
             ("content", {"type": "post", "text": "hi", "lang": "en"})),
         {"type": "replace", "target": 3, "content": {"type": "post", "text": "hi"}}),
        ("replace-newer-inside", "a replace holding post version 2: the replace is unknown "
         "content (spec/content.md section 6.5)", content_map(
             ("type", "replace"), ("target", 3),
             ("content", {"type": "post", "v": 2, "body": "new"})),
         {"type": "replace", "target": 3, "content": {"type": "post", "v": 2, "body": "new"}}),
        ("follow-any-order", "a follow with its keys reversed and one more key",
         content_map(("feed", feed), ("note", "hi"), ("type", "follow")),
         {"type": "follow", "feed": feed}),
        ("follow-version-2", "follow entries have no versions: \"v\" is ignored like any key",
         content_map(("type", "follow"), ("feed", feed), ("v", 2)),
         {"type": "follow", "feed": feed}),
        ("follow-before-the-data-model", "a follow holding a byte string: nodes read it "
         "as a follow (step C1), so content readers do too",
         content_map(("type", "follow"), ("feed", feed), ("x", b"\x00")),
         {"type": "follow", "feed": feed}),
    ]
    follow_head = content_map(("type", "follow"), ("feed", feed))
    long_post = {"type": "post", "text": "x", "tags": ["t"] * 33}
    nested: Any = 1
    for _ in range(16):  # 16 arrays inside the top map: level 17
        nested = [nested]
    not_content = [  # (name, the step of spec/content.md section 4 that fails, description, bytes)
        ("empty", "C2", "the empty payload", b""),
        ("plain-text", "C3", "UTF-8 text: 68 is a text head, not a map", b"hello"),
        ("array", "C3", "an array holding the pair", cbor2.dumps(["type", "post"])),
        ("indefinite-map", "C3", "an indefinite-length map (bf ... ff)",
         b"\xbf" + cbor2.dumps("type") + cbor2.dumps("post") + cbor2.dumps("text")
         + cbor2.dumps("hi") + b"\xff"),
        ("trailing-byte", "C4", "a valid post followed by 00", post_with() + b"\x00"),
        ("truncated", "C4", "a valid post without its last byte", post_with()[:-1]),
        ("byte-string", "C4", "a byte string value (not in the data model)",
         content_map(("type", "org.example.x"), ("data", b"\x00"))),
        ("tag", "C4", "a tag (c1: epoch time) around an integer",
         bytes.fromhex("a2") + cbor2.dumps("type") + cbor2.dumps("org.example.x")
         + cbor2.dumps("t") + bytes.fromhex("c100")),
        ("undefined", "C4", "the simple value undefined (f7)",
         bytes.fromhex("a2") + cbor2.dumps("type") + cbor2.dumps("org.example.x")
         + cbor2.dumps("u") + bytes.fromhex("f7")),
        ("nan", "C4", "a NaN float (f9 7e00)",
         bytes.fromhex("a2") + cbor2.dumps("type") + cbor2.dumps("org.example.x")
         + cbor2.dumps("n") + bytes.fromhex("f97e00")),
        ("integer-key", "C4", "a map key that is an integer",
         bytes.fromhex("a2") + cbor2.dumps("type")
         + cbor2.dumps("org.example.x") + bytes.fromhex("0101")),
        ("repeated-key", "C4", "the key \"type\" twice",
         bytes.fromhex("a2") + cbor2.dumps("type") + cbor2.dumps("post")
         + cbor2.dumps("type") + cbor2.dumps("link")),
        ("bad-utf8", "C4", "a text value whose bytes are not UTF-8 (ff)",
         bytes.fromhex("a2") + cbor2.dumps("type") + cbor2.dumps("post") + cbor2.dumps("text")
         + bytes.fromhex("61ff")),
        ("indefinite-text", "C4", "the text of a post as an indefinite-length string",
         bytes.fromhex("a2") + cbor2.dumps("type") + cbor2.dumps("post") + cbor2.dumps("text")
         + bytes.fromhex("7f626869ff")),
        ("too-deep", "C4", "17 levels of arrays and maps",
         content_map(("type", "org.example.x"), ("deep", nested))),
        ("no-type", "C5", "a map without \"type\"", cbor2.dumps({"text": "hi"})),
        ("type-not-text", "C5", "\"type\" is an integer", cbor2.dumps({"type": 1})),
        ("follow-bad-feed", "C6", "a follow whose feed id has a wrong checksum",
         content_map(("type", "follow"), ("feed", feed[:-4] + "blag"))),
        ("follow-over-1024-bytes", "C6",
         "a follow entry of 1025 bytes: nodes read follows of at most 1024",
         bytes([follow_head[0] + 1]) + follow_head[1:] + cbor2.dumps("pad")
         + cbor2.dumps("x" * (1025 - len(follow_head) - 4 - 3))),
        ("version-zero", "C7", "a post with \"v\": 0",
         content_map(("type", "post"), ("v", 0), ("text", "hi"))),
        ("version-text", "C7", "a post with \"v\": \"2\"",
         content_map(("type", "post"), ("v", "2"), ("text", "hi"))),
        ("post-without-text", "C9", "a post has text", cbor2.dumps({"type": "post"})),
        ("post-text-not-text", "C9", "the text of a post is an integer",
         content_map(("type", "post"), ("text", 1))),
        ("post-ftp-link", "C9", "links are http or https URLs",
         post_with(("links", ["ftp://example.org/"]))),
        ("post-empty-title", "C9", "a title has 1 character or more", post_with(("title", ""))),
        ("post-33-tags", "C9", "at most 32 tags", cbor2.dumps(long_post)),
        ("post-tag-65", "C9", "a tag of 65 characters", post_with(("tags", ["x" * 65]))),
        ("post-tag-newline", "C9", "a tag holding a line feed", post_with(("tags", ["a\nb"]))),
        ("post-reply-seq-0", "C9", "an entry reference to seq 0",
         post_with(("reply_to", {"feed": feed, "seq": 0}))),
        ("attachment-upper-case-type", "C9", "media type \"audio/MPEG\"",
         post_with(("attachments", [{"url": episode["url"], "media_type": "audio/MPEG"}]))),
        ("attachment-negative-size", "C9", "size -1",
         post_with(("attachments", [{"url": episode["url"], "media_type": "audio/mpeg",
                                     "size": -1}]))),
        ("attachment-neither-url-nor-blob", "C9", "an attachment without url and blob",
         post_with(("attachments", [{"media_type": "audio/mpeg", "size": 1}]))),
        ("attachment-blob-without-size", "C9", "a blob attachment needs its size",
         post_with(("attachments", [{"blob": blob, "media_type": "audio/mpeg"}]))),
        ("attachment-blob-other-size", "C9", "size 24117249 for a blob of 24117248 bytes",
         post_with(("attachments", [{"blob": blob, "media_type": "audio/mpeg",
                                     "size": 24_117_249}]))),
        ("attachment-blob-bad-checksum", "C9", "a blob id whose size was changed (its "
         "checksum no longer matches)",
         post_with(("attachments", [{"blob": blob[:-1] + "9", "media_type": "audio/mpeg",
                                     "size": 24_117_249}]))),
        ("attachment-blob-with-space", "C9", "a blob id with a space after it",
         post_with(("attachments", [{"blob": blob + " ", "media_type": "audio/mpeg",
                                     "size": 24_117_248}]))),
        ("attachment-blob-not-text", "C9", "a blob id as an integer",
         post_with(("attachments", [{"blob": 7, "url": episode["url"],
                                     "media_type": "audio/mpeg", "size": 24_117_248}]))),
        ("attachment-duration-2-to-the-32", "C9", "a duration of 2^32 seconds",
         post_with(("attachments", [{"url": episode["url"], "media_type": "audio/mpeg",
                                     "duration": 2**32}]))),
        ("attachment-negative-duration", "C9", "a duration of -1",
         post_with(("attachments", [{"url": episode["url"], "media_type": "audio/mpeg",
                                     "duration": -1}]))),
        ("link-javascript-url", "C9", "a javascript: URL",
         content_map(("type", "link"), ("url", "javascript:alert(1)"))),
        ("link-url-with-space", "C9", "a URL holding a space",
         content_map(("type", "link"), ("url", "https://example.org/a b"))),
        ("about-name-101", "C9", "a name of 101 characters",
         content_map(("type", "about"), ("name", "n" * 101))),
        ("about-avatar-number", "C9", "an avatar that is a number",
         content_map(("type", "about"), ("name", "A"), ("avatar", 7))),
        ("about-log-twice", "C9", "an about that describes one log twice",
         content_map(("type", "about"), ("name", "A"),
                     ("logs", [{"log": "blog", "name": "B"}, {"log": "blog", "name": "C"}]))),
        ("about-log-bad-id", "C9", "a log id in upper case",
         content_map(("type", "about"), ("name", "A"), ("logs", [{"log": "Blog"}]))),
        ("about-log-bad-language", "C9", "a log's language that is not a language tag",
         content_map(("type", "about"), ("name", "A"),
                     ("logs", [{"log": "podcast", "language": "English!"}]))),
        ("about-log-explicit-number", "C9", "a log's explicit flag that is a number",
         content_map(("type", "about"), ("name", "A"),
                     ("logs", [{"log": "podcast", "explicit": 1}]))),
        ("about-log-category-three-levels", "C9", "a category with two slashes",
         content_map(("type", "about"), ("name", "A"),
                     ("logs", [{"log": "podcast", "category": "A/B/C"}]))),
        ("retract-seq-0", "C9", "a retract of seq 0", content_map(("type", "retract"),
                                                                  ("target", 0))),
        ("retract-target-text", "C9", "a target that is text",
         content_map(("type", "retract"), ("target", "3"))),
        ("replace-without-content", "C9", "a replace has content",
         content_map(("type", "replace"), ("target", 3))),
        ("replace-with-about", "C9", "a replace holds a post or a link share only",
         content_map(("type", "replace"), ("target", 3),
                     ("content", {"type": "about", "name": "Alice"}))),
        ("replace-with-retract", "C9", "a replace holding a retract",
         content_map(("type", "replace"), ("target", 3),
                     ("content", {"type": "retract", "target": 2}))),
        ("replace-with-broken-post", "C9", "a replace holding a post without text",
         content_map(("type", "replace"), ("target", 3), ("content", {"type": "post"}))),
    ]
    assert len(next(c[3] for c in not_content if c[0] == "follow-over-1024-bytes")) == 1025
    invalid_json = [  # (name, the field the error names, description, JSON)
        ("not-an-object", "content", "an array", ["post"]),
        ("no-type", "type", "no \"type\"", {"text": "hi"}),
        ("post-without-text", "post.text", "a post has text", {"type": "post"}),
        ("post-tag-too-long", "post.tags[2]", "the third tag has 65 characters",
         {"type": "post", "text": "hi", "tags": ["a", "b", "c" * 65]}),
        ("post-unknown-key", "post.lang", "writers use only the keys the spec lists",
         {"type": "post", "text": "hi", "lang": "en"}),
        ("post-version-2", "post.v", "this version writes version 1 of post",
         {"type": "post", "v": 2, "text": "hi"}),
        ("post-lone-surrogate", "post.text", "a lone surrogate is not Unicode text",
         {"type": "post", "text": "\ud800"}),
        ("attachment-size", "post.attachments[0].size", "size -1",
         {"type": "post", "text": "", "attachments": [{"url": episode["url"],
                                                       "media_type": "audio/mpeg",
                                                       "size": -1}]}),
        ("attachment-blob-without-size", "post.attachments[0].size",
         "a blob attachment gives the blob's size", {"type": "post", "text": "", "attachments": [
             {"blob": blob, "media_type": "audio/mpeg"}]}),
        ("attachment-bad-blob", "post.attachments[0].blob", "a feed id where a blob id belongs",
         {"type": "post", "text": "", "attachments": [
             {"blob": feed, "media_type": "audio/mpeg", "size": 1}]}),
        ("attachment-no-url-or-blob", "post.attachments[0].url", "an attachment needs a "
         "url or a blob", {"type": "post", "text": "", "attachments": [
             {"media_type": "audio/mpeg"}]}),
        ("attachment-duration-fraction", "post.attachments[0].duration",
         "a duration in whole seconds", {"type": "post", "text": "", "attachments": [
             {"url": episode["url"], "media_type": "audio/mpeg", "duration": 1.5}]}),
        ("reply-to-bad-feed", "post.reply_to.feed", "an author id where a feed id belongs",
         {"type": "post", "text": "hi",
          "reply_to": {"feed": str(Identity.from_seed(bytes(32)).author), "seq": 1}}),
        ("link-relative-url", "link.url", "a relative URL", {"type": "link", "url": "/a"}),
        ("follow-bad-feed", "follow.feed", "not a feed id",
         {"type": "follow", "feed": "tf1"}),
        ("about-avatar-number", "about.avatar", "an avatar that is a number",
         {"type": "about", "name": "Alice", "avatar": 7}),
        ("about-log-without-id", "about.logs[0].log", "each log named by its id",
         {"type": "about", "name": "Alice", "logs": [{"name": "Notebook"}]}),
        ("about-log-artwork-ftp", "about.logs[0].artwork", "artwork is a blob or http(s)",
         {"type": "about", "name": "Alice",
          "logs": [{"log": "podcast", "artwork": "ftp://example.org/a.jpg"}]}),
        ("bare-unknown-type", "type", "bare type names are the library's",
         {"type": "poll", "options": []}),
        ("app-type-upper-case", "type", "type names are lower case",
         {"type": "Org.Example.Quiz"}),
        ("app-type-integer-too-large", "org.example.quiz.n", "2^64 does not fit CBOR's integers",
         {"type": "org.example.quiz", "n": 2**64}),
        ("app-type-bad-version", "org.example.quiz.v", "\"v\" is an integer of at least 1",
         {"type": "org.example.quiz", "v": 0}),
        ("retract-without-target", "retract.target", "a retract names its target",
         {"type": "retract"}),
        ("replace-target-0", "replace.target", "seqs start at 1",
         {"type": "replace", "target": 0, "content": {"type": "post", "text": "hi"}}),
        ("replace-with-about", "replace.content.type", "a replace holds a post or a link",
         {"type": "replace", "target": 1, "content": {"type": "about", "name": "Alice"}}),
        ("replace-bad-post", "replace.content.tags[0]", "the inner post breaks its rules: "
         "the field is named from the top", {"type": "replace", "target": 1, "content": {
             "type": "post", "text": "hi", "tags": ["x" * 65]}}),
        ("replace-inner-version", "replace.content.v", "writers write version 1 inside too",
         {"type": "replace", "target": 1, "content": {"type": "post", "v": 2, "text": "hi"}}),
    ]
    follows = [  # (name, payload, (follow?, feed) or None, description): spec/content.md §7.2
        ("follow", follow_head, ("follow", feed), "the bytes a writer makes"),
        ("unfollow", content_map(("type", "unfollow"), ("feed", feed)), ("unfollow", feed),
         "an unfollow"),
        ("keys-reversed-and-extra", content_map(("feed", feed), ("x", b"\x00"),
                                                ("type", "follow")),
         ("follow", feed), "any key order; an extra key (a byte string) is ignored"),
        ("repeated-type", bytes.fromhex("a3") + cbor2.dumps("type") + cbor2.dumps("follow")
         + cbor2.dumps("feed") + cbor2.dumps(feed) + cbor2.dumps("type")
         + cbor2.dumps("unfollow"), None, "the key \"type\" twice: not a follow entry"),
        ("repeated-feed", bytes.fromhex("a3") + cbor2.dumps("type") + cbor2.dumps("follow")
         + cbor2.dumps("feed") + cbor2.dumps(feed) + cbor2.dumps("feed")
         + cbor2.dumps(feed[:-4] + "podc"), None, "the key \"feed\" twice"),
        ("bad-utf8-in-another-key", bytes.fromhex("a3") + cbor2.dumps("type")
         + cbor2.dumps("follow") + cbor2.dumps("feed") + cbor2.dumps(feed)
         + bytes.fromhex("61ff") + cbor2.dumps(1), None,
         "a key whose bytes (ff) are not UTF-8, beside a valid follow"),
        ("bad-utf8-in-the-feed", raw_map(cbor2.dumps("type"), cbor2.dumps("follow"),
                                         cbor2.dumps("feed"), cbor2.dumps(feed)[:-1] + b"\xff"),
         None, "the feed id's last byte is ff"),
        ("space-before-the-feed", content_map(("type", "follow"), ("feed", " " + feed)), None,
         "a space before the feed id: ids in signed data are not trimmed (spec/01 §4)"),
        ("ideographic-space-after-the-feed",
         content_map(("type", "follow"), ("feed", feed + "\u3000")), None,
         "U+3000 after the feed id"),
        ("tagged-feed", raw_map(cbor2.dumps("type"), cbor2.dumps("follow"),
                                cbor2.dumps("feed"), b"\xd8\x20" + cbor2.dumps(feed)),
         None, "the feed id inside a tag (32, a URI)"),
        ("trailing-byte", follow_head + b"\x00", None, "a follow followed by 00"),
        ("indefinite-feed", raw_map(cbor2.dumps("type"), cbor2.dumps("follow"),
                                    cbor2.dumps("feed"), b"\x7f" + cbor2.dumps(feed) + b"\xff"),
         None, "the feed id as an indefinite-length text"),
    ]
    return {
        "feed": feed,
        "corrections": make_corrections(),
        "follows": [{"name": n, "hex": b.hex(),
                     "reads_as": None if r is None else {"type": r[0], "feed": r[1]},
                     "description": d} for n, b, r, d in follows],
        "valid": valid,
        "read": [{"name": n, "description": d, "hex": b.hex(), "json": j}
                 for n, d, b, j in read],
        "not_content": [{"name": n, "step": step, "description": d, "hex": b.hex()}
                        for n, step, d, b in not_content],
        "invalid_json": [{"name": n, "field": f, "description": d, "json": j}
                         for n, f, d, j in invalid_json],
    }


# -- blobs.json (spec 13) ---------------------------------------------------------------


def make_blobs_json() -> dict[str, Any]:
    """Blob trees, ids and proofs: written by tools/blob_vectors.py."""
    from blob_vectors import make_blobs

    return make_blobs()
def make_corrections() -> list[dict[str, Any]]:
    """Feeds with corrections, and what each entry shows (spec/content.md section 12).

    Each case lists entries by seq with their payload (None: not held; a seq
    not listed is not held at all) and, written here from the rules K1-K4, the
    state of every listed entry: its state, the seq of the correction in effect,
    and the content it shows (null for a retracted entry or a payload that is
    not content; a correction shows its own content, for reference).
    """
    post = [{"type": "post", "text": f"post {n}"} for n in range(4)]
    fixed = {"type": "post", "text": "post 1, fixed", "title": "Fixed"}
    again = {"type": "post", "text": "post 1, fixed again"}
    link = {"type": "link", "url": "https://example.org/", "comment": "a link instead"}

    def retract(t: int) -> dict[str, Any]:
        return {"type": "retract", "target": t}

    def replace(t: int, inner: dict[str, Any]) -> dict[str, Any]:
        return {"type": "replace", "target": t, "content": inner}

    feed = EXAMPLE_FEED
    follow = {"type": "follow", "feed": feed}
    about = {"type": "about", "name": "Alice"}
    C, OG, R, X = "correction", "original", "replaced", "retracted"
    cases: list[tuple[str, str, list[tuple[int, Any]], list[tuple[int, str, Any, Any]]]] = [
        ("replace", "a replace: the entry shows the new content",
         [(1, post[1]), (2, replace(1, fixed))],
         [(1, R, 2, fixed), (2, C, None, replace(1, fixed))]),
        ("retract", "a retract: the entry is a tombstone",
         [(1, post[1]), (2, post[2]), (3, retract(1))],
         [(1, X, 3, None), (2, OG, None, post[2]), (3, C, None, retract(1))]),
        ("replaces-newest-wins", "two replaces of one entry: the newer one shows",
         [(1, post[1]), (2, replace(1, fixed)), (3, replace(1, again))],
         [(1, R, 3, again), (2, C, None, replace(1, fixed)), (3, C, None, replace(1, again))]),
        ("post-replaced-by-link", "a post may be replaced by a link share",
         [(1, post[1]), (2, replace(1, link))],
         [(1, R, 2, link), (2, C, None, replace(1, link))]),
        ("replace-then-retract", "a retract after a replace: retracted",
         [(1, post[1]), (2, replace(1, fixed)), (3, retract(1))],
         [(1, X, 3, None), (2, C, None, replace(1, fixed)), (3, C, None, retract(1))]),
        ("retract-is-final", "K4: a replace after a retract changes nothing",
         [(1, post[1]), (2, retract(1)), (3, replace(1, fixed))],
         [(1, X, 2, None), (2, C, None, retract(1)), (3, C, None, replace(1, fixed))]),
        ("retract-a-retract", "K3: retracting a retract is ignored; the first stands",
         [(1, post[1]), (2, retract(1)), (3, retract(2))],
         [(1, X, 2, None), (2, C, None, retract(1)), (3, C, None, retract(2))]),
        ("replace-a-replace", "K3: a replace of a replace is ignored",
         [(1, post[1]), (2, replace(1, fixed)), (3, replace(2, again))],
         [(1, R, 2, fixed), (2, C, None, replace(1, fixed)), (3, C, None, replace(2, again))]),
        ("target-self-or-later", "K2: a correction of itself or of a later entry is ignored",
         [(1, retract(1)), (2, replace(3, fixed)), (3, post[3])],
         [(1, C, None, retract(1)), (2, C, None, replace(3, fixed)), (3, OG, None, post[3])]),
        ("follow-and-about", "K3: follows and about entries are not corrected",
         [(1, follow), (2, about), (3, retract(1)), (4, replace(2, fixed))],
         [(1, OG, None, follow), (2, OG, None, about), (3, C, None, retract(1)),
          (4, C, None, replace(2, fixed))]),
        ("target-not-held", "a target whose payload is not held is corrected",
         [(1, None), (2, replace(1, fixed))],
         [(1, R, 2, fixed), (2, C, None, replace(1, fixed))]),
        ("correction-not-held", "a correction whose payload is not held is not known",
         [(1, post[1]), (2, None)], [(1, OG, None, post[1]), (2, OG, None, None)]),
        ("plain-text-target", "plain text (not content) can be replaced",
         [(1, b"helo wrold"), (2, replace(1, fixed))],
         [(1, R, 2, fixed), (2, C, None, replace(1, fixed))]),
        ("distance-1024", "K2: a correction reaches exactly 1024 entries back",
         [(1, post[1]), (1025, retract(1))], [(1, X, 1025, None), (1025, C, None, retract(1))]),
        ("distance-1025", "K2: ... and not 1025",
         [(1, post[1]), (1026, retract(1))], [(1, OG, None, post[1]), (1026, C, None, retract(1))]),
    ]
    made = []
    for name, description, entries, view in cases:
        listed = []
        for seq, value in entries:
            if value is None:
                payload = None
            elif isinstance(value, bytes):
                payload = value.hex()
            else:
                payload = content.encode(content.from_json(value)).hex()
            listed.append({"seq": seq, "payload": payload})
        expected = [{"seq": seq, "state": state, "by": by, "content": shows}
                    for seq, state, by, shows in view]
        # The library agrees with what the rules say.
        got = effective_view([(Seq(e["seq"]), None if e["payload"] is None
                               else bytes.fromhex(e["payload"])) for e in listed])
        assert [{"seq": g.entry.seq, "state": g.state, "by": g.by,
                 "content": None if g.content is None else content.to_json(g.content)}
                for g in got] == expected, name
        made.append({"name": name, "description": description, "entries": listed,
                     "view": expected})
    return made


# -- writing ------------------------------------------------------------------------


def render(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=True) + "\n"


def make_all() -> dict[str, str]:
    from compact_vectors import make_compact  # tools/compact_vectors.py (spec/09 §8)
    from identity_vectors import make_identity  # tools/identity_vectors.py (spec/12)

    blog, notes, bob = build_logs()
    forged = make_forgeries(blog, notes)
    # The default network key is pinned to its text (spec 08 section 1.1).
    assert hashlib.blake2b(DEFAULT_NETWORK_TEXT, digest_size=32).digest() == DEFAULT_NETWORK_KEY
    # The first author of ids.json is pinned to RFC 8032: fail here, not in a vector.
    assert Identity.from_seed(RFC8032_SEED).author.key.hex() == (
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    return {
        "ids.json": render(make_ids()),
        "lipmaa.json": render(make_lipmaa()),
        "entries.json": render(make_entries(blog, notes)),
        "invalid.json": render(make_invalid(blog, notes, bob, forged)),
        "ed25519.json": render(make_ed25519()),
        "forks.json": render(make_forks(blog, notes, bob, forged)),
        "bundles.json": render(make_bundles(blog, forged)),
        "handshake.json": render(make_handshake(blog, notes)),
        "wire.json": render(make_wire(blog, notes, bob, forged)),
        "content.json": render(make_content()),
        "blobs.json": render(make_blobs_json()),
        "identity.json": render(make_identity()),
        "compact.json": render(make_compact(blog, notes, bob)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if a file differs from what the code makes")
    parser.add_argument("--out", type=Path, default=VECTORS_DIR, help="vectors directory")
    args = parser.parse_args(argv)
    files = make_all()
    if args.check:
        stale = [name for name, text in files.items()
                 if not (args.out / name).is_file()
                 or (args.out / name).read_text(encoding="utf-8") != text]
        for name in stale:
            print(f"{args.out / name} is missing or out of date: run tools/make_vectors.py",
                  file=sys.stderr)
        return 1 if stale else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (args.out / name).write_text(text, encoding="utf-8")
        print(f"wrote {args.out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
