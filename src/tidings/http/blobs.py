"""Blobs over HTTP: what podcast apps and browsers fetch (spec/13 §7, RFC 9110 §14).

One response maker for the gateway's enclosures (``/feeds/<feed>/blobs/<blob>``)
and the local API's downloads (``/v1/blobs/<blob>``): ``Range`` (one range;
``416`` outside the blob), a strong ``ETag`` (the blob id: its bytes never
change), ``Last-Modified``, and ``304`` for ``If-None-Match`` /
``If-Modified-Since``. Every byte sent is read from the chunk store, which
checks each chunk against the blob id as it reads it; a chunk not held (or
found damaged) is waited for when the caller can fetch it, else the request
fails before a byte of it is sent.
"""

from __future__ import annotations

import mimetypes
import os
import re
import time
from collections.abc import Awaitable, Callable
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path

import trio

from tidings.core.blob import CHUNK_SIZE, BlobId
from tidings.core.ids import FeedId
from tidings.core.media import media_type_of
from tidings.errors import UsageError
from tidings.http.feedview import about_of, read_entries
from tidings.http.server import HttpError, Request, Response, Send
from tidings.replication.blob_fetch import blobs_in
from tidings.storage.base import Store, undisputed_extent
from tidings.storage.blobs import DATA_FILE, BlobStore, ChunksMissing

#: Waits until chunk ``index`` of a blob is held (a node fetching it), or raises.
ChunkWaiter = Callable[[BlobId, int], Awaitable[None]]

_RANGE = re.compile(r"bytes=(\d{0,19})-(\d{0,19})")


#: Entries read at a time while listing a feed's attachments (their payloads are
#: small posts; read_entries skips large ones).
_ATTACHED_WINDOW = 256
#: Feeds whose attachment sets are remembered: a podcast app's Range requests
#: ask the same feed over and over; a set is rebuilt when the feed grows.
_ATTACHED_CACHE = 64
_attached: dict[tuple[int, FeedId], tuple[int, frozenset[BlobId]]] = {}


def attached_blobs(store: Store, feed: FeedId) -> frozenset[BlobId]:
    """The blobs the posts of ``feed`` attach, and its log's show artwork: all the
    gateway serves under the feed (spec/feeds.md), so nobody can probe what else the
    node's chunk store holds."""
    extent = undisputed_extent(store, feed)
    key = (id(store), feed)
    cached = _attached.get(key)
    if cached is not None and cached[0] == extent:
        return cached[1]
    found: set[BlobId] = set()
    for low in range(1, extent + 1, _ATTACHED_WINDOW):
        for _, payload in read_entries(store, feed, low,
                                       min(extent, low + _ATTACHED_WINDOW - 1)):
            found.update(blob for blob, _ in blobs_in(payload))
    about = about_of(store, feed)
    show = about.log_about(feed.log_id) if about is not None else None
    if show is not None and isinstance(show.artwork, BlobId):
        found.add(show.artwork)
    if len(_attached) >= _ATTACHED_CACHE:
        _attached.pop(next(iter(_attached)))
    _attached[key] = (extent, frozenset(found))
    return _attached[key][1]


#: An upload left this long without a piece is abandoned: its file is removed (at
#: the API's start and whenever an upload starts). An hour lets a client resume
#: after a broken connection or a restart of the node.
UPLOAD_IDLE_SECONDS = 3600.0


def sweep_uploads(folder: Path, now: float | None = None,
                  idle: float = UPLOAD_IDLE_SECONDS) -> list[str]:
    """Remove the files of uploads idle longer than ``idle`` seconds; their names."""
    now = time.time() if now is None else now
    removed = []
    try:
        children = list(folder.iterdir())
    except FileNotFoundError:
        return []
    for child in children:
        try:
            if now - child.stat().st_mtime > idle:
                child.unlink()
                removed.append(child.name)
        except FileNotFoundError:
            continue  # finished or removed meanwhile
    return removed


#: Bytes of a blob read to know its media type (the longest magic: an MP4's brand).
SNIFF_BYTES = 16


def sniffed_media_type(store: BlobStore | None, blob: BlobId) -> str | None:
    """The media type a blob's first bytes name (``image/png``...), read verified from
    the store; None if the store lacks its first chunk or the bytes name no type.
    For a blob named without a type: a show's artwork (the extension on its URL is
    what podcast apps go by)."""
    if store is None:
        return None
    try:
        head = store.read(blob, 0, min(SNIFF_BYTES, blob.size))
    except (ChunksMissing, UsageError):
        return None
    kind = media_type_of("", head)
    return None if kind == "application/octet-stream" else kind


def parse_blob(text: str) -> tuple[BlobId, str | None]:
    """``<blob id>[.<ext>]`` from a path: the blob, and the media type the extension names."""
    stem, dot, ext = text.partition(".")
    try:
        blob = BlobId.parse(stem)
    except UsageError as exc:
        raise HttpError(400, "invalid_blob", str(exc)) from None
    kind = mimetypes.guess_type(f"x.{ext}")[0] if dot else None
    return blob, kind


def _range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, end)`` (end exclusive) of a single ``bytes=`` range, None for the whole;
    HttpError 416 when it is outside the blob."""
    if header is None or "," in header:
        return None  # no range, or several: the whole blob (RFC 9110 allows it)
    found = _RANGE.fullmatch(header.strip())
    if found is None or found[1] == found[2] == "":
        return None  # a unit or form we do not serve: ignored, as RFC 9110 says
    first, last = found[1], found[2]
    if first == "":  # the last N bytes
        start, end = max(0, size - int(last)), size
        if int(last) == 0:
            start = size
    else:
        start, end = int(first), size if last == "" else min(size, int(last) + 1)
        if last != "" and int(last) < start:
            start = size
    if start >= size or start >= end:
        raise HttpError(416, "range_not_satisfiable",
                        f"the blob has {size} bytes: ask for a range inside bytes 0-{size - 1}",
                        [("Content-Range", f"bytes */{size}")])
    return start, end


async def blob_response(store: BlobStore | None, blob: BlobId, request: Request,
                        media_type: str | None, *, wait: ChunkWaiter | None = None
                        ) -> Response:
    """The response to ``GET``/``HEAD`` of a blob."""
    info = None if store is None else await trio.to_thread.run_sync(store.info, blob)
    if store is None or info is None or (not info.complete and wait is None):
        raise HttpError(404, "not_found", f"this node does not hold {blob} (yet)")
    etag = f'"{blob}"'
    try:
        mtime = os.stat(store.path / str(blob) / DATA_FILE).st_mtime
    except OSError:
        mtime = 0.0
    headers = [("ETag", etag), ("Last-Modified", formatdate(mtime, usegmt=True)),
               ("Accept-Ranges", "bytes"), ("Cache-Control", "max-age=31536000, immutable")]
    matches = request.headers.get("if-none-match")
    if matches is not None:
        if etag in [m.strip().removeprefix("W/") for m in matches.split(",")] or \
                matches.strip() == "*":
            return Response(304, b"", media_type or "application/octet-stream", headers=headers)
    else:
        since = request.headers.get("if-modified-since")
        try:
            if since is not None and int(mtime) <= parsedate_to_datetime(since).timestamp():
                return Response(304, b"", media_type or "application/octet-stream",
                                headers=headers)
        except (TypeError, ValueError):
            pass  # an unreadable date: the condition is ignored
    wanted = request.headers.get("range")
    if_range = request.headers.get("if-range")
    if if_range is not None and if_range.strip() != etag:
        wanted = None  # another version than the client's: the whole blob
    span = _range(wanted, blob.size)
    start, end = span or (0, blob.size)
    status = 200 if span is None else 206
    if span is not None:
        headers.append(("Content-Range", f"bytes {start}-{end - 1}/{blob.size}"))
    headers.append(("Content-Length", str(end - start)))
    first_chunk = start // CHUNK_SIZE
    if wait is None and end > start:
        # Check before the status line goes out: a chunk found damaged now is a 404,
        # not a broken download (one still damaged later ends the connection).
        lacking = await trio.to_thread.run_sync(
            store.missing, blob, first_chunk, (end - 1) // CHUNK_SIZE + 1)
        if lacking:
            raise HttpError(404, "not_found", f"this node lacks chunks of {blob}")

    async def stream(send: Send) -> None:
        position = start
        while position < end:
            index = position // CHUNK_SIZE
            stop = min(end, (index + 1) * CHUNK_SIZE)
            try:
                piece = await trio.to_thread.run_sync(_read, store, blob, position, stop)
            except ChunksMissing:
                if wait is None:
                    raise
                await wait(blob, index)  # a download in progress: play as it arrives
                continue
            await send(piece)
            position = stop

    return Response(status, b"", media_type or "application/octet-stream", headers=headers,
                    stream=stream)


def _read(store: BlobStore, blob: BlobId, start: int, stop: int) -> bytes:
    return store.read(blob, start, stop - start)
