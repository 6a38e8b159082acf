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


async def test_bundles_and_payloads_from_trio(tmp_path: Path) -> None:
    import io

    source = AsyncLogbook.wrap(SqliteStore(tmp_path / "a.db"), author(1))
    await source.publish_batch([b"one", b"two", b"three"], "blog", end_of_log=True)
    feed = source.sync.feed("blog")
    assert (head := await source.head(feed)) is not None and head.is_end_of_log
    out = io.BytesIO()
    assert await source.export_bundle(feed, out.write) == 3
    target = AsyncLogbook.wrap(SqliteStore(tmp_path / "b.db"))
    result = await target.import_bundle(io.BytesIO(out.getvalue()).read)
    assert result.added == 3 and result.error is None
    assert await target.delete_payload(feed, 2)
    await target.add_payload(feed, 2, b"two")
    assert [p for _, p in await target.read(feed)] == [b"one", b"two", b"three"]
    assert await target.fork_proofs() == []
