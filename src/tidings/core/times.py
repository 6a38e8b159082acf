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
    # faster than strftime; its "+00:00" becomes the "Z".) The text up to the second is
    # kept for the last second asked: publishes and events come many to a second.
    global _last_second
    second, micros = divmod(min(max(timestamp, 0), LAST_US), 1_000_000)
    if _last_second[0] != second:
        _last_second = (second, (EPOCH + timedelta(seconds=second)).isoformat()[:-6])
    return f"{_last_second[1]}.{micros:06d}Z" if micros else f"{_last_second[1]}Z"


#: The last second :func:`rfc3339` wrote, and its text (replaced whole: thread-safe).
_last_second: tuple[int, str] = (-1, "")
