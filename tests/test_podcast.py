"""A podcast app's view of the gateway (issue 14, Must show 5): RSS 2.0 with the
iTunes tags, enclosures served from blobs with Range, ETag and 304.

`tidings serve-feeds` runs as a real process on a real home; the feed is read by
feedparser and by gPodder's podcastparser, and the episode is fetched the way
players do (a probe of the first bytes, then ranges).
"""

from __future__ import annotations

import http.client
import io
import json
import os
import urllib.parse
from pathlib import Path

import feedparser
import podcastparser
import pytest

from tests.test_cli import ok, tidings
from tests.test_status_cli import serving_feeds
from tidings.core.content import About, encode
from tidings.node.home import Home
from tidings.storage.blobs import BlobStore

pytestmark = pytest.mark.system


def _get(url: str, headers: dict[str, str] | None = None, method: str = "GET"
         ) -> tuple[int, dict[str, str], bytes]:
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.request(method, parts.path + (f"?{parts.query}" if parts.query else ""),
                           headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, \
            response.read()
    finally:
        connection.close()


def test_a_podcast_app_reads_the_rss_and_plays_the_episode_with_ranges(tmp_path: Path
                                                                       ) -> None:
    home = tmp_path / "h"
    ok(tidings(home, "init"))
    book = Home(home).open_logbook()
    try:
        book.publish(encode(About("Ada Lovelace", "Notes on the Analytical Engine.",
                                  avatar="https://example.org/ada.png")), "about")
    finally:
        book.store.close()
    episode = tmp_path / "looms.mp3"
    data = b"ID3" + os.urandom(3_000_000)
    episode.write_bytes(data)
    published = ok(tidings(home, "publish", "--log", "podcast", "--attach", str(episode),
                           "Show notes: the engine weaves algebra.", "--json"))
    line = published.json_lines()[0]
    feed = str(line["feed"])  # type: ignore[index]
    with BlobStore.in_home(home) as blobs:  # held by the node, attached to no post
        secret = blobs.import_bytes(b"%PDF-1.7 " + os.urandom(1000))
    base_url = "http://podcasts.example.org"
    with serving_feeds(home, "127.0.0.1:0", "--base-url", base_url) as (base, _, log):
        status, headers, body = _get(f"{base}feeds/{feed}.rss")
        assert status == 200 and headers["content-type"].startswith("application/rss+xml")

        parsed = feedparser.parse(body)
        assert not parsed.bozo, parsed.bozo_exception
        assert parsed.version == "rss20"
        assert parsed.feed.title == "Ada Lovelace"
        assert parsed.feed.image.href == "https://example.org/ada.png"
        [item] = parsed.entries
        [enclosure] = item.enclosures
        assert enclosure.type == "audio/mpeg" and int(enclosure.length) == len(data)
        assert enclosure.href.startswith(f"{base_url}/feeds/{feed}/blobs/tb1")
        assert enclosure.href.endswith(".mp3")
        assert item.link == f"{base_url}/feeds/{feed}/1"  # a real http(s) link

        podcast = podcastparser.parse(f"{base}feeds/{feed}.rss", io.BytesIO(body))
        assert podcast["title"] == "Ada Lovelace"
        assert podcast["description"] == "Notes on the Analytical Engine."
        [ep] = podcast["episodes"]
        [media] = ep["enclosures"]
        assert (media["url"], media["mime_type"], media["file_size"]) == (
            enclosure.href, "audio/mpeg", len(data))
        assert ep["guid"] == f"urn:tidings:{feed}:1"

        # The player: the enclosure from this gateway (the base URL is the public one).
        url = base + enclosure.href.removeprefix(base_url + "/")
        status, headers, first = _get(url, {"Range": "bytes=0-1"})  # Apple's probe
        assert (status, first) == (206, data[:2])
        assert headers["content-range"] == f"bytes 0-1/{len(data)}"
        assert headers["accept-ranges"] == "bytes"
        etag = headers["etag"]
        status, headers, middle = _get(url, {"Range": "bytes=1000000-1999999"})
        assert (status, middle) == (206, data[1_000_000:2_000_000])
        assert headers["content-length"] == "1000000"
        status, _, tail = _get(url, {"Range": "bytes=-100"})
        assert (status, tail) == (206, data[-100:])
        status, headers, whole = _get(url)
        assert (status, whole) == (200, data)
        assert headers["content-type"] == "audio/mpeg"
        status, headers, _ = _get(url, {"If-None-Match": etag})
        assert status == 304 and headers["etag"] == etag
        status, _, _ = _get(url, {"If-Modified-Since": headers["last-modified"]})
        assert status == 304
        status, headers, body = _get(url, {"Range": f"bytes={len(data)}-"})
        assert status == 416 and headers["content-range"] == f"bytes */{len(data)}"
        assert json.loads(body)["error"]["code"] == "range_not_satisfiable"
        status, headers, _ = _get(url, method="HEAD")
        assert status == 200 and headers["content-length"] == str(len(data))

        # Atom and JSON Feed carry the same enclosure.
        atom = feedparser.parse(_get(f"{base}feeds/{feed}.atom")[2])
        assert atom.entries[0].enclosures[0].href == enclosure.href
        json_feed = json.loads(_get(f"{base}feeds/{feed}.json")[2])
        assert json_feed["items"][0]["attachments"][0]["url"] == enclosure.href
        # A blob of a feed this gateway does not serve is not found, like the feed.
        other = f"{base}feeds/tf1{'a' * 52}_x/blobs/" + enclosure.href.rsplit("/", 1)[1]
        assert _get(other)[0] in (400, 404)
        # A blob the node holds but the feed does not attach: not served (no probing).
        status, _, body = _get(f"{base}feeds/{feed}/blobs/{secret}.pdf")
        assert status == 404 and json.loads(body)["error"]["code"] == "not_found"
    assert "Traceback" not in log.read_text()
