"""spec/01-identifiers.md: author ids and feed ids round-trip and reject mistakes."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings import AuthorId, FeedId
from tidings.errors import InvalidId

from .helpers import author

SAFE = re.compile(r"[a-z0-9_-]+")


LOG_IDS = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,63}", fullmatch=True)


@given(st.binary(min_size=32, max_size=32), LOG_IDS)
def test_ids_round_trip_exactly_and_are_copy_paste_safe(key: bytes, log_id: str) -> None:
    author_text = str(AuthorId(key))
    feed_text = str(FeedId(key, log_id))
    assert AuthorId.parse(author_text) == AuthorId(key)
    assert FeedId.parse(feed_text) == FeedId(key, log_id)
    for text in (author_text, feed_text):
        assert SAFE.fullmatch(text), text
    assert author_text.startswith("ta1") and feed_text.startswith("tf1")


def test_every_single_character_typo_is_caught() -> None:
    text = str(author(1).author)
    caught = 0
    for i in range(3, len(text)):
        for replacement in "a7":
            if text[i] == replacement:
                continue
            typo = text[:i] + replacement + text[i + 1:]
            with pytest.raises(InvalidId):
                AuthorId.parse(typo)
            caught += 1
    assert caught > 50


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "must start with"),
        ("tf1abc_blog", "feed id"),
        ("ta1" + "a" * 54, "must be 55"),
        ("ta1" + "A" * 55, "a-z and 2-7"),
        ("ta1" + "1" * 55, "a-z and 2-7"),
    ],
)
def test_bad_author_ids_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(InvalidId, match=message):
        AuthorId.parse(text)


def test_feed_id_checksum_covers_the_log_id() -> None:
    feed = author(2).author.feed("blog")
    text = str(feed)
    with pytest.raises(InvalidId, match="checksum"):
        FeedId.parse(text[: -len("blog")] + "blag")


@pytest.mark.parametrize("log_id", ["", "Blog", "-x", "a" * 65, "a b", "a/b", "ü"])
def test_bad_log_ids_are_refused(log_id: str) -> None:
    with pytest.raises(InvalidId):
        FeedId(bytes(32), log_id)


def test_author_id_is_not_a_feed_id() -> None:
    text = str(author(3).author)
    with pytest.raises(InvalidId, match="author id"):
        FeedId.parse(text)


def test_a_feed_is_one_object_while_referred_to_and_forgotten_after() -> None:
    """FeedIds are interned (dict lookups match by identity), weakly: a node that met a
    million feeds once does not keep them all."""
    import gc

    from tidings.core import ids

    key = bytes(range(32))
    first = FeedId(key, "interned")
    assert FeedId(key, "interned") is first
    assert FeedId(key, "other") is not first and FeedId(key, "other") != first
    before = len(ids._INTERNED)
    del first
    gc.collect()
    assert len(ids._INTERNED) < before and (key, "interned") not in ids._INTERNED
    assert all(reference.key == k for k, reference in ids._INTERNED.items())
    again = FeedId(key, "interned")  # made anew, and interned again
    assert FeedId(key, "interned") is again and again == FeedId(key, "interned")


@pytest.mark.parametrize("log_id", ["", "Blog", "-x", "a" * 65, "a b", "blog\n"])
def test_a_refused_log_id_is_refused_every_time(log_id: str) -> None:
    """The pattern's verdict is cached per log id: a second look refuses it as the first."""
    for _ in range(2):
        with pytest.raises(InvalidId):
            FeedId(bytes(32), log_id)
