"""Pages for people: the feed gateway's HTML, and the stylesheet that shows a feed in a
browser (spec/feeds.md §7).

Pure functions: they take what the gateway read (feeds, a page of entries with
corrections applied) and give the bytes of a page. Plain HTML: a language,
headings, lists, no script, one small style sheet inside the page (allowed by
its hash in the Content-Security-Policy), so a page is readable in any
browser, a screen reader or a text browser. Everything an author wrote is
escaped, bidirectional text is isolated, and only ``http``/``https`` URLs
become links.

URLs come from :class:`Links`: a configured base URL, or paths relative to the
page, never the request's ``Host``.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from urllib.parse import quote

from tidings.core.content import (
    MAX_CONTENT_SIZE,
    About,
    Attachment,
    Content,
    LinkShare,
    Post,
    describe,
    is_url,
    plain_text,
    split_title,
    summary,
)
from tidings.core.corrections import CORRECTION, REPLACED, RETRACTED, Shown
from tidings.core.entry import Entry
from tidings.core.ids import FeedId
from tidings.core.times import entry_datetime, rfc3339
from tidings.http.syndication import SHORT_AUTHOR, feed_title

HTML_MEDIA_TYPE = "text/html; charset=utf-8"
XSLT_MEDIA_TYPE = "text/xsl; charset=utf-8"
#: The path of the stylesheet that shows an Atom feed in a browser.
XSLT_PATH = "/assets/atom.xsl"

CSS = """\
:root { color-scheme: light dark; }
body { font: 1rem/1.5 system-ui, sans-serif; max-width: 42rem; margin: 0 auto; padding: 1rem; }
h1 { font-size: 1.6rem; line-height: 1.25; }
h2 { font-size: 1.15rem; margin-bottom: 0.25rem; }
article { border-top: 1px solid #8886; padding: 0.5rem 0; }
.text { white-space: pre-wrap; overflow-wrap: anywhere; }
.meta, .note, nav, footer { font-size: 0.9rem; opacity: 0.85; }
.tombstone { font-style: italic; }
a { overflow-wrap: anywhere; }
"""
assert not re.search(r"[<>&]", CSS)  # it is written into HTML and XML as it is
#: Content-Security-Policy of the HTML pages: nothing runs, nothing loads; the
#: only style is the one above, allowed by its hash.
CSP = ("default-src 'none'; style-src 'sha256-"
       + base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()
       + "'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
#: External links: no referrer (a local API's page URL holds its token), no
#: opener, and no endorsement.
_EXTERNAL = 'rel="nofollow noopener noreferrer ugc"'
#: Characters an HTML page never carries: those XML 1.0 forbids (the gateway's
#: feeds drop them too) and the C1 controls.
_NOT_SHOWN = re.compile("[^\t\n\r\x20-\x7e\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _h(text: str) -> str:
    """``text`` escaped for HTML text and attribute values."""
    return html.escape(_NOT_SHOWN.sub("", text), quote=True)


def safe_url(url: str) -> str | None:
    """``url`` if it is an absolute http(s) URL by the content rules, else None: nothing
    else (``javascript:``, ``data:``) ever becomes a link."""
    return url if is_url(url) else None


def _external(url: str, text: str | None = None) -> str:
    safe = safe_url(url)
    label = f"<bdi>{_h(text)}</bdi>" if text else _h(url)
    return f'<a href="{_h(safe)}" {_EXTERNAL}>{label}</a>' if safe else label


def _when(timestamp: int) -> str:
    """A time for people: ``2023-11-14 22:13 UTC``, in a ``<time>`` for machines."""
    shown = entry_datetime(timestamp).strftime("%Y-%m-%d %H:%M UTC")
    return f'<time datetime="{rfc3339(timestamp)}">{shown}</time>'


def _size(size: int) -> str:
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"


def blob_extension(media_type: str) -> str:
    """``.mp3`` for audio/mpeg...: the extension podcast apps expect on an enclosure."""
    import mimetypes

    known = {"audio/mpeg": ".mp3", "audio/mp4": ".m4a", "video/mp4": ".mp4",
             "audio/ogg": ".ogg", "application/pdf": ".pdf", "image/jpeg": ".jpg"}
    return known.get(media_type) or mimetypes.guess_extension(media_type) or ""


@dataclass(frozen=True, slots=True)
class Links:
    """The gateway's URLs, as a page or feed links to them.

    ``root`` is the configured base URL (``https://feeds.example.org``), or the
    relative path from the current document to the gateway's root (``./``,
    ``../``): links then work behind any proxy, whatever ``Host`` said.
    ``query`` is kept on every link (the local API's ``token``).
    """

    root: str
    query: str = ""

    @classmethod
    def for_path(cls, path: str, base_url: str | None, query: str = "") -> Links:
        """The links of the document at ``path`` (a request path)."""
        if base_url:
            return cls(base_url.rstrip("/") + "/", query)
        depth = path.count("/") - 1
        return cls("../" * depth if depth > 0 else "./", query)

    def _url(self, path: str, *params: str) -> str:
        query = "&".join(p for p in (*params, self.query) if p)
        return self.root + path + (f"?{query}" if query else "")

    def index(self, after: FeedId | None = None) -> str:
        return self._url("", f"after={quote(str(after))}" if after else "")

    def feed_page(self, feed: FeedId, before: int | None = None, limit: int | None = None
                  ) -> str:
        return self._url(f"feeds/{quote(str(feed))}", f"before={before}" if before else "",
                         f"limit={limit}" if limit else "")

    def entry(self, feed: FeedId, seq: int) -> str:
        return self._url(f"feeds/{quote(str(feed))}/{seq}")

    def feed(self, feed: FeedId, kind: str, before: int | None = None,
             limit: int | None = None) -> str:
        """The Atom (``kind`` "atom") or JSON Feed ("json") document of ``feed``."""
        return self._url(f"feeds/{quote(str(feed))}.{kind}",
                         f"before={before}" if before else "", f"limit={limit}" if limit else "")

    def stylesheet(self) -> str:
        return self._url(XSLT_PATH.lstrip("/"))

    def blob(self, feed: FeedId, blob: object, media_type: str) -> str:
        """Where the gateway serves a blob attached in ``feed`` (an enclosure's URL); the
        extension tells players the type."""
        return self._url(f"feeds/{quote(str(feed))}/blobs/{blob}{blob_extension(media_type)}")


# -- the page frame ------------------------------------------------------------------


def _page(title: str, body: list[str], links: Links, *, alternates: Sequence[str] = ()
          ) -> bytes:
    return "".join(_page_parts(title, body, links, alternates=alternates)).encode("utf-8")


def _page_parts(title: str, body: Iterable[str], links: Links, *,
                alternates: Sequence[str] = ()) -> Iterator[str]:
    """The page in pieces: its head, each piece of ``body`` as it comes, its tail."""
    head = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="referrer" content="no-referrer">',
        f"<title>{_h(title)}</title>",
        *alternates,
        f"<style>{CSS}</style>",
        "</head>",
        "<body>",
        f'<header><nav aria-label="Site"><a href="{_h(links.index())}">All feeds</a></nav>'
        "</header>",
        "<main>",
    ]
    tail = ["</main>",
            '<footer><p>Served by tidings: signed, append-only logs. Every feed here is also '
            "an Atom feed and a JSON Feed for feed readers.</p></footer>",
            "</body>", "</html>", ""]
    yield "\n".join(head) + "\n"
    for piece in body:
        yield piece + "\n"
    yield "\n".join(tail)


def _alternates(feed: FeedId, title: str, links: Links) -> list[str]:
    return [f'<link rel="alternate" type="application/atom+xml" title="{_h(title)} (Atom)" '
            f'href="{_h(links.feed(feed, "atom"))}">',
            f'<link rel="alternate" type="application/feed+json" title="{_h(title)} (JSON Feed)" '
            f'href="{_h(links.feed(feed, "json"))}">']


def _subscribe(feed: FeedId, links: Links) -> str:
    return (f'<p class="note">Subscribe: <a href="{_h(links.feed(feed, "atom"))}" '
            'type="application/atom+xml">Atom</a> · '
            f'<a href="{_h(links.feed(feed, "json"))}" type="application/feed+json">JSON Feed</a>'
            " (copy the address into a feed reader or podcast app)</p>")


# -- the index ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FeedCard:
    """One feed in the index."""

    feed: FeedId
    entries: int
    about: About | None = None


def index_page(cards: Sequence[FeedCard], links: Links, *, next_url: str | None = None
               ) -> bytes:
    """``GET /``: the feeds served here, with subscribe links."""
    body = ["<h1>Feeds</h1>"]
    if not cards:
        body.append("<p>No feeds are served here yet.</p>")
    for card in cards:
        title = feed_title(card.feed, card.about)
        # An author's logs share the author's name: the log id tells them apart.
        log = f" · {_h(card.feed.log_id)}" if card.about is not None else ""
        body.append("<article>")
        body.append(f'<h2><a href="{_h(links.feed_page(card.feed))}"><bdi>{_h(title)}</bdi>'
                    f"{log}</a></h2>")
        if card.about is not None and card.about.description:
            body.append(f'<p class="text" dir="auto">{_h(card.about.description)}</p>')
        count = "1 entry" if card.entries == 1 else f"{card.entries} entries"
        body.append(f'<p class="meta">Log <code>{_h(card.feed.log_id)}</code> of '
                    f"<code>{_h(str(card.feed.author)[:SHORT_AUTHOR])}…</code>, {count}</p>")
        body.append(_subscribe(card.feed, links))
        body.append("</article>")
    if next_url is not None:
        body.append(f'<nav aria-label="Pages"><p><a rel="next" href="{_h(next_url)}">'
                    "More feeds</a></p></nav>")
    alternates = [line for card in cards[:20]
                  for line in _alternates(card.feed, feed_title(card.feed, card.about), links)]
    return _page("Feeds", body, links, alternates=alternates)


# -- entries -------------------------------------------------------------------------------


def _shown_content(shown: Shown[Entry]) -> tuple[Content | None, str | None]:
    """What an entry shows: its content, or else its plain text."""
    if shown.content is not None:
        return shown.content, None
    return None, plain_text(shown.payload)


def entry_heading(shown: Shown[Entry]) -> str | None:
    """The entry's own title, if it has one: a post's or a link share's title.

    Untitled entries are headed by their time instead, so that their first line
    is never shown twice (as a heading and again as the text)."""
    content, _ = _shown_content(shown)
    if isinstance(content, Post | LinkShare) and content.title:
        return content.title
    return None


def _attachment(attachment: Attachment) -> str:
    about = attachment.media_type + (f", {_size(attachment.size)}"
                                     if attachment.size is not None else "")
    if attachment.url is None:  # a blob only: named by its id until it is served
        label = attachment.title or str(attachment.blob)
        return f"<li>{_h(label)} ({_h(about)})</li>"
    label = attachment.title or attachment.url.rsplit("/", 1)[-1] or attachment.url
    return f"<li>{_external(attachment.url, label)} ({_h(about)})</li>"


def _body(shown: Shown[Entry], links: Links) -> list[str]:
    content, text = _shown_content(shown)
    out: list[str] = []
    if isinstance(content, LinkShare):
        out.append(f"<p>{_external(content.url, content.title or content.url)}</p>")
        if content.comment:
            out.append(f'<div class="text" dir="auto">{_h(content.comment)}</div>')
        tags = content.tags
    elif isinstance(content, Post):
        if content.reply_to is not None:
            ref = content.reply_to
            target = links.entry(ref.feed, ref.seq)
            out.append(f'<p class="meta">In reply to <a href="{_h(target)}">'
                       f"entry {ref.seq} of <code>{_h(str(ref.feed)[:SHORT_AUTHOR + 4])}…"
                       "</code></a></p>")
        if content.text:
            out.append(f'<div class="text" dir="auto">{_h(content.text)}</div>')
        if content.links:
            out.append('<ul class="links">' + "".join(
                f"<li>{_external(url)}</li>" for url in content.links) + "</ul>")
        if content.attachments:
            out.append('<ul class="attachments">'
                       + "".join(_attachment(a) for a in content.attachments) + "</ul>")
        tags = content.tags
    elif text is not None and text.strip():
        out.append(f'<div class="text" dir="auto">{_h(text)}</div>')
        tags = ()
    else:
        size = shown.entry.payload_size
        # A payload over the content bound is never read: its size says what it is.
        described = f"<{size} bytes>" if size > MAX_CONTENT_SIZE else describe(shown.payload)
        out.append(f'<p class="meta">{_h(described)}</p>')
        tags = ()
    if tags:
        out.append('<p class="meta">Tags: ' + ", ".join(f"<bdi>{_h(t)}</bdi>" for t in tags)
                   + "</p>")
    return out


def _meta(shown: Shown[Entry], corrected_at: int | None, *, time: bool = True) -> str:
    parts = [_when(shown.entry.timestamp)] if time else []
    parts.append(f"entry {shown.entry.seq}")
    if shown.state == REPLACED and corrected_at is not None:
        parts.append(f"edited {_when(corrected_at)}")
    return '<p class="meta">' + " · ".join(parts) + "</p>"


def _article(feed: FeedId, shown: Shown[Entry], corrected_at: int | None, links: Links) -> str:
    """One entry in a feed's page: headed by its title (a link to its page), or by its time."""
    url = links.entry(feed, shown.entry.seq)
    if shown.state == RETRACTED:
        when = _when(corrected_at) if corrected_at is not None else "later"
        return (f'<article class="tombstone"><h2><a href="{_h(url)}">Entry {shown.entry.seq}'
                f"</a></h2><p>Retracted by its author on {when}.</p></article>")
    title = entry_heading(shown)
    if title is not None:
        heading = f'<h2><a href="{_h(url)}"><bdi>{_h(title)}</bdi></a></h2>'
    else:
        heading = f'<h2><a href="{_h(url)}">{_when(shown.entry.timestamp)}</a></h2>'
    meta = _meta(shown, corrected_at, time=title is not None)
    return "\n".join(["<article>", heading, meta, *_body(shown, links), "</article>"])


def feed_page(feed: FeedId, entries: Sequence[Shown[Entry]], corrected_at: dict[int, int],
              links: Links, *, about: About | None = None, next_url: str | None = None,
              newest_url: str | None = None) -> bytes:
    """``GET /feeds/<feed id>``: a page of a feed, newest first, corrections applied."""
    return "".join(feed_page_parts(feed, entries, corrected_at, links, about=about,
                                   next_url=next_url, newest_url=newest_url)).encode("utf-8")


def feed_page_parts(feed: FeedId, entries: Sequence[Shown[Entry]],
                    corrected_at: dict[int, int], links: Links, *,
                    about: About | None = None, next_url: str | None = None,
                    newest_url: str | None = None) -> Iterator[str]:
    """:func:`feed_page` in pieces: each entry's article is rendered as it is sent."""
    title = feed_title(feed, about)
    return _page_parts(title, _feed_page_body(feed, title, entries, corrected_at, links,
                                              about, next_url, newest_url),
                       links, alternates=_alternates(feed, title, links))


def _feed_page_body(feed: FeedId, title: str, entries: Sequence[Shown[Entry]],
                    corrected_at: dict[int, int], links: Links, about: About | None,
                    next_url: str | None, newest_url: str | None) -> Iterator[str]:
    body = [f"<h1><bdi>{_h(title)}</bdi></h1>"]
    if about is not None and about.description:
        body.append(f'<p class="text" dir="auto">{_h(about.description)}</p>')
    body.append(f'<p class="meta">Log <code>{_h(feed.log_id)}</code> of author '
                f"<code>{_h(str(feed.author))}</code></p>")
    body.append(_subscribe(feed, links))
    shown = [s for s in entries if s.state != CORRECTION]
    if not shown:
        body.append("<p>No entries on this page.</p>")
    yield from body
    for each in shown:
        yield _article(feed, each, corrected_at.get(each.entry.seq), links)
    pages = []
    if next_url is not None:
        pages.append(f'<a rel="next" href="{_h(next_url)}">Older entries</a>')
    if newest_url is not None:
        pages.append(f'<a href="{_h(newest_url)}">Newest entries</a>')
    if pages:
        yield '<nav aria-label="Pages"><p>' + " · ".join(pages) + "</p></nav>"


def entry_page(feed: FeedId, shown: Shown[Entry], corrected_at: int | None, links: Links, *,
               about: About | None = None, target: int | None = None) -> bytes:
    """``GET /feeds/<feed id>/<seq>``: one entry, as it shows now.

    A retracted entry's page is a tombstone; a correction's page points to the
    entry it corrects (``target``).
    """
    title = feed_title(feed, about)
    back = (f'<p class="meta">From <a href="{_h(links.feed_page(feed))}"><bdi>{_h(title)}</bdi>'
            "</a></p>")
    seq = shown.entry.seq
    if shown.state == RETRACTED:
        when = _when(corrected_at) if corrected_at is not None else "later"
        body = [back, f"<h1>Entry {seq} was retracted</h1>",
                f'<p class="tombstone">Its author retracted it on {when}.</p>']
        return _page(f"Entry {seq} (retracted) · {title}", body, links)
    if shown.state == CORRECTION:
        body = [back, f"<h1>Entry {seq} is a correction</h1>"]
        if target is not None:
            body.append(f'<p>It corrects <a href="{_h(links.entry(feed, target))}">entry '
                        f"{target}</a>.</p>")
        return _page(f"Entry {seq} · {title}", body, links)
    heading = entry_heading(shown)
    if heading is not None:
        h1, tab = f"<h1><bdi>{_h(heading)}</bdi></h1>", heading
    else:
        _, text = _shown_content(shown)
        first, _ = split_title(text or "")
        content = shown.content
        line = first or (summary(content) if content is not None else f"Entry {seq}")
        # The heading is the author and the time; the text below stays whole.
        h1 = f"<h1><bdi>{_h(title)}</bdi>, {_when(shown.entry.timestamp)}</h1>"
        tab = line
    body = [back, h1, _meta(shown, corrected_at, time=heading is not None),
            *_body(shown, links)]
    return _page(f"{tab} · {title}", body, links, alternates=_alternates(feed, title, links))


# -- the Atom feed in a browser --------------------------------------------------------

_XSLT = """\
<?xml version="1.0" encoding="utf-8"?>
<!-- Shows a tidings Atom feed to a person who opens it in a browser (spec/feeds.md §7).
     Text is copied as text (never disable-output-escaping), and only http(s)
     and relative links become links. -->
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:a="http://www.w3.org/2005/Atom" xmlns:at="http://purl.org/atompub/tombstones/1.0"
    exclude-result-prefixes="a at">
<xsl:output method="html" encoding="utf-8" doctype-system="about:legacy-compat"/>

<xsl:template name="link">
  <xsl:param name="href"/>
  <xsl:param name="text"/>
  <xsl:choose>
    <xsl:when test="starts-with($href, 'https://') or starts-with($href, 'http://')
                    or starts-with($href, './') or starts-with($href, '../')">
      <a href="{$href}" rel="nofollow noopener noreferrer"><xsl:value-of select="$text"/></a>
    </xsl:when>
    <xsl:otherwise><xsl:value-of select="$text"/></xsl:otherwise>
  </xsl:choose>
</xsl:template>

<xsl:template match="/a:feed">
  <html lang="en">
  <head>
    <meta name="viewport" content="width=device-width, initial-scale=1"/>
    <meta name="referrer" content="no-referrer"/>
    <title><xsl:value-of select="a:title"/> (web feed)</title>
    <style>@CSS@</style>
  </head>
  <body>
  <main>
    <p class="note">This is a web feed. To follow it, copy its address from the address bar
    into a feed reader or podcast app.</p>
    <h1><bdi><xsl:value-of select="a:title"/></bdi></h1>
    <xsl:if test="a:subtitle">
      <p class="text" dir="auto"><xsl:value-of select="a:subtitle"/></p>
    </xsl:if>
    <xsl:for-each select="a:link[@rel='alternate'][@type='text/html'][1]">
      <p class="note"><xsl:call-template name="link">
        <xsl:with-param name="href" select="@href"/>
        <xsl:with-param name="text" select="'This feed as a web page'"/>
      </xsl:call-template></p>
    </xsl:for-each>
    <xsl:for-each select="a:entry | at:deleted-entry">
      <xsl:choose>
        <xsl:when test="self::at:deleted-entry">
          <article class="tombstone"><h2>Retracted entry</h2>
          <p>Retracted by its author on <xsl:value-of select="substring(@when, 1, 10)"/>.</p>
          </article>
        </xsl:when>
        <xsl:otherwise>
          <article>
            <h2><xsl:call-template name="link">
              <xsl:with-param name="href" select="a:link[@rel='alternate'][1]/@href"/>
              <xsl:with-param name="text" select="a:title"/>
            </xsl:call-template></h2>
            <p class="meta"><xsl:value-of select="substring(a:published, 1, 10)"/>
              <xsl:if test="a:updated != a:published"> (edited <xsl:value-of
                select="substring(a:updated, 1, 10)"/>)</xsl:if></p>
            <xsl:if test="normalize-space(a:content)">
              <div class="text" dir="auto"><xsl:value-of select="a:content"/></div>
            </xsl:if>
            <xsl:if test="a:link[@rel='enclosure' or @rel='related']">
              <ul>
                <xsl:for-each select="a:link[@rel='enclosure' or @rel='related']">
                  <li><xsl:call-template name="link">
                    <xsl:with-param name="href" select="@href"/>
                    <xsl:with-param name="text">
                      <xsl:choose>
                        <xsl:when test="@title"><xsl:value-of select="@title"/></xsl:when>
                        <xsl:otherwise><xsl:value-of select="@href"/></xsl:otherwise>
                      </xsl:choose>
                    </xsl:with-param>
                  </xsl:call-template>
                  <xsl:if test="@type"> (<xsl:value-of select="@type"/>)</xsl:if></li>
                </xsl:for-each>
              </ul>
            </xsl:if>
          </article>
        </xsl:otherwise>
      </xsl:choose>
    </xsl:for-each>
    <xsl:for-each select="a:link[@rel='next'][1]">
      <nav aria-label="Pages"><p><xsl:call-template name="link">
        <xsl:with-param name="href" select="@href"/>
        <xsl:with-param name="text" select="'Older entries'"/>
      </xsl:call-template></p></nav>
    </xsl:for-each>
  </main>
  </body>
  </html>
</xsl:template>
</xsl:stylesheet>
"""
ATOM_XSLT = _XSLT.replace("@CSS@", CSS).encode("utf-8")


__all__ = ["ATOM_XSLT", "CSP", "HTML_MEDIA_TYPE", "XSLT_MEDIA_TYPE", "XSLT_PATH", "FeedCard",
           "Links", "entry_heading", "entry_page", "feed_page", "index_page", "safe_url"]
