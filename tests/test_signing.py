"""sign_run makes, a batch at once, exactly the entries sign_entry makes one by one."""

from __future__ import annotations

import os
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from tidings.core.entry import MAX_PAYLOAD_SIZE, decode_entry, sign_entry
from tidings.core.lipmaa import link_target, links_needed
from tidings.core.signing import sign_run
from tidings.errors import Oversize

from .helpers import examples

SECRET = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
AUTHOR = SECRET.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

#: Where the CBOR heads of a seq, a size or a timestamp change length (spec/02 §4).
EDGES = [1, 2, 22, 23, 24, 25, 254, 255, 256, 65_534, 65_535, 65_536,
         2**32 - 2, 2**32 - 1, 2**32, 2**63 - 40]


def one_by_one(first: int, timestamp: int, payloads: list[bytes], signed: list[bool],
               backlink: bytes | None, links: dict[int, bytes], log_id: str,
               end_of_log: bool) -> list[Any]:
    hashes = dict(links)
    entries = []
    previous = backlink
    for index, payload in enumerate(payloads):
        seq = first + index
        target = link_target(seq)
        entry = sign_entry(
            SECRET, author=AUTHOR, log_id=log_id, seq=seq, timestamp=timestamp,
            payload=payload, backlink=previous,
            lipmaa_link=None if target is None else hashes[target],
            end_of_log=end_of_log and index == len(payloads) - 1, signed=signed[index])
        hashes[seq] = previous = entry.hash
        entries.append(entry)
    return entries


@st.composite
def batches(draw: st.DrawFn) -> dict[str, Any]:
    count = draw(st.integers(1, 40))
    first = draw(st.sampled_from(EDGES) | st.integers(1, 3000))
    first = min(first, 2**63 - count)
    sizes = draw(st.lists(st.sampled_from([0, 1, 23, 24, 255, 256, 300]) | st.integers(0, 600),
                          min_size=count, max_size=count))
    signed = draw(st.lists(st.booleans(), min_size=count, max_size=count))
    end_of_log = draw(st.booleans())
    if end_of_log:
        signed[-1] = True
    below = links_needed(first, first + count - 1) - set(range(first, first + count))
    return {
        "first": first,
        "timestamp": draw(st.sampled_from([0, 23, 24, 2**32 - 1, 2**32, 2**64 - 1])
                          | st.integers(0, 2**53)),
        "payloads": [os.urandom(size) for size in sizes],
        "signed": signed,
        "backlink": None if first == 1 else os.urandom(32),
        "links": {seq: os.urandom(32) for seq in below},
        "log_id": draw(st.sampled_from(["blog", "a", "x" * 23, "y" * 24, "z" * 64])),
        "end_of_log": end_of_log,
    }


@settings(max_examples=examples(200), deadline=None)
@given(batches())
def test_a_run_is_byte_for_byte_the_entries_signed_one_by_one(batch: dict[str, Any]) -> None:
    expected = one_by_one(**batch)
    made = sign_run(
        SECRET, author=AUTHOR, log_id=batch["log_id"], first_seq=batch["first"],
        timestamp=batch["timestamp"], payloads=batch["payloads"], signed=batch["signed"],
        backlink=batch["backlink"], links=batch["links"], end_of_log=batch["end_of_log"])
    assert made == expected
    for entry in made:  # and each decodes back to itself (canonical, checked)
        assert decode_entry(entry.raw) == entry


def test_a_run_refuses_what_sign_entry_refuses_before_signing_anything() -> None:
    def run(**changes: Any) -> Any:
        arguments: dict[str, Any] = {
            "author": AUTHOR, "log_id": "blog", "first_seq": 12, "timestamp": 1,
            "payloads": [b"a", b"b"], "signed": [False, True], "backlink": bytes(32),
            "links": {8: bytes(32), 4: bytes(32)}}
        arguments.update(changes)
        return sign_run(SECRET, **arguments)

    assert len(run()) == 2
    with pytest.raises(ValueError, match="lipmaa"):
        run(links={8: bytes(32)})  # entry 13 links to 4: its hash is needed
    with pytest.raises(ValueError, match="backlink"):
        run(backlink=None)
    with pytest.raises(ValueError, match="backlink"):
        run(first_seq=1, links={})
    with pytest.raises(ValueError, match="always signed"):
        run(signed=[True, False], end_of_log=True)
    with pytest.raises(ValueError, match="one signed flag"):
        run(signed=[True])
    with pytest.raises(ValueError, match="32 bytes"):
        run(author=AUTHOR[:31])
    with pytest.raises(ValueError, match="timestamp"):
        run(timestamp=-1)
    with pytest.raises(ValueError, match="2\\^63"):
        run(first_seq=2**63 - 1)
    with pytest.raises(Oversize):
        run(payloads=[b"a", bytes(MAX_PAYLOAD_SIZE + 1)])
    with pytest.raises(ValueError, match="log id"):
        run(log_id="Not A Log")
    assert run(payloads=[], signed=[]) == []
