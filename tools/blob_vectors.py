"""spec/vectors/blobs.json (spec/13-blobs.md), written by tools/make_vectors.py.

The trees, roots and proofs are computed here from the spec's definitions, by
code of this file's own (plain recursion over the chunks), and compared with
what the library makes: a bug shared by the two would have to be made twice.
The rule every invalid case breaks is written down from the spec.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from tidings.core import blob as lib

CHUNK = 65536
LIMIT = 1 << 32


def pattern(size: int) -> bytes:
    """The bytes of the vectors' blobs: byte ``j`` is ``j mod 251``."""
    return (bytes(range(251)) * (size // 251 + 1))[:size]


# -- the definitions of spec/13 §1-§4, written out once more --------------------------


def h(*parts: bytes) -> bytes:
    return hashlib.blake2b(b"".join(parts), digest_size=32).digest()


def chunks_of(data: bytes) -> list[bytes]:
    return [data[i:i + CHUNK] for i in range(0, len(data), CHUNK)] or [b""]


def largest_power_below(k: int) -> int:
    p = 1
    while p * 2 < k:
        p *= 2
    return p


def tree(leaves: list[bytes]) -> bytes:
    if len(leaves) == 1:
        return leaves[0]
    s = largest_power_below(len(leaves))
    return h(b"\x01", tree(leaves[:s]), tree(leaves[s:]))


def proof(leaves: list[bytes], i: int) -> bytes:
    """Sibling hashes from the leaf up (spec/13 §3.1)."""
    if len(leaves) == 1:
        return b""
    s = largest_power_below(len(leaves))
    if i < s:
        return proof(leaves[:s], i) + tree(leaves[s:])
    return proof(leaves[s:], i - s) + tree(leaves[:s])


def root(data: bytes) -> tuple[bytes, bytes, list[bytes]]:
    leaves = [h(b"\x00", c) for c in chunks_of(data)]
    top = tree(leaves)
    return h(b"\x02", len(data).to_bytes(8, "big"), top), top, leaves


def text_id(blob_root: bytes, size: int) -> str:
    check = hashlib.blake2b(b"tb1" + blob_root + size.to_bytes(8, "big"), digest_size=2).digest()
    key = base64.b32encode(blob_root + check).decode().rstrip("=").lower()
    return f"tb1{key}_{size}"


# -- the cases -----------------------------------------------------------------------

#: (name, size, description, chunks listed: None for all)
BLOBS: list[tuple[str, int, str, list[int] | None]] = [
    ("empty", 0, "the empty blob: one chunk of 0 bytes, an empty proof", None),
    ("one-byte", 1, "one chunk of 1 byte", None),
    ("hello", 12, "the 12 bytes \"hello, world\" (not the pattern)", None),
    ("chunk-minus-one", CHUNK - 1, "one chunk, 1 byte short of full", None),
    ("one-chunk", CHUNK, "exactly one full chunk", None),
    ("chunk-plus-one", CHUNK + 1, "a full chunk and a chunk of 1 byte", None),
    ("three-chunks", 3 * CHUNK, "three full chunks: the left subtree holds 2", None),
    ("four-chunks", 4 * CHUNK, "four full chunks: a complete tree", None),
    ("six-chunks", 5 * CHUNK + 1000, "six chunks, the last of 1,000 bytes: proofs of 2 "
     "and 3 hashes", None),
    ("nine-chunks", 8 * CHUNK + 7, "nine chunks: the last is the root's right child", None),
    ("episode", 24_117_248, "a 23 MiB episode (368 chunks); a few chunks listed",
     [0, 1, 255, 256, 366, 367]),
]


def data_of(name: str, size: int) -> bytes:
    return b"hello, world" if name == "hello" else pattern(size)


def blob_case(name: str, size: int, description: str, listed: list[int] | None
              ) -> tuple[dict[str, Any], bytes, list[bytes]]:
    data = data_of(name, size)
    blob_root, top, leaves = root(data)
    made = lib.BlobTree.of(data)
    assert made.blob_id == lib.BlobId(blob_root, size), name  # the library agrees
    identifier = text_id(blob_root, size)
    assert str(made.blob_id) == identifier, name
    count = len(leaves)
    chunks = []
    for i in range(count) if listed is None else listed:
        piece = chunks_of(data)[i]
        the_proof = proof(leaves, i)
        assert made.proof(i) == the_proof, (name, i)
        chunks.append({"index": i, "offset": i * CHUNK, "length": len(piece),
                       "leaf": leaves[i].hex(), "proof": the_proof.hex()})
    case = {
        "name": name, "description": description, "size": size, "chunk_count": count,
        "data": data.hex() if size <= 64 else None,
        "tree_hash": top.hex(), "root": blob_root.hex(), "id": identifier,
        "binary_id": (blob_root + size.to_bytes(8, "big")).hex(), "chunks": chunks,
    }
    return case, data, leaves


def flip(data: bytes, index: int, mask: int = 0x01) -> bytes:
    out = bytearray(data)
    out[index] ^= mask
    return bytes(out)


def make_blobs() -> dict[str, Any]:
    blobs = []
    made: dict[str, tuple[bytes, list[bytes]]] = {}
    for name, size, description, listed in BLOBS:
        case, data, leaves = blob_case(name, size, description, listed)
        blobs.append(case)
        made[name] = (data, leaves)

    six, six_leaves = made["six-chunks"]
    six_id = next(c for c in blobs if c["name"] == "six-chunks")
    six_root = bytes.fromhex(six_id["root"])

    invalid_chunks: list[tuple[str, str, str, str, int, dict[str, Any], bytes, bytes]] = []

    def chunk(source: str, index: int, *, cut: int = 0, append: bytes = b"",
              flip_at: tuple[int, int] | None = None) -> tuple[dict[str, Any], bytes]:
        """Chunk ``index`` of blob ``source``, edited: its last ``cut`` bytes removed,
        ``append`` added, the bits ``mask`` of byte ``offset`` flipped."""
        data = chunks_of(made[source][0])[index]
        data = data[:len(data) - cut] + append
        if flip_at is not None:
            data = flip(data, *flip_at)
        spec = {"blob": source, "index": index, "cut": cut, "append": append.hex(),
                "flip": None if flip_at is None else {"offset": flip_at[0],
                                                      "mask": flip_at[1]}}
        return spec, data

    def bad(name: str, rule: str, description: str, blob_text: str, index: int,
            data: tuple[dict[str, Any], bytes], the_proof: bytes) -> None:
        invalid_chunks.append((name, rule, description, blob_text, index, *data, the_proof))

    def given(data: bytes) -> tuple[dict[str, Any], bytes]:
        return {"hex": data.hex()}, data

    sid = six_id["id"]
    six_proof = [proof(six_leaves, i) for i in range(6)]
    bad("index-past-the-end", "blob-chunk-index", "chunk 6 of a blob of chunks 0 to 5", sid, 6,
        chunk("six-chunks", 5), six_proof[5])
    bad("last-chunk-one-byte-short", "blob-chunk-length",
        "the last chunk cut by one byte (a truncation)", sid, 5, chunk("six-chunks", 5, cut=1),
        six_proof[5])
    bad("last-chunk-one-byte-more", "blob-chunk-length",
        "the last chunk with one byte added (an extension)", sid, 5,
        chunk("six-chunks", 5, append=b"\x00"), six_proof[5])
    bad("full-chunk-one-byte-short", "blob-chunk-length", "chunk 0 of 65,535 bytes", sid, 0,
        chunk("six-chunks", 0, cut=1), six_proof[0])
    empty_id = next(c for c in blobs if c["name"] == "empty")["id"]
    bad("empty-blob-with-a-byte", "blob-chunk-length",
        "the empty blob's chunk given as one byte", empty_id, 0, given(b"\x00"), b"")
    bad("proof-one-hash-short", "blob-proof-length", "chunk 0's proof without its last hash",
        sid, 0, chunk("six-chunks", 0), six_proof[0][:-32])
    bad("proof-one-hash-more", "blob-proof-length",
        "chunk 5's proof (2 hashes) with a third", sid, 5, chunk("six-chunks", 5),
        six_proof[5] + six_proof[0][:32])
    bad("proof-of-another-depth", "blob-proof-length",
        "chunk 4 (2 hashes) with chunk 0's proof (3 hashes)", sid, 4, chunk("six-chunks", 4),
        six_proof[0])
    bad("proof-31-bytes-more", "blob-proof-length", "a proof of 95 bytes", sid, 5,
        chunk("six-chunks", 5), six_proof[5] + bytes(31))
    bad("one-chunk-blob-with-a-proof", "blob-proof-length",
        "a one-chunk blob's chunk with a 32-byte proof",
        next(c for c in blobs if c["name"] == "hello")["id"], 0, given(b"hello, world"),
        bytes(32))
    bad("flipped-data-bit", "blob-chunk-proof", "bit 0 of byte 1000 of chunk 2 flipped",
        sid, 2, chunk("six-chunks", 2, flip_at=(1000, 0x01)), six_proof[2])
    bad("flipped-last-data-bit", "blob-chunk-proof",
        "the top bit of the last byte of the last chunk flipped", sid, 5,
        chunk("six-chunks", 5, flip_at=(999, 0x80)), six_proof[5])
    bad("flipped-proof-bit", "blob-chunk-proof", "a bit of the top hash of chunk 3's proof",
        sid, 3, chunk("six-chunks", 3), flip(six_proof[3], 64 + 31, 0x40))
    bad("proof-hashes-swapped", "blob-chunk-proof", "chunk 1's proof with hashes 0 and 1 "
        "swapped", sid, 1, chunk("six-chunks", 1),
        six_proof[1][32:64] + six_proof[1][:32] + six_proof[1][64:])
    bad("chunk-at-another-index", "blob-chunk-proof",
        "chunk 1 with its own proof, given as chunk 2 (same length, same depth)", sid, 2,
        chunk("six-chunks", 1), six_proof[1])
    bad("proof-of-another-blob", "blob-chunk-proof",
        "chunk 0 with the first 3 of the 4 hashes of chunk 0's proof in nine-chunks: the "
        "two blobs share their first 4 chunks, so the first 2 hashes are right, the third "
        "(chunks 4 to 7, not 4 and 5) is not",
        sid, 0, chunk("six-chunks", 0), proof(made["nine-chunks"][1], 0)[:96])
    bad("root-with-another-size", "blob-chunk-proof",
        "the six-chunk blob's root with its size plus one (the same chunk count): the root "
        "binds the size, so no chunk verifies", text_id(six_root, len(six) + 1), 0,
        chunk("six-chunks", 0), six_proof[0])
    two_leaves = made["chunk-plus-one"][1]
    two_root = bytes.fromhex(next(c for c in blobs if c["name"] == "chunk-plus-one")["root"])
    bad("parent-posing-as-a-leaf", "blob-chunk-proof",
        "a 64-byte 'chunk' made of the two leaf hashes of chunk-plus-one, under that blob's "
        "root with size 64: leaves and parents hash with different first bytes",
        text_id(two_root, 64), 0, given(two_leaves[0] + two_leaves[1]), b"")

    for name, rule, _, blob_text, index, _, data, the_proof in invalid_chunks:
        # The rule each case breaks was written from the spec; check the library agrees.
        try:
            lib.verify_chunk(lib.BlobId.parse(blob_text), index, data, the_proof)
        except lib.InvalidBlob as exc:
            assert exc.rule == rule, (name, exc.rule, rule)
        else:
            raise AssertionError(f"{name} verifies")

    hello_root = bytes.fromhex(next(c for c in blobs if c["name"] == "hello")["root"])
    invalid_binary = [
        ("39-bytes", "blob-id", "a root and a 7-byte size",
         hello_root + (12).to_bytes(8, "big")[1:]),
        ("41-bytes", "blob-id", "one byte more", hello_root + (12).to_bytes(8, "big") + b"\x00"),
        ("empty", "blob-id", "no bytes", b""),
        ("size-over-4-gib", "blob-size", "size 2^32 + 1", hello_root + (LIMIT + 1).to_bytes(8,
                                                                                        "big")),
        ("size-2-to-the-63", "blob-size", "size 2^63", hello_root + (1 << 63).to_bytes(8, "big")),
    ]
    valid_binary = [
        ("size-4-gib", "the largest size, 2^32: 65,536 chunks", hello_root + LIMIT.to_bytes(8,
                                                                                         "big")),
    ]

    hello_id = next(c for c in blobs if c["name"] == "hello")["id"]
    sep = 3 + 55
    largest = text_id(hello_root, LIMIT)
    invalid_text = [
        ("feed-prefix", "wrong-prefix", "tf1 where tb1 belongs", "tf1" + hello_id[3:]),
        ("upper-case-prefix", "wrong-prefix", "TB1", "TB1" + hello_id[3:]),
        ("leading-space", "wrong-prefix", "a space before the id (read exactly)", " " + hello_id),
        ("no-separator", "bad-separator", "the _ removed", hello_id[:sep] + hello_id[sep + 1:]),
        ("no-size", "bad-separator", "nothing after the _", hello_id[:sep + 1]),
        ("dash-separator", "bad-separator", "- in place of _",
         hello_id[:sep] + "-" + hello_id[sep + 1:]),
        ("root-cut-short", "bad-separator", "one character of the root part removed",
         hello_id[:sep - 1] + hello_id[sep:]),
        ("upper-case-root", "bad-chars", "the root part in upper case",
         hello_id[:3] + hello_id[3:sep].upper() + hello_id[sep:]),
        ("digit-1-in-root", "bad-chars", "1 is not in the base32 alphabet",
         hello_id[:10] + "1" + hello_id[11:]),
        ("trailing-bits", "non-canonical-base32", "the root part's last character with a "
         "trailing bit set",
         hello_id[:sep - 1] + _set_trailing(hello_id[sep - 1]) + hello_id[sep:]),
        ("size-leading-zero", "bad-size", "size 012", hello_id[:sep + 1] + "012"),
        ("size-sign", "bad-size", "size +12", hello_id[:sep + 1] + "+12"),
        ("size-space-after", "bad-size", "a space after the id (read exactly)", hello_id + " "),
        ("size-over-4-gib", "bad-size", "size 4294967297 (with a checksum made for it)",
         largest[:sep + 1] + str(LIMIT + 1)),
        ("size-11-digits", "bad-size", "size 00000000012", hello_id[:sep + 1] + "00000000012"),
        ("size-changed", "bad-checksum", "size 13 where the checksum is for 12",
         hello_id[:sep + 1] + "13"),
        ("root-character-changed", "bad-checksum", "one root character changed",
         hello_id[:5] + ("a" if hello_id[5] != "a" else "b") + hello_id[6:]),
    ]
    for name, reason, _, text in invalid_text:
        try:
            lib.BlobId.parse(text)
        except lib.InvalidBlobId as exc:
            assert exc.reason == reason, (name, exc.reason, reason)
        else:
            raise AssertionError(f"{name} parses")
    typed = [
        ("spaces-around", "  " + hello_id + " ", hello_id, "spaces are dropped from typed ids"),
        ("tab-and-newline", "\t" + hello_id + "\r\n", hello_id, "tab, CR, LF too"),
        ("no-break-space", hello_id + "\u00a0", "bad-size", "U+00A0 is not ASCII whitespace"),
    ]
    assert lib.BlobId.parse(largest).size == LIMIT

    whole = [
        ("hello-plus-a-byte", "blob-hash", "\"hello, world\" and one more byte, as the hello blob",
         hello_id, b"hello, world!"),
        ("hello-capitalised", "blob-hash", "\"Hello, world\" as the hello blob", hello_id,
         b"Hello, world"),
        ("hello", None, "the hello blob's bytes", hello_id, b"hello, world"),
    ]
    wire = make_wire(bytes.fromhex(six_id["root"]), six_id["size"],
                     made["six-chunks"][0], six_proof)
    return {
        "wire": wire,
        "chunk_size": CHUNK,
        "max_size": LIMIT,
        "data": "byte j of every blob is j mod 251, but for the blob named hello",
        "blobs": blobs,
        "largest_id": largest,
        "invalid_chunks": [
            {"name": n, "rule": r, "description": d, "blob": b, "index": i, "data": x,
             "proof": p.hex()}
            for n, r, d, b, i, x, _, p in invalid_chunks],
        "binary_ids": {
            "valid": [{"name": n, "description": d, "hex": b.hex(),
                       "root": b[:32].hex(), "size": int.from_bytes(b[32:], "big"),
                       "id": text_id(b[:32], int.from_bytes(b[32:], "big"))}
                      for n, d, b in valid_binary],
            "invalid": [{"name": n, "rule": r, "description": d, "hex": b.hex()}
                        for n, r, d, b in invalid_binary],
        },
        "invalid_text_ids": [{"name": n, "reason": r, "description": d, "text": t}
                             for n, r, d, t in invalid_text],
        "typed": [{"name": n, "text": t, "result": r, "description": d}
                  for n, t, r, d in typed],
        "whole": [{"name": n, "rule": r, "description": d, "blob": b, "data": x.hex()}
                  for n, r, d, b, x in whole],
    }


def _set_trailing(char: str) -> str:
    """The base32 character of ``char``'s value with its lowest bit set (a trailing bit:
    the 34 bytes of a root part use 2 bits of its last character)."""
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    return alphabet[alphabet.index(char) | 1]


# -- the wire messages of spec/13 §8 (types 14 to 18, wire version 3) -----------------


def make_wire(root: bytes, size: int, data: bytes, proofs: list[bytes]) -> dict[str, Any]:
    """Messages written with msgpack directly from the tables of spec/13 §8.2, and
    bodies every receiver refuses as ``malformed`` (§8.3)."""
    import msgpack

    def pack(value: Any) -> bytes:
        return msgpack.packb(value, use_bin_type=True)

    six = root + size.to_bytes(8, "big")  # six-chunks: 6 chunks, a 1-byte bitmap
    big = bytes(32) + (1 << 32).to_bytes(8, "big")  # the largest blob: 65,536 chunks
    chunk0 = [0, data[:CHUNK], proofs[0]]
    valid = [
        ("blob-request", "chunks 0-1 and 4 of the six-chunks blob", 14,
         [14, 7, six, [[0, 2], [4, 1]]]),
        ("blob-request-largest", "request id 2^32 - 1, 16 ranges of 16 chunks of the largest "
         "blob (256 chunks, the most one request asks for)", 14,
         [14, 2**32 - 1, big, [[i * 32, 16] for i in range(16)]]),
        ("blob-data", "chunk 0 of the six-chunks blob with its proof, not final", 15,
         [15, 7, [chunk0], 0]),
        ("blob-data-final-empty", "don't have: the final answer with no chunk", 15,
         [15, 7, [], 1]),
        ("blob-query", "which chunks of six-chunks are held; subscribe", 16, [16, 8, six, 1]),
        ("blob-have", "chunks 0, 2 and 5 of six-chunks (25)", 17, [17, 8, six, b"\x25"]),
        ("blob-have-whole", "an announcement: the whole blob is held", 17, [17, None, six, None]),
        ("blob-cancel", "the requester needs no more of request 7", 18, [18, 7]),
    ]
    invalid = [
        ("request-no-range", "no range", [14, 1, six, []]),
        ("request-past-last-chunk", "chunks 5-6 of a 6-chunk blob", [14, 1, six, [[5, 2]]]),
        ("request-zero-count", "a range of 0 chunks", [14, 1, six, [[0, 0]]]),
        ("request-overlapping", "ranges 0-1 then 1", [14, 1, six, [[0, 2], [1, 1]]]),
        ("request-descending", "range 4 then 0", [14, 1, six, [[4, 1], [0, 1]]]),
        ("request-257-chunks", "257 chunks of the largest blob",
         [14, 1, big, [[0, 256], [300, 1]]]),
        ("request-17-ranges", "17 ranges", [14, 1, big, [[i * 2, 1] for i in range(17)]]),
        ("request-short-id", "a 39-byte blob id", [14, 1, six[:39], [[0, 1]]]),
        ("request-oversized-blob", "a blob id whose size is 2^32 + 1",
         [14, 1, bytes(32) + (2**32 + 1).to_bytes(8, "big"), [[0, 1]]]),
        ("data-5-chunks", "five chunks in one message", [15, 1, [chunk0] * 5, 1]),
        ("data-empty-not-final", "no chunk and final 0", [15, 1, [], 0]),
        ("data-chunk-too-long", "a chunk of 65,537 bytes",
         [15, 1, [[0, bytes(CHUNK + 1), b""]], 1]),
        ("data-proof-not-hashes", "a proof of 33 bytes", [15, 1, [[0, b"x", bytes(33)]], 1]),
        ("data-proof-17-hashes", "a proof of 544 bytes", [15, 1, [[0, b"x", bytes(544)]], 1]),
        ("data-index-65536", "chunk index 65,536", [15, 1, [[65536, b"x", b""]], 1]),
        ("have-bitmap-too-long", "2 bytes of bitmap for 6 chunks", [17, 1, six, b"\x01\x00"]),
        ("have-bit-past-last", "bit 6 set for a 6-chunk blob", [17, 1, six, b"\x40"]),
        ("query-subscribe-2", "subscribe 2", [16, 1, six, 2]),
        ("cancel-extra-field", "a cancel with two fields", [18, 1, 2]),
        ("request-id-too-large", "request id 2^32", [18, 2**32]),
    ]
    return {
        "version": 3,
        "messages": [{"name": n, "description": d, "type": t, "body": pack(v).hex()}
                     for n, d, t, v in valid],
        "invalid": [{"name": n, "description": d, "code": "malformed", "body": pack(v).hex()}
                    for n, d, v in invalid],
    }
