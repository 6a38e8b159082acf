"""Atom and JSON Feed renderings of stored feeds (spec/feeds.md).

Atom output is checked with feedparser, which must parse it without a single
warning (``bozo == 0``). The released feedparser (6.0) does not read JSON Feed,
so JSON output is parsed by jsonfeed-util (a JSON Feed 1.1 parser) and checked
against the JSON Feed 1.1 specification by :func:`check_json_feed`.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import feedparser
import jsonfeed
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tidings import Logbook, MemoryStore
from tidings.content import (
    About,
    Attachment,
    EntryRef,
    Follow,
    LinkShare,
    Post,
    Replace,
    Retract,
    Unfollow,
    Unknown,
    encode,
    split_title,
)
from tidings.core.blob import blob_id_of
from tidings.core.entry import Entry
from tidings.core.ids import FeedId
from tidings.errors import UsageError
from tidings.http.syndication import atom, entry_urn, feed_urn, json_feed, rfc3339

from .helpers import author, examples

T0 = 1_700_000_000_000_000  # 2023-11-14T22:13:20Z
MINUTE = 60_000_000
SELF = "https://feeds.example.org/feeds/blog.atom"
ATOM = "{http://www.w3.org/2005/Atom}"
THREAD = "{http://purl.org/syndication/thread/1.0}"
EPISODE = Attachment("https://example.org/media/ep1.mp3", "audio/mpeg", 24_117_248,
                     "Episode 1 (MP3)")
Page = list[tuple[Entry, bytes | None]]


def make_book(start: int = T0) -> Logbook:
    times: Iterator[int] = iter(range(start, start + 10**6 * MINUTE, MINUTE))
    return Logbook(MemoryStore(), author(1), clock=lambda: next(times))


def page_of(book: Logbook, log_id: str = "blog") -> Page:
    """Every entry of the feed with its payload, newest first, as the gateway passes them."""
    return list(reversed(list(book.read(book.feed(log_id)))))


def published(*payloads: bytes) -> tuple[Logbook, FeedId, Page]:
    book = make_book()
    for payload in payloads:
        book.publish(payload, "blog")
    return book, book.feed("blog"), page_of(book)


def parse_atom(data: bytes) -> Any:
    parsed = feedparser.parse(data)
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    assert parsed.version == "atom10"
    return parsed


def xml_entries(data: bytes) -> list[ET.Element]:
    return ET.fromstring(data).findall(f"{ATOM}entry")


# -- a JSON Feed 1.1 checker, from https://www.jsonfeed.org/version/1.1/ -------------

FEED_KEYS = {"version", "title", "home_page_url", "feed_url", "description", "user_comment",
             "next_url", "icon", "favicon", "authors", "language", "expired", "hubs", "items"}
ITEM_KEYS = {"id", "url", "external_url", "title", "content_html", "content_text", "summary",
             "image", "banner_image", "date_published", "date_modified", "authors", "tags",
             "language", "attachments"}
ATTACHMENT_KEYS = {"url", "mime_type", "title", "size_in_bytes", "duration_in_seconds"}
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")


def check_keys(obj: dict[str, Any], known: set[str]) -> None:
    """Only the spec's keys, and extensions: keys that start with an underscore."""
    assert all(key in known or key.startswith("_") for key in obj), set(obj) - known


def check_strings(obj: dict[str, Any], *keys: str) -> None:
    for key in keys:
        assert key not in obj or isinstance(obj[key], str), key


def check_json_feed(data: bytes) -> dict[str, Any]:
    doc = json.loads(data.decode("utf-8"))
    assert isinstance(doc, dict)
    parsed = jsonfeed.Feed.parse_string(data.decode("utf-8"))  # a third-party reader
    assert parsed.title == doc["title"] and parsed.next_url == doc.get("next_url")
    assert [item.id for item in parsed.items] == [item["id"] for item in doc["items"]]
    check_keys(doc, FEED_KEYS)
    assert doc["version"] == "https://jsonfeed.org/version/1.1"
    assert isinstance(doc["title"], str)
    check_strings(doc, "home_page_url", "feed_url", "description", "next_url", "icon")
    for person in doc.get("authors", []):
        assert set(person) <= {"name", "url", "avatar"} and person, person
        check_strings(person, "name", "url", "avatar")
    assert isinstance(doc["items"], list)
    for item in doc["items"]:
        check_keys(item, ITEM_KEYS)
        assert isinstance(item["id"], str) and item["id"]
        assert "content_text" in item or "content_html" in item
        check_strings(item, "url", "external_url", "title", "content_text", "date_published")
        assert "date_published" not in item or RFC3339.fullmatch(item["date_published"])
        assert all(isinstance(tag, str) for tag in item.get("tags", []))
        for attachment in item.get("attachments", []):
            check_keys(attachment, ATTACHMENT_KEYS)
            assert isinstance(attachment["url"], str) and isinstance(attachment["mime_type"], str)
            size = attachment.get("size_in_bytes")
            assert size is None or (type(size) is int and size >= 0)
    return doc


# -- the feed -----------------------------------------------------------------------------


def test_atom_parses_without_warnings_with_titles_ids_links_and_times() -> None:
    _, feed, page = published(encode(Post("hello", title="First post")),
                              encode(Post("second\nline two")))
    parsed = parse_atom(atom(feed, page, self_url=SELF, next_url=SELF + "?before=1",
                             html_url="https://example.org/"))
    assert parsed.feed.id == f"urn:tidings:{feed}"
    assert parsed.feed.title == f"blog by {str(feed.author)[:12]}"
    assert parsed.feed.updated == "2023-11-14T22:14:20Z"
    links = {link.rel: link.href for link in parsed.feed.links}
    assert links == {"self": SELF, "next": SELF + "?before=1", "alternate": "https://example.org/"}
    assert [e.id for e in parsed.entries] == [entry_urn(feed, 2), entry_urn(feed, 1)]
    assert [e.title for e in parsed.entries] == ["second", "First post"]
    # An untitled post's first line is its title, and is not repeated as its text.
    assert [e.content[0].value for e in parsed.entries] == ["line two", "hello"]
    assert [e.updated for e in parsed.entries] == ["2023-11-14T22:14:20Z", "2023-11-14T22:13:20Z"]
    assert parsed.entries[0].published == parsed.entries[0].updated


def test_json_feed_follows_the_spec_with_the_same_ids_and_times() -> None:
    _, feed, page = published(encode(Post("hello", title="First post")),
                              encode(Post("second\nline two")))
    doc = check_json_feed(json_feed(feed, page, self_url=SELF, next_url=SELF + "?before=1"))
    assert (doc["feed_url"], doc["next_url"]) == (SELF, SELF + "?before=1")
    assert doc["title"] == f"blog by {str(feed.author)[:12]}"
    assert doc["_tidings"] == {"feed": str(feed), "author": str(feed.author), "log_id": "blog"}
    first, second = doc["items"]
    assert (first["id"], second["id"]) == (entry_urn(feed, 2), entry_urn(feed, 1))
    assert "title" not in first and second["title"] == "First post"  # untitled posts stay so
    assert first["content_text"] == "second\nline two"
    assert first["date_published"] == "2023-11-14T22:14:20Z"
    assert first["_tidings"] == {"seq": 2, "hash": page[0][0].hash.hex(), "type": "post"}


def test_about_content_names_the_feed_and_its_author() -> None:
    _, feed, page = published(encode(Post("hi")))
    about = About("Alice", "Teaches maths.", "https://example.org/alice.png")
    parsed = parse_atom(atom(feed, page, self_url=SELF, about=about))
    assert (parsed.feed.title, parsed.feed.subtitle) == ("Alice", "Teaches maths.")
    assert parsed.feed.author_detail.name == "Alice"
    assert parsed.feed.author_detail.href == f"urn:tidings:{feed.author}"
    assert parsed.feed.icon == "https://example.org/alice.png"
    doc = check_json_feed(json_feed(feed, page, self_url=SELF, about=about,
                                    html_url="https://example.org/"))
    assert doc["title"] == "Alice" and doc["description"] == "Teaches maths."
    assert doc["authors"] == [{"name": "Alice", "url": "https://example.org/",
                               "avatar": "https://example.org/alice.png"}]
    # An avatar that is an entry has no URL to give.
    doc = check_json_feed(json_feed(feed, page, self_url=SELF,
                                    about=About("Alice", avatar=EntryRef(feed, 1))))
    assert "icon" not in doc and doc["authors"] == [{"name": "Alice"}]


def test_an_empty_feed_is_valid() -> None:
    feed = author(1).author.feed("blog")
    parsed = parse_atom(atom(feed, [], self_url=SELF))
    assert parsed.entries == [] and parsed.feed.updated == "1970-01-01T00:00:00Z"
    doc = check_json_feed(json_feed(feed, [], self_url=SELF))
    assert doc["items"] == [] and "next_url" not in doc


# -- entries ------------------------------------------------------------------------------


def test_a_podcast_episode_has_an_enclosure_podcast_apps_read() -> None:
    episode = Post("Show notes.", title="Episode 1", tags=("podcast", "maths"),
                   attachments=(EPISODE, Attachment("https://example.org/t.vtt", "text/vtt")))
    _, feed, page = published(encode(episode))
    entry = parse_atom(atom(feed, page, self_url=SELF)).entries[0]
    assert entry.title == "Episode 1"
    assert [(e.href, e.type, e.get("length")) for e in entry.enclosures] == [
        (EPISODE.url, "audio/mpeg", "24117248"), ("https://example.org/t.vtt", "text/vtt", None)]
    assert [tag.term for tag in entry.tags] == ["podcast", "maths"]
    item = check_json_feed(json_feed(feed, page, self_url=SELF))["items"][0]
    assert item["attachments"] == [
        {"url": EPISODE.url, "mime_type": "audio/mpeg", "size_in_bytes": 24_117_248,
         "title": "Episode 1 (MP3)"},
        {"url": "https://example.org/t.vtt", "mime_type": "text/vtt"},
    ]
    assert item["tags"] == ["podcast", "maths"]


def test_an_attachment_that_is_only_a_blob_has_no_enclosure_yet() -> None:
    blob = blob_id_of(b"episode 2 audio")
    mirrored = Attachment.of_blob(blob, "audio/mpeg", url="https://example.org/ep2.mp3")
    episode = Post("Notes.", title="Episode 2",
                   attachments=(Attachment.of_blob(blob, "audio/ogg"), mirrored))
    _, feed, page = published(encode(episode))
    entry = parse_atom(atom(feed, page, self_url=SELF)).entries[0]
    assert [(e.href, e.type) for e in entry.enclosures] == [(mirrored.url, "audio/mpeg")]
    item = check_json_feed(json_feed(feed, page, self_url=SELF))["items"][0]
    assert [a["url"] for a in item["attachments"]] == [mirrored.url]


def test_links_replies_and_link_shares() -> None:
    book = make_book()
    feed = book.feed("blog")
    book.publish(encode(Post("see these", links=("https://a.example/1", "https://b.example/2"),
                             reply_to=EntryRef(feed, 1))), "blog")
    book.publish(encode(LinkShare("https://example.org/article", "An article", "Worth it")),
                 "blog")
    page = page_of(book)
    data = atom(feed, page, self_url=SELF)
    share, post = parse_atom(data).entries
    assert [(link.rel, link.href) for link in post.links] == [
        ("related", "https://a.example/1"), ("related", "https://b.example/2")]
    assert post.title == "see these"
    assert post.content[0].value == "https://a.example/1\nhttps://b.example/2"
    reply = xml_entries(data)[1].find(f"{THREAD}in-reply-to")
    assert reply is not None and reply.get("ref") == entry_urn(feed, 1)
    assert share.title == "An article" and share.link == "https://example.org/article"
    assert share.content[0].value == "Worth it\n\nhttps://example.org/article"
    share_item, post_item = check_json_feed(json_feed(feed, page, self_url=SELF))["items"]
    assert share_item["external_url"] == "https://example.org/article"
    assert share_item["title"] == "An article"
    assert post_item["_tidings"]["in_reply_to"] == entry_urn(feed, 1)


def test_every_kind_of_payload_renders_as_a_short_summary() -> None:
    other = author(2).author.feed("blog")
    book, feed, _ = published(
        encode(Follow(other)), encode(Unfollow(other)), encode(About("Alice")),
        encode(Unknown("org.example.quiz", {"q": "?"})), b"plain text\nsecond line",
        bytes(range(256)), b"", b"to be deleted", bytes.fromhex("a1647479706564706f7374"),
        encode(LinkShare("https://example.org/")),
    )
    assert book.delete_payload(feed, 8)
    page = page_of(book)
    parsed = parse_atom(atom(feed, page, self_url=SELF))
    titles = [e.title for e in reversed(parsed.entries)]
    assert titles == [
        f"follows {other}", f"unfollows {other}", "about: Alice", "<org.example.quiz>",
        "plain text", "<256 bytes>", "<0 bytes>", "<payload not held>",
        "<invalid post, 11 bytes>", "https://example.org/",
    ]
    contents = [e.content[0].value for e in reversed(parsed.entries)]
    assert contents[4] == "second line"  # plain text: the first line is the title
    assert contents == ["", "", "", "", "second line", "", "", "", "", ""]  # never twice
    items = check_json_feed(json_feed(feed, page, self_url=SELF))["items"][::-1]
    assert [item.get("title") for item in items] == [None] * 10  # no title but a real one
    assert [item["content_text"] for item in items] == [
        *titles[:4], "plain text\nsecond line", *titles[5:9], "https://example.org/"]
    assert [item["_tidings"]["type"] for item in items] == [
        "follow", "unfollow", "about", "org.example.quiz", None, None, None, None, None, "link"]


HOSTILE = ("a\x00b\x01\x08\x0b\x0c\x1b[31m\x7f ]]> <script>alert(1)</script> &amp; \"q\" 'q' "
           "🎉\U0010fffd\ufffe\uffff\r\nend")
#: What survives: XML 1.0 forbids C0 controls but tab, LF and CR, and U+FFFE, U+FFFF.
HOSTILE_KEPT = "ab[31m\x7f ]]> <script>alert(1)</script> &amp; \"q\" 'q' 🎉\U0010fffd\r\nend"


def test_hostile_text_round_trips_safely() -> None:
    post = Post(HOSTILE, title="t ]]> <b>x</b> 🎉", tags=("<a&b>", '"q"'),
                attachments=(Attachment("https://example.org/a?b=1&c='2'", "audio/mpeg",
                                        title="<&>"),))
    plain_text = "]]> <script>alert(1)</script> &amp; 🎉\ufffe\r\nend"
    _, feed, page = published(encode(post), plain_text.encode(), HOSTILE.encode())
    about = About("<Alice & \"Bob\"> 🎉", "desc\x00ription ]]>")
    data = atom(feed, page, self_url=SELF + "?a=1&b=<2>", about=about)
    assert b"<script>" not in data and b"\x00" not in data
    parsed = parse_atom(data)
    binary, plain, rendered = parsed.entries
    assert rendered.content[0].value == HOSTILE_KEPT
    assert rendered.title == "t ]]> <b>x</b> 🎉"
    assert [tag.term for tag in rendered.tags] == ["<a&b>", '"q"']
    assert rendered.enclosures[0].href == "https://example.org/a?b=1&c='2'"
    assert plain.title == "]]> <script>alert(1)</script> &amp; 🎉"
    assert plain.content[0].value == "end"
    assert binary.title == "<77 bytes>"  # not plain: controls
    assert binary.content[0].value == ""
    assert parsed.feed.title == "<Alice & \"Bob\"> 🎉" and parsed.feed.subtitle == "description ]]>"
    assert {link.rel: link.href for link in parsed.feed.links}["self"] == SELF + "?a=1&b=<2>"
    doc = check_json_feed(json_feed(feed, page, self_url=SELF, about=about))
    assert [item["content_text"] for item in doc["items"]] == [
        "<77 bytes>", "]]> <script>alert(1)</script> &amp; 🎉\r\nend", HOSTILE_KEPT]
    assert doc["description"] == "description ]]>"


@settings(max_examples=examples(200), deadline=None, derandomize=True)
@given(text=st.text(), title=st.none() | st.text(
    st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=300))
def test_any_post_renders_well_formed(text: str, title: str | None) -> None:
    feed = author(1).author.feed("blog")
    book = make_book()
    book.publish(encode(Post(text, title=title)), "blog")
    page = page_of(book)
    entry = xml_entries(atom(feed, page, self_url=SELF))[0]
    strip = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
    content = entry.find(f"{ATOM}content")
    first, rest = split_title(text)
    shown = text if title is not None or not first else rest  # the title line, not twice
    assert content is not None and (content.text or "") == strip.sub("", shown)
    item = check_json_feed(json_feed(feed, page, self_url=SELF))["items"][0]
    assert item["content_text"] == strip.sub("", text)


@settings(max_examples=examples(100), deadline=None, derandomize=True)
@given(payload=st.none() | st.binary(max_size=300))
def test_any_payload_renders_in_both_formats(payload: bytes | None) -> None:
    book = make_book()
    entry = book.publish(payload or b"", "blog")
    page = [(entry, payload)]
    assert len(xml_entries(atom(entry.feed, page, self_url=SELF))) == 1
    assert len(check_json_feed(json_feed(entry.feed, page, self_url=SELF))["items"]) == 1


# -- ids, times and pages -----------------------------------------------------------------


def test_ids_are_stable_across_renders_pages_and_formats() -> None:
    book = make_book()
    for i in range(1, 8):
        book.publish(encode(Post(f"post {i}")), "blog")
    feed = book.feed("blog")
    everything = page_of(book)
    newest, older = everything[:4], everything[4:]
    ids = {}
    for page in (everything, newest, older, everything):
        for kind, data in (("atom", atom(feed, page, self_url=SELF)),
                           ("json", json_feed(feed, page, self_url=SELF))):
            found = ([e.id for e in parse_atom(data).entries] if kind == "atom"
                     else [item["id"] for item in check_json_feed(data)["items"]])
            for (entry, _), entry_id in zip(page, found, strict=True):
                assert ids.setdefault(entry.seq, entry_id) == entry_id
    assert ids == {seq: f"urn:tidings:{feed}:{seq}" for seq in range(1, 8)}
    assert atom(feed, newest, self_url=SELF) == atom(feed, newest, self_url=SELF)
    assert feed_urn(feed) == f"urn:tidings:{feed}"


def test_each_page_is_updated_at_its_newest_entry_and_links_the_next() -> None:
    book = make_book()
    for i in range(1, 6):
        book.publish(encode(Post(f"post {i}")), "blog")
    feed = book.feed("blog")
    everything = page_of(book)
    older = SELF + "?before=3"
    first = parse_atom(atom(feed, everything[:3], self_url=SELF, next_url=older))
    last = parse_atom(atom(feed, everything[3:], self_url=older))
    assert first.feed.updated == rfc3339(T0 + 4 * MINUTE)
    assert last.feed.updated == rfc3339(T0 + 1 * MINUTE)
    assert [link.href for link in first.feed.links if link.rel == "next"] == [older]
    assert not [link for link in last.feed.links if link.rel == "next"]
    assert check_json_feed(json_feed(feed, everything[:3], self_url=SELF,
                                     next_url=older))["next_url"] == older


@pytest.mark.parametrize(("timestamp", "text"), [
    (0, "1970-01-01T00:00:00Z"),
    (T0, "2023-11-14T22:13:20Z"),
    (T0 + 1, "2023-11-14T22:13:20.000001Z"),
    (T0 + 500_000, "2023-11-14T22:13:20.500000Z"),
    (253_402_300_799_999_999, "9999-12-31T23:59:59.999999Z"),
    (2**64 - 1, "9999-12-31T23:59:59.999999Z"),  # past RFC 3339's last year
])
def test_times_are_rfc3339_utc(timestamp: int, text: str) -> None:
    assert rfc3339(timestamp) == text
    assert RFC3339.fullmatch(text)
    assert datetime.fromisoformat(text.replace("Z", "+00:00")).utcoffset() == timedelta(0)


def test_far_future_timestamps_render() -> None:
    book = make_book(start=2**64 - 10 * MINUTE)
    book.publish(encode(Post("from the future")), "blog")
    page = page_of(book)
    parsed = parse_atom(atom(book.feed("blog"), page, self_url=SELF))
    assert parsed.entries[0].updated == "9999-12-31T23:59:59.999999Z"


def test_entries_of_another_feed_are_refused() -> None:
    _, feed, page = published(encode(Post("hi")))
    with pytest.raises(UsageError):
        atom(author(2).author.feed("blog"), page, self_url=SELF)
    with pytest.raises(UsageError):
        json_feed(feed.author.feed("other"), page, self_url=SELF)


# -- corrections, entry pages and the stylesheet (spec/feeds.md §5, §5.1, §7) -------------

TOMBSTONES = "{http://purl.org/atompub/tombstones/1.0}"


def test_corrections_show_in_both_formats() -> None:
    _, feed, page = published(
        encode(Post("helo", title="First")), encode(Post("doomed")), encode(Post("kept")),
        encode(Replace(1, Post("hello", title="First, fixed"))), encode(Retract(2)))
    data = atom(feed, page, self_url=SELF)
    parsed = parse_atom(data)
    # Corrections are no entries; the retracted entry is a tombstone; ids stay.
    assert [e.id for e in parsed.entries] == [entry_urn(feed, 3), entry_urn(feed, 1)]
    fixed = parsed.entries[1]
    assert (fixed.title, fixed.content[0].value) == ("First, fixed", "hello")
    assert fixed.published == rfc3339(T0) and fixed.updated == rfc3339(T0 + 3 * MINUTE)
    tombstones = ET.fromstring(data).findall(f"{TOMBSTONES}deleted-entry")
    assert [(t.get("ref"), t.get("when")) for t in tombstones] == [
        (entry_urn(feed, 2), rfc3339(T0 + 4 * MINUTE))]
    assert parsed.feed.updated == rfc3339(T0 + 4 * MINUTE)  # the retraction's time
    doc = check_json_feed(json_feed(feed, page, self_url=SELF))
    assert [item["id"] for item in doc["items"]] == [entry_urn(feed, 3), entry_urn(feed, 1)]
    item = doc["items"][1]
    assert item["title"] == "First, fixed" and item["content_text"] == "hello"
    assert item["date_published"] == rfc3339(T0)
    assert item["date_modified"] == rfc3339(T0 + 3 * MINUTE)
    assert item["_tidings"]["replaced_by"] == 4
    assert item["_tidings"]["hash"] == page[-1][0].hash.hex()  # the entry's own


def test_corrections_after_the_page_apply_to_it() -> None:
    _, feed, everything = published(encode(Post("one")), encode(Post("two")),
                                       encode(Retract(1)), encode(Replace(2, Post("2"))))
    older, later = everything[2:], everything[:2]  # the page of entries 1 and 2
    entries = parse_atom(atom(feed, older, self_url=SELF, later=later)).entries
    assert [(e.id, e.content[0].value) for e in entries] == [(entry_urn(feed, 2), "")]
    assert [e.title for e in entries] == ["2"]
    # Without the entries after it, the page shows what it holds.
    assert len(parse_atom(atom(feed, older, self_url=SELF)).entries) == 2
    with pytest.raises(UsageError):
        atom(feed, older, self_url=SELF, later=page_of(make_other_book()))


def make_other_book() -> Logbook:
    other = Logbook(MemoryStore(), author(2))
    other.publish(b"x", "blog")
    return other


def test_entries_link_to_their_pages_and_feeds_to_the_stylesheet() -> None:
    _, feed, page = published(encode(Post("hi")),
                              encode(LinkShare("https://example.org/a", "A", "see")))
    data = atom(feed, page, self_url=SELF, html_url="https://g.example/feeds/x",
                entry_url=lambda seq: f"https://g.example/feeds/x/{seq}",
                stylesheet="https://g.example/assets/atom.xsl?token=a&b")
    assert data.splitlines()[1] == (b'<?xml-stylesheet type="text/xsl" '
                                    b'href="https://g.example/assets/atom.xsl?token=a&amp;b"?>')
    share, post = parse_atom(data).entries
    assert post.link == "https://g.example/feeds/x/1"  # the entry's page is its link
    assert share.link == "https://g.example/feeds/x/2"
    assert [(link.rel, link.href) for link in share.links] == [
        ("alternate", "https://g.example/feeds/x/2"), ("related", "https://example.org/a")]
    assert share.id == entry_urn(feed, 2)  # ids never change
    items = check_json_feed(json_feed(feed, page, self_url=SELF,
                                      entry_url=lambda seq: f"../x/{seq}"))["items"]
    assert [(i["url"], i.get("external_url")) for i in items] == [
        ("../x/2", "https://example.org/a"), ("../x/1", None)]


def test_rss_gives_the_logs_show_fields_as_podcast_apps_read_them() -> None:
    """A log described as a show (content.md §6.3): language, category, explicit
    flag and artwork reach feedparser and gPodder's podcastparser."""
    import io

    import podcastparser

    from tidings.content import LogAbout
    from tidings.http.syndication import rss

    book = make_book()
    book.publish(encode(Post("Episode 1", attachments=(EPISODE,))), "podcast")
    feed = book.feed("podcast")
    artwork = blob_id_of(b"\x89PNG artwork")
    show = LogAbout("podcast", "Maths aloud", "Sums, spoken.", language="pt-BR",
                    category="Science/Mathematics", explicit=True, artwork=artwork)
    about = About("Alice", "Teaches maths.", avatar="https://example.org/alice.png",
                  logs=(show,))
    body = rss(feed, page_of(book, "podcast"), self_url="https://f.example.org/p.rss",
               about=about, blob_url=lambda blob, media: f"https://f.example.org/b/{blob}")
    parsed = feedparser.parse(body)
    assert not parsed.bozo, parsed.bozo_exception
    assert parsed.feed.title == "Maths aloud" and parsed.feed.language == "pt-BR"
    assert parsed.feed.image.href == f"https://f.example.org/b/{artwork}"
    root = ET.fromstring(body)
    itunes = "{http://www.itunes.com/dtds/podcast-1.0.dtd}"
    channel = root.find("channel")
    assert channel is not None
    [category] = channel.findall(f"{itunes}category")
    assert category.get("text") == "Science"
    assert [c.get("text") for c in category] == ["Mathematics"]
    # "yes": Apple and podcastparser read it as explicit, and feedparser reads nothing
    # else as explicit (its "true" is None).
    assert channel.findtext(f"{itunes}explicit") == "yes"
    assert parsed.feed.itunes_explicit is True
    podcast = podcastparser.parse("https://f.example.org/p.rss", io.BytesIO(body))
    assert podcast["description"] == "Sums, spoken."
    assert podcast["explicit"] is True
    assert podcast["cover_url"] == f"https://f.example.org/b/{artwork}"

    # Without show fields: the author's avatar, no language, not explicit.
    plain = rss(feed, page_of(book, "podcast"), self_url="https://f.example.org/p.rss",
                about=About("Alice", avatar="https://example.org/alice.png"))
    parsed = feedparser.parse(plain)
    assert parsed.feed.image.href == "https://example.org/alice.png"
    assert "language" not in parsed.feed and b"<itunes:explicit>false<" in plain
    assert not parsed.feed.itunes_explicit  # (feedparser: None, "not explicit")
    assert podcastparser.parse("https://f.example.org/p.rss",
                               io.BytesIO(plain))["explicit"] is False
    assert b"itunes:category" not in plain


@pytest.mark.parametrize(("head", "extension", "media_type"), [
    (b"\x89PNG\r\n\x1a\n", ".png", "image/png"),
    (b"\xff\xd8\xff\xe0", ".jpg", "image/jpeg"),
    (b"RIFF\0\0\0\0WEBPVP8 ", ".webp", "image/webp"),
])
async def test_the_gateways_artwork_url_has_the_blobs_own_type(
        tmp_path: Any, head: bytes, extension: str, media_type: str) -> None:
    """A show's artwork is a blob id without a type: the gateway's URL for it takes the
    extension of what the blob's first bytes are (apps go by it), and serves that type."""
    import io

    import podcastparser

    from tests.http_client import collected
    from tidings import Identity, SqliteStore
    from tidings.content import LogAbout
    from tidings.http.gateway import PublicFeeds
    from tidings.http.server import Request
    from tidings.storage.blobs import BlobStore

    book = Logbook(SqliteStore(tmp_path / "s.sqlite3"), Identity.generate())
    with BlobStore(tmp_path / "blobs") as blobs:
        artwork = blobs.import_bytes(head + bytes(100_000))
        show = LogAbout("podcast", "Maths aloud", artwork=artwork)
        book.publish(encode(About("Alice", logs=(show,))), "about")
        book.publish(encode(Post("Episode 1", attachments=(EPISODE,))), "podcast")
        feed = book.feed("podcast")
        gateway = PublicFeeds(book.store, "https://f.example.org", blobs=blobs)

        def get(path: str) -> Request:
            return Request("GET", path, path, {}, {"host": "x"}, b"", ("127.0.0.1", 1))

        body = (await collected(await gateway(get(f"/feeds/{feed}.rss")))).body
        url = f"https://f.example.org/feeds/{feed}/blobs/{artwork}{extension}"
        assert feedparser.parse(body).feed.image.href == url
        assert podcastparser.parse("x", io.BytesIO(body))["cover_url"] == url
        served = await collected(await gateway(get(url.removeprefix("https://f.example.org"))))
        assert served.status == 200 and served.content_type == media_type
        assert served.body.startswith(head)

        # Not held (yet): no extension rather than a wrong one.
        blobs.remove(artwork)
        body = (await collected(await gateway(get(f"/feeds/{feed}.rss")))).body
        assert feedparser.parse(body).feed.image.href == \
            f"https://f.example.org/feeds/{feed}/blobs/{artwork}"
    book.store.close()
