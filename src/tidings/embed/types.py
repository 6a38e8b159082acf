"""What an embedded node gives its app: items, peers, feed progress, status, cursors.

Plain frozen values, safe to keep and pass around; nothing here touches the
store or the network.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from tidings.core import content as content_types
from tidings.core.entry import Entry, decode_entry
from tidings.core.ids import AuthorId, FeedId
from tidings.core.times import entry_datetime
from tidings.errors import UsageError
from tidings.storage.base import StoredEntry

if TYPE_CHECKING:
    from tidings.core.content import Content

_CURSOR = re.compile(r"(0|[1-9][0-9]{0,17})-(0|[1-9][0-9]{0,17})")


Position = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Item:
    """One entry and its payload (None when not held, or deleted)."""

    entry: Entry
    payload: bytes | None
    #: Where a subscription stands after this item, as ``(arrival, seq)``.
    position: Position | None = None
    #: The followed author (``ti1...``) whose device wrote it, and that device's name;
    #: None for a feed of no followed author (spec/12 §7.3: in the author's stream,
    #: the item's place is its ``(timestamp, author key, seq)``).
    identity: str | None = None
    device: str | None = None

    @property
    def cursor(self) -> str | None:
        """The position as text: resume after this item with ``subscribe(after=cursor)``."""
        return None if self.position is None else f"{self.position[0]}-{self.position[1]}"

    @property
    def feed(self) -> FeedId:
        return self.entry.feed

    @property
    def seq(self) -> int:
        return self.entry.seq

    @property
    def published(self) -> datetime:
        """The author's timestamp (as the author's clock said; not checked, clamped to
        the years 1970 to 9999)."""
        return entry_datetime(self.entry.timestamp)

    @property
    def content(self) -> Content | None:
        """The payload as a known content type (spec/content.md), else None."""
        return content_types.decode(self.payload)

    @property
    def corrects(self) -> int | None:
        """The seq of the earlier entry of this feed that this one retracts or replaces
        (spec/content.md §12), else None. Subscriptions give entries as they arrive,
        corrections included: an app applies them to what it showed (a retract hides
        the target, a replace shows its content instead); ``entries`` read through
        :func:`tidings.core.corrections.effective_view` give each entry as it shows."""
        content = self.content
        if isinstance(content, content_types.Retract | content_types.Replace):
            return content.target
        return None


def items_of(rows: Iterable[StoredEntry]) -> list[Item]:
    return [Item(decode_entry(row.raw), row.payload) for row in rows]


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """A connected peer."""

    #: The peer's public transport key, hex (names a node, not an author).
    node: str
    address: str
    direction: str
    version: int | None
    relay: bool


@dataclass(frozen=True, slots=True)
class FeedProgress:
    """How far this node holds a feed it wants, against what its peers say they hold."""

    feed: FeedId
    local_seq: int
    #: The highest seq a connected peer claims (0 if none claims any).
    peer_seq: int
    followed: bool
    #: The fork seq when this node holds a fork proof of the feed (it then holds
    #: and serves the feed up to the entry before it).
    forked_at: int | None = None
    #: A peer holds another history of the feed and no proof is made yet: this
    #: node is looking for where the two split (spec/10 §8).
    diverged: bool = False

    @property
    def behind(self) -> int:
        if self.forked_at is not None:
            return 0  # nothing more to take: the feed is disputed from the fork on
        return max(0, self.peer_seq - self.local_seq)


@dataclass(frozen=True, slots=True)
class IdentityProgress:
    """An identity this node follows (spec/12): its log's state as the node holds it."""

    identity: str
    #: ``unknown`` (no log held yet), ``active``, ``forked`` or ``dead`` (spec/12 §5).
    status: str
    seq: int
    devices: int
    #: When ``forked``: the seq where its root key signed two events no rotation decides.
    fork_seq: int | None = None


@dataclass(frozen=True, slots=True)
class AuthorItem:
    """One item of an author's merged stream (spec/12 §7.3): the entry (which names its
    feed and seq) and the name of the device that wrote it."""

    item: Item
    device: str


@dataclass(frozen=True, slots=True)
class Status:
    author: AuthorId
    listen: str | None
    peers: list[PeerInfo]
    known_peers: int
    feeds: list[FeedProgress]
    entries_received: int
    started: float = field(default=0.0)
    #: The identities (authors) followed, and their logs' state.
    identities: list[IdentityProgress] = field(default_factory=list)

    @property
    def caught_up(self) -> bool:
        """True when a peer is connected, none claims an entry this node wants and lacks,
        and no peer holds another history of a feed that is not proven forked yet."""
        return bool(self.peers) and all(
            progress.behind == 0 and not progress.diverged for progress in self.feeds)

    @property
    def forks(self) -> list[FeedProgress]:
        """The feeds this node holds a fork proof of."""
        return [progress for progress in self.feeds if progress.forked_at is not None]


# -- cursors ------------------------------------------------------------------


def parse_cursor(text: str) -> tuple[int, int]:
    """``"ARRIVAL-SEQ"`` as a pair; raises UsageError for anything else."""
    match = _CURSOR.fullmatch(text.strip())
    if match is None:
        raise UsageError(f"{text[:40]!r} is not a cursor (from an earlier item, like '12-3')")
    return int(match[1]), int(match[2])
