"""Bringing a blog or podcast back catalogue into a log: RSS 2.0, Atom and JSON Feed
items as posts (spec/content.md §6.1).

Pure: bytes in (as fetched or read), posts out. RSS and Atom are parsed by
`feedparser <https://feedparser.readthedocs.io/>`_, which has read the web's
feeds for twenty years (odd RFC 822 dates, broken encodings, relative links,
HTML it sanitizes); JSON Feed, which feedparser 6 does not read, by the JSON
module and the rules of https://www.jsonfeed.org/version/1.1/.

A post's text is plain (content.md §6.1), so HTML becomes text here: block
elements become lines and paragraphs, lists become "- " lines, links go to the
post's ``links``, and nothing of a script or a style survives. Titles, tags,
URLs and enclosures are fitted to the post's bounds; an item's date becomes
its entry's timestamp (:attr:`FeedItem.published`).

>>> feed = parse_feed(b'''<rss version="2.0"><channel><title>T</title>
... <item><guid>a</guid><title>One</title>
... <description>&lt;p&gt;Hi &lt;b&gt;there&lt;/b&gt;&lt;/p&gt;</description>
... <pubDate>Tue, 3 Sep 2019 09:05:30 GMT</pubDate></item></channel></rss>''')
>>> item = feed.items[0]
>>> item.key, item.published, to_post(item).text, to_post(item).title
('a', 1567501530000000, 'Hi there', 'One')
"""

from __future__ import annotations

import calendar
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from html.parser import HTMLParser
from typing import Any
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

from tidings.core.content import (
    MAX_ATTACHMENT_SIZE,
    MAX_ATTACHMENTS,
    MAX_CONTENT_SIZE,
    MAX_LINKS,
    MAX_TAG,
    MAX_TAGS,
    MAX_TEXT,
    MAX_TITLE,
    Attachment,
    Post,
    encode,
    is_url,
)
from tidings.errors import InvalidContent, TidingsError

#: Items a source may hold: a long-running podcast has hundreds, a blog a few
#: thousand; more is not a back catalogue but a mistake (or an attack).
MAX_ITEMS = 100_000
#: Characters of an item key kept as is; longer keys are remembered by their hash.
MAX_KEY = 512
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


class NotAFeed(TidingsError):
    """The bytes are not an RSS, Atom or JSON Feed document with items (the source's fault)."""


@dataclass(frozen=True, slots=True)
class FeedItem:
    """One item of a source feed, as read: what a post is made of."""

    #: What identifies the item across fetches: its guid or id, else its link,
    #: else a hash of its title, date and body. Importing remembers it.
    key: str
    title: str | None = None
    link: str | None = None
    #: Microseconds since the epoch, UTC; None if the item has no date.
    published: int | None = None
    html: str | None = None
    text: str | None = None
    tags: tuple[str, ...] = ()
    #: (url, media type, size, title) of each enclosure or attachment.
    enclosures: tuple[tuple[str, str | None, int | None, str | None], ...] = ()


@dataclass(frozen=True, slots=True)
class SourceFeed:
    title: str | None
    kind: str  # "rss20", "atom10", "json1.1", ...
    items: list[FeedItem]
    #: feedparser's warning about a malformed document it still read, if any.
    warning: str | None = None


# -- HTML to text ------------------------------------------------------------------------

_BLOCK = {"p", "div", "section", "article", "header", "footer", "aside", "main", "nav",
          "blockquote", "figure", "figcaption", "table", "tr", "dl", "dd", "dt", "address",
          "h1", "h2", "h3", "h4", "h5", "h6", "pre", "ul", "ol", "details", "summary"}
_SKIPPED = {"script", "style", "template", "noscript", "head", "title", "svg", "math",
            "iframe", "object"}


class _TextMaker(HTMLParser):
    def __init__(self, base_url: str | None) -> None:
        super().__init__(convert_charrefs=True)
        self.base_url = base_url
        self.parts: list[str] = []
        self.links: list[str] = []
        self._skipping = 0
        self._pre = 0
        self._lists: list[list[int]] = []  # per open list: [is ordered, next number]

    def _break(self, lines: int) -> None:
        self.parts.append("\n" * lines)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED:
            self._skipping += 1
            return
        if self._skipping:
            return
        values = dict(attrs)
        if tag == "br":
            self._break(1)
        elif tag == "hr":
            self._break(2)
        elif tag in ("ul", "ol"):
            self._lists.append([tag == "ol", 1])
            self._break(1)
        elif tag == "li":
            self._break(1)
            if self._lists and self._lists[-1][0]:
                self.parts.append(f"{self._lists[-1][1]}. ")
                self._lists[-1][1] += 1
            else:
                self.parts.append("- ")
        elif tag in _BLOCK:
            self._break(2)
            if tag == "pre":
                self._pre += 1
        elif tag == "a" and values.get("href"):
            self.links.append(str(values["href"]))
        elif tag == "img" and values.get("alt"):
            self.parts.append(f"[{values['alt']}]")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag in _SKIPPED:
            self._skipping -= 1

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED:
            self._skipping = max(0, self._skipping - 1)
            return
        if self._skipping:
            return
        if tag in ("ul", "ol") and self._lists:
            self._lists.pop()
            self._break(2)
        elif tag in _BLOCK:
            self._break(2)
            if tag == "pre":
                self._pre = max(0, self._pre - 1)

    def handle_data(self, data: str) -> None:
        if self._skipping:
            return
        data = data.replace("\x00", "").replace("\x01", "")  # (the markers below)
        if self._pre:
            self.parts.append("\x00" + data.replace("\n", "\x01") + "\x00")
        else:
            self.parts.append(re.sub(r"\s+", " ", data))

    def result(self) -> str:
        text = "".join(self.parts)
        lines = []
        for line in text.split("\n"):
            # Outside <pre>, a line's spaces are collapsed and trimmed.
            pieces = line.split("\x00")
            out = "".join(p if i % 2 else re.sub(" +", " ", p) for i, p in enumerate(pieces))
            lines.append(out.strip(" ") if len(pieces) == 1 else out.rstrip(" "))
        text = "\n".join(lines).replace("\x01", "\n")
        return re.sub(r"\n{3,}", "\n\n", text).strip("\n")


def html_to_text(html: str, base_url: str | None = None) -> tuple[str, list[str]]:
    """Plain text of an HTML fragment, and the URLs of its links, in order.

    >>> html_to_text('<p>One <b>two</b></p><ul><li>a</li><li><a href="https://x.example/">b</a>'
    ...              '</li></ul><script>alert(1)</script>')
    ('One two\\n\\n- a\\n- b', ['https://x.example/'])
    """
    maker = _TextMaker(base_url)
    maker.feed(html)
    maker.close()
    links = [urljoin(base_url, link) if base_url else link for link in maker.links]
    return maker.result(), links


# -- reading sources -----------------------------------------------------------------------


def _micros(parsed: Any) -> int | None:
    """A feedparser date (a UTC struct_time) in microseconds."""
    if parsed is None:
        return None
    try:
        return calendar.timegm(parsed) * 1_000_000
    except (TypeError, ValueError, OverflowError):
        return None


def _key(*parts: str | None) -> str:
    text = "\n".join(part or "" for part in parts)
    return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _remembered(key: str) -> str:
    return key if len(key) <= MAX_KEY else _key(key)


def parse_feed(data: bytes, *, url: str | None = None,
               content_type: str | None = None) -> SourceFeed:
    """Read an RSS, Atom or JSON Feed document: its items in the document's order.

    ``url`` is where it came from (relative links resolve against it);
    ``content_type`` the type the server said. Raises :class:`NotAFeed`.
    """
    start = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if start in (b"{", b"["):
        return _parse_json_feed(data, url)
    import feedparser  # (here: only importing needs it; the rest of tidings starts without)

    headers = {"content-type": content_type or "application/xml"}
    if url:
        headers["content-location"] = url
    parsed = feedparser.parse(data, response_headers=headers, sanitize_html=True,
                              resolve_relative_uris=True)
    if not parsed.get("version") and not parsed.entries:
        problem = parsed.get("bozo_exception")
        why = f" ({problem})" if problem else ""
        raise NotAFeed(f"not an RSS, Atom or JSON Feed document{why}")
    if len(parsed.entries) > MAX_ITEMS:
        raise NotAFeed(f"{len(parsed.entries)} items: more than {MAX_ITEMS}")
    items = [_feedparser_item(entry) for entry in parsed.entries]
    warning = str(parsed.get("bozo_exception")) if parsed.get("bozo") else None
    return SourceFeed(parsed.feed.get("title"), parsed.get("version") or "?", items, warning)


def _feedparser_item(entry: Any) -> FeedItem:
    title = entry.get("title")
    if title and entry.get("title_detail", {}).get("type") in ("text/html",
                                                                 "application/xhtml+xml"):
        title = html_to_text(title)[0]
    # The richest body: RSS's content:encoded, Atom's content, or the summary.
    bodies = [(c.get("type", "text/html"), c.get("value", "")) for c in entry.get("content", [])]
    if entry.get("summary"):
        bodies.append((entry.get("summary_detail", {}).get("type", "text/html"), entry.summary))
    html = text = None
    best = ""
    for kind, value in bodies:
        shown = value if kind == "text/plain" else html_to_text(value)[0]
        if len(shown) > len(best):
            best = shown
            html, text = (None, value) if kind == "text/plain" else (value, None)
    published = (_micros(entry.get("published_parsed")) or _micros(entry.get("updated_parsed"))
                 or _micros(entry.get("created_parsed")))
    link = entry.get("link")
    enclosures = []
    for enclosure in entry.get("enclosures", []):
        length = str(enclosure.get("length") or "").strip()
        enclosures.append((str(enclosure.get("href") or ""), enclosure.get("type"),
                           int(length) if length.isdigit() else None, None))
    key = entry.get("id") or link or _key(title, str(published), html or text)
    return FeedItem(_remembered(str(key)), title, link, published, html, text,
                    tuple(str(t.get("term")) for t in entry.get("tags", []) if t.get("term")),
                    tuple(enclosures))


def _json_date(value: object) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return int(moment.timestamp() * 1_000_000)


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _parse_json_feed(data: bytes, url: str | None) -> SourceFeed:
    try:
        doc = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise NotAFeed(f"not JSON: {exc}") from None
    version = doc.get("version") if isinstance(doc, dict) else None
    if not isinstance(version, str) or not version.startswith("https://jsonfeed.org/version/1"):
        raise NotAFeed("a JSON document, but not a JSON Feed (no version "
                       "https://jsonfeed.org/version/1...)")
    raw_items = doc.get("items")
    if not isinstance(raw_items, list):
        raise NotAFeed("a JSON Feed without an items array")
    if len(raw_items) > MAX_ITEMS:
        raise NotAFeed(f"{len(raw_items)} items: more than {MAX_ITEMS}")
    base = _text_or_none(doc.get("feed_url")) or url
    items = []
    for raw in raw_items:
        if not isinstance(raw, dict) or raw.get("id") in (None, ""):
            continue  # JSON Feed: an item has an id
        link = _text_or_none(raw.get("url"))
        if link and base:
            link = urljoin(base, link)
        raw_tags = raw.get("tags")
        tags: list[Any] = raw_tags if isinstance(raw_tags, list) else []
        enclosures = []
        for attachment in raw.get("attachments") or []:
            if isinstance(attachment, dict) and isinstance(attachment.get("url"), str):
                size = attachment.get("size_in_bytes")
                enclosures.append((urljoin(base, attachment["url"]) if base else attachment["url"],
                                   _text_or_none(attachment.get("mime_type")),
                                   size if type(size) is int and size >= 0 else None,
                                   _text_or_none(attachment.get("title"))))
        items.append(FeedItem(
            _remembered(str(raw["id"])), _text_or_none(raw.get("title")), link,
            _json_date(raw.get("date_published")) or _json_date(raw.get("date_modified")),
            _text_or_none(raw.get("content_html")),
            _text_or_none(raw.get("content_text")) or _text_or_none(raw.get("summary")),
            tuple(t for t in tags if isinstance(t, str) and t), tuple(enclosures)))
    return SourceFeed(_text_or_none(doc.get("title")), "json" + version.rsplit("/", 1)[-1],
                      items)


def oldest_first(items: Sequence[FeedItem]) -> list[FeedItem]:
    """The items by date, oldest first. Feeds list newest first: an item without a date
    keeps its place after the older item below it, and items of one date keep the
    document's order reversed."""
    reversed_items = list(reversed(items))
    effective = []
    last = 0
    for item in reversed_items:
        last = item.published if item.published is not None else last
        effective.append(last)
    order = sorted(range(len(reversed_items)), key=lambda i: effective[i])
    return [reversed_items[i] for i in order]


# -- items as posts -------------------------------------------------------------------------


def _unicode(text: str) -> str:
    """``text`` without lone surrogates (JSON can hold them; content cannot)."""
    return text.encode("utf-8", "replace").decode("utf-8")


def _line(text: str | None, limit: int) -> str | None:
    """One line of at most ``limit`` characters (cut with "…"), or None if nothing is left."""
    if not text:
        return None
    line = " ".join(_CONTROL.sub(" ", _unicode(text)).split())
    if not line:
        return None
    return line if len(line) <= limit else line[: limit - 1] + "…"


def normalize_url(url: str | None) -> str | None:
    """``url`` as a URL content allows (absolute http(s), RFC 3986 characters), or None.

    Spaces and other characters are percent-encoded, a non-ASCII host is written in
    IDNA, so real-world links survive (an IRI becomes a URI, RFC 3987 §3.1).

    >>> normalize_url("https://example.org/a b/ü?x=1"), normalize_url("javascript:alert(1)")
    ('https://example.org/a%20b/%C3%BC?x=1', None)
    """
    if not url:
        return None
    url = url.strip()
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        netloc = parts.netloc
        if host and not host.isascii():
            netloc = netloc.replace(host, host.encode("idna").decode("ascii"))
    except (ValueError, UnicodeError):
        return None
    if parts.scheme.lower() not in ("http", "https"):
        return None
    safe = "/?#[]@!$&'()*+,;=:%~-._"
    rebuilt = urlunsplit((parts.scheme.lower(), netloc, quote(parts.path, safe=safe),
                          quote(parts.query, safe=safe), quote(parts.fragment, safe=safe)))
    return rebuilt if is_url(rebuilt) else None


def _media_type(value: str | None) -> str:
    kind = (value or "").split(";", 1)[0].strip().lower()
    return kind if len(kind) <= 127 and _MEDIA_TYPE.fullmatch(kind) else "application/octet-stream"


def _unique(values: Iterable[str | None]) -> list[str]:
    seen: list[str] = []
    for value in values:
        if value and value not in seen:
            seen.append(value)
    return seen


def to_post(item: FeedItem) -> Post:
    """The post an item becomes: title, text, links, tags and enclosures, within every
    bound of a post (a text too long for one is cut, saying so)."""
    if item.html is not None:
        text, found = html_to_text(item.html, item.link)
    else:
        text, found = item.text or "", []
    text = _CONTROL.sub("", _unicode(text).replace("\r\n", "\n"))
    links = _unique(normalize_url(u) for u in [item.link, *found])[:MAX_LINKS]
    tags = _unique(_line(t, MAX_TAG) for t in item.tags)[:MAX_TAGS]
    attachments: list[Attachment] = []
    for url, media_type, size, title in item.enclosures:
        normalized = normalize_url(url)
        if normalized is not None and len(attachments) < MAX_ATTACHMENTS:
            fits = size is not None and 0 <= size <= MAX_ATTACHMENT_SIZE
            attachments.append(Attachment(normalized, _media_type(media_type),
                                          size if fits else None, _line(title, MAX_TITLE)))
    post = Post(text, _line(item.title, MAX_TITLE), tuple(links), tuple(tags), None,
                tuple(attachments))
    return _fitted(post)


_CUT = "\n\n[…] (cut: the rest is at the link)"


def _fitted(post: Post) -> Post:
    """``post`` with its text cut (marked) until it fits a post: 32768 characters, and
    64 KiB as a payload."""
    if len(post.text) > MAX_TEXT:
        post = replace(post, text=post.text[: MAX_TEXT - len(_CUT)] + _CUT)
    low, high = 0, len(post.text)
    try:
        encode(post)
        return post
    except InvalidContent:
        pass
    # The longest cut that fits (text in UTF-8 is at most 4 bytes a character).
    while low < high:
        middle = (low + high + 1) // 2
        try:
            encode(replace(post, text=post.text[:middle] + _CUT))
            low = middle
        except InvalidContent:
            high = middle - 1
    fitted = replace(post, text=post.text[:low] + _CUT)
    assert len(encode(fitted)) <= MAX_CONTENT_SIZE
    return fitted


__all__ = ["MAX_ITEMS", "FeedItem", "NotAFeed", "SourceFeed", "html_to_text",
           "normalize_url", "oldest_first", "parse_feed", "to_post"]
