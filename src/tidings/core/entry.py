"""Entries: the records of a log (spec/02-entries.md).

An entry is the *body*, a deterministic CBOR array of ten fields, followed, if
the body's flags say so, by the author's signature as a CBOR byte string of 64
bytes. The signature covers the body's exact bytes. Authors sign at least every
64th entry and the last entry of every append; an entry without a signature is
valid once a later signed entry of the log links to it (spec/05), so a log's
valid extent always ends at a signed entry.

The payload is not inside the entry: the body carries its size and BLAKE2b-256
hash, so a payload can be deleted or left unfetched while the log still verifies.

Decoding is strict: any input whose re-encoding differs from the received bytes
is refused, so there is exactly one byte string per entry and hashes are stable.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any, NamedTuple

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tidings.core import cbor
from tidings.core.ids import LOG_ID_PATTERN, MAX_LOG_ID_LEN, FeedId, check_log_id
from tidings.core.lipmaa import link_target
from tidings.errors import (
    BadSignature,
    MalformedEntry,
    NonCanonicalEncoding,
    Oversize,
    PayloadHashMismatch,
    PayloadSizeMismatch,
    UnknownVersion,
)

VERSION = 2
#: Bits of the flags field (field 1).
FLAG_END_OF_LOG = 1
FLAG_SIGNED = 2
#: The flags an entry may have: unsigned, signed, signed end-of-log. An end of
#: log is always signed: nothing may follow it, so nothing else could vouch for it.
ALLOWED_FLAGS = frozenset({0, FLAG_SIGNED, FLAG_SIGNED | FLAG_END_OF_LOG})
HASH_SIZE = 32
#: BLAKE2b-256 with nothing hashed yet. A hash made from a copy of it (``copy``,
#: ``update``, ``digest``) takes about a quarter less time for a short entry or
#: payload than ``hashlib.blake2b(data, digest_size=32)``, which parses its
#: keywords and sets the state up at each call: the hot paths hash from copies.
BLAKE2B_256 = hashlib.blake2b(digest_size=HASH_SIZE)
SIG_SIZE = 64
#: CBOR head of a 64-byte byte string: major type 2, one-byte length 0x40.
SIG_HEAD = b"\x58\x40"
SIG_PART = len(SIG_HEAD) + SIG_SIZE
BODY_FIELDS = 10
#: The largest possible version-2 entry is 294 bytes (64-byte log id, 8-byte
#: integers, both links, a signature); 512 leaves room and bounds every read of one.
MAX_ENTRY_SIZE = 512
#: Payloads are posts and notes, not media; 1 MiB bounds a peer's memory per
#: message. Larger things belong in a blob referenced from a payload.
MAX_PAYLOAD_SIZE = 1 << 20
MAX_SEQ = (1 << 63) - 1
MAX_TIMESTAMP = (1 << 64) - 1
#: At most this many unsigned entries in a row (spec/04 C5): every 64th entry at
#: the latest is signed, so a fork proof holds at most 64 entries per branch...
MAX_UNSIGNED_RUN = 63
#: ...and the payloads of unsigned entries in a row sum to at most 256 KiB, so a
#: sender can always end a message at a signed entry within the message bound.
MAX_UNSIGNED_BYTES = 1 << 18


def payload_hash(payload: bytes) -> bytes:
    """BLAKE2b-256 of a payload, as the entry's ``payload_hash`` field holds it."""
    state = BLAKE2B_256.copy()
    state.update(payload)
    return state.digest()


def payload_hashes(payloads: Iterable[bytes]) -> list[bytes]:
    """:func:`payload_hash` of each payload, in one call (a run's worth)."""
    hasher = BLAKE2B_256.copy
    hashes: list[bytes] = []
    keep = hashes.append
    for payload in payloads:
        state = hasher()
        state.update(payload)
        keep(state.digest())
    return hashes


def entry_hash(raw: bytes) -> bytes:
    """BLAKE2b-256 of an entry's full bytes (body and signature): what links point at."""
    state = BLAKE2B_256.copy()
    state.update(raw)
    return state.digest()


def stored_is_signed(raw: bytes) -> bool:
    """Whether a *verified* entry carries a signature, read without decoding it.

    A canonical body starts ``8a 02 <flags>``: the flags are always byte 2.
    """
    return bool(raw[2] & FLAG_SIGNED)


def stored_is_end_of_log(raw: bytes) -> bool:
    """Whether a *verified* entry ends its log (flags, byte 2, have bit 0)."""
    return bool(raw[2] & FLAG_END_OF_LOG)


def stored_payload_hash(raw: bytes) -> bytes:
    """The payload hash of a *verified* entry: the body's last 32 bytes."""
    end = len(raw) - SIG_PART if stored_is_signed(raw) else len(raw)
    return raw[end - HASH_SIZE:end]


class Entry(NamedTuple):
    """A decoded entry. Build one with :func:`decode_entry` or :func:`sign_entry`.

    Immutable. A named tuple rather than a frozen dataclass because a batch
    decodes hundreds of thousands a second and this builds five times faster.
    ``signature`` is empty for an unsigned entry.
    """

    flags: int
    author: bytes
    log_id: str
    seq: int
    timestamp: int
    backlink: bytes | None
    lipmaa_link: bytes | None
    payload_size: int
    payload_hash: bytes
    signature: bytes
    raw: bytes
    hash: bytes
    version: int = VERSION

    @property
    def feed(self) -> FeedId:
        return FeedId(self.author, self.log_id)

    @property
    def signed(self) -> bool:
        return bool(self.flags & FLAG_SIGNED)

    @property
    def body(self) -> bytes:
        """The bytes a signature covers."""
        return self.raw[:-SIG_PART] if self.flags & FLAG_SIGNED else self.raw

    @property
    def is_end_of_log(self) -> bool:
        return bool(self.flags & FLAG_END_OF_LOG)

    def check_signature(self) -> None:
        """Raise :class:`BadSignature` unless the author signed this body.

        Only for signed entries: an unsigned one is vouched for by a later signed
        entry's links (spec/05), never by itself.
        """
        check_signature(self)

    def check_payload(self, payload: bytes) -> None:
        """Raise unless ``payload`` is the one this entry signed for."""
        if len(payload) != self.payload_size:
            raise PayloadSizeMismatch(
                f"payload is {len(payload)} bytes, the entry says {self.payload_size}",
                feed=str(self.feed), seq=self.seq,
            )
        if payload_hash(payload) != self.payload_hash:
            raise PayloadHashMismatch(
                "payload hash differs from the entry's payload_hash",
                feed=str(self.feed), seq=self.seq,
            )


_public_keys: dict[bytes, Ed25519PublicKey] = {}
#: Authors whose loaded key stays cached; past this the cache restarts, which
#: bounds memory on a relay that sees many authors.
_PUBLIC_KEY_CACHE = 4096


_FIELD_PRIME = 2**255 - 19
#: y-coordinates of the eight points of small order (the identity, order 2,
#: order 4, and the four of order 8 come in pairs sharing y). A key on one of
#: them has signatures that verify over many messages: it has no real author.
_SMALL_ORDER_Y = frozenset({
    0,
    1,
    _FIELD_PRIME - 1,
    0x7A03AC9277FDC74EC6CC392CFA53202A0F67100D760B3CBA4FD84D3D706A17C7,
    _FIELD_PRIME - 0x7A03AC9277FDC74EC6CC392CFA53202A0F67100D760B3CBA4FD84D3D706A17C7,
})


def _is_small_order_or_non_canonical(point: bytes) -> bool:
    y = int.from_bytes(point, "little") & ((1 << 255) - 1)
    return y >= _FIELD_PRIME or y in _SMALL_ORDER_Y


def is_acceptable_author_key(author: bytes) -> bool:
    """False for keys no honest author has: non-canonical y (``y >= p``) or small order."""
    return not _is_small_order_or_non_canonical(author)


def _public_key(author: bytes) -> Ed25519PublicKey | None:
    key = _public_keys.get(author)
    if key is None:
        if not is_acceptable_author_key(author):
            return None
        if len(_public_keys) >= _PUBLIC_KEY_CACHE:
            _public_keys.clear()
        try:
            key = _public_keys[author] = Ed25519PublicKey.from_public_bytes(author)
        except ValueError:
            return None
    return key


def check_signature(entry: Entry) -> None:
    """Raise :class:`BadSignature` unless the author key signed the entry's body.

    Ed25519 per RFC 8032 with the cofactorless equation and ``S < L`` (OpenSSL),
    after refusing author keys and signature ``R`` values that are small-order
    or non-canonical encodings (spec/02 §2), as libsodium does.
    """
    if not entry.flags & FLAG_SIGNED:
        raise BadSignature("the entry carries no signature", feed=str(entry.feed), seq=entry.seq)
    key = _public_key(entry.author)
    if key is None:
        raise BadSignature(
            "the author key is a small-order or non-canonical point: no signature by it counts",
            feed=str(entry.feed), seq=entry.seq,
        )
    if _is_small_order_or_non_canonical(entry.signature[:32]):
        raise BadSignature(
            "the signature's R is a small-order or non-canonical point",
            feed=str(entry.feed), seq=entry.seq,
        )
    try:
        key.verify(entry.signature, entry.raw[:-SIG_PART])
    except InvalidSignature:
        raise BadSignature(
            "signature does not verify with the author key", feed=str(entry.feed), seq=entry.seq
        ) from None


def signature_holds(author: bytes, signature: bytes, body: bytes) -> bool:
    """Whether ``signature`` is the author's over ``body``, by the rules of
    :func:`check_signature` (which names the reason when it does not)."""
    key = _public_key(author)
    if key is None or _is_small_order_or_non_canonical(signature[:32]):
        return False
    try:
        key.verify(signature, body)
    except InvalidSignature:
        return False
    return True


#: Log ids already found valid: entries of one feed repeat the same one, and
#: checking it once per feed instead of once per entry speeds up batches.
_valid_log_ids: set[str] = set()
_LOG_ID_CACHE = 4096


def _malformed(detail: str) -> MalformedEntry:
    return MalformedEntry(detail)


def _hash_field(value: Any, name: str) -> bytes:
    if type(value) is not bytes or len(value) != HASH_SIZE:
        raise _malformed(f"{name} must be a {HASH_SIZE}-byte byte string")
    return value


#: The shortest-head bounds of spec/02 §4: a 1-, 2-, 4- or 8-byte argument
#: (heads 18, 19, 1a, 1b) is canonical only at or above these values.
_UINT_MIN = {0x18: (1, 24), 0x19: (2, 1 << 8), 0x1A: (4, 1 << 16), 0x1B: (8, 1 << 32)}
_HASH_HEAD = 0x5820  # a 32-byte byte string
_NULL = 0xF6
#: Bytes of the first five items of a canonical body: 8a 02 <flags> 58 20 <author>.
_AUTHOR_END = 37


#: The fields of an entry as :func:`read_fields` gives them: flags, author, log id,
#: seq, timestamp, backlink, lipmaa link, payload size, payload hash, signature.
Fields = tuple[int, bytes, str, int, int, "bytes | None", "bytes | None", int, bytes, bytes]


def decode_canonical(raw: bytes) -> Entry | None:
    """The entry ``raw`` is, if it is exactly the canonical encoding (spec/02 §4) of
    valid fields (spec/04 D1-D9 all pass); otherwise None, and :func:`decode_entry`
    finds which rule it breaks."""
    fields = read_fields(raw)
    if fields is None:
        return None
    return Entry(*fields, raw, entry_hash(raw))


def read_fields(raw: bytes) -> Fields | None:
    """The fields of ``raw`` if it is exactly the canonical encoding (spec/02 §4) of
    valid fields (spec/04 D1-D9 all pass); otherwise None.

    This reads the fixed layout of a version-2 entry byte by byte: the array
    head ``8a``, version ``02``, flags ``00``/``02``/``03``, ``58 20`` and the
    author, a text head (``61``..``77``, or ``78`` with a length of 24..64) and
    the log id, seq and timestamp each in its *shortest* head, each link as
    ``58 20`` and 32 bytes or ``f6`` exactly where its seq says, the payload
    size in its shortest head, ``58 20`` and the payload hash, then exactly the
    announced signature (``58 40`` and 64 bytes) and nothing more. Every item's
    head is checked, so no tag, float, indefinite length or longer-than-needed
    head can pass, and the end of the input is where the layout ends: each byte
    accepted here is the byte the encoder of §4 writes for these fields, which
    is what the re-encoding comparison of §5 tests. Callers need no round trip.
    """
    n = len(raw)
    if n > MAX_ENTRY_SIZE or n < 78 or raw[0] != 0x8A or raw[1] != VERSION:
        return None
    flags = raw[2]
    if flags not in ALLOWED_FLAGS or raw[3] != 0x58 or raw[4] != HASH_SIZE:
        return None
    head = raw[_AUTHOR_END]
    if 0x61 <= head <= 0x77:
        p = _AUTHOR_END + 1
        end = p + head - 0x60
    elif head == 0x78:
        size = raw[_AUTHOR_END + 1]
        if not 24 <= size <= MAX_LOG_ID_LEN:
            return None
        p = _AUTHOR_END + 2
        end = p + size
    else:
        return None
    name = raw[p:end]
    log_id = _log_id_names.get(name)
    if log_id is None:
        try:
            log_id = name.decode("ascii")
        except UnicodeDecodeError:
            return None
        if not LOG_ID_PATTERN.fullmatch(log_id):
            return None
        if len(_log_id_names) >= _LOG_ID_CACHE:
            _log_id_names.clear()
        _log_id_names[name] = log_id
    rest = read_rest(raw, end, flags)
    if rest is None:
        return None
    author = _authors.get(raw[5:_AUTHOR_END])  # one bytes object per author, not per entry
    if author is None:
        if len(_authors) >= _PUBLIC_KEY_CACHE:
            _authors.clear()
        author = _authors.setdefault(raw[5:_AUTHOR_END], raw[5:_AUTHOR_END])
    return (flags, author, log_id, *rest)


#: What :func:`read_rest` gives: seq, timestamp, backlink, lipmaa link, payload size,
#: payload hash, signature.
Rest = tuple[int, int, "bytes | None", "bytes | None", int, bytes, bytes]


def feed_lead(author: bytes, log_id: str) -> bytes | None:
    """Bytes 3.. of every canonical entry of the feed up to the end of its log id
    (the author's head and key, the log id's head and text); None for a log id
    that no entry may carry."""
    name = log_id.encode()
    if not LOG_ID_PATTERN.fullmatch(log_id) or len(author) != HASH_SIZE:
        return None
    text_head = bytes([0x60 + len(name)]) if len(name) < 24 else bytes([0x78, len(name)])
    return b"\x58\x20" + author + text_head + name


def read_rest(raw: bytes, p: int, flags: int) -> Rest | None:
    """:func:`read_fields` from offset ``p``, just after the log id, to the end."""
    n = len(raw)
    if p >= n:
        return None
    seq, p = _uint_at(raw, p, n)
    if not 1 <= seq <= MAX_SEQ or p >= n:
        return None
    timestamp, p = _uint_at(raw, p, n)
    if timestamp < 0:
        return None
    backlink = lipmaa_link = None
    if seq == 1:
        if raw[p:p + 2] != b"\xf6\xf6":
            return None
        p += 2
    else:
        if raw[p:p + 2] != b"\x58\x20":
            return None
        backlink = raw[p + 2:p + 34]
        p += 34
        if link_target(seq) is None:
            if p >= n or raw[p] != _NULL:
                return None
            p += 1
        else:
            if raw[p:p + 2] != b"\x58\x20":
                return None
            lipmaa_link = raw[p + 2:p + 34]
            p += 34
    if p >= n:
        return None
    size, p = _uint_at(raw, p, n)
    if not 0 <= size <= MAX_PAYLOAD_SIZE:
        return None
    if raw[p:p + 2] != b"\x58\x20":
        return None
    phash = raw[p + 2:p + 34]
    p += 34
    if flags & FLAG_SIGNED:
        if n != p + SIG_PART or raw[p:p + 2] != SIG_HEAD:
            return None
        signature = raw[p + 2:]
    elif n != p:
        return None
    else:
        signature = b""
    if len(phash) != HASH_SIZE:  # the input ended inside the payload hash
        return None
    return seq, timestamp, backlink, lipmaa_link, size, phash, signature


def _uint_at(raw: bytes, p: int, n: int) -> tuple[int, int]:
    """The unsigned integer whose head is at ``raw[p]`` (``p < n``) and the offset
    after it; (-1, p) unless the head is its shortest (spec/02 §4) and it fits."""
    head = raw[p]
    if head < 24:
        return head, p + 1
    wide = _UINT_MIN.get(head)
    if wide is None:
        return -1, p
    width, least = wide
    end = p + 1 + width
    value = int.from_bytes(raw[p + 1:end], "big")
    if value < least or end > n:
        return -1, p
    return value, end


_authors: dict[bytes, bytes] = {}


#: Log id bytes already found valid, and their text (see _valid_log_ids).
_log_id_names: dict[bytes, str] = {}


def decode_entry(raw: bytes) -> Entry:
    """Decode and structurally check one entry; links and signature are not checked here.

    Raises :class:`Oversize`, :class:`MalformedEntry`, :class:`UnknownVersion` or
    :class:`NonCanonicalEncoding`, in the order of spec/04 §2 (D1-D9).
    """
    if type(raw) is not bytes:
        raw = bytes(raw)
    entry = decode_canonical(raw)
    return entry if entry is not None else decode_by_reencoding(raw)


def decode_by_reencoding(raw: bytes) -> Entry:
    """:func:`decode_entry` the way spec/02 §5 words it: decode, check every field,
    re-encode and compare. Slower than :func:`decode_canonical`, and it names the
    rule an entry breaks; every entry that one accepts, this accepts unchanged."""
    if len(raw) > MAX_ENTRY_SIZE:
        raise Oversize(f"entry is {len(raw)} bytes, the bound is {MAX_ENTRY_SIZE}")
    # Fast path: a canonical body starts 8a 02 <flags>, so the flags say where the
    # body ends; cbor2 decodes it, and re-encoding gives the same bytes. Anything
    # else goes through the strict reader, which tells malformed input (D2) from
    # merely non-canonical input (D9, reported after the field checks).
    tail = b""
    canonical = False
    if len(raw) > 2 and raw[2] & FLAG_SIGNED and len(raw) > SIG_PART:
        body, tail = raw[:-SIG_PART], raw[-SIG_PART:]
    else:
        body = raw
    if not tail or tail[:2] == SIG_HEAD:
        try:
            fields = cbor2.loads(body)
            canonical = cbor2.dumps(fields) == body
        except Exception:  # cbor2 raises several types for broken input
            canonical = False
    if not canonical:
        fields, end = strict_cbor_item(raw, 0)
        body, tail = raw[:end], raw[end:]
    if type(fields) is not list or not fields:
        raise _malformed("body must be a CBOR array")
    version = fields[0]
    if type(version) is not int:
        raise _malformed("the first field (version) must be an unsigned integer")
    if version != VERSION:
        if not -(1 << 64) <= version < 1 << 64:
            # only a bignum tag (2 or 3) holds such an integer, and cbor2
            # round-trips those: a tag is malformed (spec D2), whatever it holds
            raise _malformed("CBOR tags are not allowed in an entry")
        raise UnknownVersion(f"entry format version {version}; this implementation knows {VERSION}")
    if tail and (len(tail) != SIG_PART or tail[:2] != SIG_HEAD):
        raise _malformed(
            f"{len(tail)} bytes follow the body: only a 64-byte signature (CBOR 58 40 ...) may"
        )
    if len(fields) != BODY_FIELDS:
        raise _malformed(f"body must have {BODY_FIELDS} fields, has {len(fields)}")
    _, flags, author, log_id, seq, timestamp, backlink, lipmaa_link, size, phash = fields
    if type(flags) is not int or flags not in ALLOWED_FLAGS:
        raise _malformed("flags must be 0 (unsigned), 2 (signed) or 3 (signed end of log)")
    if type(author) is not bytes or len(author) != 32:
        raise _malformed("author must be a 32-byte byte string")
    if type(log_id) is not str:
        raise _malformed("log id must be a text string")
    if log_id not in _valid_log_ids:
        if len(log_id.encode()) > MAX_LOG_ID_LEN:
            raise Oversize(f"log id is over {MAX_LOG_ID_LEN} bytes")
        if not LOG_ID_PATTERN.fullmatch(log_id):
            raise _malformed(f"log id {log_id!r} has characters outside a-z, 0-9, '_', '-'")
        if len(_valid_log_ids) >= _LOG_ID_CACHE:
            _valid_log_ids.clear()
        _valid_log_ids.add(log_id)
    if type(seq) is not int or not 1 <= seq <= MAX_SEQ:
        raise _malformed(f"seq must be an integer from 1 to 2^63-1, got {seq!r}")
    if type(timestamp) is not int or not 0 <= timestamp <= MAX_TIMESTAMP:
        raise _malformed("timestamp must be an unsigned 64-bit integer")
    if type(size) is not int or size < 0:
        raise _malformed("payload size must be an unsigned integer")
    if size > MAX_PAYLOAD_SIZE:
        if size >= 1 << 64:  # a bignum tag, as for the version above
            raise _malformed("CBOR tags are not allowed in an entry")
        raise Oversize(f"payload size {size} is over the bound {MAX_PAYLOAD_SIZE}")
    _hash_field(phash, "payload hash")
    if seq == 1:
        if backlink is not None or lipmaa_link is not None:
            raise _malformed("entry 1 has no backlink and no lipmaa link (both must be null)")
    else:
        _hash_field(backlink, "backlink")
        if link_target(seq) is None:
            if lipmaa_link is not None:
                raise _malformed(
                    "lipmaa link must be null where lipmaa(seq) == seq - 1"
                )
        else:
            _hash_field(lipmaa_link, "lipmaa link")
    if bool(flags & FLAG_SIGNED) != bool(tail):
        raise _malformed(
            "the flags say the entry is signed, but no signature follows the body"
            if flags & FLAG_SIGNED else
            "a signature follows the body, but the flags say the entry is unsigned"
        )
    if not canonical:
        raise NonCanonicalEncoding("re-encoding the body gives other bytes")
    return Entry(
        flags, author, log_id, seq, timestamp, backlink, lipmaa_link, size, phash,
        tail[2:], raw, entry_hash(raw),
    )


def strict_cbor_item(data: bytes, pos: int) -> tuple[Any, int]:
    """One well-formed CBOR item from ``pos``, without tags (spec/04 D2): ``(value, end)``.

    Non-shortest heads and indefinite lengths are read (the re-encoding check
    refuses them, D9). Maps, floats and booleans come back as a placeholder no
    field accepts. Raises :class:`MalformedEntry`.
    """
    try:
        return cbor.read_item(data, pos, cbor.STRUCTURE)
    except cbor.CborError as exc:
        raise _malformed(str(exc)) from None


def encode_body(
    *,
    flags: int,
    author: bytes,
    log_id: str,
    seq: int,
    timestamp: int,
    backlink: bytes | None,
    lipmaa_link: bytes | None,
    payload_size: int,
    payload_hash: bytes,
) -> bytes:
    """The canonical body bytes (what a signature covers)."""
    return cbor2.dumps(
        [VERSION, flags, author, log_id, seq, timestamp, backlink, lipmaa_link,
         payload_size, payload_hash]
    )


def sign_entry(
    secret: Ed25519PrivateKey,
    *,
    log_id: str,
    seq: int,
    timestamp: int,
    payload: bytes,
    backlink: bytes | None,
    lipmaa_link: bytes | None,
    end_of_log: bool = False,
    signed: bool = True,
    author: bytes | None = None,
) -> Entry:
    """Make an entry for ``payload``, signed unless ``signed`` is False.

    Decoding the result gives it back unchanged. ``author`` saves re-deriving
    the public key when the caller has it. An end of log is always signed.
    """
    if author is None:
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        author = secret.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    check_log_id(log_id)
    if not 1 <= seq <= MAX_SEQ or (seq == 1) != (backlink is None):
        raise ValueError(f"seq {seq}: entry 1 alone has no backlink, every later one has one")
    if (link_target(seq) is None) != (lipmaa_link is None):
        raise ValueError(f"seq {seq}: lipmaa link must be given exactly when link_target(seq)")
    if len(payload) > MAX_PAYLOAD_SIZE:
        raise Oversize(f"payload is {len(payload)} bytes, the bound is {MAX_PAYLOAD_SIZE}")
    if end_of_log and not signed:
        raise ValueError("an end-of-log entry is always signed")
    flags = (FLAG_SIGNED if signed else 0) | (FLAG_END_OF_LOG if end_of_log else 0)
    phash = payload_hash(payload)
    body = encode_body(
        flags=flags, author=author, log_id=log_id, seq=seq, timestamp=timestamp,
        backlink=backlink, lipmaa_link=lipmaa_link, payload_size=len(payload),
        payload_hash=phash,
    )
    signature = secret.sign(body) if signed else b""
    raw = body + SIG_HEAD + signature if signed else body
    return Entry(
        flags, author, log_id, seq, timestamp, backlink, lipmaa_link, len(payload), phash,
        signature, raw, entry_hash(raw),
    )
