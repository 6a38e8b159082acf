"""The trio wrapper drives the same logbook without blocking the event loop."""

from __future__ import annotations

from pathlib import Path

import trio

from tidings import SqliteStore
from tidings.aio import AsyncLogbook

from .helpers import author


async def test_publish_and_read_from_trio(tmp_path: Path) -> None:
    book = AsyncLogbook.wrap(SqliteStore(tmp_path / "s.db"), author(1))
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.sleep(0)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        async with trio.open_nursery() as writers:
            for i in range(20):
                writers.start_soon(book.publish, b"%d" % i, "blog")
        nursery.cancel_scope.cancel()
    feed = book.sync.feed("blog")
    entries = await book.read(feed)
    assert [e.seq for e, _ in entries] == list(range(1, 21))
    assert ticks > 0  # the loop kept running while threads wrote
    assert (await book.verify(feed))[0].ok
    await book.aclose()
