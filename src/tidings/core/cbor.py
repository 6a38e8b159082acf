"""The one strict CBOR reader (RFC 8949), pure and bounded.

Two parts of the protocol read CBOR that others wrote, with different rules:

* **Entries, fork proofs, bundle records** (:data:`STRUCTURE`, spec/04 D2): any
  well-formed item without tags. Non-shortest heads and indefinite lengths are
  read here, so that the caller's re-encoding check can report them as
  *non-canonical* rather than *malformed* (spec/04 D9). Maps, floats, booleans
  and other simple values come back as :data:`NOT_A_FIELD`: no field of an
  entry holds one.
* **Content** (:data:`CONTENT`, spec/content.md §1.1): the data model: definite
  lengths, text map keys that are distinct, finite floats, true/false/null, no
  byte strings (unless the caller allows them) and no tags.

Both refuse truncation, reserved additional information, invalid UTF-8 and
nesting deeper than :data:`MAX_DEPTH`, with :class:`CborError` naming what was
wrong. Callers turn it into their own error (a malformed entry; "not content").
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from typing import Any

from tidings.core.records import record

#: Levels of arrays and maps around an item: content allows 16 (spec/content.md
#: C4); no entry, proof or bundle record needs more than 3. The bound keeps a
#: crafted item from exhausting the stack.
MAX_DEPTH = 16


class CborError(ValueError):
    """The bytes break the reader's rules; the message says how."""


class _NotAField:
    """Stands for a well-formed CBOR value no entry field can hold (maps, floats, booleans)."""

    def __repr__(self) -> str:
        return "<not a field value>"


NOT_A_FIELD: Any = _NotAField()


@record
class Rules:
    """What a reader accepts beyond integers, text and arrays."""

    #: Indefinite-length strings, arrays and maps (for the non-canonical check).
    indefinite: bool
    #: Byte strings.
    byte_strings: bool
    #: Maps read as dicts of distinct text keys (else :data:`NOT_A_FIELD`).
    maps: bool
    #: false, true, null and finite floats read as values (else only null is;
    #: the rest read as :data:`NOT_A_FIELD`).
    data_model: bool


STRUCTURE = Rules(indefinite=True, byte_strings=True, maps=False, data_model=False)
CONTENT = Rules(indefinite=False, byte_strings=False, maps=True, data_model=True)
#: Content that may hold byte strings (the follow reader's R3, spec/content.md §7.2).
CONTENT_WITH_BYTES = Rules(indefinite=False, byte_strings=True, maps=True, data_model=True)

_SIMPLE = {20: False, 21: True, 22: None}
_FLOATS = {25: ">e", 26: ">f", 27: ">d"}


def read(data: bytes, rules: Rules) -> Any:
    """Exactly one item: trailing bytes raise :class:`CborError`."""
    value, end = read_item(data, 0, rules)
    if end != len(data):
        raise CborError(f"{len(data) - end} bytes follow the CBOR item")
    return value


def read_item(data: bytes, pos: int, rules: Rules, depth: int = 0) -> tuple[Any, int]:
    """One item from ``pos``: ``(value, end offset)``. ``depth`` counts the
    arrays and maps around it."""
    if pos >= len(data):
        raise CborError("truncated CBOR")
    initial = data[pos]
    major, info = initial >> 5, initial & 0x1F
    pos += 1
    argument: int | None
    if info < 24:
        argument = info
    elif info <= 27:
        if major == 7 and rules.data_model:
            return _float_or_simple(data, pos, info)
        size = 1 << (info - 24)
        if pos + size > len(data):
            raise CborError("truncated CBOR")
        argument = int.from_bytes(data[pos:pos + size], "big")
        pos += size
    elif info == 31:
        if not rules.indefinite:
            raise CborError("an indefinite length")
        argument = None
    else:
        raise CborError("reserved CBOR additional information (28-30)")
    if major == 0 or major == 1:
        if argument is None:
            raise CborError("an integer cannot have indefinite length")
        return (argument if major == 0 else -1 - argument), pos
    if major == 2 or major == 3:
        if major == 2 and not rules.byte_strings:
            raise CborError("a byte string")
        if argument is None:
            return _indefinite_string(data, pos, major, rules, depth)
        end = pos + argument
        if end > len(data):
            raise CborError("truncated CBOR")
        raw = data[pos:end]
        if major == 2:
            return raw, end
        try:
            return raw.decode("utf-8"), end
        except UnicodeDecodeError:
            raise CborError("a text string that is not UTF-8") from None
    if major == 4 or major == 5:
        if depth >= MAX_DEPTH:
            raise CborError(f"nested more than {MAX_DEPTH} levels deep")
        return _container(data, pos, major, argument, rules, depth)
    if major == 6:
        raise CborError("CBOR tags are not allowed")
    return _simple(info, argument, pos, rules)


def _float_or_simple(data: bytes, pos: int, info: int) -> tuple[Any, int]:
    """Major type 7 with a 1-8 byte argument, in the data model."""
    fmt = _FLOATS.get(info)
    if fmt is None:
        raise CborError("a simple value other than false, true and null")
    end = pos + struct.calcsize(fmt)
    if end > len(data):
        raise CborError("truncated CBOR")
    (number,) = struct.unpack(fmt, data[pos:end])
    if not math.isfinite(number):
        raise CborError("NaN or infinity")
    return number, end


def _simple(info: int, argument: int | None, pos: int, rules: Rules) -> tuple[Any, int]:
    if info == 31:
        raise CborError("a break code outside an indefinite-length item")
    if rules.data_model:
        if info not in _SIMPLE:
            raise CborError("a simple value other than false, true and null")
        return _SIMPLE[info], pos
    if info == 22:
        return None, pos
    if info == 24 and argument is not None and argument < 32:
        raise CborError("a two-byte simple value below 32")
    return NOT_A_FIELD, pos


def _until_break(data: bytes, pos: int,
                 read_one: Callable[[int], tuple[Any, int]]) -> tuple[list[Any], int]:
    """The items of an indefinite-length string, array or map, up to its break code."""
    items: list[Any] = []
    while True:
        if pos >= len(data):
            raise CborError("truncated CBOR")
        if data[pos] == 0xFF:
            return items, pos + 1
        item, pos = read_one(pos)
        items.append(item)


def _indefinite_string(data: bytes, pos: int, major: int, rules: Rules,
                       depth: int) -> tuple[Any, int]:
    def chunk(at: int) -> tuple[Any, int]:
        if data[at] >> 5 != major or data[at] & 0x1F == 31:
            raise CborError("a bad chunk in an indefinite-length string")
        return read_item(data, at, rules, depth + 1)

    chunks, pos = _until_break(data, pos, chunk)
    return (b"".join(chunks) if major == 2 else "".join(chunks)), pos


def _container(data: bytes, pos: int, major: int, argument: int | None, rules: Rules,
               depth: int) -> tuple[Any, int]:
    if argument is None:
        items, pos = _until_break(data, pos, lambda at: read_item(data, at, rules, depth + 1))
        if major == 5 and len(items) % 2:
            raise CborError("a break code between a map key and its value")
    else:
        count = argument * (1 if major == 4 else 2)
        if count > len(data) - pos:  # every item takes at least one byte
            raise CborError("truncated CBOR")
        items = []
        for _ in range(count):
            item, pos = read_item(data, pos, rules, depth + 1)
            items.append(item)
    if major == 4:
        return items, pos
    if not rules.maps:
        return NOT_A_FIELD, pos
    pairs: dict[str, Any] = {}
    for key, value in zip(items[::2], items[1::2], strict=True):
        if not isinstance(key, str) or key in pairs:
            raise CborError("a map key that is not text, or a repeated key")
        pairs[key] = value
    return pairs, pos
