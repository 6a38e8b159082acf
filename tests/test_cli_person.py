"""The command line as a person uses it: writing posts, reading them, watching live,
and the polish around it (Ctrl-C, --home anywhere, homes never made by reading).

Real subprocesses on real homes; nodes on loopback with port 0.
"""

from __future__ import annotations

import json
import queue
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tidings import FeedId, Identity, Logbook, SqliteStore
from tidings.content import About, EntryRef, LogAbout, Post, decode

from .nodes import running
from .test_cli import _env, home, ok, stranger_feed, tidings, usage_error

__all__ = ["home"]  # the fixture, used by name

pytestmark = pytest.mark.system

#: A step that takes longer than this has hung (a guard, not a timing assertion).
HANG = 60


def payloads(home: Path, log: str) -> list[bytes | None]:
    book = Logbook(SqliteStore(home / "store.sqlite3"), Identity.load(home / "secret.key"))
    try:
        return [payload for _, payload in book.read(book.feed(log))]
    finally:
        book.store.close()


# -- publish ----------------------------------------------------------------------------


def test_plain_text_stays_the_default(home: Path) -> None:
    ok(tidings(home, "publish", "just words"))
    assert payloads(home, "main") == [b"just words"]


def test_publish_a_post_with_title_tags_links_and_a_reply(home: Path) -> None:
    ok(tidings(home, "publish", "--log", "blog", "first"))
    out = ok(tidings(home, "publish", "--log", "blog", "--title", "Week 1", "--tag", "notes",
                     "--tag", "intro", "--link", "https://example.org/a", "--link",
                     "https://example.org/b", "--reply-to", "blog:1", "See you there."))
    feed = FeedId.parse(out.out.split()[0])
    assert decode(payloads(home, "blog")[1]) == Post(
        "See you there.", title="Week 1", links=("https://example.org/a", "https://example.org/b"),
        tags=("notes", "intro"), reply_to=EntryRef(feed, 1))
    # A reply to another author's entry names it by feed id.
    other = stranger_feed()
    ok(tidings(home, "publish", "--reply-to", f"{other}:7", "indeed"))
    assert decode(payloads(home, "main")[0]) == Post("indeed", reply_to=EntryRef(other, 7))


@pytest.mark.parametrize(("args", "needles"), [
    (["publish", ""], ["blank"]),
    (["publish", " \n\t "], ["blank"]),
    (["publish", "--tag", "x", ""], ["post is empty"]),
    (["publish", "--link", "javascript:alert(1)", "hi"], ["post.links[0]", "http"]),
    (["publish", "--tag", "t" * 65, "hi"], ["post.tags[0]"]),
    (["publish", "--reply-to", "blog", "hi"], ["FEED:SEQ"]),
    (["publish", "--binary", "--title", "T", "hi"], ["--binary"]),
    (["publish", "--lines", "--tag", "x"], ["--lines"]),
])
def test_refused_posts_publish_nothing(home: Path, args: list[str], needles: list[str]) -> None:
    usage_error(tidings(home, *args), *needles)
    assert ok(tidings(home, "feeds")).out == ""


def test_publish_lines_refuses_blank_and_non_text_lines(home: Path) -> None:
    usage_error(tidings(home, "publish", "--lines", stdin=b"one\n\nthree\n"),
                "line 2 is blank", "published lines 1-1")
    usage_error(tidings(home, "publish", "--lines", stdin=b"\xff\n"), "line 1", "UTF-8")
    ok(tidings(home, "publish", "--lines", "--binary", stdin=b"\xff\n\n"))
    assert payloads(home, "main") == [b"one", b"\xff", b""]


def test_a_post_from_a_file(home: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("Show notes\n\nIn this episode...\n")
    ok(tidings(home, "publish", "--log", "podcast", "--title", "Episode 1", "--file",
               str(tmp_path / "notes.txt")))
    assert decode(payloads(home, "podcast")[0]) == Post("Show notes\n\nIn this episode...\n",
                                                        title="Episode 1")
    (tmp_path / "latin1.txt").write_bytes("grüße".encode("latin-1"))
    usage_error(tidings(home, "publish", "--file", str(tmp_path / "latin1.txt")),
                "latin1.txt is not UTF-8 text", "--binary")


# -- show -------------------------------------------------------------------------------


def test_show_reads_posts_as_a_person_does(home: Path) -> None:
    ok(tidings(home, "publish", "--log", "blog", "--title", "Week 1", "--tag", "notes",
               "--link", "https://example.org/", "What a feed is.\nA second line."))
    ok(tidings(home, "publish", "--log", "blog", "Untitled\n\nThe rest of it."))
    out = ok(tidings(home, "show", "blog")).out.splitlines()
    assert out[0].split()[0] == "1" and out[0].endswith("Week 1")
    assert [line.strip() for line in out[1:5]] == [
        "What a feed is.", "A second line.", "link: https://example.org/", "tags: #notes"]
    # The first line of untitled text is its headline, never shown twice.
    assert out[5].endswith("  Untitled") and out[6].strip() == "The rest of it."
    assert len(out) == 7


def test_show_honours_corrections(home: Path) -> None:
    for text in ("first", "second", "third"):
        ok(tidings(home, "publish", "--log", "blog", text))
    ok(tidings(home, "edit", "blog", "1", "first, fixed"))
    ok(tidings(home, "retract", "blog", "2"))
    out = ok(tidings(home, "show", "blog")).out.splitlines()
    assert len(out) == 3  # the corrections are not entries to read
    assert "first, fixed" in out[0] and "[edited" in out[0] and "entry 4]" in out[0]
    assert "(retracted by its author" in out[1] and "second" not in out[1]
    assert out[2].endswith("third")
    shown = ok(tidings(home, "show", "blog", "--json")).json_lines()
    assert [e["state"] for e in shown] == ["replaced", "retracted", "original", "correction",
                                           "correction"]
    assert shown[0]["content"] == {"type": "post", "text": "first, fixed"}
    assert shown[0]["corrected_by"] == 4 and shown[1]["content"] is None
    # A page of the feed still sees corrections after it.
    limited = ok(tidings(home, "show", "blog", "--since", "1", "--limit", "1")).out
    assert "first, fixed" in limited


def test_posts_made_through_the_api_read_as_posts(tmp_path: Path) -> None:
    home = tmp_path / "app"
    with running(home, "--api", "127.0.0.1:0"):
        api = json.loads((home / "api.json").read_text())["url"]
        token = (home / "api.token").read_text().strip()
        import urllib.request

        body = json.dumps({"log": "blog", "content": {
            "type": "post", "text": "hello from the API", "title": "Hi"}}).encode()
        request = urllib.request.Request(f"{api}/v1/publish", data=body, headers={
            "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=HANG) as response:
            assert response.status == 201
    out = ok(tidings(home, "show", "blog")).out
    assert "Hi" in out and "hello from the API" in out and "binary" not in out


# -- about ------------------------------------------------------------------------------


def test_about_names_the_author_and_each_log(home: Path) -> None:
    usage_error(tidings(home, "about", "--log", "blog", "--name", "Notebook"), "--name")
    ok(tidings(home, "about", "--name", "Alice", "--description", "Teaches maths."))
    ok(tidings(home, "about", "--log", "blog", "--name", "Alice's notebook",
               "--description", "Weekly."))
    ok(tidings(home, "about", "--log", "podcast", "--name", "Maths aloud"))
    ok(tidings(home, "about", "--name", "Alice B."))  # the logs stay named
    assert decode(payloads(home, "about")[-1]) == About(
        "Alice B.", "Teaches maths.",
        logs=(LogAbout("blog", "Alice's notebook", "Weekly."), LogAbout("podcast", "Maths aloud")))
    shown = ok(tidings(home, "about")).out
    assert "Alice B." in shown and "log blog: Alice's notebook" in shown
    assert ok(tidings(home, "about", "--json")).json_lines()[0]["logs"][1]["log"] == "podcast"
    ok(tidings(home, "about", "--log", "podcast", "--name", ""))  # '' removes; none left
    assert decode(payloads(home, "about")[-1]).logs == (  # type: ignore[union-attr]
        LogAbout("blog", "Alice's notebook", "Weekly."),)
    # The gateway titles the log's feed by its name.
    feed = ok(tidings(home, "publish", "--log", "blog", "x")).out.split()[0]
    from tidings.http.syndication import feed_title
    from tidings.storage.sqlite import SqliteStore as Store

    store = Store(home / "store.sqlite3")
    try:
        from tidings.http.feedview import about_of

        assert feed_title(FeedId.parse(feed), about_of(store, FeedId.parse(feed))) == \
            "Alice's notebook"
    finally:
        store.close()


def test_about_describes_a_log_as_a_podcast_show(home: Path) -> None:
    usage_error(tidings(home, "about", "--language", "en"), "--log")
    ok(tidings(home, "about", "--name", "Alice"))
    ok(tidings(home, "about", "--log", "podcast", "--name", "Maths aloud", "--language",
               "en", "--category", "Science/Mathematics", "--explicit", "--artwork",
               "https://example.org/art.jpg"))
    assert decode(payloads(home, "about")[-1]).logs == (  # type: ignore[union-attr]
        LogAbout("podcast", "Maths aloud", language="en", category="Science/Mathematics",
                 explicit=True, artwork="https://example.org/art.jpg"),)
    assert "category Science/Mathematics" in ok(tidings(home, "about")).out
    ok(tidings(home, "about", "--log", "podcast", "--no-explicit", "--language", ""))
    [show] = decode(payloads(home, "about")[-1]).logs  # type: ignore[union-attr]
    assert (show.explicit, show.language, show.name) == (False, None, "Maths aloud")
    bad = tidings(home, "about", "--log", "podcast", "--language", "English!")
    assert bad.code != 0 and "language" in bad.err
    usage_error(tidings(home, "about", "--log", "podcast", "--artwork", "tb1nope"), "blob")


# -- polish -----------------------------------------------------------------------------


def test_home_is_accepted_after_the_subcommand(tmp_path: Path) -> None:
    home = tmp_path / "h"
    ok(tidings(None, "init", "--home", str(home)))
    ok(tidings(None, "publish", "hello", "--home", str(home)))
    assert "hello" in ok(tidings(None, "show", "main", "--home", str(home))).out
    # After the subcommand wins over before it.
    other = tmp_path / "other"
    ok(tidings(other, "init", "--home", str(home)))
    assert not other.exists()


def test_follow_takes_your_own_log_names(home: Path) -> None:
    feed = ok(tidings(home, "publish", "--log", "blog", "x")).out.split()[0]
    assert ok(tidings(home, "follow", "blog")).out.strip() == f"following {feed}"
    assert ok(tidings(home, "following")).out.split() == [feed]
    usage_error(tidings(home, "follow", "No Such Log"), "neither a feed id")


@pytest.mark.parametrize("value", ["garbage", "127.0.0.1", "127.0.0.1:99999", "bad host:1",
                                   "::1"])
def test_a_malformed_listen_address_is_named_as_such(home: Path, value: str) -> None:
    for command, flag in (("up", "--listen"), ("up", "--api"), ("serve-feeds", "--listen")):
        done = tidings(home, command, flag, value)
        assert done.code == 2, done.err
        assert "HOST:PORT" in done.err or "neither an IP address" in done.err, done.err
        assert "resol" not in done.err and "another port" not in done.err


def test_read_commands_never_create_a_home(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    for args in (["following"], ["feeds"], ["show", "main"], ["status"], ["about"],
                 ["watch"], ["forks"], ["verify"]):
        done = tidings(missing, *args)
        assert done.code in (2, 3), (args, done.err)
        assert len(done.err_lines) == 1, done.err
        assert not missing.exists(), args


def test_fetch_without_a_home_reads_and_leaves_no_home(tmp_path: Path) -> None:
    author, missing = tmp_path / "author", tmp_path / "nowhere"
    ok(tidings(author, "init"))
    blog = ok(tidings(author, "publish", "--log", "blog", "hello from the author")).out.split()[0]
    with running(author) as node:
        done = ok(tidings(missing, "fetch", blog, "--peer", node.address, "--latest", "1",
                          "--timeout", str(HANG)))
    assert "hello from the author" in done.out
    assert not missing.exists()


def test_sync_tells_a_peer_without_the_feed_from_caught_up(tmp_path: Path) -> None:
    author, reader = tmp_path / "author", tmp_path / "reader"
    ok(tidings(author, "init"))
    blog = ok(tidings(author, "publish", "--log", "blog", "x")).out.split()[0]
    absent = str(stranger_feed())
    ok(tidings(reader, "follow", absent))
    with running(author) as node:
        done = tidings(reader, "sync", "--peer", node.address, "--timeout", str(HANG))
        assert done.code == 1, done.err
        assert "holds none of the 1 followed feed" in done.err and "caught up" not in done.out
        ok(tidings(reader, "follow", blog))
        done = ok(tidings(reader, "sync", "--peer", node.address, "--timeout", str(HANG)))
        assert done.out.splitlines() == [
            f"caught up with {node.address}: 1 new entries, 1 followed feeds",
            f"{node.address} holds none of {absent}"]
        again = ok(tidings(reader, "sync", "--peer", node.address, "--json"))
        assert again.json_lines()[0]["peer_holds_none"] == [absent]


def _interrupt(proc: subprocess.Popen[bytes]) -> tuple[int, str]:
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=HANG)
    return proc.returncode, err.decode()


def test_ctrl_c_in_sync_exits_130_with_one_line(tmp_path: Path) -> None:
    reader = tmp_path / "reader"
    ok(tidings(reader, "follow", str(stranger_feed())))
    # A peer that accepts and never speaks: the sync waits in its handshake.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        proc = subprocess.Popen(
            [sys.executable, "-m", "tidings", "--home", str(reader), "sync", "--peer",
             f"127.0.0.1:{port}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
        silent.settimeout(HANG)
        connection, _ = silent.accept()  # the sync is inside its trio run now
        with connection:
            code, err = _interrupt(proc)
    assert code == 130, err
    assert err == "tidings: interrupted\n"


@pytest.mark.parametrize(("args", "ready"), [
    (["up", "--listen", "127.0.0.1:0", "--no-lan", "--no-api"], b"event=ready"),
    (["serve-feeds", "--listen", "127.0.0.1:0"], b"event=serving-feeds"),
], ids=["up", "serve-feeds"])
def test_ctrl_c_in_a_server_exits_130_without_a_traceback(
        home: Path, args: list[str], ready: bytes) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "tidings", "--home", str(home), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env())
    assert proc.stderr is not None
    for line in iter(proc.stderr.readline, b""):
        if ready in line:
            break
    code, err = _interrupt(proc)
    assert code == 130, err
    assert "Traceback" not in err and "stopped" in err


# -- watch ------------------------------------------------------------------------------


def _lines(proc: subprocess.Popen[bytes]) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in iter(proc.stdout.readline, b""):
            lines.put(line.decode())

    threading.Thread(target=pump, daemon=True).start()
    return lines


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "h"
    ok(tidings(home, "init"))
    with running(home, "--api", "127.0.0.1:0"):
        yield home


def _watch(home: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "tidings", "--home", str(home), "watch",
                             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=_env())


def test_watch_follows_new_entries_and_resumes_where_it_stopped(watched: Path) -> None:
    ok(tidings(watched, "publish", "--log", "blog", "--title", "First", "the text"))
    proc = _watch(watched, "--from-start")
    lines = _lines(proc)
    assert lines.get(timeout=HANG).rstrip().endswith("  First")
    assert lines.get(timeout=HANG).strip() == "the text"
    ok(tidings(watched, "publish", "--log", "blog", "live one"))  # arrives while watching
    assert lines.get(timeout=HANG).rstrip().endswith("  live one")
    code, err = _interrupt(proc)
    assert code == 130 and err == "tidings: interrupted\n", err
    assert (watched / "watch.cursor").exists()
    ok(tidings(watched, "publish", "--log", "blog", "while away"))
    proc = _watch(watched)  # resumes after "live one"
    lines = _lines(proc)
    assert lines.get(timeout=HANG).rstrip().endswith("  while away")
    _interrupt(proc)


def test_watch_without_a_running_node_says_so(home: Path) -> None:
    done = tidings(home, "watch")
    assert done.code == 3 and "tidings up" in done.err


def test_tab_completion_names_commands_and_flags(tmp_path: Path) -> None:
    pytest.importorskip("argcomplete")
    out = tmp_path / "completions"
    for line, expected in (("tidings pub", "publish"), ("tidings publish --ti", "--title"),
                           ("tidings show --home x --li", "--limit")):
        env = _env() | {"_ARGCOMPLETE": "1", "COMP_LINE": line, "COMP_POINT": str(len(line)),
                        "_ARGCOMPLETE_STDOUT_FILENAME": str(out)}
        done = subprocess.run([sys.executable, "-m", "tidings"], env=env, capture_output=True,
                              timeout=HANG)
        assert done.returncode == 0, done.stderr
        assert out.read_text().split() == [expected]
