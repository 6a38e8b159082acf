"""Entry timestamps (microseconds since the Unix epoch, as the author's clock said).

An author may sign any 64-bit timestamp, so readers clamp it to what a
``datetime`` can hold instead of failing on it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: The last microsecond a datetime holds (9999-12-31T23:59:59.999999Z).
LAST_US = (datetime.max.replace(tzinfo=UTC) - EPOCH) // timedelta(microseconds=1)


def entry_datetime(timestamp: int) -> datetime:
    """The timestamp as an aware UTC datetime, clamped to 1970..9999."""
    return EPOCH + timedelta(microseconds=min(max(timestamp, 0), LAST_US))


def rfc3339(timestamp: int) -> str:
    """The timestamp as RFC 3339 UTC text, clamped like :func:`entry_datetime`.

    >>> rfc3339(1_700_000_000_000_000), rfc3339(1_700_000_000_000_001)
    ('2023-11-14T22:13:20Z', '2023-11-14T22:13:20.000001Z')
    """
    # (isoformat: four-digit years, microseconds only when not 0, and several times
    # faster than strftime; its "+00:00" becomes the "Z".)
    return entry_datetime(timestamp).isoformat()[:-6] + "Z"
