"""`tidings status` and `tidings serve-feeds`: real processes on real homes.

``status`` asks the node running on a home through its local API (the address
in ``HOME/api.json``, the token in ``HOME/api.token``) and exits 3 when no node
runs. ``serve-feeds`` serves stored feeds as Atom and JSON Feed to anyone,
read-only and without a token.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import feedparser
import pytest

from tests.nodes import feed_of, running, wait_for
from tests.test_cli import _env, ok, tidings
from tidings import content as content_types
from tidings.content import Post
from tidings.node.home import Home

#: Every test here starts real processes (see tests/conftest.py).
pytestmark = pytest.mark.system

SERVING = re.compile(r"event=serving-feeds url=(http://127\.0\.0\.1:(\d+)/)")


def whoami(home: Path) -> str:
    return ok(tidings(home, "whoami")).out.strip()


def api_status(home: Path) -> dict[str, Any] | None:
    """The node's status straight from its API (cheaper than a process per poll)."""
    try:
        url = json.loads((home / "api.json").read_text())["url"]
        token = (home / "api.token").read_text().strip()
        request = urllib.request.Request(url + "/v1/status",
                                         headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())  # type: ignore[no-any-return]
    except (OSError, ValueError, KeyError):
        return None


def not_running(home: Path, *args: str) -> str:
    """`status` exits 3, prints nothing, and says to start the node; returns the message."""
    result = tidings(home, "status", *args)
    assert result.code == 3, (result.code, result.out, result.err)
    assert result.out == ""
    assert len(result.err_lines) == 1 and result.err.startswith("tidings: "), result.err
    assert "tidings up" in result.err, result.err
    return result.err


def test_status_shows_the_running_node_its_peers_feeds_and_progress(tmp_path: Path) -> None:
    author, reader = tmp_path / "author", tmp_path / "reader"
    ok(tidings(author, "init"))
    ok(tidings(author, "publish", "--log", "blog", "--lines",
               stdin=b"".join(b"line %d\n" % n for n in range(1, 21))))
    blog = feed_of(author, "blog")
    ok(tidings(reader, "init"))
    ok(tidings(reader, "follow", str(blog)))
    not_running(reader)  # nothing runs yet

    with running(author) as author_node, running(reader, "--peer", author_node.address):
        def caught_up() -> bool:
            status = api_status(reader)
            return bool(status and status["caught_up"] and status["peers"] and any(
                f["feed"] == str(blog) and f["local_seq"] == 20 for f in status["feeds"]))

        wait_for(caught_up, what="the reader to catch up")
        result = ok(tidings(reader, "status", "--json"))
        assert len(result.out.splitlines()) == 1  # one JSON object, one line
        status: dict[str, Any] = json.loads(result.out)
        assert status["author"] == whoami(reader)
        assert status["caught_up"] is True
        assert re.fullmatch(r"127\.0\.0\.1:\d+", str(status["listen"]))
        assert str(status["api"]).startswith("http://127.0.0.1:")
        [peer] = status["peers"]
        assert peer["address"] == author_node.address and peer["direction"] == "out"
        assert peer["node"].startswith(author_node.key)
        [progress] = [f for f in status["feeds"] if f["feed"] == str(blog)]
        assert progress["followed"] is True
        assert progress["local_seq"] == 20 and progress["behind"] == 0
        assert status["entries_received"] == 20

        text = ok(tidings(reader, "status")).out
        assert f"author {whoami(reader)}" in text
        assert "peers    1 connected" in text
        assert author_node.address in text
        assert "caught up" in text
        assert f"*{blog}  20" in text  # followed, and how far it is held

        # The author's side: one peer that dialed in, its own feed held, not followed.
        author_status: dict[str, Any] = json.loads(ok(tidings(author, "status", "--json")).out)
        assert author_status["author"] == whoami(author)
        assert [p["direction"] for p in author_status["peers"]] == ["in"]
        [own] = [f for f in author_status["feeds"] if f["feed"] == str(blog)]
        assert own["local_seq"] == 20 and own["followed"] is False
    # Both stopped cleanly: no node, exit 3, with or without --json.
    assert not (reader / "api.json").exists()
    assert "no node with a local API is running" in not_running(reader)
    not_running(reader, "--json")
    not_running(author)


def test_status_after_a_crash_says_the_node_does_not_answer(tmp_path: Path) -> None:
    home = tmp_path / "h"
    ok(tidings(home, "init"))
    with running(home) as node:
        wait_for(lambda: api_status(home) is not None, what="the API")
        node.proc.kill()  # SIGKILL: api.json stays behind
        node.proc.wait()
        assert (home / "api.json").exists()
        message = not_running(home)
        assert "does not answer" in message


def test_status_of_a_home_that_does_not_exist(tmp_path: Path) -> None:
    not_running(tmp_path / "nowhere")
    assert not (tmp_path / "nowhere").exists()


# -- serve-feeds ------------------------------------------------------------------------


@contextmanager
def serving_feeds(home: Path, listen: str = "127.0.0.1:0", *args: str
                  ) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    log_path = home.parent / "serve-feeds.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tidings", "--home", str(home), "serve-feeds",
             "--listen", listen, *args],
            stdout=subprocess.DEVNULL, stderr=log, env=_env())
        try:
            deadline = time.monotonic() + 30
            found = None
            while found is None:
                found = SERVING.search(log_path.read_text())
                assert proc.poll() is None or found, log_path.read_text()
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.02)
            yield found.group(1), proc, log_path
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def fetch(url: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, method=method, data=b"{}" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, \
                response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def test_serve_feeds_serves_atom_and_json_feed_without_a_token(tmp_path: Path) -> None:
    home = tmp_path / "h"
    ok(tidings(home, "init"))
    book = Home(home).open_logbook()
    try:
        for index in range(1, 4):
            book.publish(content_types.encode(Post(f"text {index}", title=f"Episode {index}")),
                         log_id="podcast")
        feed = book.feed("podcast")
    finally:
        book.store.close()

    with serving_feeds(home) as (base, proc, log_path):
        status, headers, body = fetch(f"{base}feeds/{feed}.atom")
        assert status == 200, body
        assert headers["content-type"].startswith("application/atom+xml")
        parsed = feedparser.parse(body)
        assert parsed.bozo == 0, parsed.get("bozo_exception")
        assert [e.title for e in parsed.entries] == ["Episode 3", "Episode 2", "Episode 1"]

        status, headers, body = fetch(f"{base}feeds/{feed}.json")
        assert status == 200
        assert headers["content-type"].startswith("application/feed+json")
        # feedparser 6 does not read JSON Feed (it takes it for broken XML): check its shape.
        document = json.loads(body)
        assert document["version"] == "https://jsonfeed.org/version/1.1"
        assert [i["title"] for i in document["items"]] == ["Episode 3", "Episode 2", "Episode 1"]
        # No base URL: links are relative to the document, never from the Host header.
        assert document["feed_url"] == f"../feeds/{feed}.json"

        # A later publish (another process) shows at once: the store is read per request.
        ok(tidings(home, "publish", "--log", "podcast", "a plain text entry"))
        parsed = feedparser.parse(fetch(f"{base}feeds/{feed}.atom")[2])
        assert parsed.bozo == 0 and len(parsed.entries) == 4

        # Read-only, and only feeds.
        status, headers, body = fetch(f"{base}feeds/{feed}.atom", method="POST")
        assert status == 405 and headers["allow"] == "GET, HEAD"
        assert json.loads(body)["error"]["code"] == "method_not_allowed"
        for path in ("/v1/status", f"/feeds/{feed}.xml", f"/feeds/{feed}/x", "/assets/"):
            status, _, body = fetch(base.removesuffix("/") + path)
            assert status == 404, path
            assert json.loads(body)["error"]["code"] == "not_found"
        # A feed this home does not hold.
        other = feed_of(home, "never-published")
        assert fetch(f"{base}feeds/{other}.atom")[0] == 404
        # HEAD: the headers a GET gets (a document is streamed: chunked), no body.
        status, headers, body = fetch(f"{base}feeds/{feed}.atom", method="HEAD")
        assert status == 200 and body == b"" and headers["transfer-encoding"] == "chunked"
        assert fetch(f"{base}feeds/{feed}.atom")[1]["transfer-encoding"] == "chunked"

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    log = log_path.read_text()
    assert "Traceback" not in log
    assert "stopped" in log


def test_serve_feeds_serves_only_the_homes_own_feeds_unless_told(tmp_path: Path) -> None:
    """Others' feeds a node stores (followed, relayed) are not published by default,
    and a probe cannot tell them from feeds it does not hold."""
    home, stranger = tmp_path / "h", tmp_path / "s"
    ok(tidings(home, "init"))
    ok(tidings(stranger, "init"))
    ok(tidings(home, "publish", "--log", "blog", "mine"))
    ok(tidings(stranger, "publish", "--log", "blog", "theirs"))
    ok(tidings(stranger, "export", "blog", "-o", str(tmp_path / "b.bundle")))
    ok(tidings(home, "import", str(tmp_path / "b.bundle")))
    mine, theirs = feed_of(home, "blog"), feed_of(stranger, "blog")
    with serving_feeds(home) as (base, proc, _):
        assert fetch(f"{base}feeds/{mine}.atom")[0] == 200
        status, _, body = fetch(f"{base}feeds/{theirs}.atom")
        assert status == 404 and json.loads(body)["error"]["code"] == "not_found"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    with serving_feeds(home, "127.0.0.1:0", "--feed", str(theirs)) as (base, proc, _):
        assert fetch(f"{base}feeds/{theirs}.atom")[0] == 200
        assert fetch(f"{base}feeds/{mine}.atom")[0] == 404
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    with serving_feeds(home, "127.0.0.1:0", "--all") as (base, proc, _):
        assert fetch(f"{base}feeds/{theirs}.atom")[0] == 200
        assert fetch(f"{base}feeds/{mine}.atom")[0] == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_serve_feeds_on_a_port_in_use_is_one_clear_error(tmp_path: Path) -> None:
    home = tmp_path / "h"
    ok(tidings(home, "init"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = tidings(home, "serve-feeds", "--listen", f"127.0.0.1:{port}")
    assert result.code == 2, result.err
    assert f"cannot listen on 127.0.0.1:{port}" in result.err
    assert "--listen" in result.err
