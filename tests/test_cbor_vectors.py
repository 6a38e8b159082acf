"""cbor2 against the published CBOR vectors (RFC 8949 Appendix A), for what entries use.

Entries are deterministic CBOR made by ``cbor2.dumps`` and checked by
re-encoding (spec/02-entries.md). That holds only if cbor2 writes the one
shortest form RFC 8949 gives for every kind of value an entry holds: unsigned
integers up to 2^64 - 1, byte strings, text strings, null and arrays of those.
These tests pin that, and that the re-encoding check refuses the vectors'
indefinite-length forms of those kinds.
"""

from __future__ import annotations

import json
import re
from typing import Any

import cbor2
import pytest

from .vectors import external_vectors

VECTORS_FILE = external_vectors("cbor", "appendix_a.json")

ALL = json.loads(VECTORS_FILE.read_text(encoding="utf-8"))
BYTES_DIAGNOSTIC = re.compile(r"h'([0-9a-fA-F]*)'")
MAX_UINT = 2**64 - 1


def value_of(vector: dict[str, Any]) -> tuple[bool, Any]:
    """``(True, value)`` when the vector gives its value: JSON ``decoded`` or ``h'..'``."""
    if "decoded" in vector:
        return True, vector["decoded"]
    match = BYTES_DIAGNOSTIC.fullmatch(vector.get("diagnostic", ""))
    return (True, bytes.fromhex(match.group(1))) if match else (False, None)


def kind(value: Any) -> str | None:
    """The entry kind of ``value``, or None for kinds entries never hold."""
    if value is None:
        return "null"
    if type(value) is int:  # not bool, which is an int subclass
        return "uint" if 0 <= value <= MAX_UINT else None
    if type(value) is bytes:
        return "bytes"
    if type(value) is str:
        return "text"
    if type(value) is list:
        return "array" if all(kind(item) is not None for item in value) else None
    return None


def select(roundtrip: bool) -> list[Any]:
    chosen = []
    for vector in ALL:
        known, value = value_of(vector)
        if known and vector["roundtrip"] is roundtrip and kind(value) is not None:
            chosen.append(pytest.param(value, vector["hex"], id=vector["hex"][:24]))
    return chosen


CANONICAL = select(roundtrip=True)
NOT_CANONICAL = select(roundtrip=False)


def test_every_entry_kind_is_covered() -> None:
    kinds = {kind(param.values[0]) for param in CANONICAL}
    assert kinds == {"uint", "bytes", "text", "null", "array"}
    assert any(param.values[0] == MAX_UINT for param in CANONICAL)
    assert NOT_CANONICAL, "the indefinite-length vectors should be selected"


@pytest.mark.parametrize(("value", "hex_"), CANONICAL)
def test_dumps_gives_the_canonical_bytes(value: Any, hex_: str) -> None:
    assert cbor2.dumps(value).hex() == hex_
    assert cbor2.loads(bytes.fromhex(hex_)) == value


@pytest.mark.parametrize(("value", "hex_"), NOT_CANONICAL)
def test_reencoding_refuses_other_forms(value: Any, hex_: str) -> None:
    """These decode to the value, but re-encoding gives other bytes: the strict check's basis."""
    data = bytes.fromhex(hex_)
    assert cbor2.loads(data) == value
    assert cbor2.dumps(cbor2.loads(data)) != data
