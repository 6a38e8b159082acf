"""spec/10 §4: a delta opening clock holds the notes that differ from those last sent.

``unchanged_since`` answers "nothing differs" without Python per feed (a reconnect
at 10,000 feeds that changed nothing); it must agree with the rule, note by note.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tidings.core.ids import FeedId
from tidings.replication.clock import LocalClock, unchanged_since
from tidings.wire.messages import EAGER, WANT, Note

from .helpers import examples

FEEDS = [FeedId(bytes([i]) * 32, log) for i in range(1, 4) for log in ("a", "b")]
HEADS = [bytes([h]) * 8 for h in range(1, 4)]


def current_note(local: LocalClock, eager: set[FeedId], feed: FeedId) -> Note:
    """This node's note of ``feed`` now, as spec/10 §2 defines it."""
    seq = local.heads.get(feed, 0)
    flags = (WANT if feed in local.wanted else 0) | (EAGER if feed in eager else 0)
    return Note(seq, flags, local.head_hashes.get(feed) if seq else None)


def differs(local: LocalClock, eager: set[FeedId], sent: dict[FeedId, Note]) -> bool:
    """Whether a delta would hold any note: a feed held, wanted or in ``sent`` whose
    note now is not the one sent (a feed not in ``sent`` always differs)."""
    feeds = set(local.heads) | local.wanted | set(sent)
    return any(sent.get(feed) != current_note(local, eager, feed) for feed in feeds)


@st.composite
def clocks(draw: st.DrawFn) -> tuple[LocalClock, set[FeedId], dict[FeedId, Note]]:
    local = LocalClock()
    held = draw(st.lists(st.sampled_from(FEEDS), unique=True))
    local.update((feed, draw(st.integers(0, 3)), draw(st.sampled_from(HEADS)))
                 for feed in held)
    local.wanted = set(draw(st.lists(st.sampled_from(FEEDS), unique=True)))
    eager = set(draw(st.lists(st.sampled_from(sorted(local.wanted, key=str)), unique=True))
                if local.wanted else [])
    # What was sent: this node's notes now, then some of them changed, dropped, or
    # (0, 0) notes added for feeds it neither holds nor wants.
    sent = {feed: current_note(local, eager, feed) for feed in set(local.heads) | local.wanted}
    for feed in draw(st.lists(st.sampled_from(FEEDS), unique=True, max_size=2)):
        sent[feed] = Note(draw(st.integers(0, 3)), draw(st.sampled_from([0, WANT, WANT | EAGER])),
                          None)
        if sent[feed].seq:
            sent[feed] = Note(sent[feed].seq, sent[feed].flags, draw(st.sampled_from(HEADS)))
    for feed in draw(st.lists(st.sampled_from(sorted(sent, key=str)), unique=True, max_size=1)
                     if sent else st.just([])):
        del sent[feed]
    return local, eager, sent


@settings(max_examples=examples(400))
@given(clocks())
def test_nothing_differs_exactly_when_the_note_by_note_rule_says_so(
        clock: tuple[LocalClock, set[FeedId], dict[FeedId, Note]]) -> None:
    local, eager, sent = clock
    assert unchanged_since(local, eager, sent) == (not differs(local, eager, sent))


def test_each_part_of_a_note_counts() -> None:
    feed, other = FEEDS[0], FEEDS[1]
    local = LocalClock()
    local.update([(feed, 2, HEADS[0])])
    local.wanted = {feed}
    sent = {feed: Note(2, WANT | EAGER, HEADS[0])}
    assert unchanged_since(local, {feed}, sent)
    assert not unchanged_since(local, set(), sent)  # the eager flag
    assert not unchanged_since(local, {feed}, {feed: Note(1, WANT | EAGER, HEADS[0])})
    assert not unchanged_since(local, {feed}, {feed: Note(2, WANT | EAGER, HEADS[1])})
    assert not unchanged_since(local, {feed}, {})  # a feed held, never noted
    # A feed neither held nor wanted, noted before: unchanged while its note is (0, 0).
    assert unchanged_since(local, {feed}, {**sent, other: Note(0, 0)})
    assert not unchanged_since(local, {feed}, {**sent, other: Note(0, WANT)})


@settings(max_examples=examples(100))
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 3),
                          st.sampled_from([None, b"", b"h" * 32, b"i" * 32])), max_size=12))
def test_a_first_update_of_many_heads_is_the_update_of_each_in_turn(
    items: list[tuple[int, int, bytes | None]],
) -> None:
    """A clock's first update (a client's 10,000 heads at start) takes a bulk path; it
    records and reports what updating with one head at a time does (feeds repeated too)."""
    heads = [(FeedId(bytes([k]) * 32, "log"), seq, head) for k, seq, head in items]
    at_once, in_turn = LocalClock(), LocalClock()
    changed = at_once.update(heads)
    changed_in_turn = [feed for item in heads for feed in in_turn.update([item])]
    assert (at_once.heads, at_once.head_hashes) == (in_turn.heads, in_turn.head_hashes)
    assert changed == changed_in_turn
