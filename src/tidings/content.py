"""Content conventions the node itself reads: follow and unfollow (spec/11-content.md).

Payloads are free bytes. An author who wants readers' nodes to replicate the
feeds it follows (hops) publishes a follow entry: a CBOR map
``{"type": "follow", "feed": "<feed id>"}`` (or ``"unfollow"``). Payloads that
are not such a map are skipped, never an error.
"""

from __future__ import annotations

import cbor2

from tidings.core.ids import FeedId
from tidings.errors import InvalidId

#: A follow entry is a few dozen bytes; larger payloads are not parsed for follows.
MAX_FOLLOW_PAYLOAD = 1024
FOLLOW = "follow"
UNFOLLOW = "unfollow"


def follow_payload(feed: FeedId, *, follow: bool = True) -> bytes:
    """The payload of a follow (or unfollow) entry for ``feed``."""
    encoded: bytes = cbor2.dumps({"type": FOLLOW if follow else UNFOLLOW, "feed": str(feed)})
    return encoded


def parse_follow(payload: bytes) -> tuple[bool, FeedId] | None:
    """``(True, feed)`` for a follow, ``(False, feed)`` for an unfollow, else None."""
    # CBOR maps of up to 23 pairs start with 0xa0..0xb7; anything else is not ours.
    if not payload or len(payload) > MAX_FOLLOW_PAYLOAD or not 0xA0 <= payload[0] <= 0xB7:
        return None
    try:
        value = cbor2.loads(payload)
    except (cbor2.CBORDecodeError, ValueError, TypeError, RecursionError):
        return None
    if not isinstance(value, dict):
        return None
    kind, feed = value.get("type"), value.get("feed")
    if kind not in (FOLLOW, UNFOLLOW) or not isinstance(feed, str):
        return None
    try:
        return kind == FOLLOW, FeedId.parse(feed)
    except InvalidId:
        return None


def follows_in(payload: bytes, follows: set[FeedId]) -> None:
    """Apply one payload, if it is a follow or unfollow, to ``follows``."""
    parsed = parse_follow(payload)
    if parsed is not None:
        followed, feed = parsed
        if followed:
            follows.add(feed)
        else:
            follows.discard(feed)
