"""The node commands: up, sync, fetch, follow, unfollow, following, network."""

from __future__ import annotations

import argparse
import contextlib
import gc
import math
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from operator import attrgetter
from typing import TYPE_CHECKING, Any, TypeVar

from tidings.cli.common import (
    EXIT_BAD_DATA,
    EXIT_INTERRUPTED,
    EXIT_OK,
    CommandError,
    feed_arg,
    listen_address,
    print_json,
    seconds_arg,
)
from tidings.core.ids import FeedId
from tidings.errors import UsageError
from tidings.node.home import SYNC_KEY_FILE, Home
from tidings.node.options import DEFAULT_API_LISTEN, DEFAULT_LISTEN, NodeOptions
from tidings.storage.logbook import FOLLOWS_LOG

if TYPE_CHECKING:
    from tidings.node.client import SyncClient
    from tidings.node.daemon import Connection, Node
    from tidings.node.state import NodeState
    from tidings.replication.replicator import PartialResult

T = TypeVar("T")
_SEQ = attrgetter("seq")
#: A client's first-generation collection threshold (Python's default is 700): see
#: _loading_for_good. Garbage in cycles waits at most this many allocations longer.
CLIENT_GC_THRESHOLD = 10_000

# The node's modules (trio, the protocol) load only when a node command runs:
# `tidings publish` and friends start faster without them.


def _options(args: argparse.Namespace, home: Home, mode: str) -> NodeOptions:
    """This home's config with the command's flags on top (flags a command lacks are None)."""
    flag = partial(getattr, args)
    try:
        return home.node_options(
            mode, listen=flag("listen", None), peers=flag("peer", None) or (),
            network=flag("network", None), relay=flag("relay", None), hops=flag("hops", None),
            lan=False if flag("no_lan", False) else None,
            lan_interface=flag("lan_interface", None), api_listen=flag("api", None),
            no_api=flag("no_api", False),
        )
    except UsageError as exc:
        raise CommandError(str(exc)) from None


def cmd_up(args: argparse.Namespace, home: Home) -> int:
    import trio

    from tidings.errors import ListenError
    from tidings.node.lifecycle import run_node
    from tidings.node.log import Logger
    from tidings.node.memory import tune_allocator

    identity, created = home.init()
    log = Logger(level="debug" if args.verbose else "info", as_json=args.log_json)
    if created:
        log.info("created-identity", author=str(identity.author), home=str(home.path))
    options = _options(args, home, "daemon")
    # The node's own process: its large buffers reused (node/memory.py). Not in
    # run_node: an app that embeds a node keeps its allocator as it set it.
    tune_allocator()

    async def main() -> int:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with run_node(home, options, log=log, lock=True):
                async for signum in signals:
                    log.info("stopping", signal=signal.Signals(signum).name)
                    # SIGTERM is a service stopped as asked; Ctrl-C exits as shells expect.
                    return EXIT_INTERRUPTED if signum == signal.SIGINT else EXIT_OK
        return EXIT_OK

    try:
        code = trio.run(main)
    except ListenError as failure:
        hint = ("; choose another port with --listen HOST:PORT (peers) or --api HOST:PORT "
                "(the local API)" if "in use" in str(failure) else
                "; give an address of this machine, such as 127.0.0.1:PORT or 0.0.0.0:PORT")
        raise CommandError(f"{failure}{hint}") from None
    log.info("stopped")
    return code


def _progress_printer(enabled: bool) -> Callable[[int, int], None] | None:
    if not enabled:
        return None

    def show(received: int, remaining: int) -> None:
        print(f"\rreceived {received} entries, {remaining} to go   ", end="",
              file=sys.stderr, flush=True)

    return show


@contextlib.contextmanager
def _loading_for_good() -> Iterator[None]:
    """Load what lives until this process exits (the modules, then a client's feeds
    and heads): the collector need not walk it, while it loads (at 10,000 feeds, ~120
    young-generation passes over what is being loaded, ~40 ms of a no-op reconnect)
    nor after (full passes over both cost a reconnect about 0.2 s). Loading is
    bounded by what the home holds; the session then runs with the collector."""
    gc.disable()
    try:
        yield
        gc.freeze()
    finally:
        gc.enable()
    # A received run's objects (its messages, entries, rows: about five per entry) live
    # until it is stored: collecting every 700 allocations walked each of them once or
    # twice, about 1 us per entry of a sync. Every 10,000, most are freed unwalked.
    gc.set_threshold(CLIENT_GC_THRESHOLD, *gc.get_threshold()[1:])


def _as_client(
    args: argparse.Namespace, home: Home, work: Callable[[Node, Connection], Awaitable[T]],
    timeout_message: str,
) -> tuple[Node, T]:
    """Dial ``args.peer_address`` with this home's sync key and run ``work`` on the connection.

    No listener: ``fetch`` only pulls, and may run while ``up`` does (``sync``
    dials without a node: node/client.py).
    """
    with _loading_for_good():
        import trio

        from tidings.node.lifecycle import assemble_node
        from tidings.node.options import parse_address

        options = _options(args, home, "client")
        address = parse_address(args.peer_address)
        gc.freeze()
        node = assemble_node(home, options, key_file=SYNC_KEY_FILE, create=True)
    state = node.state

    async def body(node: Node) -> T:
        with trio.fail_after(args.timeout or math.inf):
            return await work(node, await node.connect(address))

    try:
        return node, trio.run(node.run_client, body)
    except trio.TooSlowError:
        raise CommandError(f"{timeout_message} after {args.timeout} s", EXIT_BAD_DATA) from None
    except OSError as exc:
        raise CommandError(f"cannot connect to {args.peer_address}: {exc.strerror or exc}",
                           EXIT_BAD_DATA) from None
    finally:
        node.logbook.store.close()
        state.close()


#: Feeds a sync names one by one on its output, unless asked for all (--feeds): a
#: home that follows 10,000 feeds gets a summary, not 10,000 lines.
SYNC_LISTED = 10


def _arrived(store: Any, after: int) -> set[FeedId]:
    """The feeds of the entries the store took in since arrival ``after``."""
    feeds: set[FeedId] = set()
    while batch := store.arrivals(after, 10_000):
        feeds.update(arrival.feed for arrival in batch)
        after = batch[-1].id
    return feeds


def cmd_sync(args: argparse.Namespace, home: Home) -> int:
    progress = _progress_printer(sys.stderr.isatty() and not args.json)
    with _loading_for_good():
        from tidings.node.client import SyncClient, Timeout
        from tidings.node.core import open_parts
        from tidings.node.log import Logger
        from tidings.node.options import parse_address

        options = _options(args, home, "client")
        address = parse_address(args.peer_address)
        gc.freeze()
        parts = open_parts(home, options, Logger(level="quiet"), key_file=SYNC_KEY_FILE,
                           create=True)
        try:
            client = SyncClient(parts, options)
        except BaseException:
            parts.close()
            raise
    try:
        return _sync(args, client, address, progress, Timeout)
    finally:
        parts.close()


def _sync(args: argparse.Namespace, client: SyncClient, address: tuple[str, int],
          progress: Callable[[int, int], None] | None, timeout: type[Exception]) -> int:
    from tidings.node.client import summarize

    replicator, state = client.replicator, client.parts.state
    if not state.following() and not state.identity_follows():
        raise CommandError("this home follows no feed: run `tidings follow FEED` first")
    store = replicator.logbook.store
    arrived_after = store.last_arrival()
    logs_before = state.identity_logs()
    try:
        session = client.sync(address, timeout=args.timeout or math.inf, progress=progress)
    except timeout:
        raise CommandError(f"not caught up with {args.peer_address} after {args.timeout} s",
                           EXIT_BAD_DATA) from None
    except OSError as exc:
        raise CommandError(f"cannot connect to {args.peer_address}: {exc.strerror or exc}",
                           EXIT_BAD_DATA) from None
    # What the peer said it holds: a followed feed it holds nothing of is not
    # "caught up", it is absent there. A session that changed nothing (started settled,
    # and no message needed the clocks) loaded no feed: its report is the last one's.
    summary = client.settled_summary if session.settled else summarize(replicator, session)
    assert summary is not None
    absent = summary.absent
    received = replicator.entries_received
    # Identity events fetched are something fetched (a new device's first sync of
    # its identity log, before any device feed of it has an entry).
    learned = state.identity_logs() != logs_before
    if sys.stderr.isatty() and not args.json:
        print(file=sys.stderr)
    if args.feeds:
        replicator.load()  # (every feed is listed: a settled session loaded none)
    local = replicator.local
    wanted = local.wanted
    updated = {feed: local.seq(feed) for feed in _arrived(store, arrived_after)
               if feed in wanted}
    forked = summary.forked
    if args.json:
        report: dict[str, object] = {
            "peer": args.peer_address, "received": received, "followed": summary.followed,
            "updated": {str(f): seq for f, seq in sorted(updated.items(), key=_by_text)},
            "peer_holds_none": list(absent), "forked": dict(sorted(forked.items()))}
        if args.feeds:
            report["feeds"] = {str(f): local.seq(f) for f in sorted(wanted, key=str)}
        print_json(report)
    elif len(absent) == summary.followed and not learned:
        raise CommandError(
            f"{args.peer_address} holds none of the {summary.followed} followed feed(s) "
            f"(e.g. {absent[0] if absent else 'none'}): nothing to fetch from it; "
            "try a peer that has them", EXIT_BAD_DATA)
    else:
        print(f"caught up with {args.peer_address}: {received} new entries, "
              f"{summary.followed - len(absent)} followed feeds")
        shown = absent
        for name in shown if args.feeds else shown[:SYNC_LISTED]:
            print(f"{args.peer_address} holds none of {name}")
        if len(shown) > SYNC_LISTED and not args.feeds:
            print(f"... and {len(shown) - SYNC_LISTED} more feeds it holds none of "
                  "(--feeds lists them all)")
        if args.feeds:
            for feed in sorted(wanted, key=str):
                print(f"{feed}  {local.seq(feed)}")
        for name, at in sorted(forked.items()):
            print(f"FORKED {name} at seq {at}: its author signed two histories; "
                  f"kept up to seq {at - 1} (see `tidings forks`)")
    return EXIT_OK


def _by_text(item: tuple[FeedId, int]) -> str:
    return str(item[0])


def cmd_fetch(args: argparse.Namespace, home: Home) -> int:
    from tidings.cli.reading import print_shown, view_entries
    from tidings.core.entry import decode_entry

    feed = FeedId.from_input(args.feed) if args.feed.strip().startswith("tf1") else None
    if feed is None:
        book = home.open_logbook()
        try:
            feed = feed_arg(args.feed, book)
        finally:
            book.store.close()
    wanted = feed

    async def work(node: Node, connection: Connection) -> PartialResult:
        return await node.fetch_latest(connection, wanted, args.latest)

    if home.path.exists():
        _, result = _as_client(args, home, work, f"no answer from {args.peer_address}")
    else:  # a read never makes a home: this fetch's keys and store live for it alone
        import tempfile

        with tempfile.TemporaryDirectory(prefix="tidings-fetch-") as scratch:
            _, result = _as_client(args, Home(scratch), work, f"no answer from {args.peer_address}")
    if not result.entries:
        raise CommandError(f"{args.peer_address} does not hold {feed}", EXIT_BAD_DATA)
    fetched = [(decode_entry(raw), payload) for raw, payload in result.entries]
    print_shown(view_entries(fetched), args.json)
    return EXIT_OK


def _follow_state(home: Home, *, create: bool = True) -> NodeState:
    """The home's follows; a missing home is made (``create``) or refused."""
    from tidings.node.state import NodeState

    home.open_logbook(create=create).store.close()  # makes the home if asked, else checks
    return NodeState(home.node_state_path)


def _followed_feed(text: str, home: Home) -> FeedId:
    """A feed id, or the name of one of your own logs (as `show` takes them)."""
    if text.strip().startswith("tf1") or not home.is_initialized():
        return FeedId.from_input(text)
    book = home.open_logbook()
    try:
        return feed_arg(text, book)
    finally:
        book.store.close()


def cmd_follow(args: argparse.Namespace, home: Home, follow: bool = True) -> int:
    from tidings.core.ids import is_identity_text

    if is_identity_text(args.feed):  # an author (spec/12): every device's feeds
        from tidings.cli.follow import follow_identity  # (here: a feed's follow loads less)

        return follow_identity(args.feed, home, follow)
    text = args.feed.strip()
    if text.startswith("ta1"):  # one key's log: ta1...:LOG is the feed tf1..._LOG
        from tidings.core.ids import AuthorId

        author, _, log = text.partition(":")
        if not log:
            raise CommandError(f"{text[:12]}... is one key (a device): follow one of its logs "
                               "as ta1...:LOG, or the author as ti1... (`tidings share` "
                               "prints an invite)")
        feed = AuthorId.from_input(author).feed(log)
    else:
        feed = _followed_feed(args.feed, home)
    state = _follow_state(home)
    try:
        changed = state.follow(feed) if follow else state.unfollow(feed)
    finally:
        state.close()
    if args.public:
        from tidings.core.content import follow_payload

        book = home.open_logbook(need_identity=True)
        try:
            book.publish(follow_payload(feed, follow=follow), FOLLOWS_LOG)
        finally:
            book.store.close()
    verb = "following" if follow else "no longer following"
    note = "" if changed else " (already)" if follow else " (was not)"
    print(f"{verb} {feed}{note}")
    return EXIT_OK


def cmd_unfollow(args: argparse.Namespace, home: Home) -> int:
    return cmd_follow(args, home, follow=False)


def cmd_following(args: argparse.Namespace, home: Home) -> int:
    state = _follow_state(home, create=False)
    try:
        follows = state.follows()
    finally:
        state.close()
    for feed in follows:
        print_json({"feed": str(feed)}) if args.json else print(feed)
    from tidings.cli.follow import identity_follows
    from tidings.core.kel import format_identity

    for identity, logs in identity_follows(home).items():
        text = format_identity(identity) + (":" + ",".join(sorted(logs)) if logs else "")
        print_json({"identity": format_identity(identity), "logs": sorted(logs)}) if args.json \
            else print(text)
    return EXIT_OK


def cmd_network_new(args: argparse.Namespace, home: Home) -> int:
    print(os.urandom(32).hex())
    return EXIT_OK


def add_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    network_help = "'public' (default) or a private network key from `tidings network new`"

    p = command("up", "run the node in the foreground until Ctrl-C (creates the home if needed)",
                json_flag=False)
    p.add_argument("--listen", metavar="HOST:PORT", type=listen_address,
                   help=f"where to listen for peers (default from config: {DEFAULT_LISTEN})")
    p.add_argument("--peer", action="append", metavar="HOST:PORT",
                   help="a peer to connect to (repeat for more)")
    p.add_argument("--network", metavar="KEY", help=network_help)
    p.add_argument("--relay", action="store_true",
                   help="store every feed peers offer (an always-on relay)")
    p.add_argument("--hops", type=int, metavar="N",
                   help="1: replicate followed feeds; 2: also those their authors follow")
    p.add_argument("--no-lan", action="store_true", help="no LAN discovery by multicast")
    p.add_argument("--lan-interface", metavar="ADDR",
                   help="the IPv4 address of the interface for LAN beacons "
                        "(default from config: 0.0.0.0, the system's choice)")
    p.add_argument("--api", metavar="HOST:PORT", type=listen_address,
                   help=f"where the local HTTP API listens (default from config: "
                        f"{DEFAULT_API_LISTEN}; port 0 for any)")
    p.add_argument("--no-api", action="store_true", help="do not serve the local HTTP API")
    p.add_argument("--verbose", action="store_true", help="log debug events too")
    p.add_argument("--log-json", action="store_true", help="log JSON lines instead of key=value")
    p.set_defaults(run=cmd_up)

    p = command("sync", "fetch what this home follows from one peer, then exit once caught up")
    p.add_argument("--peer", dest="peer_address", required=True, metavar="HOST:PORT")
    p.add_argument("--network", metavar="KEY", help=network_help)
    p.add_argument("--timeout", type=seconds_arg, metavar="S",
                   help="give up (exit 1) after S seconds (default: no limit)")
    p.add_argument("--hops", type=int, metavar="N", help="as for `up`")
    p.add_argument("--feeds", action="store_true",
                   help="list every followed feed with the seq now held (--json: a \"feeds\" "
                        "object); without it, the feeds this sync moved (\"updated\") and a count")
    p.set_defaults(run=cmd_sync)

    p = command("fetch", "print the latest entries of a feed from one peer, verified, "
                "without fetching the rest")
    p.add_argument("feed", metavar="FEED")
    p.add_argument("--peer", dest="peer_address", required=True, metavar="HOST:PORT")
    p.add_argument("--latest", type=int, default=20, metavar="N", help="how many (default 20)")
    p.add_argument("--network", metavar="KEY", help=network_help)
    p.add_argument("--timeout", type=seconds_arg, default=30.0, metavar="S")
    p.set_defaults(run=cmd_fetch)

    for name, run, text in (
        ("follow", cmd_follow, "replicate a feed from now on"),
        ("unfollow", cmd_unfollow, "stop replicating a feed (what is stored stays)"),
    ):
        p = command(name, text, json_flag=False)
        p.add_argument("feed", metavar="FEED",
                       help="a feed id, or an author: ti1...[:LOG,...] or an invite tinv1...")
        p.add_argument("--public", action="store_true",
                       help=f"also publish a {name} entry in your '{FOLLOWS_LOG}' log (for hops)")
        p.set_defaults(run=run)

    p = command("following", "list the feeds this home follows")
    p.set_defaults(run=cmd_following)

    p = command("network", "network keys", json_flag=False)
    network_sub = p.add_subparsers(dest="network_command", metavar="COMMAND", required=True)
    q = network_sub.add_parser("new", help="print a new private network key",
                               description="print a new private network key")
    q.set_defaults(run=cmd_network_new)


__all__ = ["add_commands"]
