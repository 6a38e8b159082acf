"""The merged view of an identity's log (spec/12 §7).

"blog" written on the laptop and "blog" written on the phone are two feeds, one
per device key; to a reader they are one blog. :func:`merge` puts the entries
of one log id of every device of an identity into one deterministic order:
by the entry's signed timestamp, then by device key (bytes), then by seq. It
is a pure function of the identity's state and the *set* of entries given, so
every node that holds the same entries shows the same view.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from tidings.core.entry import Entry
from tidings.core.ids import FeedId
from tidings.core.kel import IdentityState


@dataclass(frozen=True, slots=True)
class MergedItem:
    """One entry of the merged view, naming the feed and seq it came from."""

    feed: FeedId
    seq: int
    timestamp: int
    entry: Entry

    @property
    def device_key(self) -> bytes:
        return self.feed.author_key


def merge_key(entry: Entry) -> tuple[int, bytes, int]:
    """The order of the merged view: timestamp, then device key, then seq."""
    return entry.timestamp, entry.author, entry.seq


def merge(state: IdentityState, log_id: str, entries: Iterable[Entry]) -> list[MergedItem]:
    """The entries of ``log_id`` that the identity's devices wrote, in view order.

    ``entries`` are verified entries the reader holds, of any feeds (others are
    ignored). For each device feed of ``log_id``:

    * a feed whose author is not a device of the identity is left out;
    * if the input holds two different entries at one seq of a feed (another
      history of the device's), only the entries below the lowest such seq
      count, and none when that seq is at or below the device's cut;
    * an active device's entries all count; a revoked device's count up to the
      cut of that log (none without one), and not at all when the entry the
      reader holds at the cut's seq has another hash than the cut names.
    """
    by_feed: dict[bytes, dict[int, set[Entry]]] = defaultdict(lambda: defaultdict(set))
    for entry in entries:
        if entry.log_id == log_id and entry.author in state.devices:
            by_feed[entry.author][entry.seq].add(entry)
    items: list[MergedItem] = []
    for author, by_seq in by_feed.items():
        device = state.devices[author]
        split = min((seq for seq, held in by_seq.items() if len(held) > 1), default=None)
        limit = None
        if not device.active:
            cut = device.limit(log_id)
            if cut is None:
                continue
            held_at_cut = by_seq.get(cut.seq, set())
            if (split is not None and split <= cut.seq) or (
                    held_at_cut and next(iter(held_at_cut)).hash != cut.entry_hash):
                continue
            limit = cut.seq
        for seq, held in by_seq.items():
            if (split is not None and seq >= split) or (limit is not None and seq > limit):
                continue
            (entry,) = held
            items.append(MergedItem(entry.feed, seq, entry.timestamp, entry))
    items.sort(key=lambda item: merge_key(item.entry))
    return items
