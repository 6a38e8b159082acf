"""A run's signatures checked on two threads (storage/signatures.py) decide exactly as
one by one (core/verify.signatures_hold), and the ingest path uses them."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tidings.core.entry import SIG_PART, SIG_SIZE
from tidings.core.verify import signatures_hold
from tidings.errors import BadSignature, InvalidData
from tidings.storage.signatures import MIN_SPLIT, ChecksAhead, signatures_hold_split
from tidings.wire.compact import compact_run
from tidings.wire.messages import CompactEntries

from .helpers import examples, make_log
from .replication_helpers import held, node
from .test_compact import bare_peer

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


# -- checks begun ahead of the ingest ---------------------------------------------------


def runs_of_pairs(count: int, bad: set[int]) -> list[list[tuple[bytes, bytes]]]:
    """``count`` runs of signed pairs, those in ``bad`` with one signature damaged."""
    size = len(SIGNED) // count
    runs = [SIGNED[index * size:(index + 1) * size] for index in range(count)]
    return [damaged(run, len(run) // 2, "signature") if index in bad else run
            for index, run in enumerate(runs)]


@settings(max_examples=examples(30))
@given(st.integers(1, 6), st.sets(st.integers(0, 5)), st.integers(0, 6))
def test_checks_begun_ahead_answer_as_one_by_one(count: int, bad: set[int], asked: int) -> None:
    # Runs checked ahead, then asked in order (some never: dropped), answer as
    # signatures_hold does, whether the helper or the asking thread ran their check.
    keys = [object() for _ in range(count)]
    runs = runs_of_pairs(count, bad)
    ahead = ChecksAhead()
    for key, run in zip(keys, runs, strict=True):
        ahead.start(key, AUTHOR, run)
    for key, run in list(zip(keys, runs, strict=True))[:asked]:
        assert ahead.check(key)(AUTHOR, run) == signatures_hold(AUTHOR, run)
    ahead.forget()
    assert signatures_hold_split(AUTHOR, SIGNED)  # the helper still serves


def test_a_check_begun_ahead_is_not_taken_for_other_signatures() -> None:
    good, bad = SIGNED[:6], damaged(SIGNED[:6], 2, "body")
    key = object()
    ahead = ChecksAhead()
    ahead.start(key, AUTHOR, good)
    assert not ahead.check(key)(AUTHOR, bad)  # other pairs than begun: checked afresh
    ahead.start(key, AUTHOR, good)
    assert not ahead.check(key)(bytes(32), good)  # another author: checked afresh
    assert ahead.check(object())(AUTHOR, good)  # never begun: checked then
    ahead.forget()


def test_a_read_of_several_runs_stores_those_before_a_bad_signature() -> None:
    # One read carries several compact runs (checked ahead on the helper thread);
    # the third's signature is damaged: the first two are stored, the rest is not,
    # and the peer is told invalid-data.
    log, payloads = make_log(200, per_append=10)
    feed = log[0].feed
    b = node("b", follows=[feed])
    channel, session = bare_peer(b)
    messages = []
    for first in range(0, 200, 40):
        message = compact_run(feed, [(e.raw, p) for e, p in
                                     zip(log[first:first + 40], payloads[first:first + 40],
                                         strict=True)])
        assert message is not None
        messages.append(message)
    item = messages[2].items[9]  # seq 90, signed
    assert item.signature is not None
    third = messages[2]
    messages[2] = CompactEntries(third.feed, third.first_seq, third.anchors, (
        *third.items[:9],
        item._replace(signature=bytes([item.signature[0] ^ 1]) + item.signature[1:]),
        *third.items[10:]))
    for message in messages:
        channel.send(message)
    with pytest.raises(InvalidData) as caught:
        b.receive(session, channel.data_to_send())
    assert isinstance(caught.value.cause, BadSignature)
    assert held(b, feed) == 80
