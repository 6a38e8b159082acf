"""Publishing from a trio program without blocking the event loop.

Run it: python examples/trio_publish.py
"""

from __future__ import annotations

import trio

from tidings import Identity, MemoryStore
from tidings.aio import AsyncLogbook


async def main() -> None:
    book = AsyncLogbook.wrap(MemoryStore(), Identity.generate())
    async with trio.open_nursery() as nursery:
        for n in range(5):
            nursery.start_soon(book.publish, f"post {n}".encode(), "blog")
    for entry, payload in await book.read(book.sync.feed("blog")):
        print(entry.seq, payload)


if __name__ == "__main__":
    trio.run(main)
