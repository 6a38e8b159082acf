"""A node's life: assembled from a home and its options, started, served, closed.

:func:`open_node` is what apps call; :func:`run_node` is what ``tidings up``
runs; :func:`assemble_node` builds the :class:`~tidings.node.daemon.Node` that
both run, and that ``sync`` and ``fetch`` run as clients. The one ``ready``
log line comes once every listener (peers and the local API) is bound.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from tidings.errors import ListenError, first_error
from tidings.node.core import open_parts
from tidings.node.daemon import Node
from tidings.node.home import Home, private_file
from tidings.node.log import Logger, short_key
from tidings.node.options import NodeOptions, format_address

if TYPE_CHECKING:  # (loaded by run_node: `tidings sync` assembles a node without it)
    from tidings.embed.facade import EmbeddedNode


def assemble_node(home: Home, options: NodeOptions, log: Logger | None = None, *,
                  key_file: str | None = None, create: bool = False) -> Node:
    """The node of ``home`` (blocking: opens its store and state).

    ``key_file`` names another transport key than the node's own (``sync`` and
    ``fetch`` use theirs, so they may run beside ``up``). Without ``create`` the
    home must hold an identity; with it, a missing home is made without one (a
    client that only keeps others' feeds needs no key).
    """
    log = log or Logger(level="quiet")
    parts = open_parts(home, options, log, key_file=key_file, create=create)
    return Node(parts.logbook, parts.state, parts.key, options, log, blobs=parts.blobs)


@contextlib.asynccontextmanager
async def open_node(
    home: str | Path | None = None,
    *,
    listen: str | None = None,
    peers: Sequence[str] = (),
    network: str | None = None,
    relay: bool = False,
    hops: int | None = None,
    lan: bool | None = None,
    api: str | None = None,
    cors_origins: Sequence[str] | None = None,
    log: Logger | None = None,
) -> AsyncIterator[EmbeddedNode]:
    """Run a node on ``home`` for the duration of the block.

    ``home`` is a directory (made, with a new identity, if needed); by default
    ``$TIDINGS_HOME`` or the platform's data directory. Settings come from the
    home's ``config.toml`` (as for ``tidings up``), and the arguments given here
    override them. Unlike ``tidings up``, an app's node listens, serves the API
    and uses LAN discovery only where asked. ``listen`` (``HOST:PORT``, port 0
    for any) makes it accept peers; ``peers`` are dialed, with backoff, for as
    long as it runs (beside the configured ones). ``network`` is ``"public"`` or
    a private network's key. ``api`` (``HOST:PORT``) also serves the local HTTP
    API there, with the token in ``HOME/api.token``. ``log`` receives the node's
    events (none by default).

    Raises :class:`~tidings.errors.UsageError` for bad arguments or settings and
    :class:`~tidings.errors.ListenError` when ``listen`` or ``api`` cannot be bound.
    """
    where = Home.resolve(None if home is None else str(Path(home).expanduser()))
    options = await trio.to_thread.run_sync(partial(
        where.node_options, "embedded", listen=listen, peers=peers, network=network,
        relay=relay, hops=hops, lan=lan, api_listen=api,
    ))
    if cors_origins is not None:
        options.cors_origins = tuple(cors_origins)
    async with run_node(where, options, log=log) as node:
        yield node


@contextlib.asynccontextmanager
async def run_node(home: Home, options: NodeOptions, *,
                   log: Logger | None = None, lock: bool = False) -> AsyncIterator[EmbeddedNode]:
    """:func:`open_node` with options made already (what ``tidings up`` runs).

    The home is locked (one such node at a time, HOME/node.lock) when ``lock`` is given
    (``tidings up``) or the node serves the local API, whose ``api.json`` is the home's
    one: an app's node without an API may share the home with a running node."""

    def prepare() -> tuple[Node, str]:
        home.init()
        return assemble_node(home, options, log), home.api_token()

    held = (await trio.to_thread.run_sync(home.lock) if lock or options.api is not None
            else None)
    try:
        node, token = await trio.to_thread.run_sync(prepare)
    except BaseException:
        if held is not None:
            held.release()
        raise
    from tidings.embed.facade import EmbeddedNode

    embedded = EmbeddedNode(home, node)
    # An error from the app's block (or from starting) is raised as itself, not
    # wrapped in the nursery's ExceptionGroup: apps need no `except*`.
    failure: Exception | None = None
    try:
        async with trio.open_nursery() as nursery:
            try:
                listening = await _start(nursery, options.listen, "peers", node.run)
                if options.api is not None:
                    from tidings.http.api import serve_api

                    sock = home.path / API_SOCKET
                    bound = await _start(nursery, options.api, "the local API", partial(
                        serve_api, unix=sock), embedded, options.api, token,
                        options.cors_origins)
                    embedded.api_url = f"http://{format_address(bound)}"
                    _write_api_file(home, embedded.api_url, sock if sock.exists() else None)
                # Once, when every listener is bound: scripts wait for this line.
                node.log.info(
                    "ready", addr=None if listening is None else format_address(listening),
                    node=short_key(node.replicator.local_static),
                    api=embedded.api_url,
                    token_file=None if embedded.api_url is None else str(home.api_token_path),
                    relay=options.relay,
                )
                yield embedded
            except Exception as exc:
                failure = exc
            finally:
                nursery.cancel_scope.cancel()
        if failure is not None:
            raise failure
    finally:
        with trio.CancelScope(shield=True):  # (a commit's task outlives the nursery)
            await node.stop_publishing()
        if embedded.api_url is not None:
            _remove_api_file(home, embedded.api_url)
        node.logbook.store.close()
        node.state.close()
        if node.blobs is not None:
            node.blobs.close()
        if held is not None:
            held.release()


async def _start(nursery: trio.Nursery, address: tuple[str, int] | None, what: str,
                 call: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    try:
        return await nursery.start(call, *args)
    except (OSError, ExceptionGroup) as exc:
        # (Inside the task's own nursery the OSError comes wrapped in a group.)
        failure = first_error(exc, OSError)
        if failure is None:
            raise
        where = "?" if address is None else format_address(address)
        reason = getattr(failure, "strerror", None) or failure
        raise ListenError(f"cannot listen on {where} for {what}: {reason}") from None


def _write_api_file(home: Home, url: str, sock: Path | None = None) -> None:
    """Tell local tools (``tidings status``) where this node's API is: its URL, and its
    Unix socket (the CLI's first choice: no other local user can connect to it)."""
    temporary = home.api_file.with_suffix(".tmp")
    temporary.unlink(missing_ok=True)
    private_file(temporary)
    where: dict[str, object] = {"url": url, "pid": os.getpid()}
    if sock is not None:
        where["socket"] = str(sock)
    temporary.write_text(json.dumps(where) + "\n")
    temporary.replace(home.api_file)


#: The local API's Unix domain socket, in the home (mode 0600).
API_SOCKET = "api.sock"


def _remove_api_file(home: Home, url: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        if json.loads(home.api_file.read_text()).get("url") == url:
            home.api_file.unlink()
