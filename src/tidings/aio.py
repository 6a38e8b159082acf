"""The logbook for trio programs.

:class:`AsyncLogbook` runs each :class:`~tidings.storage.logbook.Logbook` call in a
worker thread, so a publish's fsync or a large import never blocks the event
loop. Calls are serialised: the store is one SQLite connection::

    import trio
    from tidings import Identity, MemoryStore
    from tidings.aio import AsyncLogbook

    async def main():
        book = AsyncLogbook.wrap(MemoryStore(), Identity.generate())
        entry = await book.publish(b"hello", "blog")
        print(entry.seq)

    trio.run(main)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import TypeVar

import trio

from tidings.core.entry import Entry
from tidings.core.forks import ForkProof
from tidings.core.ids import FeedId
from tidings.identity import Identity
from tidings.storage.base import FeedInfo, Store
from tidings.storage.logbook import DEFAULT_LOG, ImportResult, IngestResult, Logbook, VerifyReport

T = TypeVar("T")


class AsyncLogbook:
    """Awaitable versions of the :class:`Logbook` methods; ``.sync`` is the logbook itself."""

    def __init__(self, logbook: Logbook) -> None:
        self.sync = logbook
        self._lock = trio.Lock()

    @classmethod
    def wrap(cls, store: Store, identity: Identity | None = None) -> AsyncLogbook:
        return cls(Logbook(store, identity))

    async def _run(self, call: Callable[[], T]) -> T:
        async with self._lock:
            return await trio.to_thread.run_sync(call)

    async def publish(
        self, payload: bytes, log_id: str = DEFAULT_LOG, *, end_of_log: bool = False
    ) -> Entry:
        return await self._run(partial(self.sync.publish, payload, log_id, end_of_log=end_of_log))

    async def publish_batch(
        self, payloads: Sequence[bytes], log_id: str = DEFAULT_LOG, *, end_of_log: bool = False
    ) -> list[Entry]:
        return await self._run(
            partial(self.sync.publish_batch, payloads, log_id, end_of_log=end_of_log)
        )

    async def ingest(
        self, feed: FeedId, items: Sequence[tuple[bytes, bytes | None]]
    ) -> IngestResult:
        return await self._run(partial(self.sync.ingest, feed, items))

    async def read(
        self, feed: FeedId, since: int = 1, limit: int | None = None,
        max_bytes: int | None = None,
    ) -> list[tuple[Entry, bytes | None]]:
        return await self._run(partial(self.sync.read, feed, since, limit, max_bytes))

    async def head(self, feed: FeedId) -> Entry | None:
        return await self._run(partial(self.sync.head, feed))

    async def add_payload(self, feed: FeedId, seq: int, payload: bytes) -> None:
        await self._run(partial(self.sync.add_payload, feed, seq, payload))

    async def delete_payload(self, feed: FeedId, seq: int) -> bool:
        return await self._run(partial(self.sync.delete_payload, feed, seq))

    async def fork_proofs(self, feed: FeedId | None = None) -> list[ForkProof]:
        return await self._run(partial(self.sync.fork_proofs, feed))

    async def export_bundle(self, feed: FeedId, write: Callable[[bytes], object]) -> int:
        """``write`` runs in the worker thread (a file's ``write`` is fine)."""
        return await self._run(partial(self.sync.export_bundle, feed, write))

    async def import_bundle(self, read: Callable[[int], bytes]) -> ImportResult:
        """``read`` runs in the worker thread (a file's ``read`` is fine)."""
        return await self._run(partial(self.sync.import_bundle, read))

    async def feeds(self) -> list[FeedInfo]:
        return await self._run(self.sync.feeds)

    async def verify(self, feed: FeedId | None = None) -> list[VerifyReport]:
        return await self._run(partial(self.sync.verify, feed))

    async def certificate_pool(self, feed: FeedId, seq: int) -> list[Entry]:
        return await self._run(partial(self.sync.certificate_pool, feed, seq))

    async def add_fork_proof(self, proof: ForkProof) -> bool:
        return await self._run(partial(self.sync.add_fork_proof, proof))

    async def aclose(self) -> None:
        await self._run(self.sync.store.close)
