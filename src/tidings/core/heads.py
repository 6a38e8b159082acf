"""CBOR heads as entries write them (spec/02 §4): shortest, and made in bulk.

An entry's fields are a CBOR array of unsigned integers, byte strings and one
text string (spec/04 §2). Publishing a batch and rebuilding a compact run
(spec/09 §8) both write many entries of one feed at once, so the heads that
differ from entry to entry (the seq above all) are made here a stretch at a
time, in C-level passes, rather than one item at a time by a general encoder.
"""

from __future__ import annotations

import struct
from itertools import repeat

#: A 32-byte byte string (an author key, a hash), a 64-byte one (a signature), null.
HASH_HEAD = b"\x58\x20"
SIG_HEAD = b"\x58\x40"
NULL = b"\xf6"

#: The heads of a CBOR unsigned integer with argument bytes: (bytes, least value
#: that needs them), so a longer head than needed is told apart.
UINT_HEADS = {24: (1, 24), 25: (2, 1 << 8), 26: (4, 1 << 16), 27: (8, 1 << 32)}

#: An initial byte and a big-endian argument of 1, 2, 4 or 8 bytes, packed at once.
_UINT_HEAD_FORMATS = {width: struct.Struct(f">B{code}")
                      for width, code in ((1, "B"), (2, "H"), (4, "I"), (8, "Q"))}


def head(major: int, value: int) -> bytes:
    """The shortest CBOR head of ``major`` type for ``value`` (0 to 2^64 - 1)."""
    top = major << 5
    if value < 24:
        return bytes((top | value,))
    if value < 1 << 8:
        return bytes((top | 24, value))
    if value < 1 << 16:
        return bytes((top | 25, value >> 8, value & 0xFF))
    if value < 1 << 32:
        return bytes((top | 26,)) + value.to_bytes(4, "big")
    return bytes((top | 27,)) + value.to_bytes(8, "big")


def uint_width(value: int) -> tuple[int, int, int]:
    """For a value of 24 or more: its shortest unsigned head's initial byte, the bytes
    of its argument, and the least value whose head is longer."""
    for initial, (width, _) in UINT_HEADS.items():
        if 24 <= value < 1 << (8 * width):
            return initial, width, 1 << (8 * width)
    raise ValueError(f"{value} has no unsigned head of an argument")


def uint_heads(first: int, count: int) -> list[bytes]:
    """The shortest CBOR unsigned heads of ``first .. first + count - 1``: made a
    stretch of one head size at a time, each in one C-level pass."""
    heads: list[bytes] = []
    value, end = first, first + count
    while value < end:
        if value < 24:
            stop = min(end, 24)
            heads += map(bytes, zip(range(value, stop)))  # bytes((value,))
        else:
            initial, width, limit = uint_width(value)
            stop = min(end, limit)
            heads += map(_UINT_HEAD_FORMATS[width].pack, repeat(initial), range(value, stop))
        value = stop
    return heads


def feed_part(author_key: bytes, log_id: str) -> bytes:
    """Body fields 2 and 3 (author, log id) in their canonical encoding: the same in
    every entry of the feed, so a run encodes them once."""
    text = log_id.encode()
    return HASH_HEAD + author_key + head(3, len(text)) + text
