"""``tidings retract`` and ``tidings edit`` (spec/content.md §12), as real subprocesses.

What they publish is read back from the home's store through the effective
view, the way every renderer reads it.
"""

from __future__ import annotations

from pathlib import Path

from tidings import Identity, Logbook, SqliteStore
from tidings.content import LinkShare, Post, Replace, Retract, encode
from tidings.core.corrections import CORRECTION, ORIGINAL, REPLACED, RETRACTED, effective_view

from .test_cli import home, ok, tidings, usage_error

__all__ = ["home"]  # the fixture, used by name


def view(home: Path, log: str = "blog") -> dict[int, tuple[str, object]]:
    identity = Identity.load(home / "secret.key")
    book = Logbook(SqliteStore(home / "store.sqlite3"), identity)
    try:
        return {shown.entry.seq: (shown.state, shown.content)
                for shown in effective_view(book.read(book.feed(log)))}
    finally:
        book.store.close()


def publish_content(home: Path, tmp_path: Path, content: Post | LinkShare) -> None:
    path = tmp_path / "content.cbor"
    path.write_bytes(encode(content))
    ok(tidings(home, "publish", "--log", "blog", "--binary", "--file", str(path)))


def test_edit_replaces_the_text_and_keeps_the_rest(home: Path, tmp_path: Path) -> None:
    publish_content(home, tmp_path, Post("helo", title="Week 1", tags=("notes",)))
    ok(tidings(home, "publish", "--log", "blog", "plain text with a tpyo"))
    done = ok(tidings(home, "edit", "blog", "1", "hello"))
    feed, seq, _ = done.out.split()
    assert feed.endswith("_blog") and seq == "3"
    ok(tidings(home, "edit", "blog", "2", "--file", "-", "--title", "Fixed",
               stdin=b"plain text, fixed\n"))
    shown = view(home)
    assert shown[1] == (REPLACED, Post("hello", title="Week 1", tags=("notes",)))
    assert shown[2] == (REPLACED, Post("plain text, fixed\n", title="Fixed"))
    assert shown[3][0] == shown[4][0] == CORRECTION
    # A second edit replaces the original again: the newest replacement shows.
    ok(tidings(home, "edit", "blog", "1", "hello again", "--title", "Week one"))
    assert view(home)[1] == (REPLACED, Post("hello again", title="Week one", tags=("notes",)))


def test_edit_of_a_link_share_changes_its_comment(home: Path, tmp_path: Path) -> None:
    publish_content(home, tmp_path, LinkShare("https://example.org/", "Example", "old"))
    out = ok(tidings(home, "edit", "blog", "1", "new comment", "--json")).json_lines()
    assert out[0]["seq"] == 2 and out[0]["log"] == "blog"
    assert view(home)[1] == (REPLACED, LinkShare("https://example.org/", "Example",
                                                 "new comment"))


def test_retract_makes_a_tombstone_and_is_final(home: Path) -> None:
    for text in ("one", "two"):
        ok(tidings(home, "publish", "--log", "blog", text))
    ok(tidings(home, "retract", "blog", "1"))
    shown = view(home)
    assert shown[1] == (RETRACTED, None) and shown[2][0] == ORIGINAL
    usage_error(tidings(home, "retract", "blog", "1"), "was retracted", "final")
    usage_error(tidings(home, "edit", "blog", "1", "undo"), "was retracted")
    usage_error(tidings(home, "retract", "blog", "3"), "itself a correction")
    usage_error(tidings(home, "retract", "blog", "4"), "not an earlier entry")
    usage_error(tidings(home, "retract", "nothing", "1"), "no entries")


def test_corrections_are_for_your_own_entries_only(home: Path, tmp_path: Path) -> None:
    stranger = Identity.generate().author.feed("blog")
    usage_error(tidings(home, "retract", str(stranger), "1"), "not yours")
    ok(tidings(home, "follow", "--public", str(stranger)))  # a follow entry in "follows"
    usage_error(tidings(home, "retract", "follows", "1"), "a follow entry")
    ok(tidings(home, "publish", "--log", "blog", "x"))
    usage_error(tidings(home, "edit", "blog", "1"), "exactly one of TEXT or --file")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe")
    usage_error(tidings(home, "edit", "blog", "1", "--file", str(bad)), "not UTF-8")
    usage_error(tidings(home, "edit", "blog", "1", "x", "--title", "two\nlines"),
                "replace.content.title")
    assert tidings(home, "retract", "blog", "0").code == 2  # argparse: seqs start at 1


def test_what_the_commands_publish_is_the_spec_content(home: Path) -> None:
    ok(tidings(home, "publish", "--log", "blog", "x"))
    ok(tidings(home, "retract", "blog", "1"))
    ok(tidings(home, "publish", "--log", "blog", "y"))
    ok(tidings(home, "edit", "blog", "3", "z"))
    identity = Identity.load(home / "secret.key")
    book = Logbook(SqliteStore(home / "store.sqlite3"), identity)
    try:
        payloads = [payload for _, payload in book.read(book.feed("blog"))]
    finally:
        book.store.close()
    assert payloads == [b"x", encode(Retract(1)), b"y", encode(Replace(3, Post("z")))]
