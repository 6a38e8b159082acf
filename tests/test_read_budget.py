"""A connection's reads wait for its work budget only while other connections
contend for the replicator (spec/14 §6): a node's own tasks never hold a peer back.

Found by profiling `tidings sync` of 100,000 entries: the client's own writer and
its progress checks waited for the lock after every read, so the read counted as
contended, and once its reads had taken more than the 1 s burst the sync stopped
reading for seconds at a time (8-11 s stalls on a loaded machine) with one peer.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tidings import Logbook, SqliteStore
from tidings.node import budget as budget_module
from tidings.node.budget import ReadBudget
from tidings.node.daemon import Connection, Node, NodeOptions
from tidings.node.log import Logger
from tidings.node.state import NodeState

from .adversary import publish, running_target

ENTRIES = 3000


async def test_one_peer_alone_is_never_held_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[bool] = []
    original = ReadBudget.wait_before_read

    def spy(self: ReadBudget, now: float, contended: bool) -> float:
        asked.append(contended)
        return original(self, now, contended)

    monkeypatch.setattr(ReadBudget, "wait_before_read", spy)
    # Every read is over budget: any read taken as contended would wait.
    monkeypatch.setattr(budget_module, "WORK_BURST", 0.0)
    feeds = []

    def setup(book: Logbook, state: NodeState) -> None:
        feeds.append(publish(book, "blog", ENTRIES))

    async with running_target(tmp_path / "source", setup=setup) as target:
        directory = tmp_path / "client"
        directory.mkdir()
        store = SqliteStore(directory / "store.sqlite3")
        state = NodeState(directory / "node.sqlite3")
        state.follow(feeds[0])
        client = Node(Logbook(store), state, os.urandom(32), NodeOptions(),
                      Logger(level="quiet"))
        connections: list[Connection] = []

        async def body(node: Node) -> None:
            connections.append(await node.connect(target.address))
            await node.wait_caught_up(connections[0])

        try:
            await client.run_client(body)
        finally:
            store.close()
            state.close()
    assert client.replicator.entries_received == ENTRIES
    # Both nodes read (the client the entries, the source the client's notes), each
    # with one peer: no read was ever contended, however the node's tasks queued.
    assert asked and not any(asked)
