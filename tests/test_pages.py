"""The feed gateway's pages for people (spec/feeds.md §2, §7): the index, a feed's page,
an entry's page, the stylesheet, links, headers, escaping and corrections.

Pages are parsed with the standard library's HTML parser and checked for what a
person gets: headings, text, links; and for what must never be there: markup an
author wrote, a script, a link that is not http(s) or ours.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import feedparser
import pytest

from tidings import Identity, Logbook, SqliteStore
from tidings.content import About, Attachment, LinkShare, Post, Replace, Retract, encode
from tidings.http import gateway
from tidings.http.gateway import TokenLinks
from tidings.http.pages import CSP, CSS
from tidings.http.server import Request, Response
from tidings.storage.base import Store

from .http_client import collected


class PublicFeeds(gateway.PublicFeeds):
    """The gateway, with each streamed document read whole (as a client gets it)."""

    async def __call__(self, request: Request) -> Response:
        return await collected(await super().__call__(request))

HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(2)> & \u202eevil"


@dataclass
class Page:
    """What a browser would build from a page: elements, text, links."""

    tags: list[tuple[str, dict[str, str | None]]] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    open: list[str] = field(default_factory=list)

    def hrefs(self) -> list[str]:
        return [str(attrs["href"]) for tag, attrs in self.tags if tag == "a"]

    def of(self, name: str) -> list[dict[str, str | None]]:
        return [attrs for tag, attrs in self.tags if tag == name]

    @property
    def all_text(self) -> str:
        return "".join(self.text)


VOID = {"meta", "link", "br", "img", "hr", "input"}


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = Page()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.page.tags.append((tag, dict(attrs)))
        if tag not in VOID:
            self.page.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.page.open and self.page.open[-1] == tag, (tag, self.page.open)
        self.page.open.pop()

    def handle_data(self, data: str) -> None:
        self.page.text.append(data)


def parse(reply: Response) -> Page:
    assert reply.content_type == "text/html; charset=utf-8"
    parser = _Parser()
    parser.feed(reply.body.decode("utf-8"))
    parser.close()
    page = parser.page
    assert page.open == [], page.open  # every element closed, in order
    assert page.of("html") == [{"lang": "en"}]
    assert len(page.of("h1")) == 1 and len(page.of("title")) == 1
    assert not page.of("script") and not page.of("img") and not page.of("iframe")
    for href in page.hrefs():  # ours (relative or the base URL) or an author's http(s) URL
        assert re.match(r"(\./|\.\./|https?://)", href), href
    headers = dict(reply.headers)
    assert headers["Content-Security-Policy"] == CSP
    assert headers["Referrer-Policy"] == "no-referrer"
    assert reply.body.count(b"<style>") == 1 and CSS.encode() in reply.body
    return page


def request(path: str, query: str = "", **headers: str) -> Request:
    from urllib.parse import parse_qs
    return Request("GET", path + (f"?{query}" if query else ""), path,
                   parse_qs(query, keep_blank_values=True),
                   {"host": "evil.example", **{k.lower(): v for k, v in headers.items()}},
                   b"", ("127.0.0.1", 1))


@pytest.fixture
def book(tmp_path: Path) -> Iterator[Logbook]:
    store = SqliteStore(tmp_path / "s.sqlite3")
    yield Logbook(store, Identity.generate())
    store.close()


def blog(book: Logbook) -> str:
    book.publish(encode(About("Alice " + HOSTILE, "Teaches maths.\n" + HOSTILE)), "about")
    book.publish(encode(Post("Untitled first line\nsecond line\n" + HOSTILE)), "blog")
    book.publish(encode(Post("Show notes.", title="Episode 1 " + HOSTILE, tags=("pod<cast>",),
                             links=("https://example.org/notes?a=1&b=2",),
                             attachments=(Attachment("https://example.org/ep1.mp3",
                                                     "audio/mpeg", 24_117_248, "MP3"),))),
                 "blog")
    book.publish(encode(LinkShare("https://example.org/article", None, "worth it")), "blog")
    book.publish(encode(Post("typo", title="Edited")), "blog")
    book.publish(encode(Replace(4, Post("typo fixed", title="Edited, fixed"))), "blog")
    book.publish(encode(Retract(3)), "blog")
    return str(book.feed("blog"))


async def test_the_index_lists_the_served_feeds_with_titles_and_subscribe_links(
        book: Logbook) -> None:
    feed = blog(book)
    other = Logbook(book.store, Identity.generate())
    other.publish(b"not served", "secret")
    handler = PublicFeeds(book.store, allows=lambda f: f.author_key == book.identity.author.key)
    reply = await handler(request("/"))
    page = parse(reply)
    assert "Alice <script>alert(1)</script>" in page.all_text  # shown as text...
    assert b"<script>" not in reply.body  # ...never as markup
    assert f"./feeds/{feed}" in page.hrefs()
    assert f"./feeds/{feed}.atom" in page.hrefs() and f"./feeds/{feed}.json" in page.hrefs()
    assert "secret" not in reply.body.decode()
    feeds = {link["href"] for link in page.of("link") if link.get("rel") == "alternate"}
    assert f"./feeds/{feed}.atom" in feeds  # autodiscovery
    assert dict(reply.headers)["Cache-Control"] == "max-age=60"


async def test_the_index_pages_through_many_feeds(book: Logbook, monkeypatch: pytest.MonkeyPatch
                                                  ) -> None:
    monkeypatch.setattr(gateway, "INDEX_PAGE", 2)
    for name in ("a", "b", "c"):
        book.publish(b"x", name)
    handler = PublicFeeds(book.store)
    first = parse(await handler(request("/")))
    more = [a["href"] for a in first.of("a") if a.get("rel") == "next"]
    assert len(more) == 1 and str(more[0]).startswith("./?after=tf1")
    second = parse(await handler(request("/", str(more[0]).removeprefix("./?"))))
    assert not [a for a in second.of("a") if a.get("rel") == "next"]
    shown = [h for h in first.hrefs() + second.hrefs() if re.fullmatch(r"\./feeds/[^./]+", h)]
    assert sorted(h.rsplit("_", 1)[1] for h in shown) == ["a", "b", "c"]
    assert (await handler(request("/", "after=nope"))).status == 400


async def test_a_feed_page_shows_corrections_and_never_repeats_a_first_line(
        book: Logbook) -> None:
    feed = blog(book)
    reply = await PublicFeeds(book.store)(request(f"/feeds/{feed}"))
    page = parse(reply)
    text = page.all_text
    assert "Edited, fixed" in text and "typo fixed" in text and "edited" in text
    assert "Edited\n" not in text and "typo\n" not in text  # the original is replaced
    assert "Retracted by its author" in text and "worth it" not in text
    assert text.count("Untitled first line") == 1  # headed by its time, text whole
    assert HOSTILE in text  # the author's markup, as text
    headings = [attrs for tag, attrs in page.tags if tag == "h2"]
    assert len(headings) == 4  # entries 1-4; the corrections are not entries
    assert "https://example.org/notes?a=1&b=2" in page.hrefs()
    assert "https://example.org/ep1.mp3" in page.hrefs()
    assert f"../feeds/{feed}/2" in page.hrefs()
    external = [a for a in page.of("a") if str(a["href"]).startswith("https://")]
    assert all(a["rel"] == "nofollow noopener noreferrer ugc" for a in external)
    assert "evil.example" not in reply.body.decode()  # never the Host header


async def test_an_entry_page_is_the_entrys_link_and_a_retracted_one_is_gone(
        book: Logbook) -> None:
    feed = blog(book)
    handler = PublicFeeds(book.store, "https://feeds.example.org/")
    atom = feedparser.parse((await handler(request(f"/feeds/{feed}.atom"))).body)
    assert atom.bozo == 0
    links = {entry.id: entry.link for entry in atom.entries}
    assert links[f"urn:tidings:{feed}:1"] == f"https://feeds.example.org/feeds/{feed}/1"
    reply = await handler(request(f"/feeds/{feed}/1"))
    page = parse(reply)
    h1 = re.search(r"<h1>(.*?)</h1>", reply.body.decode(), re.S)
    assert h1 is not None and "Alice" in h1[1] and "Untitled" not in h1[1]  # not twice
    main = re.search(r"<main>(.*)</main>", reply.body.decode(), re.S)
    assert main is not None and main[1].count("Untitled first line") == 1  # (and the tab's title)
    assert f"https://feeds.example.org/feeds/{feed}" in page.hrefs()
    edited = parse(await handler(request(f"/feeds/{feed}/4")))
    assert "Edited, fixed" in edited.all_text and "typo fixed" in edited.all_text
    gone = await handler(request(f"/feeds/{feed}/3"))
    assert gone.status == 410 and "retracted" in parse(gone).all_text
    correction = parse(await handler(request(f"/feeds/{feed}/5")))
    assert f"https://feeds.example.org/feeds/{feed}/4" in correction.hrefs()
    assert (await handler(request(f"/feeds/{feed}/99"))).status == 404
    assert (await handler(request(f"/feeds/{feed}/0"))).status == 404


async def test_atom_names_its_stylesheet_and_browsers_get_xml_they_render(
        book: Logbook) -> None:
    feed = blog(book)
    handler = PublicFeeds(book.store)
    reader = await handler(request(f"/feeds/{feed}.atom", Accept="application/atom+xml, */*"))
    browser = await handler(request(
        f"/feeds/{feed}.atom",
        Accept="text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"))
    assert reader.content_type == "application/atom+xml; charset=utf-8"
    assert browser.content_type == "application/xml; charset=utf-8"
    assert reader.body == browser.body
    assert ("Vary", "Accept") in reader.headers and ("Vary", "Accept") in browser.headers
    assert b'<?xml-stylesheet type="text/xsl" href="../assets/atom.xsl"?>' in reader.body
    sheet = await handler(request("/assets/atom.xsl"))
    assert sheet.content_type == "text/xsl; charset=utf-8"
    root = ET.fromstring(sheet.body)  # well-formed XSLT 1.0
    assert root.tag == "{http://www.w3.org/1999/XSL/Transform}stylesheet"
    assert not [e for e in root.iter() if "disable-output-escaping" in e.attrib]
    json_feed = await handler(request(f"/feeds/{feed}.json", Accept="text/html"))
    assert json_feed.content_type.startswith("application/feed+json")
    assert not [name for name, _ in json_feed.headers if name.lower() == "vary"]


@dataclass
class LocalApi(TokenLinks):
    """The local API's way of linking: a real store, links that keep the token."""

    store: Store


async def test_on_the_local_api_links_keep_the_token_and_stay_private(book: Logbook) -> None:
    feed = blog(book)
    source = LocalApi(book.store)
    for path, route in ((f"/feeds/{feed}", gateway.render_feed_page), ("/", gateway.render_index)):
        pattern = next(p for _, p, call in gateway.ROUTES if call is route)
        match = re.fullmatch(pattern, path)
        assert match is not None
        reply = await collected(await route(source, request(path, "token=s3cret"), match))
        page = parse(reply)
        ours = [h for h in page.hrefs() if h.startswith(".")]
        assert ours and all(h.endswith("token=s3cret") for h in ours), ours
        assert not [h for h in page.hrefs() if h.startswith("http") and "s3cret" in h]
        assert dict(reply.headers)["Cache-Control"] == "private, no-store"


async def test_only_the_chosen_feeds_and_only_get(book: Logbook) -> None:
    feed = blog(book)
    handler = PublicFeeds(book.store, allows=lambda f: False)
    for path in (f"/feeds/{feed}", f"/feeds/{feed}/1", f"/feeds/{feed}.atom"):
        assert (await handler(request(path))).status == 404
    assert "Alice" not in (await handler(request("/"))).body.decode()
    post = Request("POST", "/", "/", {}, {}, b"", ("127.0.0.1", 1))
    assert (await PublicFeeds(book.store)(post)).status == 405


def test_a_base_url_is_checked() -> None:
    assert gateway.check_base_url("https://feeds.example.org/") == "https://feeds.example.org"
    assert gateway.check_base_url("http://h:8080/sub/") == "http://h:8080/sub"
    for bad in ("feeds.example.org", "javascript:alert(1)", "https://h/?q=1", "https://h/#x",
                "ftp://h/"):
        with pytest.raises(gateway.UsageError):
            gateway.check_base_url(bad)


def test_serve_feeds_takes_its_base_url_from_the_config(tmp_path: Path) -> None:
    import json
    import signal

    from .test_cli import ok, tidings, usage_error
    from .test_status_cli import fetch, serving_feeds

    home = tmp_path / "h"
    ok(tidings(home, "init"))
    ok(tidings(home, "publish", "--log", "blog", "hello"))
    feed = ok(tidings(home, "feeds")).out.split()[0]
    config = home / "config.toml"
    commented = '# base_url = "https://feeds.example.org"'
    assert commented in config.read_text()  # the default config says where it goes
    config.write_text(config.read_text().replace(commented,
                                                 'base_url = "https://feeds.example.org/"'))
    with serving_feeds(home) as (base, proc, _):
        document = json.loads(fetch(f"{base}feeds/{feed}.json")[2])
        assert document["feed_url"] == f"https://feeds.example.org/feeds/{feed}.json"
        assert document["items"][0]["url"] == f"https://feeds.example.org/feeds/{feed}/1"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    usage_error(tidings(home, "serve-feeds", "--base-url", "feeds.example.org"),
                "is not a base URL")


async def _pieces(reply: Response) -> list[bytes]:
    pieces: list[bytes] = []

    async def take(data: bytes) -> None:
        pieces.append(data)

    assert reply.stream is not None
    await reply.stream(take)
    return pieces


async def test_documents_are_streamed_in_pieces_within_the_page_budget(book: Logbook) -> None:
    """spec/14 §8: a page of large posts is sent in pieces of about STREAM_PIECE bytes
    as its entries are rendered (a client that does not read holds one piece, not
    the document), and still ends at the page's byte budget with a next link."""
    for _ in range(20):
        book.publish(encode(Post("&" * 30_000)), "blog")  # 150 KB each once escaped
    feed = book.feed("blog")
    handler = gateway.PublicFeeds(book.store)
    for path in (f"/feeds/{feed}.atom", f"/feeds/{feed}.rss", f"/feeds/{feed}.json",
                 f"/feeds/{feed}"):
        reply = await handler(request(path, "limit=200"))
        assert reply.status == 200 and reply.body == b"" and reply.stream is not None, path
        pieces = await _pieces(reply)
        whole = b"".join(pieces)
        assert len(pieces) >= 3, (path, len(pieces))
        # A piece is at most STREAM_PIECE and one entry more (a 30,000 "&" post).
        assert max(map(len, pieces)) <= gateway.STREAM_PIECE + 200_000, path
        assert len(whole) < 2 * 1024 * 1024, (path, len(whole))
        if path.endswith(".json"):
            doc = json.loads(whole)
            assert 1 < len(doc["items"]) < 20 and "next_url" in doc
        elif path.endswith((".atom", ".rss")):
            parsed = feedparser.parse(whole)
            assert parsed.bozo == 0 and 1 < len(parsed.entries) < 20, path
            assert "next" in {link.rel for link in parsed.feed.get("links", [])} or \
                path.endswith(".rss")
        else:
            page = parse(Response(200, whole, reply.content_type, reply.headers))
            assert any(a.get("rel") == "next" for a in page.of("a"))
