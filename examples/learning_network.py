"""A learning network of three: what each node receives is what its user follows.

ana follows ben, ben follows cy, cy follows ana. Nobody follows back and
nobody approves anybody: following is reading, and a reader needs no
permission. All three nodes can reach each other, yet each replicates only the
feeds its user follows. Then ben makes his follow of cy public and ana restarts
with hops=2: she now also gets the feeds that the authors she reads follow.

Run it: python examples/learning_network.py   (exits 1 if something is missing)
"""

from __future__ import annotations

import sys
import tempfile
from contextlib import AsyncExitStack
from pathlib import Path

import trio

from tidings.content import Post
from tidings.core.ids import FeedId
from tidings.embed import EmbeddedNode, open_node

TIMEOUT = 30  # seconds for everything to arrive; on loopback it takes about one
POSTS = {
    "ana": ["Question: how do we know we have learned something?", "Trying flashcards"],
    "ben": ["Notes on spaced repetition", "Reading group on Thursday?"],
    "cy": ["A podcast on learning by teaching", "My summary of chapter 3"],
}
FOLLOWS = {"ana": "ben", "ben": "cy", "cy": "ana"}  # a ring: nobody follows back


class Missing(Exception):
    """A node lacks what it should hold, or holds what it should not."""


def address(node: EmbeddedNode) -> str:
    return "{}:{}".format(*node.listen_address or ("?", 0))


async def print_arrivals(me: str, node: EmbeddedNode, names: dict[FeedId, str],
                         expected: int, feeds: list[FeedId] | None = None,
                         after: str | None = None, *,
                         task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Print the posts that reach ``node`` live; return once ``expected`` arrived."""
    subscription = node.subscribe(feeds, after=after)  # default: the feeds followed
    task_status.started()  # the start is fixed: nothing published from now on is missed
    async for item in subscription:
        if isinstance(item.content, Post):
            print(f"  {me:>3} received {names[item.feed]}'s post #{item.seq}: "
                  f"{item.content.text}")
            expected -= 1
            if expected == 0:
                return


async def holdings(me: str, node: EmbeddedNode, names: dict[FeedId, str]) -> set[str]:
    """Print whose posts ``node`` stores; returns their names."""
    held = {names[f.feed]: f.local_seq for f in await node.feeds() if f.feed in names}
    missing = sorted(set(POSTS) - set(held))
    print(f"  {me:>3} holds " + ", ".join(f"{who} ({n} posts)" for who, n in sorted(held.items()))
          + (f"; nothing of {', '.join(missing)}" if missing else ""))
    return set(held)


async def start(stack: AsyncExitStack, tmp: Path, name: str, nodes: dict[str, EmbeddedNode],
                hops: int = 1) -> None:
    """Open ``name``'s node, listening on loopback and dialing the others."""
    peers = [address(node) for other, node in nodes.items() if other != name]
    nodes[name] = await stack.enter_async_context(
        open_node(tmp / name, listen="127.0.0.1:0", peers=peers, hops=hops))


async def network(tmp: Path) -> None:
    nodes: dict[str, EmbeddedNode] = {}
    async with AsyncExitStack() as stack:
        print("Three homes, each with a node listening on loopback; each dials those before it:")
        await start(stack, tmp, "ben", nodes)
        await start(stack, tmp, "cy", nodes)
        first_ana = await stack.enter_async_context(AsyncExitStack())  # innermost: she restarts
        await start(first_ana, tmp, "ana", nodes)
        for name, node in nodes.items():
            print(f"  {name:>3} {node.author}  listens on {address(node)}")
        names = {nodes[name].feed(): name for name in POSTS}

        print("\nWho follows whom (a ring: nobody follows back, nobody approves anybody):")
        for reader, author in FOLLOWS.items():
            await nodes[reader].follow(nodes[author].feed())
            print(f"  {reader:>3} follows {author}")

        print("\nEveryone publishes; each node prints what reaches it live:")
        with trio.fail_after(TIMEOUT):
            async with trio.open_nursery() as nursery:
                for reader, author in FOLLOWS.items():
                    await nursery.start(print_arrivals, reader, nodes[reader], names,
                                        len(POSTS[author]))
                for name, texts in POSTS.items():
                    for text in texts:
                        await nodes[name].publish(Post(text))

        print("\nWhat each node stores now:")
        for name, node in nodes.items():
            if await holdings(name, node, names) != {name, FOLLOWS[name]}:
                raise Missing(f"{name} should hold only its own and {FOLLOWS[name]}'s posts")

        print("\nHops: ben makes his follow of cy public (an entry in his log 'follows'),"
              "\nand ana restarts her node with hops=2:")
        await nodes["ben"].follow(nodes["cy"].feed(), public=True)
        await first_ana.aclose()
        await start(stack, tmp, "ana", nodes, hops=2)
        with trio.fail_after(TIMEOUT):  # "0-0": everything of cy's that ana stores
            await print_arrivals("ana", nodes["ana"], names, len(POSTS["cy"]),
                                 [nodes["cy"].feed()], after="0-0")
        if await holdings("ana", nodes["ana"], names) != set(POSTS):
            raise Missing("with hops=2 ana should hold all three authors' posts")
    print("\nDone: follows decide what each node receives; hops=2 widens it by one step.")


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        await network(Path(tmp))


if __name__ == "__main__":
    try:
        trio.run(main)
    except* trio.TooSlowError:
        sys.exit(f"FAILED: not everything arrived within {TIMEOUT} s")
    except* Missing as failed:  # (trio's nurseries wrap it in exception groups)
        problem: BaseException = failed
        while isinstance(problem, BaseExceptionGroup):
            problem = problem.exceptions[0]
        sys.exit(f"FAILED: {problem}")
