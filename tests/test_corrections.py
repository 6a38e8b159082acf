"""Corrections (spec/content.md §12): the effective view of a feed.

The vectors (``corrections`` in spec/vectors/content.json) are loaded, never
copied; the rest checks the rules K1-K4 on real logbooks, the page window a
renderer passes, and that the view never fails on any payloads.
"""

from __future__ import annotations

import doctest
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tidings.core.corrections
from tidings import Logbook, MemoryStore
from tidings.content import About, Follow, LinkShare, Post, Replace, Retract, encode, to_json
from tidings.core.corrections import (
    CORRECTION,
    MAX_CORRECTION_DISTANCE,
    ORIGINAL,
    REPLACED,
    RETRACTED,
    Seq,
    check_correction,
    effective_view,
)
from tidings.errors import UsageError

from .helpers import author

VECTORS = json.loads((Path(__file__).resolve().parents[1] / "spec" / "vectors"
                      / "content.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", [pytest.param(c, id=c["name"])
                                  for c in VECTORS["corrections"]])
def test_correction_vectors(case: dict[str, Any]) -> None:
    given_entries = [(Seq(e["seq"]), None if e["payload"] is None
                      else bytes.fromhex(e["payload"])) for e in case["entries"]]
    view = effective_view(reversed(given_entries))  # any order in, seq order out
    assert [{"seq": shown.entry.seq, "state": shown.state, "by": shown.by,
             "content": None if shown.content is None else to_json(shown.content)}
            for shown in view] == case["view"]


def test_the_vectors_cover_every_state() -> None:
    states = {row["state"] for case in VECTORS["corrections"] for row in case["view"]}
    assert states == {ORIGINAL, REPLACED, RETRACTED, CORRECTION}


def test_a_real_feed_shows_replacements_and_tombstones() -> None:
    book = Logbook(MemoryStore(), author(1))
    for text in ("one", "two", "three"):
        book.publish(encode(Post(text)), "blog")
    book.publish(encode(Replace(1, Post("one, fixed", title="One"))), "blog")
    book.publish(encode(Retract(2)), "blog")
    view = effective_view(book.read(book.feed("blog")))
    assert [(s.entry.seq, s.state, s.by) for s in view] == [
        (1, REPLACED, 4), (2, RETRACTED, 5), (3, ORIGINAL, None),
        (4, CORRECTION, None), (5, CORRECTION, None)]
    replaced = view[0]
    assert replaced.content == Post("one, fixed", title="One")
    assert replaced.payload == encode(Post("one, fixed", title="One"))  # what to render
    assert view[1].payload is None and view[1].content is None
    assert [s.shown for s in view] == [True, True, True, False, False]


def test_entries_of_two_feeds_or_a_seq_twice_are_refused() -> None:
    one = Logbook(MemoryStore(), author(1))
    two = Logbook(MemoryStore(), author(2))
    mine = one.publish(b"x", "blog")
    theirs = two.publish(encode(Retract(1)), "blog")
    with pytest.raises(UsageError):
        effective_view([(mine, b"x"), (theirs, encode(Retract(1)))])  # K1: no other author
    with pytest.raises(UsageError):
        effective_view([(Seq(1), None), (Seq(1), None)])


def test_a_page_with_the_window_after_it_is_viewed_as_the_whole_feed() -> None:
    """spec §12: entries a..b need a..b+1024, no more."""
    payloads: dict[int, bytes] = {seq: encode(Post(f"{seq}")) for seq in range(1, 2100)}
    payloads[1500] = encode(Retract(480))   # 1020 back: reaches
    payloads[1520] = encode(Replace(500, Post("new")))
    payloads[1700] = encode(Retract(600))   # 1100 back: does not
    payloads[400] = encode(Retract(399))    # before the page
    whole = {s.entry.seq: s for s in effective_view((Seq(n), p) for n, p in payloads.items())}
    page = range(450, 650)
    window = [(Seq(n), payloads[n]) for n in range(page[0], page[-1] + 1 + MAX_CORRECTION_DISTANCE)]
    viewed = {s.entry.seq: s for s in effective_view(window)}
    for seq in page:
        assert viewed[seq] == whole[seq], seq
    assert whole[480].state == RETRACTED and whole[500].state == REPLACED
    assert whole[600].state == ORIGINAL and whole[399].state == RETRACTED


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(st.one_of(
    st.none(), st.binary(max_size=20),
    st.builds(Retract, st.integers(1, 12)).map(encode),
    st.builds(lambda t, text: Replace(t, Post(text)), st.integers(1, 12),
              st.text(max_size=5)).map(encode),
    st.just(encode(About("A"))), st.just(encode(LinkShare("https://example.org/"))),
), min_size=1, max_size=12))
def test_the_view_never_fails_and_obeys_the_rules(payloads: list[bytes | None]) -> None:
    view = effective_view((Seq(n), p) for n, p in enumerate(payloads, 1))
    assert [s.entry.seq for s in view] == list(range(1, len(payloads) + 1))
    for shown in view:
        if shown.state in (REPLACED, RETRACTED):
            assert shown.by is not None and shown.by > shown.entry.seq
            correction = view[shown.by - 1]
            assert correction.state == CORRECTION
            assert isinstance(correction.content, Retract | Replace)
            assert correction.content.target == shown.entry.seq
            assert isinstance(correction.content, Retract) == (shown.state == RETRACTED)
        if shown.state == CORRECTION:
            assert isinstance(shown.content, Retract | Replace)


def test_check_correction_refuses_what_would_not_take_effect() -> None:
    window: list[tuple[Seq, bytes | None]] = [
        (Seq(1), encode(Post("a"))), (Seq(2), encode(Follow(author(2).author.feed("x")))),
        (Seq(3), encode(Retract(1))), (Seq(4), encode(About("A"))), (Seq(5), b"text")]
    assert check_correction(5, 6, window[4:]).state == ORIGINAL
    for target, start, problem in ((1, 0, "was retracted"), (2, 1, "a follow entry"),
                                   (3, 2, "itself a correction"), (4, 3, "an about entry"),
                                   (6, 5, "not an earlier entry"), (0, 0, "not an earlier")):
        with pytest.raises(UsageError, match=problem):
            check_correction(target, 6, window[start:])
    with pytest.raises(UsageError, match="1024 entries"):
        check_correction(1, 2 + MAX_CORRECTION_DISTANCE, window[:1])


def test_docstring_examples() -> None:
    failed, attempted = doctest.testmod(tidings.core.corrections)
    assert attempted >= 3 and failed == 0


def test_a_subscription_item_says_which_entry_it_corrects() -> None:
    from tidings import Identity
    from tidings.embed import Item

    book = Logbook(MemoryStore(), Identity.generate())
    published = [book.publish(encode(content), "blog") for content in (
        Post("helo"), Replace(1, Post("hello")), Retract(1), Post("more"))]
    items = [Item(entry, payload) for entry, payload in book.read(published[0].feed)]
    assert [item.corrects for item in items] == [None, 1, 1, None]
