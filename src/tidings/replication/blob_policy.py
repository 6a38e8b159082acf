"""Which blobs of replicated feeds a node fetches by itself (spec/13 §9): the policy
and the sizes it is written in. Its own module, free of the fetcher: the config
(node/options.py) reads it in every command's start-up."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from tidings.core.ids import FeedId
from tidings.errors import UsageError

#: The default fetch policy: blobs up to 512 MiB (a 3-hour episode at 320 kbit/s
#: is 430 MB); larger ones wait for an explicit `tidings blob get`.
DEFAULT_FETCH_LIMIT = 512 * 1024 * 1024


@dataclass(frozen=True)
class BlobPolicy:
    """Which attachments of replicated feeds to fetch: ``limit`` bytes at most (None:
    all; 0: none), and per feed the same, overriding it."""

    limit: int | None = DEFAULT_FETCH_LIMIT
    feeds: Mapping[FeedId, int | None] = field(default_factory=dict)

    def accepts(self, feed: FeedId, size: int) -> bool:
        limit = self.feeds.get(feed, self.limit)
        return limit is None or size <= limit

    @staticmethod
    def parse_limit(value: object) -> int | None:
        """``"all"``, ``"none"``, a byte count, or a size such as ``"500MB"``, ``"2GiB"``."""
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        text = str(value).strip().lower().replace(" ", "")
        if text == "all":
            return None
        if text == "none":
            return 0
        return parse_size(text)


_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_size(text: str) -> int:
    """``"500MB"``, ``"2GiB"``, ``"1048576"``: a number of bytes."""
    text = str(text).strip().lower().replace(" ", "")
    number = text.rstrip("kmgtib")
    unit = text[len(number):]
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if unit not in _UNITS or value < 0:
        raise UsageError(f"{text!r} is not a size: write bytes, or a number with KB, MB, "
                         "GB, KiB, MiB or GiB (or 'all', 'none' for a fetch policy)")
    return int(value * _UNITS[unit])
