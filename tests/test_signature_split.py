"""A run's signatures checked on two threads (storage/signatures.py) decide exactly as
one by one (core/verify.signatures_hold), and the ingest path uses them."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tidings.core.entry import SIG_PART, SIG_SIZE
from tidings.core.verify import signatures_hold
from tidings.storage.signatures import MIN_SPLIT, signatures_hold_split

from .helpers import examples, make_log

# Signed entries of one feed (every entry signed): (author, [(signature, body)]).
_LOG, _ = make_log(3 * MIN_SPLIT + 5, per_append=1)
AUTHOR = _LOG[0].author
SIGNED = [(e.raw[-SIG_SIZE:], e.raw[:-SIG_PART]) for e in _LOG]
assert all(e.signed for e in _LOG)


def damaged(pairs: list[tuple[bytes, bytes]], index: int, what: str) -> list[tuple[bytes, bytes]]:
    signature, body = pairs[index]
    if what == "signature":
        signature = bytes([signature[0] ^ 1]) + signature[1:]
    elif what == "body":
        body = body[:-1] + bytes([body[-1] ^ 0x80])
    else:  # another entry's signature
        signature = pairs[(index + 1) % len(pairs)][0]
    return [*pairs[:index], (signature, body), *pairs[index + 1:]]


@settings(max_examples=examples(60))
@given(st.integers(0, len(SIGNED)),
       st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(["signature", "body", "swap"])),
                max_size=3))
def test_checked_on_two_threads_as_one_by_one(count: int, damage: list[tuple[int, str]]) -> None:
    pairs = SIGNED[:count]
    for where, what in damage:
        if pairs:
            pairs = damaged(pairs, where % len(pairs), what)
    assert signatures_hold_split(AUTHOR, pairs) == signatures_hold(AUTHOR, pairs)


def test_a_bad_signature_in_either_half_is_found() -> None:
    assert signatures_hold_split(AUTHOR, SIGNED)
    for index in (0, len(SIGNED) // 2 - 1, len(SIGNED) // 2, len(SIGNED) - 1):
        assert not signatures_hold_split(AUTHOR, damaged(SIGNED, index, "signature")), index
    assert not signatures_hold_split(bytes(32), SIGNED)  # another author


def test_an_error_on_the_helper_thread_reaches_the_caller() -> None:
    pairs: list[tuple[bytes, bytes]] = [(SIGNED[0][0], None)] * MIN_SPLIT  # type: ignore[list-item]
    with pytest.raises(TypeError):
        signatures_hold(AUTHOR, pairs)
    with pytest.raises(TypeError):
        signatures_hold_split(AUTHOR, pairs)
    assert signatures_hold_split(AUTHOR, SIGNED)  # the helper still serves


def test_threads_share_the_helper() -> None:
    results: list[bool] = []
    bad = damaged(SIGNED, 1, "body")

    def check(pairs: list[tuple[bytes, bytes]]) -> None:
        for _ in range(5):
            results.append(signatures_hold_split(AUTHOR, pairs) == (pairs is SIGNED))

    threads = [threading.Thread(target=check, args=(pairs,)) for pairs in (SIGNED, bad, SIGNED)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [True] * 15
