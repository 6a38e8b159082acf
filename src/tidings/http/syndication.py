"""A stored feed as Atom and JSON Feed, for feed readers and podcast apps (spec/feeds.md).

Pure functions: they take one page of entries (newest first) with their
payloads, as a store returns them, and give the document's bytes. Entries show
as the author's corrections leave them (spec/content.md §12): pass the entries
after the page as ``later`` and their corrections apply too. Any payload
renders: content (spec/content.md) by its type, plain text as text, anything
else (an app's type, binary, a deleted payload) as a one-line summary.

>>> from tidings import Identity, Logbook, MemoryStore
>>> from tidings.core.content import Post, encode
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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from tidings.core.blob import BlobId
from tidings.core.content import (
    MAX_CONTENT_SIZE,
    About,
    Attachment,
    LinkShare,
    LogAbout,
    Post,
    decode,
    describe,
    plain_text,
    split_title,
    to_json,
)
from tidings.core.corrections import CORRECTION, REPLACED, RETRACTED, Shown, effective_view
from tidings.core.entry import Entry
from tidings.core.ids import FeedId
from tidings.core.times import rfc3339
from tidings.errors import UsageError

ATOM_NS = "http://www.w3.org/2005/Atom"
#: RFC 4685, Atom threading: <thr:in-reply-to> for replies.
THREAD_NS = "http://purl.org/syndication/thread/1.0"
#: RFC 6721, Atom tombstones: <at:deleted-entry> for retracted entries.
TOMBSTONES_NS = "http://purl.org/atompub/tombstones/1.0"
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
    """The log's name from about content, else the author's name, else ``<log id> by
    <short author id>``."""
    if about is not None:
        described = about.log_about(feed.log_id)
        return _clean(described.name if described and described.name else about.name)
    return f"{feed.log_id} by {_author_name(feed)}"


def _author_name(feed: FeedId, about: About | None = None) -> str:
    return _clean(about.name) if about is not None else str(feed.author)[:SHORT_AUTHOR]


def _clean(text: str) -> str:
    return _NOT_XML.sub("", text)


@dataclass(frozen=True, slots=True)
class _Item:
    """One entry, ready for either format, corrections applied."""

    id: str
    seq: int
    hash: str
    published: str
    updated: str  # the correction's time when the entry was replaced or retracted
    title: str  # Atom needs one
    json_title: str | None  # JSON Feed leaves an untitled post untitled
    text: str  # the whole text (JSON Feed, which has no title to repeat it)
    atom_text: str  # the text without what the title already shows
    kind: str | None
    url: str | None = None  # the entry's web page
    tags: tuple[str, ...] = ()
    related: tuple[str, ...] = ()
    alternate: str | None = None  # a shared link
    in_reply_to: str | None = None
    attachments: tuple[Attachment, ...] = ()
    retracted: bool = False
    replaced_by: int | None = None


#: Entries with their payloads (or None): what a store gives.
Page = Sequence[tuple[Entry, bytes | None]]


#: Where the gateway serves a blob, as an enclosure URL: ``blob_url(blob, media_type)``;
#: ``media_type`` None: the gateway finds it from the blob's first bytes (a show's
#: artwork names a blob and no type).
BlobUrl = Callable[[BlobId, str | None], str]


def _enclosures(attachments: Sequence[Attachment], blob_url: BlobUrl | None
                ) -> tuple[Attachment, ...]:
    """Attachments with a URL: their own, or the gateway's for a blob it may serve."""
    out = []
    for a in attachments:
        if a.url is None and a.blob is not None and blob_url is not None:
            a = replace(a, url=blob_url(a.blob, a.media_type))
        if a.url is not None:
            out.append(a)
    return tuple(out)


def _item(feed: FeedId, shown: Shown[Entry], updated: int, url: str | None,
          blob_url: BlobUrl | None = None) -> _Item:
    entry = shown.entry
    payload = shown.payload
    base = _Item(entry_urn(feed, entry.seq), entry.seq, entry.hash.hex(),
                 rfc3339(entry.timestamp), rfc3339(updated), "", None, "", "", None, url)
    if shown.state == RETRACTED:
        return replace(base, retracted=True)
    if shown.state == REPLACED:
        base = replace(base, replaced_by=shown.by)
    if payload is None and entry.payload_size > MAX_SHOWN_PAYLOAD:
        described = f"<{entry.payload_size} bytes>"  # never read, whatever is held
    else:
        described = describe(payload)
    content = decode(payload)
    kind = None if content is None else str(to_json(content)["type"])
    base = replace(base, title=described, text=described, kind=kind)
    if isinstance(content, Post):
        reply = content.reply_to
        links = "\n".join(content.links)
        whole = "\n\n".join(part for part in (content.text, links) if part)
        shown_text = whole
        if not content.title:  # the title is the text's first line: not shown twice
            first, rest = split_title(content.text)
            if first:
                shown_text = "\n\n".join(part for part in (rest, links) if part)
        return replace(
            base, title=content.title or described, json_title=content.title,
            text=whole, atom_text=shown_text, tags=content.tags, related=content.links,
            attachments=_enclosures(content.attachments, blob_url),
            in_reply_to=None if reply is None else entry_urn(reply.feed, reply.seq),
        )
    if isinstance(content, LinkShare):
        title = content.title or content.url
        whole = "\n\n".join(part for part in (content.comment, content.url) if part)
        return replace(
            base, title=title, json_title=content.title, text=whole,
            atom_text=whole if content.title else (content.comment or ""),
            tags=content.tags, alternate=content.url,
        )
    plain = plain_text(payload) if content is None else None
    if plain is not None and plain.strip():
        first, rest = split_title(plain)
        return replace(base, title=first, text=plain, atom_text=rest)
    return base  # the summary is the title; Atom's text does not repeat it


def _items(feed: FeedId, entries: Page, later: Page,
           entry_url: Callable[[int], str] | None,
           blob_url: BlobUrl | None = None) -> list[_Item]:
    """The page's entries (newest first) as shown, the corrections among them and in
    ``later`` (the entries after the page) applied; corrections themselves are not items."""
    for entry, _ in (*entries, *later):
        if entry.feed != feed:
            raise UsageError(f"entry {entry.seq} of {entry.feed} is not an entry of {feed}")
    on_page = {entry.seq for entry, _ in entries}
    times = {entry.seq: entry.timestamp for entry, _ in (*entries, *later)}
    # Payloads over the content bound are never rendered, whether the caller read them or not.
    given = [(entry, payload if entry.payload_size <= MAX_SHOWN_PAYLOAD else None)
             for entry, payload in (*entries, *later)]
    view = {shown.entry.seq: shown for shown in effective_view(given)}
    items = []
    for entry, _ in entries:
        shown = view[entry.seq]
        if shown.entry.seq in on_page and shown.state != CORRECTION:
            updated = times[shown.by] if shown.by is not None else entry.timestamp
            items.append(_item(feed, shown, updated,
                               None if entry_url is None else entry_url(entry.seq), blob_url))
    return items


def _updated(items: Sequence[_Item]) -> str:
    # RFC 3339 texts of one form sort as the times they name.
    return max((item.updated for item in items), default=rfc3339(0))


def _explicit_text(show: LogAbout | None) -> str:
    """``itunes:explicit`` as every reader reads it: Apple reads ``yes``/``true`` as
    explicit and ``false``/``clean``/``no`` as not (its guide now shows
    ``true``/``false``); podcastparser reads all of those; feedparser 6 reads only
    ``yes`` as explicit (``true`` comes out as None, not explicit), and ``false`` as
    None, which it documents as "not explicit". So: ``yes`` and ``false``."""
    return "yes" if show is not None and show.explicit else "false"


def _show_artwork(show: LogAbout | None, blob_url: BlobUrl | None) -> str | None:
    """The log's artwork: its URL, or where the gateway serves its blob."""
    if show is None or show.artwork is None:
        return None
    if isinstance(show.artwork, BlobId):
        return blob_url(show.artwork, None) if blob_url is not None else None
    return show.artwork


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


def atom(feed: FeedId, entries: Page, **options: Any) -> bytes:
    """One page of ``feed`` as an Atom feed document, built whole: :func:`atom_parts`."""
    return "".join(atom_parts(feed, entries, **options)).encode("utf-8")


def atom_parts(
    feed: FeedId,
    entries: Page,
    *,
    self_url: str,
    next_url: str | None = None,
    html_url: str | None = None,
    about: About | None = None,
    later: Page = (),
    entry_url: Callable[[int], str] | None = None,
    stylesheet: str | None = None,
    blob_url: BlobUrl | None = None,
) -> Iterator[str]:
    """One page of ``feed`` as an Atom feed document (RFC 4287), in pieces: the head,
    then each entry as it is rendered (the gateway streams them, spec/14 §8).

    ``entries`` are ``(entry, payload or None)``, newest first; ``later`` the
    entries after the page (any order), whose corrections apply to it
    (spec/content.md §12: up to 1024 after its newest entry). ``self_url`` is
    this page's URL, ``next_url`` the page of older entries (RFC 5005 paging),
    ``html_url`` a web page of the feed, ``entry_url(seq)`` the web page of an
    entry, ``stylesheet`` an XSLT that shows the feed in a browser. ``about`` is
    the author's about content.
    """
    items = _items(feed, entries, later, entry_url, blob_url)
    lines = ['<?xml version="1.0" encoding="utf-8"?>']
    if stylesheet is not None:
        lines.append(f'<?xml-stylesheet type="text/xsl" href="{_escape_attribute(stylesheet)}"?>')
    lines += [
        f'<feed xmlns="{ATOM_NS}" xmlns:thr="{THREAD_NS}" xmlns:at="{TOMBSTONES_NS}">',
        _element("id", feed_urn(feed)),
        _element("title", feed_title(feed, about)),
    ]
    if about is not None and about.description:
        lines.append(_element("subtitle", about.description))
    lines += [
        _element("updated", _updated(items)),
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
    yield "\n".join(lines) + "\n"
    for item in items:
        yield "\n".join(_atom_entries([item])) + "\n"
    yield "</feed>\n"


def _atom_entries(items: Sequence[_Item]) -> list[str]:
    """The ``<entry>`` (and tombstone) elements of ``items``."""
    lines: list[str] = []
    for item in items:
        if item.retracted:  # RFC 6721: readers that know tombstones drop the entry
            lines += [f'<at:deleted-entry ref="{_escape_attribute(item.id)}" '
                      f'when="{item.updated}">',
                      _element("at:comment", "Retracted by its author."), "</at:deleted-entry>"]
            continue
        lines += ["<entry>", _element("id", item.id), _element("title", item.title),
                  _element("updated", item.updated), _element("published", item.published),
                  _element("content", item.atom_text, type="text")]
        if item.url is not None:
            lines.append(_element("link", rel="alternate", type="text/html", href=item.url))
        if item.alternate is not None:  # a shared link; with a web page of its own, related
            rel = "related" if item.url is not None else "alternate"
            lines.append(_element("link", rel=rel, href=item.alternate))
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
    return lines


def author_atom(author: str, log_id: str, entries: Page, *, self_url: str,
                about: About | None = None) -> bytes:
    """An author's merged stream of ``log_id`` (spec/12 §7.3) as one Atom feed: the
    entries of all its devices' feeds (``entries``, in the merged order, oldest first),
    newest first, each with its own feed's id and corrections. ``author`` is the
    identity id (``ti1...``); ``about`` the author's about content, for the title."""
    by_feed: dict[FeedId, list[tuple[Entry, bytes | None]]] = {}
    for entry, payload in entries:
        by_feed.setdefault(entry.feed, []).append((entry, payload))
    rank = {(entry.feed, entry.seq): index for index, (entry, _) in enumerate(entries)}
    items: list[tuple[int, _Item]] = []
    for feed, page in by_feed.items():
        for item in _items(feed, list(reversed(page)), (), None):
            items.append((rank[(feed, item.seq)], item))
    shown = [item for _, item in sorted(items, key=lambda pair: -pair[0])]
    name = _clean(about.name) if about is not None else f"{log_id} by {author[:SHORT_AUTHOR]}"
    lines = ['<?xml version="1.0" encoding="utf-8"?>',
             f'<feed xmlns="{ATOM_NS}" xmlns:thr="{THREAD_NS}" xmlns:at="{TOMBSTONES_NS}">',
             _element("id", f"urn:tidings:{author}:{log_id}"), _element("title", name)]
    if about is not None and about.description:
        lines.append(_element("subtitle", about.description))
    lines += [_element("updated", _updated(shown)),
              f"<author>{_element('name', name if about is None else _clean(about.name))}"
              f"{_element('uri', f'urn:tidings:{author}')}</author>",
              _element("link", rel="self", type=ATOM_MEDIA_TYPE, href=self_url),
              _element("generator", "tidings")]
    lines += _atom_entries(shown)
    lines.append("</feed>\n")
    return "\n".join(lines).encode("utf-8")


# -- JSON Feed 1.1 -------------------------------------------------------------------


def _json_item(item: _Item) -> dict[str, Any]:
    out: dict[str, Any] = {"id": item.id}
    if item.url is not None:
        out["url"] = _clean(item.url)
    if item.alternate is not None:
        out["external_url"] = _clean(item.alternate)
    if item.json_title:
        out["title"] = _clean(item.json_title)
    out["content_text"] = _clean(item.text)
    out["date_published"] = item.published
    if item.replaced_by is not None:
        out["date_modified"] = item.updated
    tags = [_clean(tag) for tag in item.tags if _clean(tag)]
    if tags:
        out["tags"] = tags
    if item.attachments:
        out["attachments"] = [_json_attachment(a) for a in item.attachments]
    extension: dict[str, Any] = {"seq": item.seq, "hash": item.hash, "type": item.kind}
    if item.in_reply_to is not None:
        extension["in_reply_to"] = item.in_reply_to
    if item.replaced_by is not None:
        extension["replaced_by"] = item.replaced_by
    out["_tidings"] = extension
    return out


def _json_attachment(attachment: Attachment) -> dict[str, Any]:
    out: dict[str, Any] = {"url": attachment.url, "mime_type": attachment.media_type}
    if attachment.title is not None:
        out["title"] = _clean(attachment.title)
    if attachment.size is not None:
        out["size_in_bytes"] = attachment.size
    return out


def json_feed(feed: FeedId, entries: Page, **options: Any) -> bytes:
    """One page of ``feed`` as a JSON Feed, built whole: :func:`json_feed_parts`."""
    return "".join(json_feed_parts(feed, entries, **options)).encode("utf-8")


def json_feed_parts(
    feed: FeedId,
    entries: Page,
    *,
    self_url: str,
    next_url: str | None = None,
    html_url: str | None = None,
    about: About | None = None,
    later: Page = (),
    entry_url: Callable[[int], str] | None = None,
    stylesheet: str | None = None,
    blob_url: BlobUrl | None = None,
) -> Iterator[str]:
    """One page of ``feed`` as a JSON Feed 1.1 document, in pieces (the items last, one
    piece each, as they are rendered). Arguments as for :func:`atom`
    (``stylesheet`` is for Atom only: a browser shows JSON as it is). A retracted entry is
    left out: JSON Feed has no tombstones."""
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
    items = _items(feed, entries, later, entry_url, blob_url)
    head = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    yield head[:-1] + ',"items":['  # (the same bytes as with "items" the last key)
    first = True
    for item in items:
        if not item.retracted:
            yield ("" if first else ",") + json.dumps(
                _json_item(item), ensure_ascii=False, separators=(",", ":"))
            first = False
    yield "]}"


# -- RSS 2.0 with the iTunes podcast tags ----------------------------------------------

ITUNES_NS = "http://www.itunes.com/dtds/podcast-1.0.dtd"
RSS_MEDIA_TYPE = "application/rss+xml"


def _duration(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def rss(feed: FeedId, entries: Page, **options: Any) -> bytes:
    """One page of ``feed`` as RSS 2.0, built whole: :func:`rss_parts`."""
    return "".join(rss_parts(feed, entries, **options)).encode("utf-8")


def rss_parts(
    feed: FeedId,
    entries: Page,
    *,
    self_url: str,
    next_url: str | None = None,
    html_url: str | None = None,
    about: About | None = None,
    later: Page = (),
    entry_url: Callable[[int], str] | None = None,
    stylesheet: str | None = None,
    blob_url: BlobUrl | None = None,
) -> Iterator[str]:
    """One page of ``feed`` as RSS 2.0 with the iTunes podcast tags, for podcast apps,
    in pieces (the head, then each item as it is rendered).

    Arguments as for :func:`atom`. The show's title, description and artwork come from
    the author's about content; each post with an audio or video attachment is an
    episode with its ``<enclosure>`` (the first attachment) and duration.
    """
    items = _items(feed, entries, later, entry_url, blob_url)
    title = feed_title(feed, about)
    show = about.log_about(feed.log_id) if about is not None else None
    description = (show.description if show is not None and show.description
                   else about.description if about is not None and about.description
                   else f"The log {feed.log_id} of {feed.author}")
    lines = [
        '<?xml version="1.0" encoding="utf-8"?>',
        f'<rss version="2.0" xmlns:itunes="{ITUNES_NS}" xmlns:atom="{ATOM_NS}">',
        "<channel>",
        _element("title", title),
        _element("link", html_url or self_url),
        _element("description", description),
        _element("atom:link", rel="self", type=RSS_MEDIA_TYPE, href=self_url),
    ]
    if next_url is not None:  # RFC 5005 paging, for the apps that honour it
        lines.append(_element("atom:link", rel="next", type=RSS_MEDIA_TYPE, href=next_url))
    lines += [
        _element("generator", "tidings"),
        _element("lastBuildDate", _rfc822_text(_updated(items))),
    ]
    if show is not None and show.language is not None:
        lines.append(_element("language", show.language))
    lines += [
        _element("itunes:author", _author_name(feed, about)),
        _element("itunes:summary", description),
        _element("itunes:explicit", _explicit_text(show)),
        _element("itunes:type", "episodic"),
    ]
    if show is not None and show.category is not None:
        top, _, sub = show.category.partition("/")
        lines.append(f'<itunes:category text="{_escape_attribute(top)}">'
                     + (f'<itunes:category text="{_escape_attribute(sub)}"/>' if sub else "")
                     + "</itunes:category>")
    avatar = _show_artwork(show, blob_url) or _avatar_url(about)
    if avatar is not None:
        lines += [_element("itunes:image", href=avatar),
                  f"<image>{_element('url', avatar)}{_element('title', title)}"
                  f"{_element('link', html_url or self_url)}</image>"]
    for item in items:
        if lines:
            yield "\n".join(lines) + "\n"
            lines = []
        if item.retracted:
            continue  # RSS has no tombstones: a retracted episode leaves the feed
        lines += ["<item>", _element("title", item.title),
                  _element("guid", item.id, isPermaLink="false"),
                  _element("pubDate", _rfc822_text(item.published)),
                  _element("description", item.text)]
        if item.url is not None:
            lines.append(_element("link", item.url))
        elif item.alternate is not None:
            lines.append(_element("link", item.alternate))
        if item.attachments:
            enclosure = item.attachments[0]
            lines.append(_element("enclosure", url=enclosure.url, type=enclosure.media_type,
                                  length=str(enclosure.size or 0)))
            if enclosure.duration is not None:
                lines.append(_element("itunes:duration", _duration(enclosure.duration)))
        lines += [_element("category", tag) for tag in item.tags if _clean(tag)]
        lines.append("</item>")
    lines += ["</channel>", "</rss>\n"]
    yield "\n".join(lines)


def _rfc822_text(rfc3339_text: str) -> str:
    from datetime import datetime
    from email.utils import format_datetime

    return format_datetime(datetime.fromisoformat(rfc3339_text.replace("Z", "+00:00")),
                           usegmt=True)
