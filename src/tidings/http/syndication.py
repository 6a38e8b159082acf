"""A stored feed as Atom and JSON Feed, for feed readers and podcast apps (spec/feeds.md).

Pure functions: they take one page of entries (newest first) with their
payloads, as a store returns them, and give the document's bytes. Any payload
renders: content (spec/content.md) by its type, plain text as text, anything
else (an app's type, binary, a deleted payload) as a one-line summary.

>>> from tidings import Identity, Logbook, MemoryStore
>>> from tidings.content import Post, encode
>>> book = Logbook(MemoryStore(), Identity.from_seed(bytes(32)), clock=lambda: 0)
>>> entry = book.publish(encode(Post("hello", title="First")), "blog")
>>> page = [(entry, encode(Post("hello", title="First")))]
>>> b"<title>First</title>" in atom(entry.feed, page, self_url="https://example.org/blog.atom")
True
>>> json.loads(json_feed(entry.feed, page, self_url="https://example.org/blog.json"))["items"][0]["id"]
'urn:tidings:tf1hnvcppgow2sc2yvdvdicu3ynonsteflxdxrehjr2ybekdc2z3iuvnua_blog:1'
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from tidings.core.content import (
    MAX_CONTENT_SIZE,
    About,
    Attachment,
    LinkShare,
    Post,
    decode,
    describe,
    plain_text,
    to_json,
)
from tidings.core.entry import Entry
from tidings.core.ids import FeedId
from tidings.core.times import rfc3339
from tidings.errors import UsageError

ATOM_NS = "http://www.w3.org/2005/Atom"
#: RFC 4685, Atom threading: <thr:in-reply-to> for replies.
THREAD_NS = "http://purl.org/syndication/thread/1.0"
JSON_FEED_VERSION = "https://jsonfeed.org/version/1.1"
ATOM_MEDIA_TYPE = "application/atom+xml"
JSON_FEED_MEDIA_TYPE = "application/feed+json"
#: Characters of the author id a feed title shows when the author has no about
#: content: enough to tell authors apart at a glance.
SHORT_AUTHOR = 12
#: Larger payloads are summarised by their size, never read or rendered
#: (spec/feeds.md §5): a page costs at most this much per entry.
MAX_SHOWN_PAYLOAD = MAX_CONTENT_SIZE

#: Characters outside XML 1.0's Char production (§2.2): control characters but
#: tab, line feed and carriage return; lone surrogates; U+FFFE and U+FFFF. Both
#: formats drop them, so that the two carry the same text.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def feed_urn(feed: FeedId) -> str:
    """The id of ``feed`` in both formats: ``urn:tidings:<feed id>``."""
    return f"urn:tidings:{feed}"


def entry_urn(feed: FeedId, seq: int) -> str:
    """The id of entry ``seq`` of ``feed``: ``urn:tidings:<feed id>:<seq>``. It never changes."""
    return f"urn:tidings:{feed}:{seq}"


def feed_title(feed: FeedId, about: About | None = None) -> str:
    """The author's name from about content, else ``<log id> by <short author id>``."""
    if about is not None:
        return _clean(about.name)
    return f"{feed.log_id} by {_author_name(feed)}"


def _author_name(feed: FeedId, about: About | None = None) -> str:
    return _clean(about.name) if about is not None else str(feed.author)[:SHORT_AUTHOR]


def _clean(text: str) -> str:
    return _NOT_XML.sub("", text)


@dataclass(frozen=True, slots=True)
class _Item:
    """One entry, ready for either format."""

    id: str
    time: str
    title: str  # Atom needs one
    json_title: str | None  # JSON Feed leaves an untitled post untitled
    text: str
    kind: str | None
    tags: tuple[str, ...] = ()
    related: tuple[str, ...] = ()
    alternate: str | None = None
    in_reply_to: str | None = None
    attachments: tuple[Attachment, ...] = ()


def _item(feed: FeedId, entry: Entry, payload: bytes | None) -> _Item:
    if entry.feed != feed:
        raise UsageError(f"entry {entry.seq} of {entry.feed} is not an entry of {feed}")
    if entry.payload_size > MAX_SHOWN_PAYLOAD:
        payload = None  # never rendered, whether the caller read it or not
    summary = describe(payload) if payload is not None or entry.payload_size <= \
        MAX_SHOWN_PAYLOAD else f"<{entry.payload_size} bytes>"
    content = decode(payload)
    kind = None if content is None else str(to_json(content)["type"])
    base = _Item(entry_urn(feed, entry.seq), rfc3339(entry.timestamp), summary, summary,
                 summary, kind)
    if isinstance(content, Post):
        reply = content.reply_to
        return replace(
            base, title=content.title or summary, json_title=content.title,
            tags=content.tags, related=content.links,
            text="\n\n".join(part for part in (content.text, "\n".join(content.links)) if part),
            # A blob without a URL has no enclosure until the gateway serves blobs.
            attachments=tuple(a for a in content.attachments if a.url is not None),
            in_reply_to=None if reply is None else entry_urn(reply.feed, reply.seq),
        )
    if isinstance(content, LinkShare):
        return replace(
            base, title=content.title or content.url, json_title=content.title,
            text="\n\n".join(part for part in (content.comment, content.url) if part),
            tags=content.tags, alternate=content.url,
        )
    plain = plain_text(payload) if content is None else None
    if plain is not None and plain.strip():
        return replace(base, text=plain)
    return base


def _items(feed: FeedId, entries: Sequence[tuple[Entry, bytes | None]]) -> list[_Item]:
    return [_item(feed, entry, payload) for entry, payload in entries]


def _updated(entries: Sequence[tuple[Entry, bytes | None]]) -> str:
    return rfc3339(max((entry.timestamp for entry, _ in entries), default=0))


def _avatar_url(about: About | None) -> str | None:
    return about.avatar if about is not None and isinstance(about.avatar, str) else None


# -- Atom (RFC 4287) ---------------------------------------------------------------


def _escape(text: str) -> str:
    # A carriage return is written as a reference: XML parsers turn a literal
    # one into a line feed.
    return (_clean(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("\r", "&#13;"))


def _escape_attribute(text: str) -> str:
    # Attribute values are normalized too: tabs and line feeds become spaces
    # unless written as references.
    return (_escape(text).replace('"', "&quot;").replace("\t", "&#9;")
            .replace("\n", "&#10;"))


def _element(name: str, text: str | None = None, **attributes: str | None) -> str:
    """One element on one line; attributes whose value is None are left out."""
    attrs = "".join(f' {key}="{_escape_attribute(value)}"'
                    for key, value in attributes.items() if value is not None)
    if text is None:
        return f"<{name}{attrs}/>"
    return f"<{name}{attrs}>{_escape(text)}</{name}>"


def atom(
    feed: FeedId,
    entries: Sequence[tuple[Entry, bytes | None]],
    *,
    self_url: str,
    next_url: str | None = None,
    html_url: str | None = None,
    about: About | None = None,
) -> bytes:
    """One page of ``feed`` as an Atom feed document (RFC 4287), UTF-8.

    ``entries`` are ``(entry, payload or None)``, newest first. ``self_url`` is
    this page's URL, ``next_url`` the page of older entries (RFC 5005 paging),
    ``html_url`` a web page of the feed. ``about`` is the author's about content.
    """
    lines = [
        '<?xml version="1.0" encoding="utf-8"?>',
        f'<feed xmlns="{ATOM_NS}" xmlns:thr="{THREAD_NS}">',
        _element("id", feed_urn(feed)),
        _element("title", feed_title(feed, about)),
    ]
    if about is not None and about.description:
        lines.append(_element("subtitle", about.description))
    lines += [
        _element("updated", _updated(entries)),
        f"<author>{_element('name', _author_name(feed, about))}"
        f"{_element('uri', f'urn:tidings:{feed.author}')}</author>",
        _element("link", rel="self", type=ATOM_MEDIA_TYPE, href=self_url),
    ]
    if html_url is not None:
        lines.append(_element("link", rel="alternate", type="text/html", href=html_url))
    if next_url is not None:
        lines.append(_element("link", rel="next", type=ATOM_MEDIA_TYPE, href=next_url))
    avatar = _avatar_url(about)
    if avatar is not None:
        lines.append(_element("icon", avatar))
    lines.append(_element("generator", "tidings"))
    for item in _items(feed, entries):
        lines += ["<entry>", _element("id", item.id), _element("title", item.title),
                  _element("updated", item.time), _element("published", item.time),
                  _element("content", item.text, type="text")]
        if item.alternate is not None:
            lines.append(_element("link", rel="alternate", href=item.alternate))
        lines += [_element("link", rel="related", href=url) for url in item.related]
        lines += [
            _element("link", rel="enclosure", type=a.media_type, href=a.url, title=a.title,
                     length=None if a.size is None else str(a.size))
            for a in item.attachments
        ]
        lines += [_element("category", term=tag) for tag in item.tags if _clean(tag)]
        if item.in_reply_to is not None:
            lines.append(_element("thr:in-reply-to", ref=item.in_reply_to))
        lines.append("</entry>")
    lines.append("</feed>\n")
    return "\n".join(lines).encode("utf-8")


# -- JSON Feed 1.1 -------------------------------------------------------------------


def _json_item(item: _Item, entry: Entry) -> dict[str, Any]:
    out: dict[str, Any] = {"id": item.id}
    if item.alternate is not None:
        out["external_url"] = _clean(item.alternate)
    if item.json_title:
        out["title"] = _clean(item.json_title)
    out["content_text"] = _clean(item.text)
    out["date_published"] = item.time
    tags = [_clean(tag) for tag in item.tags if _clean(tag)]
    if tags:
        out["tags"] = tags
    if item.attachments:
        out["attachments"] = [_json_attachment(a) for a in item.attachments]
    extension: dict[str, Any] = {"seq": entry.seq, "hash": entry.hash.hex(), "type": item.kind}
    if item.in_reply_to is not None:
        extension["in_reply_to"] = item.in_reply_to
    out["_tidings"] = extension
    return out


def _json_attachment(attachment: Attachment) -> dict[str, Any]:
    out: dict[str, Any] = {"url": attachment.url, "mime_type": attachment.media_type}
    if attachment.title is not None:
        out["title"] = _clean(attachment.title)
    if attachment.size is not None:
        out["size_in_bytes"] = attachment.size
    return out


def json_feed(
    feed: FeedId,
    entries: Sequence[tuple[Entry, bytes | None]],
    *,
    self_url: str,
    next_url: str | None = None,
    html_url: str | None = None,
    about: About | None = None,
) -> bytes:
    """One page of ``feed`` as a JSON Feed 1.1 document, UTF-8. Arguments as for :func:`atom`."""
    author: dict[str, Any] = {"name": _author_name(feed, about)}
    doc: dict[str, Any] = {"version": JSON_FEED_VERSION, "title": feed_title(feed, about)}
    if html_url is not None:
        doc["home_page_url"] = _clean(html_url)
        author["url"] = _clean(html_url)
    doc["feed_url"] = _clean(self_url)
    if about is not None and about.description:
        doc["description"] = _clean(about.description)
    if next_url is not None:
        doc["next_url"] = _clean(next_url)
    avatar = _avatar_url(about)
    if avatar is not None:
        doc["icon"] = author["avatar"] = avatar
    doc["authors"] = [author]
    doc["_tidings"] = {"feed": str(feed), "author": str(feed.author), "log_id": feed.log_id}
    doc["items"] = [_json_item(item, entry)
                    for item, (entry, _) in zip(_items(feed, entries), entries, strict=True)]
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
