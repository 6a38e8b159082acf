"""Entry timestamps as text (core/times.py): RFC 3339, clamped like entry_datetime."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from tidings.core.times import LAST_US, entry_datetime, rfc3339


@given(st.integers(min_value=-(2**63), max_value=2**64 - 1),
       st.integers(min_value=0, max_value=3))
@example(0, 0).via("the epoch")
@example(1_700_000_000_000_001, 0).via("a microsecond past a second")
@example(LAST_US, 0).via("the last microsecond a datetime holds")
@example(LAST_US + 1, 0).via("clamped to it")
@example(-1, 0).via("clamped to the epoch")
def test_rfc3339_is_the_isoformat_of_the_clamped_datetime(timestamp: int, near: int) -> None:
    """The text is cached per second (many publishes to a second): every timestamp, and
    those a few microseconds and seconds around it, give what isoformat gives."""
    for each in (timestamp, timestamp + near, timestamp + near * 1_000_000, timestamp - near):
        text = rfc3339(each)
        assert text == entry_datetime(each).isoformat()[:-6] + "Z"
        assert text.endswith("Z") and "+" not in text
