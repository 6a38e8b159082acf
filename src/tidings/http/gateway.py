"""The feed gateway: stored feeds as Atom and JSON Feed, and as pages for people
(spec/feeds.md).

Served by the local API (with its token) and, read-only and without a token,
by ``tidings serve-feeds`` for the public: then any feed reader or podcast app
can follow a tidings author without knowing tidings exists, and a person with
a browser can read them.

| Path | What |
|---|---|
| ``/`` | an HTML index of the feeds served, with subscribe links |
| ``/feeds/<feed id>`` | a page of the feed, newest first (``?before=SEQ``) |
| ``/feeds/<feed id>/<seq>`` | one entry's page: the link of the entry in both feed formats |
| ``/feeds/<feed id>.atom``, ``.json``, ``.rss`` | the feed, a page at a time (``?before=SEQ``) |
| ``/feeds/<feed id>/blobs/<blob id>.<ext>`` | an attachment's bytes (enclosures), with ``Range`` |
| ``/assets/atom.xsl`` | the stylesheet that shows the Atom feed in a browser |

Every page and feed shows entries with the author's corrections applied
(spec/content.md §12). Links start with the configured base URL, or are
relative to the document; never built from the request's ``Host``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterator
from typing import Protocol, TypeVar
from urllib.parse import quote

import trio

from tidings.core.content import About, Replace, Retract
from tidings.core.corrections import MAX_CORRECTION_DISTANCE
from tidings.core.ids import FeedId
from tidings.core.kel import IdentityState
from tidings.errors import TidingsError, UsageError
from tidings.http import pages as webpages
from tidings.http import syndication
from tidings.http.blobs import attached_blobs, blob_response, parse_blob, sniffed_media_type
from tidings.http.feedview import about_of, page_low, read_entries, view_entry, view_page
from tidings.http.server import HttpError, HttpServer, Request, Response, Send, error_response
from tidings.node.log import Logger
from tidings.storage.base import Store, undisputed_extent
from tidings.storage.blobs import BlobStore

T = TypeVar("T")

DEFAULT_PAGE = 50
MAX_PAGE = 200
#: Feeds per page of the index: each costs a read of its author's about entry.
INDEX_PAGE = 100
_MAX_SEQ = 2**63 - 1


class FeedSource(Protocol):
    @property
    def store(self) -> Store: ...


class TokenLinks:
    """A feed source whose links keep a ``?token=`` (the local API, not the public gateway)."""


_FORMATS: dict[str, tuple[Callable[..., Iterator[str]], str]] = {
    "atom": (syndication.atom_parts, "application/atom+xml; charset=utf-8"),
    "json": (syndication.json_feed_parts, "application/feed+json; charset=utf-8"),
    "rss": (syndication.rss_parts, "application/rss+xml; charset=utf-8"),
}
#: The Atom feed's bytes under the type browsers render (they show
#: application/atom+xml as plain text, and apply no stylesheet to it).
_ATOM_FOR_BROWSERS = "application/xml; charset=utf-8"


def check_base_url(text: str) -> str:
    """A gateway's public base URL, without a trailing slash: ``http(s)://host[/path]``."""
    if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", text) or len(text) > 1000:
        raise UsageError(f"{text!r} is not a base URL: give http(s)://HOST[/PATH], without a "
                         "query or fragment (e.g. https://feeds.example.org)")
    return text.rstrip("/")


def _feed(match: re.Match[str]) -> FeedId:
    try:
        return FeedId.parse(match["feed"])
    except UsageError as exc:
        raise HttpError(400, "invalid_feed", str(exc)) from None


def _paging(request: Request) -> tuple[int | None, int | None]:
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
    return before, limit


def _token(source: FeedSource, request: Request) -> str | None:
    return request.arg("token") if isinstance(source, TokenLinks) else None


def _links(source: FeedSource, request: Request) -> webpages.Links:
    """The links of this document: from the base URL or relative; they keep the local
    API's token if it came in the query (a feed reader or browser given the URL can follow
    them)."""
    token = _token(source, request)
    return webpages.Links.for_path(request.path, getattr(source, "base_url", None),
                                   f"token={quote(token)}" if token else "")


def _headers(source: FeedSource, request: Request) -> list[tuple[str, str]]:
    # A document whose links carry the token must not sit in a shared cache.
    cache = "private, no-store" if _token(source, request) else "max-age=60"
    return [("Cache-Control", cache)]


def _html(status: int, body: bytes, headers: list[tuple[str, str]]) -> Response:
    return Response(status, body, webpages.HTML_MEDIA_TYPE, headers=[
        *headers, ("Content-Security-Policy", webpages.CSP), ("Referrer-Policy", "no-referrer")])


#: Documents rendered at once (each may take a page's worth of memory and a core):
#: more requests wait their turn instead of all rendering together (spec/14 §8).
MAX_RENDERS = 4
_renders: trio.lowlevel.RunVar[trio.CapacityLimiter] = trio.lowlevel.RunVar("renders")


async def _render(work: Callable[[], T]) -> T:
    try:
        limiter = _renders.get()
    except LookupError:
        limiter = trio.CapacityLimiter(MAX_RENDERS)
        _renders.set(limiter)
    return await trio.to_thread.run_sync(work, limiter=limiter)


#: Bytes of a streamed document rendered per turn of a render slot (spec/14 §8).
STREAM_PIECE = 64 * 1024


def _streamed(parts: Iterator[str]) -> Callable[[Send], Awaitable[None]]:
    """A response body sent as it is rendered: a piece of about STREAM_PIECE bytes
    at a time, each rendered in a render slot, which is free again while the
    client reads it. So a client that does not read holds one piece, not the
    document, and no slot."""
    def take() -> bytes:
        out, size = [], 0
        for part in parts:
            data = part.encode("utf-8")
            out.append(data)
            size += len(data)
            if size >= STREAM_PIECE:
                break
        return b"".join(out)

    async def stream(send: Send) -> None:
        while piece := await _render(take):
            await send(piece)
    return stream


def _not_held(feed: FeedId | str) -> HttpError:
    return HttpError(404, "not_found", f"this node holds no entries of {feed}")


def wants_html(request: Request) -> bool:
    """Whether the request is a browser's navigation: it accepts HTML and does not ask
    for Atom. Feed readers ask for Atom, or take anything (``*/*``)."""
    accept = request.headers.get("accept", "").lower()
    return "text/html" in accept and "application/atom+xml" not in accept


async def render_feed(source: FeedSource, request: Request, match: re.Match[str]) -> Response:
    """``GET /feeds/<feed>.<atom|json|rss>``: one page of a stored feed."""
    feed = _feed(match)
    before, limit = _paging(request)
    size = limit or DEFAULT_PAGE
    kind = match["format"]
    render, media = _FORMATS[kind]
    links = _links(source, request)
    blobs: BlobStore | None = getattr(source, "blobs", None)

    def read_and_render() -> Iterator[str]:
        extent = undisputed_extent(source.store, feed)
        if not extent:
            raise LookupError
        top = min(extent, (before or _MAX_SEQ + 1) - 1)
        low = page_low(source.store, feed, top, size)
        page = list(reversed(read_entries(source.store, feed, low, top)))
        later = read_entries(source.store, feed, top + 1,
                             min(extent, top + MAX_CORRECTION_DISTANCE))
        next_url = links.feed(feed, kind, low, limit) if low > 1 and page else None
        return render(feed, page, later=later, about=about_of(source.store, feed),
                      self_url=links.feed(feed, kind, before, limit), next_url=next_url,
                      html_url=links.feed_page(feed),
                      entry_url=lambda seq: links.entry(feed, seq),
                      stylesheet=links.stylesheet() if kind == "atom" else None,
                      blob_url=(lambda blob, media: links.blob(
                          feed, blob, media or sniffed_media_type(blobs, blob) or ""))
                      if blobs is not None else None)

    try:
        body = await _render(read_and_render)
    except LookupError:
        raise _not_held(feed) from None
    headers = _headers(source, request)
    if kind == "atom":
        headers.append(("Vary", "Accept"))  # the type depends on it
        if wants_html(request):
            media = _ATOM_FOR_BROWSERS
    return Response(200, content_type=media, headers=headers, stream=_streamed(body))


async def render_feed_page(source: FeedSource, request: Request,
                           match: re.Match[str]) -> Response:
    """``GET /feeds/<feed>``: a page of a feed for people, newest first."""
    feed = _feed(match)
    before, limit = _paging(request)
    links = _links(source, request)

    def read_and_render() -> Iterator[str]:
        page = view_page(source.store, feed, before, limit or DEFAULT_PAGE)
        if page is None:
            raise LookupError
        lowest = page.lowest
        next_url = links.feed_page(feed, lowest, limit) if page.more and lowest else None
        return webpages.feed_page_parts(
            feed, page.entries, page.corrected_at, links, about=about_of(source.store, feed),
            next_url=next_url, newest_url=links.feed_page(feed) if before else None)

    try:
        body = await _render(read_and_render)
    except LookupError:
        raise _not_held(feed) from None
    response = _html(200, b"", _headers(source, request))
    response.stream = _streamed(body)
    return response


async def render_entry_page(source: FeedSource, request: Request,
                            match: re.Match[str]) -> Response:
    """``GET /feeds/<feed>/<seq>``: one entry for people; 410 Gone once retracted."""
    feed = _feed(match)
    seq = int(match["seq"])
    links = _links(source, request)

    def read_and_render() -> tuple[int, bytes]:
        found = view_entry(source.store, feed, seq) if 1 <= seq <= _MAX_SEQ else None
        if found is None:
            raise LookupError
        shown, corrected_at = found
        content = shown.content
        target = content.target if isinstance(content, Retract | Replace) else None
        page = webpages.entry_page(feed, shown, corrected_at, links,
                                   about=about_of(source.store, feed), target=target)
        return (410 if shown.state == "retracted" else 200), page

    try:
        status, body = await trio.to_thread.run_sync(read_and_render)
    except LookupError:
        raise HttpError(404, "not_found", f"this node holds no entry {seq} of {feed}") from None
    return _html(status, body, _headers(source, request))


async def render_index(source: FeedSource, request: Request, match: re.Match[str]) -> Response:
    """``GET /``: the feeds this gateway serves, a page at a time (``?after=<feed id>``)."""
    after_text = request.arg("after")
    after = None
    if after_text is not None:
        try:
            after = FeedId.parse(after_text)
        except UsageError as exc:
            raise HttpError(400, "invalid_request", f"after: {exc}") from None
    allows: Callable[[FeedId], bool] = getattr(source, "allows", lambda feed: True)
    links = _links(source, request)

    def read_and_render() -> bytes:
        served = sorted((info.feed for info in source.store.feeds() if allows(info.feed)),
                        key=str)
        if after is not None:
            served = [feed for feed in served if str(feed) > str(after)]
        cards: list[webpages.FeedCard] = []
        abouts: dict[bytes, About | None] = {}
        for feed in served:
            if len(cards) == INDEX_PAGE:
                break
            extent = undisputed_extent(source.store, feed)
            if not extent:
                continue
            if feed.author_key not in abouts:
                abouts[feed.author_key] = about_of(source.store, feed)
            cards.append(webpages.FeedCard(feed, extent, abouts[feed.author_key]))
        more = bool(cards) and str(served[-1]) > str(cards[-1].feed)
        return webpages.index_page(cards, links,
                                   next_url=links.index(cards[-1].feed) if more else None)

    body = await trio.to_thread.run_sync(read_and_render)
    return _html(200, body, _headers(source, request))


async def render_stylesheet(source: FeedSource, request: Request,
                            match: re.Match[str]) -> Response:
    """``GET /assets/atom.xsl``: the XSLT that shows an Atom feed to a person."""
    return Response(200, webpages.ATOM_XSLT, webpages.XSLT_MEDIA_TYPE,
                    headers=_headers(source, request))


#: Connections one client address may hold open to the public gateway.
MAX_PER_CLIENT = 16

_FEED_ID = r"(?P<feed>tf1[a-z2-7]+_[^/.]+)"
FEED_PATH = r"/feeds/(?P<feed>tf1[a-z2-7]+_[^/]+?)\.(?P<format>atom|json|rss)"
FEED_PAGE_PATH = rf"/feeds/{_FEED_ID}"
ENTRY_PATH = rf"/feeds/{_FEED_ID}/(?P<seq>[0-9]{{1,19}})"
BLOB_PATH = rf"/feeds/{_FEED_ID}/blobs/(?P<blob>tb1[a-z2-7]+_[0-9]{{1,10}}(?:\.[a-z0-9]{{1,8}})?)"


async def render_blob(source: FeedSource, request: Request, match: re.Match[str]) -> Response:
    """``GET /feeds/<feed>/blobs/<blob>[.ext]``: an enclosure, with Range and ETag;
    only a blob the feed attaches (else "not found", as a blob not held)."""
    feed = _feed(match)
    blob, media_type = parse_blob(match["blob"])
    if blob not in await _render(lambda: attached_blobs(source.store, feed)):
        raise HttpError(404, "not_found", f"the feed {feed} attaches no blob {blob}")
    return await blob_response(getattr(source, "blobs", None), blob, request, media_type,
                               wait=getattr(source, "wait_for_chunk", None))

ROUTES: list[tuple[str, str, Callable[..., Awaitable[Response]]]] = [
    ("GET", "/", render_index),
    ("GET", FEED_PATH, render_feed),
    ("GET", FEED_PAGE_PATH, render_feed_page),
    ("GET", ENTRY_PATH, render_entry_page),
    ("GET", BLOB_PATH, render_blob),
    ("GET", re.escape(webpages.XSLT_PATH), render_stylesheet),
]


class PublicFeeds:
    """The handler of ``tidings serve-feeds``: the gateway alone, no token, read-only.

    It serves only the feeds ``allows`` accepts (by default the caller decides:
    ``tidings serve-feeds`` serves the home's own feeds unless told otherwise);
    any other feed is "not found", exactly as a feed not held, so nobody can
    learn by probing which feeds this node stores.
    """

    def __init__(self, store: Store, base_url: str | None = None,
                 allows: Callable[[FeedId], bool] = lambda feed: True,
                 identity_state: Callable[[bytes], IdentityState | None] | None = None,
                 blobs: BlobStore | None = None) -> None:
        self.store = store
        #: An identity's state (spec/12), for the authors' merged feeds; None: not served.
        self.identity_state = identity_state
        #: The chunk store enclosures are served from (None: posts show no blob enclosure).
        self.blobs = blobs
        #: The public URL links start with; else links are relative to each document.
        self.base_url = check_base_url(base_url) if base_url else None
        self.allows = allows
        self._routes = [(re.compile(path), call) for _, path, call in ROUTES]

    async def __call__(self, request: Request) -> Response:
        try:
            author = AUTHOR_FEED.fullmatch(request.path)
            if author is not None and self.identity_state is not None:
                if request.method not in ("GET", "HEAD"):
                    raise HttpError(405, "method_not_allowed", "this server is read-only",
                                    [("Allow", "GET, HEAD")])
                return await self._author_feed(request, author)
            found = next(((match, call) for pattern, call in self._routes
                          if (match := pattern.fullmatch(request.path)) is not None), None)
            if found is None:
                raise HttpError(404, "not_found", "no such page: the feeds are listed at /")
            match, call = found
            if request.method not in ("GET", "HEAD"):
                raise HttpError(405, "method_not_allowed", "this server is read-only: use GET",
                                [("Allow", "GET, HEAD")])
            feed_text = match.groupdict().get("feed")
            if feed_text is not None:
                try:
                    allowed = self.allows(FeedId.parse(feed_text))
                except UsageError:
                    allowed = True  # (the route answers 400 for an id that does not parse)
                if not allowed:
                    raise _not_held(feed_text)
            return await call(self, request, match)
        except HttpError as error:
            return error_response(error)


    async def _author_feed(self, request: Request, match: re.Match[str]) -> Response:
        """``GET /authors/<ti1>/<log>.atom``: an author's merged stream (spec/12 §7.3):
        every device's entries of the log, in one order, as one Atom feed."""
        from tidings.core.kel import parse_identity
        from tidings.node.identities import identity_about, merged_view
        from tidings.storage.logbook import Logbook

        author, log_id = match["author"], match["log"]
        limit = min(_paging(request)[1] or DEFAULT_PAGE, DEFAULT_PAGE)
        assert self.identity_state is not None
        lookup = self.identity_state

        def read_and_render() -> bytes:
            try:
                identity = parse_identity(author)
            except (TidingsError, ValueError):
                raise LookupError from None
            state = lookup(identity)
            if state is None or state.status == "unknown":
                raise LookupError
            merged = [m for m in merged_view(Logbook(self.store), state, log_id)
                      if self.allows(m.feed)][-limit:]
            if not merged:
                raise LookupError
            about = identity_about(Logbook(self.store), state)  # newest across devices
            return syndication.author_atom(
                author, log_id, [(m.entry, m.payload) for m in merged], about=about,
                self_url=f"{self.base_url or ''}/authors/{author}/{log_id}.atom")

        try:
            body = await trio.to_thread.run_sync(read_and_render)
        except LookupError:
            raise HttpError(404, "not_found", "no such author or log here") from None
        return Response(200, body, "application/atom+xml; charset=utf-8")


#: An author's merged feed (spec/12): served by ``tidings serve-feeds`` only.
AUTHOR_FEED = re.compile(r"/authors/(?P<author>ti1[a-z2-7]+)/(?P<log>[^/]+?)\.atom")


async def serve_feeds(store: Store, host: str, port: int, log: Logger | None = None,
                      base_url: str | None = None,
                      allows: Callable[[FeedId], bool] = lambda feed: True, *,
                      identity_state: Callable[[bytes], IdentityState | None] | None = None,
                      blobs: BlobStore | None = None,
                      task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
                      ) -> None:
    """Serve the public, read-only feed gateway on ``host:port`` until cancelled."""
    server = HttpServer(PublicFeeds(store, base_url, allows, identity_state=identity_state,
                                    blobs=blobs), log=log,
                        max_per_client=MAX_PER_CLIENT,
                        extra_headers=[("X-Content-Type-Options", "nosniff"),
                                       ("Access-Control-Allow-Origin", "*")])
    await server.serve(host, port, task_status=task_status)


__all__ = ["ROUTES", "PublicFeeds", "check_base_url", "render_feed", "serve_feeds",
           "wants_html"]
