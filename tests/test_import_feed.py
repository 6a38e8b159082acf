"""``tidings import-feed`` (real processes, real homes) and :mod:`tidings.http.feedimport`.

The fixtures in tests/fixtures/feeds are shaped like real feeds: a podcast's
RSS 2.0 (itunes tags, enclosures, HTML in CDATA and escaped, RFC 822 dates with
two-digit years, named zones and no leading zeros), a blog's Atom (xml:base,
relative links, html, xhtml and text content) and a JSON Feed. URLs are served
by a local HTTP server on 127.0.0.1, port 0.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import feedparser
import pytest

from tidings import Identity, Logbook, SqliteStore
from tidings.cli.common import CommandError
from tidings.cli.import_feed import fetch
from tidings.content import MAX_CONTENT_SIZE, MAX_TEXT, Attachment, Post, decode, encode
from tidings.core.entry import Entry
from tidings.http.feedimport import (
    FeedItem,
    NotAFeed,
    html_to_text,
    normalize_url,
    oldest_first,
    parse_feed,
    to_post,
)
from tidings.http.syndication import atom

from .test_cli import ok, tidings

FIXTURES = Path(__file__).parent / "fixtures" / "feeds"


def micros(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp()) * 1_000_000


@contextmanager
def serving(files: dict[str, tuple[bytes, str]]) -> Iterator[str]:
    """A local HTTP server of ``files`` (path → body, content type); yields its URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = files.get(self.path)
            if found is None:
                self.send_error(404)
                return
            body, kind = found
            if kind.startswith("redirect:"):
                self.send_response(302)
                self.send_header("Location", kind.removeprefix("redirect:"))
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def log_of(home: Path, log: str) -> list[tuple[Entry, bytes | None]]:
    book = Logbook(SqliteStore(home / "store.sqlite3"), Identity.load(home / "secret.key"))
    try:
        return list(book.read(book.feed(log)))
    finally:
        book.store.close()


def posts_of(home: Path, log: str) -> list[Post]:
    posts = [decode(payload) for _, payload in log_of(home, log)]
    assert all(isinstance(post, Post) for post in posts)
    return posts  # type: ignore[return-value]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "h"
    ok(tidings(path, "init"))
    return path


def test_a_podcast_comes_in_oldest_first_with_dates_enclosures_and_text(home: Path) -> None:
    done = ok(tidings(home, "import-feed", str(FIXTURES / "podcast.rss"), "--log", "podcast"))
    assert "imported 4 new items" in done.err and "(0 imported before)" in done.err
    entries = log_of(home, "podcast")
    posts = posts_of(home, "podcast")
    assert [p.title for p in posts] == [
        "Trailer", "Episode 1: Pilot", "Episode 2: Jacquard's loom",
        "Episode 3: The Difference Engine, <finally>"]
    # RFC 822 as found: "+0000", no leading zero in hour, "EST", a two-digit year.
    assert [e.timestamp for e, _ in entries] == [
        micros("2019-09-01T00:00:00+00:00"), micros("2019-09-03T09:05:30+00:00"),
        micros("2019-10-02T13:00:00+00:00"), micros("2021-09-06T23:45:00+00:00")]
    trailer, pilot, second, third = posts
    assert trailer.attachments == (Attachment("https://cdn.example.org/looms/trailer.mp3",
                                              "audio/mpeg", 99999),)
    assert second.attachments[0].media_type == "audio/x-m4a"  # "Audio/X-M4A; codecs=..."
    assert second.attachments[0].size is None  # length=""
    assert pilot.text == "Hello, world.\nFirst episode.\n\nRecorded in a kitchen."
    assert third.text.startswith("Babbage's engine, finally built in 1991.\n\nLinks:\n\n- ")
    assert "<" not in third.text and "alert" not in third.text and "— Ada" in third.text
    assert third.links[:2] == ("https://podcast.example.org/episodes/3?utm_source=rss&"
                               "utm_medium=feed", "https://www.example.org/engine")
    assert not [link for link in third.links if "javascript" in link]
    assert third.tags == ("History", "Babbage")
    assert third.attachments[0].size == 48_211_968
    # Cron-safe: nothing new, nothing published.
    again = ok(tidings(home, "import-feed", str(FIXTURES / "podcast.rss"), "--log", "podcast"))
    assert "imported 0 new items" in again.err and "(4 imported before)" in again.err
    assert len(log_of(home, "podcast")) == 4


def test_an_atom_blog_over_http_twice_imports_only_what_is_new(home: Path) -> None:
    blog = (FIXTURES / "blog.atom").read_bytes()
    files = {"/feed.atom": (blog, "application/atom+xml; charset=utf-8")}
    with serving(files) as base:
        ok(tidings(home, "import-feed", f"{base}/feed.atom", "--log", "blog"))
        first = posts_of(home, "blog")
        assert [p.title for p in first] == ["Untitled thoughts", "Week 1: hello",
                                            "Week 2: rm -rf and other regrets"]
        week2 = first[2]
        assert week2.text.startswith("What happened\n\nI ran rm -rf in the wrong directory.")
        assert "$ restic restore latest\nrestoring..." in week2.text  # <pre> kept
        assert week2.links == ("https://blog.example.net/2021/03/week-2",
                               "https://blog.example.net/2021/02/week-1",
                               "https://restic.example.org/")  # xml:base resolved
        assert week2.attachments == (Attachment("https://blog.example.net/img/sad.png",
                                                "image/png", 20480),)
        assert first[1].text == "First post. Hello, readers!\n\n1. one\n2. two"
        assert first[0].text == "Just text, with <angle brackets> kept as text."
        # A new entry appears at the top of the feed: only it is imported.
        new_entry = (b"<entry><title>Week 3</title><id>tag:blog.example.net,2021:w3</id>"
                     b"<updated>2021-03-08T10:00:00Z</updated><content>Fresh.</content></entry>")
        files["/feed.atom"] = (blog.replace(b"<entry>", new_entry + b"<entry>", 1),
                               "application/atom+xml")
        done = ok(tidings(home, "import-feed", f"{base}/feed.atom", "--log", "blog", "--json"))
        report = done.json_lines()[0]
        assert (report["imported"], report["already_imported"], report["seqs"]) == (1, 3, [4])
    assert [p.title for p in posts_of(home, "blog")][-1] == "Week 3"


def test_a_json_feed_is_imported(home: Path) -> None:
    ok(tidings(home, "import-feed", str(FIXTURES / "notes.json"), "--log", "notes"))
    first, second = posts_of(home, "notes")
    assert first == Post("First note: plain text only.\nTwo lines.")
    assert second.title == "Second" and second.text == "Second note, with a link."
    assert second.links == ("https://notes.example.com/2", "https://example.com/x")
    assert second.attachments == (Attachment("https://notes.example.com/2.ogg", "audio/ogg",
                                             5000, "Read aloud"),)
    assert [e.timestamp for e, _ in log_of(home, "notes")] == [
        micros("2022-05-01T08:00:00+00:00"), micros("2022-05-02T10:00:00+00:00")]


def test_the_imported_podcast_re_exported_by_the_gateway_reads_as_the_original(
        home: Path) -> None:
    ok(tidings(home, "import-feed", str(FIXTURES / "podcast.rss"), "--log", "podcast"))
    entries = log_of(home, "podcast")
    feed = entries[0][0].feed
    exported = feedparser.parse(atom(feed, list(reversed(entries)),
                                     self_url="https://feeds.example.org/podcast.atom"))
    assert exported.bozo == 0, exported.get("bozo_exception")
    original = feedparser.parse((FIXTURES / "podcast.rss").read_bytes())
    assert [e.title for e in exported.entries] == [e.title for e in original.entries]
    assert [e.published_parsed for e in exported.entries] == [
        e.published_parsed for e in original.entries]
    assert [[(x.href, x.type) for x in e.enclosures] for e in exported.entries] == [
        [(x.href.replace(" ", "%20"), x.type.split(";")[0].lower()) for x in e.enclosures]
        for e in original.entries]


def test_a_run_that_stopped_before_remembering_publishes_nothing_twice(home: Path) -> None:
    ok(tidings(home, "import-feed", str(FIXTURES / "notes.json"), "--log", "notes"))
    (home / "imports.sqlite3").unlink()  # as if it stopped after publishing
    done = ok(tidings(home, "import-feed", str(FIXTURES / "notes.json"), "--log", "notes"))
    assert "imported 0 new items" in done.err
    assert len(log_of(home, "notes")) == 2


def test_a_dry_run_publishes_nothing(home: Path) -> None:
    done = ok(tidings(home, "import-feed", str(FIXTURES / "blog.atom"), "--log", "blog",
                      "--dry-run"))
    assert done.out.splitlines() == ["Untitled thoughts", "Week 1: hello",
                                     "Week 2: rm -rf and other regrets"]
    assert "would import 3" in done.err
    assert log_of(home, "blog") == []
    done = ok(tidings(home, "import-feed", str(FIXTURES / "blog.atom"), "--log", "blog"))
    assert "imported 3 new items" in done.err  # the dry run remembered nothing


def test_what_is_not_a_feed_or_not_http_is_refused(home: Path, tmp_path: Path) -> None:
    page = tmp_path / "page.html"
    page.write_text("<!doctype html><html><body><p>not a feed</p></body></html>")
    assert tidings(home, "import-feed", str(page), "--log", "x").code == 1
    assert tidings(home, "import-feed", "file:///etc/passwd", "--log", "x").code == 2
    assert tidings(home, "import-feed", str(tmp_path / "missing.rss"), "--log", "x").code == 2
    assert tidings(home, "import-feed", str(FIXTURES / "blog.atom"), "--log", "Bad Log").code == 2
    with serving({}) as base:
        missing = tidings(home, "import-feed", f"{base}/nothing.rss", "--log", "x")
        assert missing.code == 1 and "404" in missing.err


def test_fetch_is_bounded_and_follows_only_http_redirects() -> None:
    files = {"/big": (b"x" * 5000, "application/xml"),
             "/ok": (b"<rss/>", "application/rss+xml"),
             "/away": (b"", "redirect:ftp://127.0.0.1/feed.rss"),
             "/file": (b"", "redirect:file:///etc/passwd"),
             "/hop": (b"", "redirect:/ok")}
    with serving(files) as base:
        with pytest.raises(CommandError, match="5000 bytes"):
            fetch(f"{base}/big", max_bytes=4096)
        body, kind, final = fetch(f"{base}/hop")
        assert (body, kind, final) == (b"<rss/>", "application/rss+xml", f"{base}/ok")
        with pytest.raises(CommandError, match="only http and https"):
            fetch(f"{base}/away")  # urllib would follow ftp
        with pytest.raises(CommandError, match="302"):
            fetch(f"{base}/file")


# -- the conversions ------------------------------------------------------------------------


def test_html_becomes_plain_text_and_links() -> None:
    html = ("<h1>Title</h1><p>One   <em>two</em>\nthree<br>four</p>"
            "<ol><li>a</li><li>b</li></ol><pre>  keep\n    this</pre>"
            "<style>p{}</style><script>bad()</script><p><a href='/x'>rel</a> "
            "<img alt='pic' src='y'></p>")
    text, links = html_to_text(html, "https://e.example/post/")
    assert text == "Title\n\nOne two three\nfour\n\n1. a\n2. b\n\n  keep\n    this\n\nrel [pic]"
    assert links == ["https://e.example/x"]


def test_urls_are_made_valid_or_dropped() -> None:
    assert normalize_url("https://bücher.example/ä b") == "https://xn--bcher-kva.example/%C3%A4%20b"
    assert normalize_url("HTTP://example.org/") == "http://example.org/"
    for bad in ("javascript:alert(1)", "data:text/html,x", "/relative", "ftp://x/", "", None):
        assert normalize_url(bad) is None


def test_a_long_item_is_cut_to_fit_a_post_and_says_so() -> None:
    long = FeedItem("k", "T", "https://e.example/1", None, None, "é" * (MAX_TEXT * 2))
    post = to_post(long)
    assert len(post.text) <= MAX_TEXT and post.text.endswith("(cut: the rest is at the link)")
    wide = FeedItem("k", "T", None, None, None, "\U0001f389" * MAX_TEXT)  # 4 bytes each
    fitted = to_post(wide)
    assert len(encode(fitted)) <= MAX_CONTENT_SIZE and "cut" in fitted.text
    bounded = to_post(FeedItem("k", "x" * 400, None, None, None, "", tuple(
        f"tag {i}" for i in range(40)), tuple((f"https://e.example/{i}", "Bad Type", 2**70, None)
                                                 for i in range(20))))
    assert bounded.title is not None and len(bounded.title) == 300
    assert len(bounded.tags) == 32 and len(bounded.attachments) == 16
    assert bounded.attachments[0] == Attachment("https://e.example/0",
                                                "application/octet-stream")


def test_items_without_dates_keep_their_place() -> None:
    items = [FeedItem("c", published=30), FeedItem("b"), FeedItem("a", published=10)]
    assert [i.key for i in oldest_first(items)] == ["a", "b", "c"]


def test_bad_documents_are_not_feeds() -> None:
    for data in (b"", b"{}", b'{"version": "https://jsonfeed.org/version/1.1"}',
                 b"not json {", b"<html><body>hi</body></html>", b"\x00\xff"):
        with pytest.raises(NotAFeed):
            parse_feed(data)
    feed = parse_feed(json.dumps({"version": "https://jsonfeed.org/version/1",
                                  "items": [{"title": "no id"}, "junk"]}).encode())
    assert feed.items == []
