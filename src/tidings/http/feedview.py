"""Reading what a feed shows from a store: pages with corrections applied.

The thin I/O shell around :func:`tidings.core.corrections.effective_view`, shared by
the feed gateway and the commands that correct entries. Only the payloads that
can matter are read: a payload over the content bound (64 KiB) is never
content, so it can be neither a correction nor shown as more than its size.
"""

from __future__ import annotations

from dataclasses import dataclass

from tidings.core import content as content_types
from tidings.core.content import About
from tidings.core.corrections import MAX_CORRECTION_DISTANCE, Shown, effective_view
from tidings.core.entry import Entry, decode_entry
from tidings.core.ids import FeedId
from tidings.storage.base import Store, undisputed_extent

#: Larger payloads are never read for a view: they cannot be content.
MAX_VIEWED_PAYLOAD = content_types.MAX_CONTENT_SIZE
#: Payload bytes one page shows at most (spec/14 §8): a page of 200 large posts
#: would be tens of MiB once escaped; it ends early instead and links to the rest.
PAGE_PAYLOAD_BYTES = 256 * 1024


def page_low(store: Store, feed: FeedId, top: int, limit: int) -> int:
    """The lowest seq of the page that ends at ``top``: ``limit`` entries, or fewer
    (at least one) where their payloads would pass PAGE_PAYLOAD_BYTES."""
    low = max(1, top - limit + 1)
    rows = store.entries_at(feed, range(low, top + 1), payloads=False)
    spent = 0
    for row in reversed(rows):
        size = decode_entry(row.raw).payload_size
        spent += size if size <= MAX_VIEWED_PAYLOAD else 0
        if spent > PAGE_PAYLOAD_BYTES and row.seq < top:
            return row.seq + 1
    return low
#: The log whose newest "about" entry names an author (spec/content.md §6.3).
ABOUT_LOG = "about"
MAX_SEQ = 2**63 - 1


def read_entries(store: Store, feed: FeedId, first: int, last: int
                 ) -> list[tuple[Entry, bytes | None]]:
    """Entries ``first..last`` of ``feed`` held (ascending), with the payloads a view reads.

    Entries first, then only the payloads of at most :data:`MAX_VIEWED_PAYLOAD`
    bytes (the signed sizes say which), so a window of large payloads costs
    their sizes, not their bytes.
    """
    if last < first:
        return []
    seqs = range(first, last + 1)
    entries = [decode_entry(row.raw) for row in store.entries_at(feed, seqs, payloads=False)]
    small = [e.seq for e in entries if e.payload_size <= MAX_VIEWED_PAYLOAD]
    payloads = {row.seq: row.payload for row in store.entries_at(feed, small)} if small else {}
    return [(entry, payloads.get(entry.seq)) for entry in entries]


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a feed, newest first, as it is shown."""

    feed: FeedId
    #: Every entry of the page's seq range, corrections included (``shown`` tells),
    #: newest first.
    entries: list[Shown[Entry]]
    #: Whether entries older than the page exist (the page then links to them).
    more: bool
    #: The newest seq shown here (and the feed's extent when this is the newest page).
    extent: int
    #: Timestamps of the corrections in effect, by seq: when an entry was edited or retracted.
    corrected_at: dict[int, int]

    @property
    def lowest(self) -> int | None:
        return self.entries[-1].entry.seq if self.entries else None


def view_page(store: Store, feed: FeedId, before: int | None, limit: int) -> Page | None:
    """The page of the ``limit`` entries below ``before`` (the newest if None), with the
    corrections of the :data:`~tidings.core.corrections.MAX_CORRECTION_DISTANCE` entries after
    it applied. None if the store holds no undisputed entry of ``feed``."""
    extent = undisputed_extent(store, feed)
    if not extent:
        return None
    top = min(extent, (before or MAX_SEQ + 1) - 1)
    low = page_low(store, feed, top, limit)
    window = read_entries(store, feed, low, min(extent, top + MAX_CORRECTION_DISTANCE))
    view = effective_view(window)
    times = {entry.seq: entry.timestamp for entry, _ in window}
    on_page = [shown for shown in view if shown.entry.seq <= top]
    corrected = {shown.entry.seq: times[shown.by] for shown in on_page if shown.by is not None}
    return Page(feed, list(reversed(on_page)), low > 1, extent, corrected)


def view_entry(store: Store, feed: FeedId, seq: int) -> tuple[Shown[Entry], int | None] | None:
    """What entry ``seq`` of ``feed`` shows, and when it was corrected (the timestamp of
    the correction in effect); None if it is not held (or disputed)."""
    extent = undisputed_extent(store, feed)
    if not 1 <= seq <= extent:
        return None
    window = read_entries(store, feed, seq, min(extent, seq + MAX_CORRECTION_DISTANCE))
    if not window or window[0][0].seq != seq:
        return None
    shown = effective_view(window)[0]
    times = {entry.seq: entry.timestamp for entry, _ in window}
    return shown, None if shown.by is None else times[shown.by]


def about_of(store: Store, feed: FeedId) -> About | None:
    """The author's about content: the newest entry of their log ``about``, if held and
    about content (spec/content.md §6.3)."""
    about_feed = FeedId(feed.author_key, ABOUT_LOG)
    extent = undisputed_extent(store, about_feed)
    if not extent:
        return None
    newest = store.entries_at(about_feed, [extent], payloads=False)
    if not newest or decode_entry(newest[0].raw).payload_size > MAX_VIEWED_PAYLOAD:
        return None
    rows = store.entries_at(about_feed, [extent])
    decoded = content_types.decode(rows[0].payload) if rows else None
    return decoded if isinstance(decoded, About) else None


__all__ = ["ABOUT_LOG", "MAX_VIEWED_PAYLOAD", "Page", "about_of", "read_entries",
           "view_entry", "view_page"]
