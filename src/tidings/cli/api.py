"""The commands around HTTP: status (through the local API) and serve-feeds."""

from __future__ import annotations

import argparse
import json
import os
import signal
from collections.abc import Callable
from functools import partial
from typing import Any

from tidings.cli.common import (
    EXIT_BAD_DATA,
    EXIT_INTERRUPTED,
    EXIT_OK,
    CommandError,
    err,
    listen_address,
    print_json,
)
from tidings.core.ids import FeedId
from tidings.errors import first_error
from tidings.identity import Identity
from tidings.node.home import Home

#: `tidings status` exits with this when no node runs for the home.
EXIT_NOT_RUNNING = 3


def api_call(home: Home, path: str, *, timeout: float = 10.0) -> Any:
    """GET ``path`` from the node running on ``home``, through its local API."""
    import urllib.error  # (here: every other command starts faster without it)
    import urllib.request

    try:
        where = json.loads(home.api_file.read_text())
        url = where["url"]
    except (OSError, ValueError, KeyError, TypeError):
        raise CommandError(
            f"no node with a local API is running for {home.path} (no {home.api_file.name}): "
            "start one with `tidings up` (without --no-api)", EXIT_NOT_RUNNING,
        ) from None
    token = home.api_token()
    sock = where.get("socket") if isinstance(where, dict) else None
    if isinstance(sock, str) and os.path.exists(sock):
        return _unix_call(sock, path, token, timeout)
    request = urllib.request.Request(
        url + path, headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, OSError) as exc:  # (HTTPError is a URLError)
        raise api_failure(exc, url) from None


def api_failure(exc: Exception, url: str) -> CommandError:
    """What a failed request to the node's local API tells the person: the API's own
    message when it answered with an error, else that the node does not answer."""
    import urllib.error

    if isinstance(exc, urllib.error.HTTPError):
        try:
            problem = json.loads(exc.read())["error"]["message"]
        except (ValueError, KeyError, TypeError):
            problem = str(exc)
        return CommandError(f"the node's API refused: {problem}", EXIT_BAD_DATA)
    return CommandError(f"the node at {url} does not answer ({getattr(exc, 'reason', exc)}): "
                        "is `tidings up` still running?", EXIT_NOT_RUNNING)


def _unix_call(sock: str, path: str, token: str, timeout: float) -> Any:
    """GET ``path`` over the node's Unix domain socket (mode 0600: only this user)."""
    import http.client
    import socket

    class UnixConnection(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(sock)

    connection = UnixConnection("localhost", timeout=timeout)
    try:
        connection.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        response = connection.getresponse()
        body = response.read()
    except OSError as exc:
        raise CommandError(f"the node at {sock} does not answer ({exc}): is `tidings up` "
                           "still running?", EXIT_NOT_RUNNING) from None
    finally:
        connection.close()
    if response.status != 200:
        try:
            problem = json.loads(body)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            problem = f"HTTP {response.status}"
        raise CommandError(f"the node's API refused: {problem}", EXIT_BAD_DATA)
    return json.loads(body)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def cmd_status(args: argparse.Namespace, home: Home) -> int:
    status = api_call(home, "/v1/status")
    if args.json:
        print_json(status)
        return EXIT_OK
    behind = sum(f["behind"] for f in status["feeds"])
    print(f"node     up {_duration(status['uptime'])}, author {status['author']}")
    print(f"listen   {status['listen'] or '(client only: dials, does not listen)'}")
    print(f"api      {status['api']}")
    print(f"peers    {len(status['peers'])} connected, {status['known_peers']} known")
    for peer in status["peers"]:
        relay = "  relay" if peer["relay"] else ""
        print(f"  {peer['node'][:8]}  {peer['address']:<22} {peer['direction']:<3}{relay}")
    forked = [f for f in status["feeds"] if f["forked_at"] is not None]
    diverged = [f for f in status["feeds"] if f["diverged"]]
    if not status["peers"]:
        sync = "no peer connected"
    elif forked:  # never "caught up" for a feed whose author signed two histories
        sync = f"{len(forked)} feed(s) FORKED, {behind} entries to fetch"
    elif diverged:
        sync = f"{len(diverged)} feed(s) seen in another history, looking for the fork"
    else:
        sync = "caught up" if status["caught_up"] else f"{behind} entries to fetch"
    print(f"feeds    {len(status['feeds'])}, {sync}, "
          f"{status['entries_received']} entries received since start")
    if forked:
        print(f"forks    {len(forked)} feed(s) forked by their author: shown up to the "
              "fork (`tidings forks` lists the proofs)")
    for author in status.get("identities", []):
        note = {"unknown": "  (its log is not here yet)",
                "forked": f"  FORKED identity log at seq {author['fork_seq']}: frozen until "
                          "its owner rotates",
                "dead": "  DEAD: its next key signed two rotations"}.get(author["status"], "")
        print(f"author   {author['identity']}  {author['devices']} device(s), log seq "
              f"{author['seq']}{note}")
    for feed in status["feeds"]:
        mark = "*" if feed["followed"] else " "
        known = f"/{feed['peer_seq']}" if feed["peer_seq"] > feed["local_seq"] else ""
        note = ""
        if feed["forked_at"] is not None:
            note = f"  FORKED at seq {feed['forked_at']}"
        elif feed["diverged"]:
            note = "  another history seen: looking for the fork"
        print(f" {mark}{feed['feed']}  {feed['local_seq']}{known}{note}")
    return EXIT_OK


def _served_feeds(args: argparse.Namespace, home: Home,
                  identity: Identity | None) -> Callable[[FeedId], bool]:
    """Which feeds serve-feeds shows: --all, the --feed ones, else the home's own."""
    if args.all:
        if str(home.config().node.get("network", "public")) != "public":
            err("warning: --all serves feeds of a private network to anyone who asks")
        return lambda feed: True
    if args.feed:
        chosen = {FeedId.from_input(text) for text in args.feed}
        return chosen.__contains__
    if identity is None:
        raise CommandError("this home has no identity, so no feeds of its own: pass "
                           "--feed FEED (repeat for more) or --all")
    own = identity.author.key
    return lambda feed: feed.author_key == own


def cmd_serve_feeds(args: argparse.Namespace, home: Home) -> int:
    import trio

    from tidings.http.gateway import check_base_url, serve_feeds
    from tidings.node.log import Logger
    from tidings.node.options import format_address, parse_address

    host, port = parse_address(args.listen, 8080)
    log = Logger(as_json=args.log_json)
    configured = args.base_url or home.config().feeds.get("base_url")
    base_url = check_base_url(str(configured)) if configured else None
    book = home.open_logbook()
    allows = _served_feeds(args, home, book.identity)
    from tidings.storage.blobs import BlobStore

    blobs = BlobStore.for_import(home.path)  # read beside a running node

    async def main() -> int:
        code = EXIT_OK
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                bound = await nursery.start(partial(
                    serve_feeds, book.store, host, port, log, base_url, allows,
                    identity_state=_identity_states(home), blobs=blobs))
                log.info("serving-feeds", url=f"http://{format_address(bound)}/",
                         base_url=base_url or "(relative links)", home=str(home.path))
                async for signum in signals:
                    # SIGTERM: a service stopped as asked; Ctrl-C exits as shells expect.
                    code = EXIT_INTERRUPTED if signum == signal.SIGINT else EXIT_OK
                    nursery.cancel_scope.cancel()
        return code

    try:
        code = trio.run(main)
    except ExceptionGroup as exc:
        first = first_error(exc, OSError)
        if first is None:
            raise
        raise CommandError(f"cannot listen on {host}:{port}: "
                           f"{getattr(first, 'strerror', None) or first}; choose another "
                           "with --listen HOST:PORT") from None
    finally:
        book.store.close()
        blobs.close()
    err("stopped")
    return code


def _identity_states(home: Home) -> Callable[[bytes], Any]:
    """An identity's state as this home holds it (for /authors/<ti1>/<log>.atom)."""
    from tidings.node.state import NodeState
    from tidings.replication.identities import IdentityBook

    def state_of(identity: bytes) -> Any:
        state = NodeState(home.node_state_path)
        try:
            return IdentityBook(state).state(identity)
        finally:
            state.close()

    return state_of


def add_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    p = command("status", "show the running node's peers, feeds and sync progress "
                f"(through its local API; exit {EXIT_NOT_RUNNING} if none runs)")
    p.set_defaults(run=cmd_status)

    p = command("serve-feeds", "serve this home's feeds as web pages, Atom and JSON Feed, "
                "read-only and without a token, for people, feed readers and podcast apps",
                json_flag=False)
    p.add_argument("--listen", default="127.0.0.1:8080", metavar="HOST:PORT",
                   type=listen_address,
                   help="where to listen (default 127.0.0.1:8080; 0.0.0.0:PORT for everyone)")
    p.add_argument("--feed", action="append", metavar="FEED",
                   help="serve this feed (repeat for more; default: this home's own feeds)")
    p.add_argument("--all", action="store_true",
                   help="serve every stored feed, others' included (those followed, relayed...)")
    p.add_argument("--base-url", metavar="URL",
                   help="the public URL the gateway is reached at, for the links of its pages "
                        "and feeds, e.g. https://feeds.example.org (default: [feeds] base_url "
                        "in config.toml; else links are relative to each page)")
    p.add_argument("--log-json", action="store_true", help="log JSON lines instead of key=value")
    p.set_defaults(run=cmd_serve_feeds)


__all__ = ["EXIT_NOT_RUNNING", "add_commands", "api_call"]
