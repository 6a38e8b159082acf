"""Embed a tidings node in a trio program: :func:`tidings.open_node`.

Ten lines give an app a node that publishes, follows and sees new entries live::

    import trio, tidings

    async def main():
        async with tidings.open_node("~/.my-app", peers=["relay.example:7654"]) as node:
            await node.publish(tidings.Post("hello, network"), log="blog")
            await node.follow(tidings.FeedId.parse("tf1..._blog"))
            async for item in node.subscribe():
                print(item.feed, item.seq, item.content)

    trio.run(main)

The node runs in the background of the ``async with`` block: it dials its peers
(and listens, with ``listen=``), replicates what the home follows, and serves
the local HTTP API with ``api=``. Without ``listen`` it is a client that only
pulls, which is what most apps on a laptop or phone want.

The package holds what an app touches: the values it gets (:mod:`.types`), its
subscriptions (:mod:`.subscriptions`) and the node it holds (:mod:`.facade`).
Starting and stopping a node is :mod:`tidings.node.lifecycle`.
"""

from typing import Any

from tidings.embed.facade import EmbeddedNode
from tidings.embed.subscriptions import PAGE_ENTRIES, Subscription, read_page
from tidings.embed.types import (
    AuthorItem,
    FeedProgress,
    IdentityProgress,
    Item,
    PeerInfo,
    Status,
    parse_cursor,
)
from tidings.errors import ListenError


def __getattr__(name: str) -> Any:
    # The lifecycle lives with the node (it starts the local API, which uses this
    # package); it is loaded on first use, so importing this package loads no server.
    if name in ("open_node", "run_node"):
        from tidings.node import lifecycle

        return getattr(lifecycle, name)
    raise AttributeError(f"module 'tidings.embed' has no attribute {name!r}")


__all__ = [
    "PAGE_ENTRIES",
    "AuthorItem",
    "EmbeddedNode",
    "FeedProgress",
    "IdentityProgress",
    "Item",
    "ListenError",
    "PeerInfo",
    "Status",
    "Subscription",
    "open_node",
    "parse_cursor",
    "read_page",
    "run_node",
]
