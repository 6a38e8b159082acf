"""The local HTTP API: everything the Python API does, as JSON, for apps in any language.

Normative description: ``spec/http-api.md`` and ``spec/openapi.json``. In short:

* every request needs the token from ``HOME/api.token``, as
  ``Authorization: Bearer TOKEN`` (or ``?token=TOKEN`` on a GET, for
  EventSource and feed readers, which cannot set headers);
* state changes only by POST with a JSON body (``Content-Type:
  application/json``): a web page cannot forge one without CORS permission,
  and CORS is off unless origins are configured;
* requests for another Host than the loopback names are refused while the API
  listens on loopback (DNS rebinding);
* errors are ``{"error": {"code": "...", "message": "..."}}`` with a stable code;
* ``GET /v1/events`` is a Server-Sent Events stream of new entries whose event
  ids are cursors: a client that reconnects with ``Last-Event-ID`` misses nothing.
"""

from __future__ import annotations

import base64
import errno
import hmac
import ipaddress
import json
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import trio

from tidings.core import content as content_types
from tidings.core.blob import MAX_BLOB_SIZE, BlobId
from tidings.core.corrections import MAX_CORRECTION_DISTANCE, effective_view
from tidings.core.entry import Entry
from tidings.core.ids import FeedId
from tidings.core.times import rfc3339
from tidings.embed import EmbeddedNode, FeedProgress, Item, PeerInfo, Status, parse_cursor
from tidings.embed.subscriptions import PAGE_ENTRIES, Subscription
from tidings.errors import InvalidContent, PeerError, StorageFull, TidingsError, UsageError
from tidings.http import gateway
from tidings.http.blobs import blob_response, parse_blob, sweep_uploads
from tidings.http.feedview import read_entries
from tidings.http.server import (
    JSON,
    STREAM_BUFFER_BYTES,
    BodyWriter,
    HttpError,
    HttpServer,
    Request,
    Response,
    error_response,
    json_response,
)
from tidings.node.options import parse_address
from tidings.storage.base import Store
from tidings.storage.blobs import BlobStore
from tidings.storage.logbook import DEFAULT_LOG

API_PREFIX = "/v1"
#: Uploads in progress, in the home (``POST /v1/uploads``).
UPLOADS_DIR = "uploads"
#: Seconds between SSE keep-alive comments (proxies drop silent streams).
KEEPALIVE_EVERY = 15.0
#: What an EventSource waits before reconnecting, in milliseconds.
SSE_RETRY_MS = 2000
#: (A feed id is up to 123 characters, and the request line is bounded at 16 KiB.)
MAX_FEEDS_PER_STREAM = 100
MAX_SEQ = 2**63 - 1
#: Encoded SSE events kept for other streams to send (cursors name them uniquely).
EVENT_CACHE = 4096
EVENT_CACHE_BYTES = 16 << 20
#: The SSE fan-out lets other tasks run after writing to this many streams (see
#: EventFanout._deliver).
STREAMS_PER_YIELD = 4
LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "[::1]", "::1"}


# -- JSON forms ---------------------------------------------------------------


def item_json(item: Item) -> dict[str, Any]:
    """An entry as the API shows it (spec/http-api.md, "Entry")."""
    entry, payload = item.entry, item.payload
    decoded = content_types.decode(payload)
    shown: dict[str, Any] = {
        "feed": str(entry.feed), "author": str(entry.feed.author), "log": entry.log_id,
        "seq": entry.seq, "hash": entry.hash.hex(), "timestamp": entry.timestamp,
        "published": rfc3339(entry.timestamp), "end_of_log": entry.is_end_of_log,
        "payload_size": entry.payload_size, "payload_held": payload is not None,
        "content": None if decoded is None else content_types.to_json(decoded),
        "payload_base64": None if payload is None else base64.b64encode(payload).decode(),
    }
    if item.cursor is not None:
        shown["cursor"] = item.cursor
    if item.identity is not None:  # a device feed of a followed author, or our own (spec/12)
        shown["identity"] = item.identity
        shown["device"] = item.device
    return shown


def _progress_json(progress: FeedProgress) -> dict[str, Any]:
    return {"feed": str(progress.feed), "local_seq": progress.local_seq,
            "peer_seq": progress.peer_seq, "behind": progress.behind,
            "followed": progress.followed, "forked_at": progress.forked_at,
            "diverged": progress.diverged}


def _peer_json(peer: PeerInfo) -> dict[str, Any]:
    return {"node": peer.node, "address": peer.address, "direction": peer.direction,
            "version": peer.version, "relay": peer.relay}


def status_json(status: Status, api_url: str | None) -> dict[str, Any]:
    return {
        "author": str(status.author), "listen": status.listen, "api": api_url,
        "peers": [_peer_json(p) for p in status.peers], "known_peers": status.known_peers,
        "feeds": [_progress_json(f) for f in status.feeds],
        "caught_up": status.caught_up, "entries_received": status.entries_received,
        "uptime": round(max(0.0, time.time() - status.started), 3),
        "identities": [{"identity": i.identity, "status": i.status, "seq": i.seq,
                        "devices": i.devices, "fork_seq": i.fork_seq}
                       for i in status.identities],
    }


# -- live event streams -------------------------------------------------------


@dataclass(eq=False)
class _Live:
    subscription: Subscription
    writer: BodyWriter
    #: Set by the fan-out when the stream must catch up by itself.
    behind: bool = False
    #: Writes offered so far (a stream that got none for a while sends a keep-alive).
    offered: int = 0


class EventFanout:
    """Caught-up ``/v1/events`` streams, served by one task (:meth:`run`).

    At each change to the store it reads what arrived once (the subscriptions'
    shared tail), encodes each event once (:meth:`Api.event_bytes`) and offers
    each stream its events without waiting (:meth:`BodyWriter.offer`): what the
    socket takes goes at once, from this task, so a stream's own task sleeps
    until its client is slow. What a client has not taken yet waits in its
    writer, and later events join it, so a stream that fell behind catches up
    in one write. A stream holding STREAM_BUFFER_BYTES not taken, or one that
    fell behind the shared tail, leaves the fan-out and reads the store from
    where it stands (its subscription; nothing is lost, memory stays bounded),
    then comes back once it has caught up.
    """

    def __init__(self, api: Api) -> None:
        self._api = api
        self._live: dict[Subscription, _Live] = {}
        self._wake = trio.Event()
        self._streams_came = trio.Event()
        self.running = False

    def pending(self) -> list[int]:
        """Bytes each stream it serves holds that its client has not taken yet."""
        return [live.writer.pending_bytes for live in self._live.values()]

    async def run(self) -> None:
        """Serve the streams until cancelled."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch)
            self.running = True
            try:
                while True:
                    await self._wake.wait()
                    self._wake = trio.Event()
                    await self._deliver()
            finally:
                self.running = False

    async def _watch(self) -> None:
        """Wake the delivery task after every change to the store."""
        while True:
            if not self._live:
                self._streams_came = trio.Event()
                await self._streams_came.wait()
                continue
            # Taken before the delivery it wakes: a change after this sets it.
            changed = next(iter(self._live)).store_changed()
            self._wake.set()
            await changed.wait()

    async def _deliver(self) -> None:
        for index, live in enumerate(list(self._live.values())):
            if index and index % STREAMS_PER_YIELD == 0:
                # A round of writes to many streams would hold the event loop for
                # milliseconds (a loopback write is 10-20 µs of CPU). Letting other
                # tasks run between a few streams reads the next publish meanwhile,
                # and its commit runs in its worker thread while this round goes on.
                await trio.lowlevel.checkpoint()
            try:
                await self._deliver_to(live)
            except Exception as exc:  # a bug costs that stream, not the others
                self._api.node.log.warning("sse-failed", error=f"{type(exc).__name__}: {exc}")
                live.writer.close()  # (its client resumes from the last event it got)

    async def _deliver_to(self, live: _Live) -> None:
        writer = live.writer
        while not (live.behind or writer.closed):
            if writer.pending_bytes >= STREAM_BUFFER_BYTES:
                page = None  # its client is slow: it reads the store when it can
            else:
                page = await live.subscription.ready()
            if page is None:
                live.behind = True
                writer.wakeup.set()
                return
            if page:
                writer.offer(b"".join([self._api.event_bytes(item) for item in page]))
                live.offered += 1
            if len(page) < PAGE_ENTRIES:
                return

    async def follow(self, subscription: Subscription, writer: BodyWriter) -> None:
        """Serve one stream from here until it falls behind (then return, and the
        stream reads on by itself) or its connection fails (an exception)."""
        live = _Live(subscription, writer)
        self._live[subscription] = live
        self._streams_came.set()
        self._wake.set()  # (what arrived before it joined)
        try:
            while not live.behind:
                offered = live.offered
                with trio.move_on_after(KEEPALIVE_EVERY):
                    await writer.wakeup.wait()
                if live.offered == offered and not writer.wakeup.is_set():
                    writer.offer(b": keep-alive\n\n")
                await writer.flush()  # (raises once the connection broke)
        finally:
            del self._live[subscription]


# -- request helpers ----------------------------------------------------------


def _json_body(request: Request, allowed: set[str],
               required: frozenset[str] | set[str] = frozenset()) -> dict[str, Any]:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json":
        raise HttpError(415, "unsupported_media_type",
                        "send the body as JSON with Content-Type: application/json")
    try:
        value = json.loads(request.body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise HttpError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise HttpError(400, "invalid_request", "the body must be a JSON object")
    unknown = set(value) - allowed
    if unknown:
        raise HttpError(400, "invalid_request",
                        f"unknown field(s) {', '.join(sorted(unknown))}; "
                        f"allowed: {', '.join(sorted(allowed))}")
    missing = required - set(value)
    if missing:
        raise HttpError(400, "invalid_request", f"missing field(s) {', '.join(sorted(missing))}")
    return value


def _feed_field(value: object, name: str = "feed") -> FeedId:
    if not isinstance(value, str):
        raise HttpError(400, "invalid_request", f"{name} must be a feed id (tf1...)")
    return _feed(value)


def _feed(text: str) -> FeedId:
    try:
        return FeedId.from_input(text)
    except UsageError as exc:
        raise HttpError(400, "invalid_feed", str(exc)) from None


def _stream_feed(text: str) -> FeedId | str:
    """A feed id, or an author (``ti1...`` or ``ti1...:log``: its device feeds) in
    ``/v1/events?feeds=``, where commas part the items (one log per author item)."""
    if text.startswith("ti1"):
        if not re.fullmatch(r"ti1[a-z2-7]{55}(:[a-z0-9][a-z0-9_-]{0,63})?", text):
            raise HttpError(400, "invalid_feed", f"{text[:70]}: an author is ti1... or "
                            "ti1...:LOG here (name several logs as several items)")
        return text
    return _feed(text)


def _int_arg(request: Request, name: str, default: int, low: int, high: int) -> int:
    text = request.arg(name)
    if text is None:
        return default
    if not re.fullmatch(r"[0-9]{1,19}", text) or not low <= int(text) <= high:
        raise HttpError(400, "invalid_request", f"{name} must be an integer from {low} to {high}")
    return int(text)


def _bool_field(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise HttpError(400, "invalid_request", f"{name} must be true or false")
    return value


# -- the routes ---------------------------------------------------------------

Route = Callable[["Api", Request, re.Match[str]], Awaitable[Response]]


@dataclass(frozen=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    call: Route


_FEED = r"(?P<feed>tf1[a-z2-7]+_[^/.]+)"
_ROUTES: list[_Route] = []


def route(method: str, path: str) -> Callable[[Route], Route]:
    def register(call: Route) -> Route:
        _ROUTES.append(_Route(method, re.compile(path.replace("{feed}", _FEED)), call))
        return call
    return register


class Api(gateway.TokenLinks):
    """The request handler of the local API for one embedded node."""

    def __init__(self, node: EmbeddedNode, token: str, *, loopback: bool,
                 cors_origins: tuple[str, ...] = ()) -> None:
        self.node = node
        self._token = token.encode()
        self.loopback = loopback
        self.cors_origins = cors_origins
        self._events: dict[tuple[tuple[int, int], bool, str | None, str | None], bytes] = {}
        self._event_bytes = 0
        self.fanout = EventFanout(self)
        sweep_uploads(node.home.path / UPLOADS_DIR)  # left by an earlier run

    @property
    def store(self) -> Store:
        return self.node.store

    @property
    def blobs(self) -> BlobStore | None:
        """The node's chunk store (enclosures, downloads)."""
        return self.node.blob_store

    async def wait_for_chunk(self, blob: BlobId, index: int) -> None:
        """Fetch ``blob`` (if not yet) and wait until chunk ``index`` is held: a player
        reading a blob as it downloads."""
        try:
            await self.node.wait_for_chunk(blob, index)
        except PeerError as exc:
            raise HttpError(504, "not_fetched", str(exc)) from None

    def event_bytes(self, item: Item) -> bytes:
        """One SSE ``entry`` event, encoded once for all the streams that send it.

        Cached by position and whether the payload is held: a position names
        one entry, and a payload, once held, can only be deleted.
        """
        assert item.position is not None
        key = (item.position, item.payload is not None, item.identity, item.device)
        event = self._events.get(key)
        if event is None:
            data = JSON.encode(item_json(item))
            event = f"event: entry\nid: {item.cursor}\ndata: {data}\n\n".encode()
            while self._events and (len(self._events) >= EVENT_CACHE or
                                    self._event_bytes + len(event) > EVENT_CACHE_BYTES):
                self._event_bytes -= len(self._events.pop(next(iter(self._events))))
            self._events[key] = event
            self._event_bytes += len(event)
        return event

    def check_head(self, request: Request) -> Response | None:
        """Host, Origin and token, on the request head before any body is read
        (the server calls it; spec/14 §7): the error response, or None."""
        origin = request.headers.get("origin")
        try:
            self._check_host(request)
            self._check_origin(origin)
            if not (request.method == "OPTIONS" and origin is not None):
                self._check_token(request)
        except HttpError as error:
            response = error_response(error)
            if origin is not None and origin in self.cors_origins:
                response.headers += [("Access-Control-Allow-Origin", origin), ("Vary", "Origin")]
            return response
        return None

    def _check_origin(self, origin: str | None) -> None:
        if origin is not None and origin not in self.cors_origins:
            raise HttpError(403, "origin_not_allowed",
                            f"requests from {origin[:100]} are not allowed: add it to "
                            "[api] cors_origins in config.toml to allow a web app")

    async def __call__(self, request: Request) -> Response:
        origin = request.headers.get("origin")
        try:
            if not request.checked:  # (the server checked it with check_head)
                self._check_host(request)
                self._check_origin(origin)
            if request.method == "OPTIONS" and origin is not None:
                response = self._preflight()
            else:
                if not request.checked:
                    self._check_token(request)
                response = await self._dispatch(request)
        except HttpError as error:
            response = error_response(error)
        return self.cors(request, response) if origin is not None else response

    def cors(self, request: Request, response: Response) -> Response:
        """``response`` allowed to a web app's origin, if configured."""
        origin = request.headers.get("origin")
        if origin is not None and origin in self.cors_origins:
            response.headers += [("Access-Control-Allow-Origin", origin), ("Vary", "Origin")]
        return response

    def _check_host(self, request: Request) -> None:
        if not self.loopback:
            return
        host = request.headers.get("host", "")
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if name.lower() not in LOOPBACK_HOSTS and not _is_loopback_ip(name):
            raise HttpError(403, "host_not_allowed",
                            f"the API answers only to loopback host names, not {host[:100]!r}")

    def _check_token(self, request: Request) -> None:
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        candidate = value.strip() if scheme.lower() == "bearer" else ""
        if not candidate and request.method in ("GET", "HEAD"):
            candidate = request.arg("token") or ""
        if not hmac.compare_digest(candidate.encode(), self._token):
            raise HttpError(401, "unauthorized",
                            "send the token from HOME/api.token as 'Authorization: Bearer TOKEN'",
                            [("WWW-Authenticate", 'Bearer realm="tidings"')])

    def _preflight(self) -> Response:
        return Response(204, content_type="", headers=[
            ("Access-Control-Allow-Methods", "GET, POST"),
            ("Access-Control-Allow-Headers", "Authorization, Content-Type, Last-Event-ID"),
            ("Access-Control-Max-Age", "600"),
        ])

    async def _dispatch(self, request: Request) -> Response:
        allowed: list[str] = []
        method = "GET" if request.method == "HEAD" else request.method
        for candidate in _BY_PATH.get(request.path, _ROUTES):
            match = candidate.pattern.fullmatch(request.path)
            if match is None:
                continue
            if candidate.method != method:
                allowed.append(candidate.method)
                continue
            try:
                return await candidate.call(self, request, match)
            except StorageFull:
                raise _storage_full() from None
            except OSError as exc:
                if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                    raise
                raise _storage_full() from None
            except InvalidContent as exc:
                raise HttpError(400, "invalid_content", str(exc)) from None
            except UsageError as exc:
                raise HttpError(400, "invalid_request", str(exc)) from None
        if allowed:
            raise HttpError(405, "method_not_allowed",
                            f"{request.path} takes {' or '.join(sorted(set(allowed)))}",
                            [("Allow", ", ".join(sorted(set(allowed))))])
        raise HttpError(404, "not_found", f"no such endpoint: {request.path[:200]}; "
                        f"see {API_PREFIX}/openapi.json")


def _storage_full() -> HttpError:
    """A write that found the disk full (spec/14 §4): nothing was written, and the
    node goes on serving reads; a 507 says so, never a 500."""
    return HttpError(507, "storage_full",
                     "the node's disk is full, and nothing was written: free some space "
                     "on the disk that holds its home, then send the request again (the "
                     "node resumes by itself)")


def _is_loopback_ip(text: str) -> bool:
    try:
        return ipaddress.ip_address(text.strip("[]")).is_loopback
    except ValueError:
        return False


@route("GET", API_PREFIX + "/status")
async def _status(api: Api, request: Request, match: re.Match[str]) -> Response:
    return json_response(status_json(await api.node.status(), api.node.api_url))


@route("GET", API_PREFIX + "/peers")
async def _peers(api: Api, request: Request, match: re.Match[str]) -> Response:
    return json_response({"peers": [_peer_json(p) for p in await api.node.peers()]})


@route("POST", API_PREFIX + "/peers")
async def _add_peer(api: Api, request: Request, match: re.Match[str]) -> Response:
    body = _json_body(request, {"address"}, {"address"})
    if not isinstance(body["address"], str):
        raise HttpError(400, "invalid_request", "address must be HOST:PORT")
    await api.node.add_peer(body["address"])
    return json_response({"address": body["address"], "dialing": True}, 202)


@route("GET", API_PREFIX + "/feeds")
async def _feeds(api: Api, request: Request, match: re.Match[str]) -> Response:
    return json_response({"feeds": [_progress_json(f) for f in await api.node.feeds()]})


@route("GET", API_PREFIX + "/following")
async def _following(api: Api, request: Request, match: re.Match[str]) -> Response:
    return json_response({"following": [str(f) for f in await api.node.following()]})


async def _set_follow(api: Api, request: Request, follow: bool) -> Response:
    body = _json_body(request, {"feed", "author", "public"})
    if ("feed" in body) == ("author" in body):
        raise HttpError(400, "invalid_request", "give exactly one of feed (tf1...) and "
                        "author (ti1...[:log,...] or an invite tinv1...)")
    if "author" in body:  # an author: every device's feeds (spec/12)
        if not isinstance(body["author"], str):
            raise HttpError(400, "invalid_request", "author must be a string")
        try:
            changed = await api.node.follow_author(body["author"], follow=follow)
        except UsageError as exc:
            raise HttpError(400, "invalid_request", str(exc)) from None
        return json_response({"author": body["author"], "following": follow,
                              "changed": changed})
    feed, public = _feed_field(body["feed"]), _bool_field(body, "public")
    call = api.node.follow if follow else api.node.unfollow
    changed = await call(feed, public=public)
    return json_response({"feed": str(feed), "following": follow, "changed": changed})


@route("POST", API_PREFIX + "/follow")
async def _follow(api: Api, request: Request, match: re.Match[str]) -> Response:
    return await _set_follow(api, request, True)


@route("POST", API_PREFIX + "/unfollow")
async def _unfollow(api: Api, request: Request, match: re.Match[str]) -> Response:
    return await _set_follow(api, request, False)


@route("POST", API_PREFIX + "/publish")
async def _publish(api: Api, request: Request, match: re.Match[str]) -> Response:
    body = _json_body(request, {"log", "content", "payload_base64"})
    log = body.get("log", DEFAULT_LOG)
    if not isinstance(log, str):
        raise HttpError(400, "invalid_request", "log must be a log id such as \"blog\"")
    if ("content" in body) == ("payload_base64" in body):
        raise HttpError(400, "invalid_request",
                        "give exactly one of content (a JSON content object) and "
                        "payload_base64 (free bytes)")
    if "content" in body:
        payload = content_types.encode(content_types.from_json(body["content"]))
    else:
        text = body["payload_base64"]
        try:
            payload = base64.b64decode(text if isinstance(text, str) else "!", validate=True)
        except ValueError:
            raise HttpError(400, "invalid_request", "payload_base64 must be base64") from None

    def created(entry: Entry) -> Response:
        return api.cors(request, json_response(
            item_json(api.node.attributed([Item(entry, payload)])[0]), 201))

    answered = False

    def answer(entry: Entry) -> Callable[[], None]:
        # Framed while the commit's fsync runs, sent by the commit once durable.
        assert request.early is not None
        send = request.early(created(entry))

        def durable() -> None:
            nonlocal answered
            answered = True
            send()

        return durable

    try:
        entry = await api.node.publish(
            payload, log, answer=None if request.early is None else answer)
    except StorageFull:
        raise
    except TidingsError as exc:
        raise HttpError(400, "invalid_request", str(exc)) from None
    if answered:
        return Response(201)  # (the server does not send it: the commit sent the answer)
    return created(entry)


@route("GET", API_PREFIX + "/authors/(?P<author>ti1[a-z2-7]+)/entries")
async def _author_entries(api: Api, request: Request, match: re.Match[str]) -> Response:
    """An author's merged stream (spec/12 §7.3): the latest ``limit`` items of ``log``
    (default: every log) of all its devices, each naming its feed, seq and device."""
    log = request.arg("log")
    limit = _int_arg(request, "limit", 100, 1, 1000)
    try:
        items = await api.node.author_entries(match["author"], log or None, limit=limit)
    except UsageError as exc:
        raise HttpError(400, "invalid_request", str(exc)) from None
    return json_response({"entries": [item_json(i.item) | {"device": i.device}
                                      for i in items]})


@route("GET", API_PREFIX + "/feeds/{feed}/entries")
async def _entries(api: Api, request: Request, match: re.Match[str]) -> Response:
    feed = _feed(match["feed"])
    since = _int_arg(request, "since", 1, 1, 2**63 - 1)
    limit = _int_arg(request, "limit", 100, 1, 1000)
    items = await api.node.entries(feed, since=since, limit=limit)
    # (A page can also end early at its byte budget: compare with the head.)
    following = None
    head = await api.node.head_seq(feed)
    if items and items[-1].seq < head:
        following = items[-1].seq + 1
    shown = await _corrected(api, feed, items, head)
    return json_response({"entries": [item_json(i) | shown[i.seq] for i in items],
                          "next_since": following})


async def _corrected(api: Api, feed: FeedId, items: list[Item], head: int
                     ) -> dict[int, dict[str, Any]]:
    """What each stored entry shows once its author's corrections apply (spec/http-api.md
    §6, content.md §12): ``state``, ``corrected_by`` and ``shown``, by seq."""
    if not items:
        return {}
    first, last = items[0].seq, items[-1].seq
    window = await trio.to_thread.run_sync(
        read_entries, api.store, feed, first, min(head, last + MAX_CORRECTION_DISTANCE))
    return {shown.entry.seq: {
        "state": shown.state, "corrected_by": shown.by,
        "shown": None if shown.content is None else content_types.to_json(shown.content),
    } for shown in effective_view(window) if first <= shown.entry.seq <= last}


async def _stored(api: Api, match: re.Match[str]) -> Item | None:
    seq = int(match["seq"])
    if not 1 <= seq <= MAX_SEQ:
        return None
    return await api.node.entry(_feed(match["feed"]), seq)


@route("GET", API_PREFIX + "/feeds/{feed}/entries/(?P<seq>[0-9]{1,19})")
async def _entry(api: Api, request: Request, match: re.Match[str]) -> Response:
    item = await _stored(api, match)
    if item is None:
        raise HttpError(404, "not_found", f"no entry {match['seq']} of {match['feed']} here")
    feed = item.feed
    shown = await _corrected(api, feed, [item], await api.node.head_seq(feed))
    return json_response(item_json(item) | shown[item.seq])


@route("GET", API_PREFIX + "/feeds/{feed}/entries/(?P<seq>[0-9]{1,19})/payload")
async def _payload(api: Api, request: Request, match: re.Match[str]) -> Response:
    item = await _stored(api, match)
    if item is None:
        raise HttpError(404, "not_found", f"no entry {match['seq']} of {match['feed']} here")
    if item.payload is None:
        raise HttpError(404, "payload_not_held",
                        "this node holds the entry but not its payload (deleted, or never "
                        "fetched)")
    return Response(200, item.payload, "application/octet-stream")


@route("GET", API_PREFIX + "/feeds/{feed}/latest")
async def _latest(api: Api, request: Request, match: re.Match[str]) -> Response:
    feed = _feed(match["feed"])
    count = _int_arg(request, "count", 20, 1, 1000)
    peer = request.arg("peer")
    if peer is not None:
        try:
            parse_address(peer)
        except UsageError as exc:
            raise HttpError(400, "invalid_request", f"peer: {exc}") from None
    try:
        items = await api.node.fetch_latest(feed, count, peer=peer, timeout=30.0)
    except trio.TooSlowError:
        raise HttpError(504, "peer_timeout", "no peer answered within 30 s") from None
    except PeerError as exc:
        raise HttpError(502, "peer_error", f"the peer failed: {exc}") from None
    except OSError as exc:
        raise HttpError(502, "peer_unreachable",
                        f"cannot connect to {peer}: {exc.strerror or exc}") from None
    except UsageError as exc:
        raise HttpError(409, "no_peer", str(exc)) from None
    return json_response({"entries": [item_json(i) for i in items]})


@route("GET", API_PREFIX + "/events")
async def _events(api: Api, request: Request, match: re.Match[str]) -> Response:
    after = request.headers.get("last-event-id") or request.arg("after")
    if after is not None:
        arrival, _ = parse_cursor(after)  # a bad cursor is a 400 before the stream starts
        newest = await trio.to_thread.run_sync(api.store.last_arrival)
        if arrival > newest + 1:
            raise HttpError(400, "invalid_request",
                            f"cursor {after} is beyond this node's newest entry: is it from "
                            "another node? Start without one")
    feeds_arg = request.arg("feeds")
    feeds = None
    if feeds_arg:
        names = feeds_arg.split(",")
        if len(names) > MAX_FEEDS_PER_STREAM:
            raise HttpError(400, "invalid_request",
                            f"at most {MAX_FEEDS_PER_STREAM} feeds per stream")
        feeds = [_stream_feed(name) for name in names]
    own = request.arg("own", "false") in ("1", "true")
    try:
        subscription = api.node.subscribe(feeds, after=after, own=own)
    except UsageError as exc:  # (an author id that does not parse)
        raise HttpError(400, "invalid_feed", str(exc)) from None

    async def stream(send: Callable[[bytes], Awaitable[None]]) -> None:
        page: list[Item] = []
        await send(f"retry: {SSE_RETRY_MS}\n\n".encode())
        # The cursor first, so a client that drops before any entry resumes
        # from here, not from "now" at its reconnect.
        cursor = subscription.cursor
        await send(f"event: ready\nid: {cursor}\ndata: "
                   f"{json.dumps({'cursor': cursor})}\n\n".encode())
        caught_up = True
        while True:
            if page:
                # One write for the whole page: a stream that fell behind (a burst,
                # a slow reader) catches up in a few large writes, not one per
                # entry, and each event is encoded once for every stream.
                await send(b"".join([api.event_bytes(item) for item in page]))
            page = []
            if caught_up and isinstance(send, BodyWriter) and api.fanout.running:
                # Caught up: the fan-out serves it until it falls behind.
                await api.fanout.follow(subscription, send)
            with trio.move_on_after(KEEPALIVE_EVERY):
                page = await subscription.next_page()
            if not page:
                await send(b": keep-alive\n\n")
            caught_up = len(page) < PAGE_ENTRIES

    return Response(200, content_type="text/event-stream", stream=stream, endless=True,
                    headers=[("Cache-Control", "no-store"), ("X-Accel-Buffering", "no")])


@route("GET", API_PREFIX + "/openapi.json")
async def _openapi(api: Api, request: Request, match: re.Match[str]) -> Response:
    return Response(200, openapi_document())


def openapi_document() -> bytes:
    """The OpenAPI document of this API (shipped with the package)."""
    return resources.files("tidings.http").joinpath("openapi.json").read_bytes()


# -- blobs (spec/13) ----------------------------------------------------------------

_BLOB = r"(?P<blob>tb1[a-z2-7]+_[0-9]{1,10})"
#: An upload arrives in pieces of at most the request body bound, each written to a
#: file as it comes (never the whole file in memory), then imported as a blob.
_UPLOAD = r"(?P<upload>[0-9a-f]{32})"


def _blob_store(api: Api) -> BlobStore:
    store = api.blobs
    if store is None:
        raise HttpError(503, "no_blobs", "this node keeps no blobs: another process holds "
                        "HOME/blobs")
    return store


def _blob_info(store: BlobStore, blob: BlobId) -> dict[str, Any]:
    info = store.info(blob)
    held = 0 if info is None else info.held
    return {"blob": str(blob), "size": blob.size, "chunks": blob.chunk_count, "held": held,
            "complete": held == blob.chunk_count, "pinned": bool(info and info.pinned),
            "disk_bytes": 0 if info is None else info.disk_bytes}


@route("GET", API_PREFIX + "/blobs")
async def _blobs(api: Api, request: Request, match: re.Match[str]) -> Response:
    store = _blob_store(api)

    def listing() -> list[dict[str, Any]]:
        return [_blob_info(store, info.blob_id) for info in store.blobs()]

    return json_response({"blobs": await trio.to_thread.run_sync(listing)})


@route("GET", API_PREFIX + rf"/blobs/{_BLOB}(?P<ext>\.[a-z0-9]{{1,8}})?")
async def _blob(api: Api, request: Request, match: re.Match[str]) -> Response:
    blob, media_type = parse_blob(match["blob"] + (match["ext"] or ""))
    return await blob_response(_blob_store(api), blob, request, media_type,
                               wait=api.wait_for_chunk)


@route("GET", API_PREFIX + f"/blobs/{_BLOB}/info")
async def _blob_state(api: Api, request: Request, match: re.Match[str]) -> Response:
    store = _blob_store(api)
    blob, _ = parse_blob(match["blob"])
    return json_response(await trio.to_thread.run_sync(_blob_info, store, blob))


@route("POST", API_PREFIX + f"/blobs/{_BLOB}/(?P<action>fetch|pin|unpin)")
async def _blob_action(api: Api, request: Request, match: re.Match[str]) -> Response:
    store = _blob_store(api)
    blob, _ = parse_blob(match["blob"])
    action = match["action"]
    if action == "fetch":
        await api.node.fetch_blob(blob, pin=True)
    else:
        def pin() -> None:
            (store.pin if action == "pin" else store.unpin)(blob)

        try:
            await trio.to_thread.run_sync(pin)
        except UsageError as exc:
            raise HttpError(404, "not_found", str(exc)) from None
    return json_response(await trio.to_thread.run_sync(_blob_info, store, blob))


@route("DELETE", API_PREFIX + f"/blobs/{_BLOB}")
async def _blob_remove(api: Api, request: Request, match: re.Match[str]) -> Response:
    _blob_store(api)
    blob, _ = parse_blob(match["blob"])
    return json_response({"blob": str(blob), "removed": await api.node.remove_blob(blob)})


@route("POST", API_PREFIX + "/uploads")
async def _upload_start(api: Api, request: Request, match: re.Match[str]) -> Response:
    _blob_store(api)
    upload = secrets.token_hex(16)
    folder = api.node.home.path / UPLOADS_DIR
    await trio.to_thread.run_sync(_new_upload, folder, upload)
    return json_response({"upload": upload, "offset": 0}, 201)


@route("PUT", API_PREFIX + f"/uploads/{_UPLOAD}")
async def _upload_piece(api: Api, request: Request, match: re.Match[str]) -> Response:
    """The next piece: ``Content-Range: bytes START-END/*`` with START the bytes held."""
    path = api.node.home.path / UPLOADS_DIR / match["upload"]
    found = re.fullmatch(r"bytes (\d{1,19})-(\d{1,19})/(\*|\d{1,19})",
                         request.headers.get("content-range", ""))
    if found is None or int(found[2]) - int(found[1]) + 1 != len(request.body):
        raise HttpError(400, "invalid_request", "send each piece with Content-Range: bytes "
                        "START-END/* matching its body (at most 2 MiB a piece)")

    def append() -> int:
        try:
            with open(path, "r+b") as handle:
                held = handle.seek(0, 2)
                if int(found[1]) != held:
                    raise HttpError(409, "wrong_offset", f"the upload holds {held} bytes: send "
                                    f"the piece starting at byte {held}")
                if held + len(request.body) > MAX_BLOB_SIZE:
                    raise HttpError(413, "payload_too_large", "a blob has at most 4 GiB")
                handle.write(request.body)
                return held + len(request.body)
        except FileNotFoundError:
            raise HttpError(404, "not_found", "no such upload: start one with POST "
                            "/v1/uploads") from None

    return json_response({"upload": match["upload"],
                          "offset": await trio.to_thread.run_sync(append)})


@route("POST", API_PREFIX + f"/uploads/{_UPLOAD}/finish")
async def _upload_finish(api: Api, request: Request, match: re.Match[str]) -> Response:
    """The upload becomes a pinned blob (hashed as it is copied); its attachment."""
    path = api.node.home.path / UPLOADS_DIR / match["upload"]
    if not await trio.to_thread.run_sync(path.exists):
        raise HttpError(404, "not_found", "no such upload: start one with POST /v1/uploads")
    media_type = request.arg("media_type")
    attachment = await api.node.add_blob(path, media_type=media_type)
    await trio.to_thread.run_sync(path.unlink)
    return json_response({"blob": str(attachment.blob), "media_type": attachment.media_type,
                          "size": attachment.size, "duration": attachment.duration})


def _new_upload(folder: Path, upload: str) -> None:
    folder.mkdir(mode=0o700, exist_ok=True)
    sweep_uploads(folder)  # uploads abandoned meanwhile
    (folder / upload).touch(mode=0o600)


for _method, _path, _call in gateway.ROUTES:
    route(_method, _path)(_call)

#: The routes a path without variable parts (/v1/publish, /v1/status) can take: the
#: same, in the same order, as trying every route's pattern on it (each key is
#: matched against every pattern here), without that loop on every request.
_BY_PATH = {
    path: [candidate for candidate in _ROUTES if candidate.pattern.fullmatch(path)]
    for path in {candidate.pattern.pattern for candidate in _ROUTES}
    if not re.search(r"[\\()\[\]{}*+?|^$]", path)
}


async def serve_api(node: EmbeddedNode, address: tuple[str, int], token: str,
                    cors_origins: tuple[str, ...] = (), *, unix: Path | None = None,
                    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
                    ) -> None:
    """Serve the local API for ``node`` on ``address`` (and the Unix socket ``unix``)
    until cancelled."""
    host, port = address
    loopback = host in LOOPBACK_HOSTS or _is_loopback_ip(host)
    api = Api(node, token, loopback=loopback, cors_origins=cors_origins)
    server = HttpServer(api, log=node.log, check_head=api.check_head,
                        extra_headers=[("X-Content-Type-Options", "nosniff")])
    # Also on a Unix domain socket in the home (mode 0600), which the CLI uses first.
    listener = None if unix is None else await server.unix_listener(unix)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(api.fanout.run)
        bound = await nursery.start(server.serve, host, port)
        if listener is not None:
            nursery.start_soon(server.serve_listener, listener, unix)
        task_status.started(bound)


__all__ = ["API_PREFIX", "Api", "item_json", "openapi_document", "serve_api", "status_json"]
