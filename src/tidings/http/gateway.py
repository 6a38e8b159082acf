"""The feed gateway: any stored feed as Atom and JSON Feed (spec/feeds.md).

Served by the local API (with its token) and, read-only and without a token,
by ``tidings serve-feeds`` for the public: then any feed reader or podcast app
can follow a tidings author without knowing tidings exists.

``GET /feeds/<feed id>.atom`` and ``GET /feeds/<feed id>.json`` give the newest
page; ``?before=SEQ`` the page of entries older than SEQ, which each page links
to as its ``next`` page.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Protocol
from urllib.parse import quote

import trio

from tidings.core import content as content_types
from tidings.core.entry import Entry, decode_entry
from tidings.core.ids import FeedId
from tidings.errors import UsageError
from tidings.http import syndication
from tidings.http.server import HttpError, HttpServer, Request, Response, error_response
from tidings.node.log import Logger
from tidings.storage.base import Store, undisputed_extent

DEFAULT_PAGE = 50
MAX_PAGE = 200
#: The log whose newest "about" entry names an author in feed titles (spec/content.md).
ABOUT_LOG = "about"
_MAX_SEQ = 2**63 - 1


class FeedSource(Protocol):
    @property
    def store(self) -> Store: ...


class TokenLinks:
    """A feed source whose links keep a ``?token=`` (the local API, not the public gateway)."""


Render = Callable[..., bytes]
_FORMATS: dict[str, tuple[Render, str]] = {
    "atom": (syndication.atom, "application/atom+xml; charset=utf-8"),
    "json": (syndication.json_feed, "application/feed+json; charset=utf-8"),
}


def _page(store: Store, feed: FeedId, before: int | None, limit: int
          ) -> tuple[list[tuple[Entry, bytes | None]], bool, content_types.About | None]:
    extent = undisputed_extent(store, feed)
    if not extent:
        raise LookupError
    top = min(extent, (before or _MAX_SEQ + 1) - 1)
    seqs = range(max(1, top - limit + 1), top + 1)
    # Entries first, then only the payloads a page shows (the signed sizes say
    # which): a page of large payloads costs their sizes, not their bytes.
    entries = [decode_entry(row.raw) for row in store.entries_at(feed, seqs, payloads=False)]
    shown = [e.seq for e in entries if e.payload_size <= syndication.MAX_SHOWN_PAYLOAD]
    payloads = {row.seq: row.payload for row in store.entries_at(feed, shown)}
    page = [(entry, payloads.get(entry.seq)) for entry in reversed(entries)]
    about = None
    about_feed = FeedId(feed.author_key, ABOUT_LOG)
    about_head = store.head(about_feed)
    if about_head is not None:
        newest = store.entries_at(about_feed, [about_head.seq])
        decoded = content_types.decode(newest[0].payload) if newest else None
        if isinstance(decoded, content_types.About):
            about = decoded
    return page, bool(seqs) and seqs[0] > 1, about


def _render(store: Store, feed: FeedId, before: int | None, limit: int, render: Render,
            self_url: str, link: Callable[[int], str]) -> bytes:
    """Read one page and render it (in a worker thread: both take time)."""
    entries, more, about = _page(store, feed, before, limit)
    next_url = link(entries[-1][0].seq) if more and entries else None
    return render(feed, entries, self_url=self_url, next_url=next_url, about=about)


async def render_feed(source: FeedSource, request: Request, match: re.Match[str]) -> Response:
    """``GET /feeds/<feed>.<atom|json>``: one page of a stored feed."""
    try:
        feed = FeedId.parse(match["feed"])
    except UsageError as exc:
        raise HttpError(400, "invalid_feed", str(exc)) from None
    before_text = request.arg("before")
    limit_text = request.arg("limit")
    before = limit = None
    if before_text is not None:
        if not re.fullmatch(r"[0-9]{1,19}", before_text) or not 1 < int(before_text) <= _MAX_SEQ:
            raise HttpError(400, "invalid_request", "before must be a seq above 1")
        before = int(before_text)
    if limit_text is not None:
        if not re.fullmatch(r"[0-9]{1,3}", limit_text) or not 1 <= int(limit_text) <= MAX_PAGE:
            raise HttpError(400, "invalid_request", f"limit must be 1 to {MAX_PAGE}")
        limit = int(limit_text)
    render, media = _FORMATS[match["format"]]
    base = getattr(source, "base_url", None) or _base_url(request)
    path = f"/feeds/{quote(str(feed))}.{match['format']}"
    token = request.arg("token") if isinstance(source, TokenLinks) else None
    keep = _kept_query(limit, token)
    self_url = base + path + (f"?{keep}" if keep else "")
    if before is not None:
        self_url = base + path + f"?before={before}" + (f"&{keep}" if keep else "")

    def link(seq: int) -> str:
        return base + path + f"?before={seq}" + (f"&{keep}" if keep else "")

    try:
        body = await trio.to_thread.run_sync(
            _render, source.store, feed, before, limit or DEFAULT_PAGE, render, self_url, link
        )
    except LookupError:
        raise HttpError(404, "not_found", f"this node holds no entries of {feed}") from None
    # A document whose links carry the token must not sit in a shared cache.
    cache = "private, no-store" if token else "max-age=60"
    return Response(200, body, media, headers=[("Cache-Control", cache)])


def _base_url(request: Request) -> str:
    host = request.headers.get("host", "localhost")
    if not re.fullmatch(r"[A-Za-z0-9.\-:\[\]]{1,300}", host):
        host = "localhost"
    return f"http://{host}"


def _kept_query(limit: int | None, token: str | None) -> str:
    """The query a next link keeps: the page size, and the local API's token if one
    came in the query (a feed reader given that URL must be able to page)."""
    kept = []
    if limit is not None:
        kept.append(f"limit={limit}")
    if token:
        kept.append(f"token={quote(token)}")
    return "&".join(kept)


FEED_PATH = r"/feeds/(?P<feed>tf1[a-z2-7]+_[^/]+?)\.(?P<format>atom|json)"
ROUTES: list[tuple[str, str, Callable[..., Awaitable[Response]]]] = [
    ("GET", FEED_PATH, render_feed),
]


class PublicFeeds:
    """The handler of ``tidings serve-feeds``: the gateway alone, no token, read-only.

    It serves only the feeds ``allows`` accepts (by default the caller decides:
    ``tidings serve-feeds`` serves the home's own feeds unless told otherwise);
    any other feed is "not found", exactly as a feed not held, so nobody can
    learn by probing which feeds this node stores.
    """

    def __init__(self, store: Store, base_url: str | None = None,
                 allows: Callable[[FeedId], bool] = lambda feed: True) -> None:
        self.store = store
        #: The public URL links start with; else the request's Host (fine on a
        #: LAN, but a shared cache in front should get a fixed base URL).
        self.base_url = base_url.rstrip("/") if base_url else None
        self.allows = allows
        self._pattern = re.compile(FEED_PATH)

    async def __call__(self, request: Request) -> Response:
        try:
            match = self._pattern.fullmatch(request.path)
            if match is None:
                raise HttpError(404, "not_found",
                                "feeds are at /feeds/<feed id>.atom and /feeds/<feed id>.json")
            if request.method not in ("GET", "HEAD"):
                raise HttpError(405, "method_not_allowed", "this server is read-only: use GET",
                                [("Allow", "GET, HEAD")])
            try:
                allowed = self.allows(FeedId.parse(match["feed"]))
            except UsageError:
                allowed = True  # (render_feed answers 400 for an id that does not parse)
            if not allowed:
                raise HttpError(404, "not_found",
                                f"this node holds no entries of {match['feed']}")
            return await render_feed(self, request, match)
        except HttpError as error:
            return error_response(error)


async def serve_feeds(store: Store, host: str, port: int, log: Logger | None = None,
                      base_url: str | None = None,
                      allows: Callable[[FeedId], bool] = lambda feed: True, *,
                      task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
                      ) -> None:
    """Serve the public, read-only feed gateway on ``host:port`` until cancelled."""
    server = HttpServer(PublicFeeds(store, base_url, allows), log=log,
                        extra_headers=[("X-Content-Type-Options", "nosniff"),
                                       ("Access-Control-Allow-Origin", "*")])
    await server.serve(host, port, task_status=task_status)


__all__ = ["ROUTES", "PublicFeeds", "render_feed", "serve_feeds"]
