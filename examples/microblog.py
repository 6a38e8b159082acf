"""A terminal microblog on an embedded tidings node (tidings.open_node).

With no arguments: a demo on loopback (alice posts, bob follows and watches).
For real (every command takes --help):

    python examples/microblog.py --home ~/.microblog whoami
    python examples/microblog.py --home ~/.microblog post "hello, world" --tag intro
    python examples/microblog.py --home ~/.microblog read me --limit 5
    python examples/microblog.py --home ~/.microblog follow tf1..._microblog
    python examples/microblog.py --home ~/.microblog watch --peer 127.0.0.1:7654
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import trio

from tidings import FeedId
from tidings.content import Post
from tidings.embed import EmbeddedNode, Item, open_node
from tidings.errors import TidingsError

LOG = "microblog"  # every post goes to this log of the author: feed tf1..._microblog
CURSOR_FILE = "microblog.cursor"  # where `watch` stopped, so the next one resumes there


def show(item: Item) -> None:
    """One line per post: when, who, which entry, the text and its tags."""
    post = item.content
    if isinstance(post, Post):
        tags = "".join(f" #{tag}" for tag in post.tags)
        when = item.published.strftime("%Y-%m-%d %H:%M")
        print(f"{when}  {str(item.feed.author)[:12]} #{item.seq}  {post.text}{tags}", flush=True)


async def watch(node: EmbeddedNode, count: int | None = None) -> None:
    """Print the posts of followed feeds as they arrive; stop after ``count`` posts."""
    saved = node.home.path / CURSOR_FILE
    after = saved.read_text().strip() if saved.exists() else "0-0"  # "0-0": all held
    seen = 0
    async for item in node.subscribe(after=after):
        if isinstance(item.content, Post):
            show(item)
            seen += 1
        saved.write_text(item.cursor or after)
        if count is not None and seen >= count:
            return


async def run(args: argparse.Namespace) -> int:
    feed = None  # parsed before the node starts, so that a bad id fails fast
    if args.command == "follow" or (args.command == "read" and args.feed != "me"):
        feed = FeedId.parse(args.feed)
    watching = args.command == "watch"  # (read --peer asks its peer once, below)
    peers, listen = (args.peer or [], args.listen) if watching else ([], None)
    async with open_node(args.home, listen=listen, peers=peers) as node:
        if args.command == "whoami":
            print(f"author {node.author}\nfeed   {node.feed(LOG)}")
        elif args.command == "post":
            entry = await node.publish(Post(args.text, tags=tuple(args.tag)), log=LOG)
            print(f"posted {entry.feed} #{entry.seq}")
        elif args.command == "follow" and feed is not None:
            new = await node.follow(feed, public=args.public)
            print(f"{'following' if new else 'already following'} {feed}")
        elif args.command == "read":
            wanted = feed or node.feed(LOG)
            if args.peer:  # the latest posts straight from a peer, verified, not stored
                items = await node.fetch_latest(wanted, args.limit, peer=args.peer)
            else:
                items = list(reversed(await node.latest(wanted, limit=args.limit)))
            for item in items:
                show(item)
            if not items:
                print(f"no entries of {wanted} here (follow it, then watch)")
        elif args.command == "watch":
            if node.listen_address:
                print("listening for peers on {}:{}".format(*node.listen_address), flush=True)
            with trio.move_on_after(args.timeout or float("inf")) as scope:
                await watch(node, args.count)
            if scope.cancelled_caught:
                print(f"timed out after {args.timeout} s", file=sys.stderr)
                return 1
    return 0


async def demo() -> None:
    """Two homes on loopback: alice listens and posts, bob dials her, follows and watches."""
    with tempfile.TemporaryDirectory() as tmp:
        async with open_node(Path(tmp, "alice"), listen="127.0.0.1:0") as alice:
            address = "{}:{}".format(*alice.listen_address or ("?", 0))
            print(f"alice posts to {alice.feed(LOG)}, listening on {address}")
            await alice.publish(Post("hello from alice", tags=("intro",)), log=LOG)
            await alice.publish(Post("reading about spaced repetition"), log=LOG)
            async with open_node(Path(tmp, "bob"), peers=[address]) as bob:
                await bob.follow(alice.feed(LOG))
                print("bob follows alice and watches:")
                with trio.fail_after(30):  # loopback takes well under a second
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(watch, bob, 3)
                        await trio.sleep(0.5)  # this one arrives while bob watches
                        await alice.publish(Post("live: a third post", tags=("live",)), log=LOG)
    print("bob saw all 3 posts")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                epilog="With no arguments: a demo in a temporary directory.")
    p.add_argument("--home", required=True, help="the node's home directory (made if needed)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("whoami", help="print your author id and microblog feed")
    q = sub.add_parser("post", help="publish a post")
    q.add_argument("text")
    q.add_argument("--tag", action="append", default=[], help="a tag (repeat for more)")
    q = sub.add_parser("read", help="print the latest posts of a feed held here")
    q.add_argument("feed", metavar="FEED_OR_ME", help="a feed id (tf1...), or 'me'")
    q.add_argument("--limit", type=int, default=20)
    q.add_argument("--peer", metavar="HOST:PORT", help="ask this peer for them instead")
    q = sub.add_parser("follow", help="follow a feed (watch then fetches it)")
    q.add_argument("feed", metavar="FEED")
    q.add_argument("--public", action="store_true", help="publish the follow too (for hops)")
    q = sub.add_parser("watch", help="print followed feeds' posts as they arrive")
    q.add_argument("--peer", action="append", metavar="HOST:PORT", help="dial (repeat)")
    q.add_argument("--listen", metavar="HOST:PORT", help="accept peers here")
    q.add_argument("--count", type=int, help="exit 0 after this many posts")
    q.add_argument("--timeout", type=float, help="exit 1 if still watching after S seconds")
    return p


def main(argv: list[str]) -> int:
    if not argv:
        trio.run(demo)
        return 0
    args = parser().parse_args(argv)
    code = 2
    try:  # except*: trio's nurseries wrap what escapes them in exception groups
        code = trio.run(run, args)
    except* KeyboardInterrupt:
        code = 130
    except* (TidingsError, OSError) as errors:
        problem: BaseException = errors
        while isinstance(problem, BaseExceptionGroup):
            problem = problem.exceptions[0]
        print(f"error: {problem}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
