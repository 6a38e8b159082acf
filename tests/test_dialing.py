"""A node never dials one address twice at once (spec/14 §2: one connection a peer).

The dial loop skips an address that is either connected or being dialed. A dial
used to drop its address from the "being dialed" set as soon as the TCP connect
returned, before the connection was registered (which waits for the
replicator): a dial loop woken in between saw the address free and dialed it
again.
"""

from __future__ import annotations

import os
from pathlib import Path

import trio
import trio.testing

from tidings import Logbook, SqliteStore
from tidings.node.daemon import Node, NodeOptions
from tidings.node.log import Logger
from tidings.node.state import NodeState

from .adversary import running_target


async def test_an_address_stays_busy_until_its_connection_is_registered(
    tmp_path: Path,
) -> None:
    async with running_target(tmp_path / "peer") as target:
        directory = tmp_path / "client"
        directory.mkdir()
        store = SqliteStore(directory / "store.sqlite3")
        state = NodeState(directory / "node.sqlite3")
        client = Node(Logbook(store), state, os.urandom(32), NodeOptions(),
                      Logger(level="quiet"))
        address = target.address
        seen: dict[str, bool] = {}

        async def body(node: Node) -> None:
            async with trio.open_nursery() as nursery:
                # The replicator is busy: registering the connection must wait.
                async with node._lock:
                    node._dialing.add(address)  # as the dial loop does before a dial
                    nursery.start_soon(node._dial, address)
                    while not target.node.connections:  # the TCP connect went through
                        await trio.sleep(0.01)
                    await trio.testing.wait_all_tasks_blocked()
                    seen["connected"] = any(c.address == address for c in node.connections)
                    seen["busy while registering"] = address in node._dialing
                while not any(c.address == address for c in node.connections):
                    await trio.sleep(0.01)
                seen["busy once registered"] = address in node._dialing
                nursery.cancel_scope.cancel()

        try:
            await client.run_client(body)
        finally:
            store.close()
            state.close()
    assert seen == {"connected": False, "busy while registering": True,
                    "busy once registered": False}
