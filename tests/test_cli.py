"""The ``tidings`` command line, run as a real subprocess on real homes.

Exit codes: 0 success, 1 bad data (verification failed, damaged bundle), 2 the
command cannot run as asked. Bad input gets one ``tidings: ...`` line on stderr
and never a traceback; every run here checks the latter.
"""

from __future__ import annotations

import base64
import json
import os
import re
import sqlite3
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tidings import AuthorId, FeedId, Identity
from tidings.content import Post, encode
from tidings.storage.sqlite import SEQ_MASK

#: Every test here starts real processes (see tests/conftest.py).
pytestmark = pytest.mark.system

SUBCOMMANDS = [
    "init", "whoami", "publish", "show", "feeds", "export", "import", "verify",
    "delete-payload", "forks",
]
HASH_RE = re.compile(r"[0-9a-f]{64}")
#: The CBOR header of a version-1 bundle: ["tidings-bundle", 1].
BUNDLE_HEADER = b"\x82\x6etidings-bundle\x01"


@dataclass
class Result:
    code: int
    out: str
    err: str
    raw_out: bytes

    @property
    def err_lines(self) -> list[str]:
        return self.err.splitlines()

    def json_lines(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.out.splitlines()]


def _env(env_home: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TIDINGS_HOME"}
    if env_home is not None:
        env["TIDINGS_HOME"] = str(env_home)
    return env


def tidings(
    home: Path | None,
    *args: str,
    stdin: bytes | None = None,
    env_home: Path | None = None,
) -> Result:
    """Run the CLI; ``home`` None leaves out --home (for $TIDINGS_HOME)."""
    argv = [sys.executable, "-m", "tidings"]
    if home is not None:
        argv += ["--home", str(home)]
    proc = subprocess.run(
        [*argv, *args], input=stdin if stdin is not None else b"",
        capture_output=True, env=_env(env_home), timeout=120,
    )
    result = Result(
        proc.returncode,
        proc.stdout.decode("utf-8", errors="replace"),
        proc.stderr.decode("utf-8", errors="replace"),
        proc.stdout,
    )
    assert "Traceback" not in result.err, result.err
    assert "Traceback" not in result.out, result.out
    return result


def ok(result: Result) -> Result:
    assert result.code == 0, f"exit {result.code}: {result.err}"
    return result


def usage_error(result: Result, *needles: str) -> Result:
    """Exit 2, one ``tidings:`` line on stderr naming the problem, nothing on stdout."""
    assert result.code == 2, f"exit {result.code}: {result.err}"
    assert len(result.err_lines) == 1, result.err
    assert result.err.startswith("tidings: "), result.err
    for needle in needles:
        assert needle in result.err, result.err
    assert result.out == ""
    return result


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "h"
    ok(tidings(path, "init"))
    return path


def author_of(home: Path) -> AuthorId:
    return AuthorId.parse(ok(tidings(home, "whoami")).out.strip())


def stranger_feed() -> FeedId:
    return Identity.generate().author.feed("main")


def mistype(feed: FeedId) -> str:
    """The feed id with one character of its key part changed (keeps the alphabet)."""
    text = str(feed)
    position = len("tf1") + 20
    for replacement in "abcdefghijklmnopqrstuvwxyz234567":
        if replacement == text[position]:
            continue
        candidate = text[:position] + replacement + text[position + 1:]
        try:
            FeedId.parse(candidate)
        except ValueError:
            return candidate
    raise AssertionError("every one-character change still parsed")


@dataclass
class Record:
    entry_start: int
    entry_len: int
    payload_start: int | None
    payload_len: int


def _bstr(data: bytes, at: int) -> tuple[int, int]:
    """The (start, length) of the CBOR byte string whose head is at ``at``."""
    head = data[at]
    assert head >> 5 == 2, f"no byte string at {at}"
    info = head & 0x1F
    if info < 24:
        return at + 1, info
    size = 1 << (info - 24)
    return at + 1 + size, int.from_bytes(data[at + 1:at + 1 + size], "big")


def parse_bundle(data: bytes) -> list[Record]:
    """The entry records of a bundle (spec/07-bundles.md), parsed independently."""
    assert data.startswith(BUNDLE_HEADER)
    at, records = len(BUNDLE_HEADER), []
    while at < len(data):
        assert data[at:at + 2] == b"\x83\x00", f"not an entry record at {at}"
        entry_start, entry_len = _bstr(data, at + 2)
        at = entry_start + entry_len
        if data[at] == 0xF6:
            records.append(Record(entry_start, entry_len, None, 0))
            at += 1
        else:
            payload_start, payload_len = _bstr(data, at)
            records.append(Record(entry_start, entry_len, payload_start, payload_len))
            at = payload_start + payload_len
    return records


def publish_lines(home: Path, lines: list[bytes], *extra: str) -> Result:
    return ok(tidings(home, "publish", "--lines", *extra, stdin=b"".join(x + b"\n" for x in lines)))


# -- help -------------------------------------------------------------------


def test_help_for_the_program_and_every_subcommand(tmp_path: Path) -> None:
    top = ok(tidings(tmp_path / "h", "--help"))
    assert top.out.startswith("usage: tidings")
    for name in SUBCOMMANDS:
        assert name in top.out
        sub = ok(tidings(tmp_path / "h", name, "--help"))
        assert sub.out.startswith(f"usage: tidings {name}"), sub.out
    assert ok(tidings(tmp_path / "h", "--version")).out.startswith("tidings ")
    # --help touches nothing.
    assert not (tmp_path / "h").exists()


def test_no_subcommand_is_a_usage_error(tmp_path: Path) -> None:
    result = tidings(tmp_path / "h", stdin=b"")
    assert result.code == 2
    assert "usage:" in result.err


# -- init and whoami ----------------------------------------------------------


def test_init_creates_home_and_private_key_and_keeps_it(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "h"
    first = ok(tidings(path, "init"))
    author = AuthorId.parse(first.out.strip())
    assert path.is_dir()
    key = path / "secret.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0
    key_text = key.read_text()

    second = ok(tidings(path, "init"))
    assert AuthorId.parse(second.out.strip()) == author
    assert "already" in second.err
    assert key.read_text() == key_text
    again = ok(tidings(path, "init", "--json")).json_lines()
    assert again == [{"author": str(author), "home": str(path), "created": False}]

    assert ok(tidings(path, "whoami")).out == f"{author}\n"
    assert ok(tidings(path, "whoami", "--json")).json_lines() == [
        {"author": str(author), "home": str(path)}
    ]


def test_init_json_reports_created(tmp_path: Path) -> None:
    [obj] = ok(tidings(tmp_path / "h", "init", "--json")).json_lines()
    assert obj["created"] is True
    assert obj["author"] == str(author_of(tmp_path / "h"))


def test_tidings_home_environment_variable(tmp_path: Path) -> None:
    env_home = tmp_path / "from-env"
    created = ok(tidings(None, "init", env_home=env_home))
    author = AuthorId.parse(created.out.strip())
    assert (env_home / "secret.key").exists()
    assert ok(tidings(None, "whoami", env_home=env_home)).out.strip() == str(author)
    published = ok(tidings(None, "publish", "via env", env_home=env_home))
    # The same home through --home sees what was published through the variable.
    [entry] = ok(tidings(env_home, "show", "main", "--json")).json_lines()
    assert entry["payload"] == "via env"
    assert published.out.split()[2] == entry["hash"]
    # --home wins over $TIDINGS_HOME.
    other = tmp_path / "other"
    ok(tidings(other, "init", env_home=env_home))
    assert ok(tidings(other, "whoami", env_home=env_home)).out.strip() != str(author)


# -- publish and show ---------------------------------------------------------


def test_publish_text_prints_feed_seq_hash(home: Path) -> None:
    author = author_of(home)
    first = ok(tidings(home, "publish", "hello"))
    feed_text, seq, digest = first.out.split()
    assert FeedId.parse(feed_text) == author.feed("main")
    assert seq == "1"
    assert HASH_RE.fullmatch(digest)
    second = ok(tidings(home, "publish", "héllo ✓"))
    assert second.out.split()[:2] == [feed_text, "2"]

    entries = ok(tidings(home, "show", feed_text, "--json")).json_lines()
    assert [e["seq"] for e in entries] == [1, 2]
    assert [e["hash"] for e in entries] == [digest, second.out.split()[2]]
    assert entries[0]["payload"] == "hello"
    assert entries[1]["payload"] == "héllo ✓"
    assert entries[1]["payload_size"] == len("héllo ✓".encode())
    for entry in entries:
        assert entry["author"] == str(author)
        assert entry["log"] == "main"
        assert isinstance(entry["timestamp"], int) and entry["timestamp"] > 0
    assert entries[0]["timestamp"] <= entries[1]["timestamp"]


def test_publish_to_a_named_log(home: Path) -> None:
    author = author_of(home)
    result = ok(tidings(home, "publish", "--log", "notes", "a note"))
    assert FeedId.parse(result.out.split()[0]) == author.feed("notes")
    [entry] = ok(tidings(home, "show", "notes", "--json")).json_lines()
    assert entry["log"] == "notes"
    assert entry["payload"] == "a note"
    # The default log is untouched.
    usage_error(tidings(home, "show", "main"), "not in this store")


def test_publish_binary_file_shows_as_base64(home: Path, tmp_path: Path) -> None:
    data = bytes(range(256)) * 3 + b"\xff\xfe"
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    # Without --binary the bytes are refused: they are not text.
    usage_error(tidings(home, "publish", "--file", str(path)), "not UTF-8 text", "--binary")
    ok(tidings(home, "publish", "--binary", "--file", str(path)))
    [entry] = ok(tidings(home, "show", "main", "--json")).json_lines()
    assert entry["payload_size"] == len(data)
    assert entry["payload_encoding"] == "base64"
    assert base64.b64decode(str(entry["payload"])) == data
    text = ok(tidings(home, "show", "main")).out
    assert f"(binary, {len(data)} B)" in text
    # "--file -" reads the payload from standard input.
    ok(tidings(home, "publish", "--binary", "--file", "-", stdin=data[::-1]))
    entries = ok(tidings(home, "show", "main", "--json")).json_lines()
    assert base64.b64decode(str(entries[1]["payload"])) == data[::-1]


def test_publish_lines_makes_one_entry_a_line(home: Path) -> None:
    lines = [f"line {i}".encode() for i in range(1, 25)] + ["ünïcode".encode()]
    result = publish_lines(home, lines)
    feed_text, span, digest = result.out.split()
    assert span == "25"  # the last seq: other writers may interleave
    entries = ok(tidings(home, "show", feed_text, "--json")).json_lines()
    assert [e["seq"] for e in entries] == list(range(1, 26))
    assert [e["payload"] for e in entries] == [line.decode() for line in lines]
    assert entries[-1]["hash"] == digest
    # More lines continue the log.
    assert publish_lines(home, [b"more"]).out.split()[1] == "26"


def test_publish_lines_from_empty_stdin_publishes_nothing(home: Path) -> None:
    result = ok(tidings(home, "publish", "--lines", stdin=b""))
    assert result.out == ""
    assert ok(tidings(home, "feeds")).out == ""


def test_end_of_log_refuses_more(home: Path) -> None:
    ok(tidings(home, "publish", "first"))
    ended = ok(tidings(home, "publish", "--end", "last words"))
    assert ended.out.split()[1] == "2"
    usage_error(tidings(home, "publish", "after the end"), "ended")
    usage_error(tidings(home, "publish", "--lines", stdin=b"x\n"), "ended")
    entries = ok(tidings(home, "show", "main", "--json")).json_lines()
    assert [e["end_of_log"] for e in entries] == [False, True]
    # Other logs still take entries.
    ok(tidings(home, "publish", "--log", "other", "fine"))


def test_show_since_and_limit(home: Path) -> None:
    publish_lines(home, [f"n{i}".encode() for i in range(1, 11)])

    def seqs(*args: str) -> list[object]:
        return [e["seq"] for e in ok(tidings(home, "show", "main", "--json", *args)).json_lines()]

    assert seqs() == list(range(1, 11))
    assert seqs("--since", "7") == [7, 8, 9, 10]
    assert seqs("--limit", "3") == [8, 9, 10]
    assert seqs("--since", "3", "--limit", "2") == [3, 4]
    assert seqs("--since", "11") == []
    text = ok(tidings(home, "show", "main", "--since", "10")).out.splitlines()
    assert len(text) == 1
    assert text[0].split()[0] == "10" and text[0].endswith("n10")


def test_show_pages_through_a_long_feed(home: Path) -> None:
    count = 2345
    publish_lines(home, [f"{i}".encode() for i in range(1, count + 1)])
    entries = ok(tidings(home, "show", "main", "--json")).json_lines()
    assert [e["seq"] for e in entries] == list(range(1, count + 1))
    assert [e["payload"] for e in entries] == [str(i) for i in range(1, count + 1)]
    some = ok(tidings(home, "show", "main", "--json", "--since", "50", "--limit", "1200"))
    assert [e["seq"] for e in some.json_lines()] == list(range(50, 1250))
    latest = ok(tidings(home, "show", "main", "--json", "--limit", "1001")).json_lines()
    assert [e["seq"] for e in latest] == list(range(count - 1000, count + 1))


def test_feeds_json(home: Path) -> None:
    author = author_of(home)
    publish_lines(home, [b"a", b"b", b"c"])
    ok(tidings(home, "publish", "--log", "notes", "x"))
    feeds = ok(tidings(home, "feeds", "--json")).json_lines()
    by_log = {f["log"]: f for f in feeds}
    assert set(by_log) == {"main", "notes"}
    assert by_log["main"]["latest_seq"] == 3
    assert by_log["notes"]["latest_seq"] == 1
    for info in feeds:
        assert info["mine"] is True
        assert info["author"] == str(author)
        assert info["forked_at"] is None
        assert FeedId.parse(str(info["feed"])) == author.feed(str(info["log"]))


# -- export, import, verify ---------------------------------------------------


@pytest.fixture
def exported(home: Path, tmp_path: Path) -> tuple[str, Path, list[dict[str, object]]]:
    """A feed of 10 entries (one binary) exported to a bundle file.

    Four appends (1-4, 5, 6-9, 10): entries 4, 5, 9 and 10 are signed.
    """
    for first, last in ((1, 4), (5, 5), (6, 9)):
        publish_lines(home, [f"entry {i}".encode() for i in range(first, last + 1)])
    blob = tmp_path / "blob.bin"
    blob.write_bytes(b"\x00\xff" * 50)
    feed_text = ok(tidings(home, "publish", "--binary", "--file", str(blob))).out.split()[0]
    bundle = tmp_path / "feed.bundle"
    result = ok(tidings(home, "export", feed_text, "-o", str(bundle)))
    assert "10 entries" in result.err
    assert not bundle.with_name(bundle.name + ".part").exists()
    entries = ok(tidings(home, "show", feed_text, "--json")).json_lines()
    return feed_text, bundle, entries


def _second_home(tmp_path: Path) -> Path:
    other = tmp_path / "second"
    ok(tidings(other, "init"))
    return other


def test_export_then_import_into_a_second_home(
    exported: tuple[str, Path, list[dict[str, object]]], tmp_path: Path
) -> None:
    feed_text, bundle, entries = exported
    other = _second_home(tmp_path)
    [imported] = ok(tidings(other, "import", str(bundle), "--json")).json_lines()
    assert imported["added"] == 10
    assert imported["duplicates"] == 0
    assert imported["error"] is None
    assert imported["feeds"] == [feed_text]
    assert ok(tidings(other, "show", feed_text, "--json")).json_lines() == entries
    verified = ok(tidings(other, "verify", "--json")).json_lines()
    assert [(v["feed"], v["entries"], v["ok"]) for v in verified] == [(feed_text, 10, True)]
    assert "ok" in ok(tidings(other, "verify", feed_text)).out
    [info] = ok(tidings(other, "feeds", "--json")).json_lines()
    assert info["mine"] is False and info["latest_seq"] == 10

    again = ok(tidings(other, "import", str(bundle)))
    assert "0 new entries (10 already held" in again.err
    [again_json] = ok(tidings(other, "import", str(bundle), "--json")).json_lines()
    assert (again_json["added"], again_json["duplicates"]) == (0, 10)
    # Exporting the import gives the same bytes.
    copy = tmp_path / "copy.bundle"
    ok(tidings(other, "export", feed_text, "-o", str(copy)))
    assert copy.read_bytes() == bundle.read_bytes()


def _stored_seqs(home: Path, feed_text: str) -> list[object]:
    result = tidings(home, "show", feed_text, "--json")
    if result.code == 2 and "not in this store" in result.err:
        return []
    return [e["seq"] for e in ok(result).json_lines()]


@pytest.mark.parametrize(
    ("where", "rule"), [("signature", "bad-signature"), ("payload", "payload-hash-mismatch")]
)
def test_tampered_bundle_stores_the_valid_prefix_only(
    exported: tuple[str, Path, list[dict[str, object]]], tmp_path: Path, where: str, rule: str
) -> None:
    feed_text, bundle, entries = exported
    data = bytearray(bundle.read_bytes())
    records = parse_bundle(bytes(data))
    assert len(records) == 10
    fifth = records[4]
    if where == "signature":
        data[fifth.entry_start + fifth.entry_len - 1] ^= 0x01  # last byte of the signature
    else:
        assert fifth.payload_start is not None and fifth.payload_len > 0
        data[fifth.payload_start] ^= 0x01
    bad = tmp_path / "tampered.bundle"
    bad.write_bytes(bytes(data))

    other = _second_home(tmp_path)
    result = tidings(other, "import", str(bad))
    assert result.code == 1, result.err
    assert "seq 5" in result.err
    assert rule in result.err
    assert _stored_seqs(other, feed_text) == [1, 2, 3, 4]
    stored = ok(tidings(other, "show", feed_text, "--json")).json_lines()
    assert stored == entries[:4]
    ok(tidings(other, "verify"))

    [report] = tidings(other, "import", str(bad), "--json").json_lines()
    error = report["error"]
    assert isinstance(error, dict)
    assert (error["rule"], error["seq"], error["feed"]) == (rule, 5, feed_text)
    assert (report["added"], report["duplicates"]) == (0, 4)


def test_truncated_bundle_stores_the_complete_records_before_the_cut(
    exported: tuple[str, Path, list[dict[str, object]]], tmp_path: Path
) -> None:
    feed_text, bundle, entries = exported
    data = bundle.read_bytes()
    records = parse_bundle(data)
    cut = records[5].entry_start + 10  # inside the 6th entry
    short = tmp_path / "short.bundle"
    short.write_bytes(data[:cut])

    other = _second_home(tmp_path)
    result = tidings(other, "import", str(short))
    assert result.code == 1, result.err
    assert "truncated" in result.err
    # The CLI says "everything before it was verified and stored": so it must be.
    # (Entries 1-5 are complete and vouched for by 5's signature.)
    assert _stored_seqs(other, feed_text) == [1, 2, 3, 4, 5]
    assert ok(tidings(other, "show", feed_text, "--json")).json_lines() == entries[:5]
    ok(tidings(other, "verify"))


def test_a_file_that_is_not_a_bundle(home: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.txt"
    junk.write_text("this is not a bundle\n" * 10)
    result = tidings(home, "import", str(junk))
    assert result.code == 1, result.err
    assert "not a tidings bundle" in result.err
    assert ok(tidings(home, "feeds")).out == ""
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert tidings(home, "import", str(empty)).code == 1


def test_verify_after_deleting_a_payload(home: Path) -> None:
    publish_lines(home, [b"one", b"two", b"three"])
    ok(tidings(home, "delete-payload", "main", "2"))
    [report] = ok(tidings(home, "verify", "--json")).json_lines()
    assert (report["entries"], report["payloads"], report["ok"]) == (3, 2, True)
    entries = ok(tidings(home, "show", "main", "--json")).json_lines()
    assert [e["payload"] for e in entries] == ["one", None, "three"]
    assert "(payload not held, 3 B)" in ok(tidings(home, "show", "main")).out
    usage_error(tidings(home, "delete-payload", "main", "2"), "no payload at seq 2")


def test_verify_reports_a_damaged_store_with_exit_1(home: Path) -> None:
    publish_lines(home, [b"one", b"two", b"three"])
    db = sqlite3.connect(home / "store.sqlite3")
    with db:
        changed = db.execute("UPDATE entries SET payload = ? WHERE key & ? = 2",
                             (b"TWO", SEQ_MASK)).rowcount
    db.close()
    assert changed == 1
    result = tidings(home, "verify")
    assert result.code == 1
    assert "FAILED" in result.out
    assert "seq 2" in result.err and "payload-hash-mismatch" in result.err


def test_secret_key_is_never_printed(home: Path, tmp_path: Path) -> None:
    key_text = (home / "secret.key").read_text()
    encoded = key_text.split()[1]
    seed = base64.b32decode(encoded.upper() + "=" * (-len(encoded) % 8))
    secrets = [encoded, encoded.upper(), seed.hex(), base64.b64encode(seed).decode()]
    bundle = tmp_path / "b.bundle"
    results = [
        tidings(home, "init"), tidings(home, "init", "--json"),
        tidings(home, "whoami"), tidings(home, "whoami", "--json"),
        tidings(home, "publish", "x"), tidings(home, "publish", "--json", "y"),
        tidings(home, "show", "main"), tidings(home, "show", "main", "--json"),
        tidings(home, "feeds"), tidings(home, "feeds", "--json"),
        tidings(home, "export", "main", "-o", str(bundle)), tidings(home, "verify", "--json"),
        tidings(home, "forks"), tidings(home, "publish"), tidings(home, "--help"),
    ]
    chmod_home = tmp_path / "loose"
    ok(tidings(chmod_home, "init"))
    (chmod_home / "secret.key").chmod(0o644)
    results.append(tidings(chmod_home, "whoami"))
    for result in results:
        for secret in secrets:
            assert secret not in result.out and secret not in result.err
            assert secret.encode() not in result.raw_out
    assert seed not in bundle.read_bytes()


# -- bad input: one line, exit 2, no traceback ----------------------------------


def test_unknown_feed_id(home: Path) -> None:
    stranger = str(stranger_feed())
    usage_error(tidings(home, "show", stranger), "not in this store")
    usage_error(tidings(home, "export", stranger, "-o", str(home / "x.bundle")),
                "not in this store")
    usage_error(tidings(home, "verify", stranger), "not in this store")
    usage_error(tidings(home, "delete-payload", stranger, "1"))
    assert not (home / "x.bundle").exists()


def test_mistyped_feed_id(home: Path) -> None:
    feed_text = ok(tidings(home, "publish", "x")).out.split()[0]
    typo = mistype(FeedId.parse(feed_text))
    for args in (["show", typo], ["export", typo, "-o", str(home / "x")], ["verify", typo]):
        usage_error(tidings(home, *args), "checksum")
    usage_error(tidings(home, "show", "tf1short_main"), "not a feed id")
    # An author id is not a feed id: still one line and exit 2.
    usage_error(tidings(home, "show", str(author_of(home))))


@pytest.mark.parametrize(
    "args", [["whoami"], ["publish", "text"], ["show", "main"], ["feeds"], ["verify"],
             ["following"], ["forks"], ["about"], ["about", "--name", "A"], ["watch"],
             ["export", "main", "-o", "x.bundle"], ["edit", "main", "1", "x"]],
    ids=lambda args: "-".join(args),
)
def test_missing_home(tmp_path: Path, args: list[str]) -> None:
    missing = tmp_path / "nowhere"
    usage_error(tidings(missing, *args), "tidings init")
    assert not missing.exists()


def test_nonexistent_import_file(home: Path, tmp_path: Path) -> None:
    usage_error(tidings(home, "import", str(tmp_path / "no-such.bundle")), "cannot read")


def test_export_to_an_unwritable_path(home: Path, tmp_path: Path) -> None:
    ok(tidings(home, "publish", "x"))
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    target = blocker / "out.bundle"  # fails even for root: a file is not a directory
    usage_error(tidings(home, "export", "main", "-o", str(target)), "cannot write")
    missing_dir = tmp_path / "no-such-dir" / "out.bundle"
    usage_error(tidings(home, "export", "main", "-o", str(missing_dir)), "cannot write")
    assert not missing_dir.parent.exists()


def test_publish_with_nothing_to_publish(home: Path, tmp_path: Path) -> None:
    usage_error(tidings(home, "publish"), "exactly one of")
    usage_error(tidings(home, "publish", "text", "--lines", stdin=b"x\n"), "exactly one of")
    usage_error(tidings(home, "publish", "--lines", "--end", stdin=b"x\n"), "--end")
    usage_error(tidings(home, "publish", "--file", str(tmp_path / "absent")), "cannot read")
    big = tmp_path / "big"
    big.write_bytes(b"x" * ((1 << 20) + 1))
    usage_error(tidings(home, "publish", "--file", str(big)), "at most")
    usage_error(tidings(home, "publish", "--log", "Bad Name!", "x"), "log id")
    assert ok(tidings(home, "feeds")).out == ""


def test_show_unknown_log_name(home: Path) -> None:
    usage_error(tidings(home, "show", "never-used"), "not in this store")
    usage_error(tidings(home, "show", "NOT A NAME"), "neither a feed id")


def test_key_readable_by_others_is_refused(home: Path) -> None:
    (home / "secret.key").chmod(0o644)
    usage_error(tidings(home, "whoami"), "chmod 600")
    usage_error(tidings(home, "publish", "x"), "chmod 600")


def test_argument_errors_exit_2(home: Path) -> None:
    for args in (["show", "main", "--since", "0"], ["show", "main", "--limit", "x"],
                 ["delete-payload", "main", "-1"], ["export", "main"], ["no-such-command"]):
        result = tidings(home, *args)
        assert result.code == 2, args
        assert "error:" in result.err_lines[-1]
        assert result.out == ""


def test_init_where_the_home_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    usage_error(tidings(blocker / "h", "init"))


def test_store_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "h"
    ok(tidings(path, "init"))
    (path / "store.sqlite3").write_bytes(b"this is not an SQLite database. " * 64)
    for suffix in ("-wal", "-shm"):
        (path / f"store.sqlite3{suffix}").unlink(missing_ok=True)
    usage_error(tidings(path, "feeds"))


def test_import_into_a_new_home_needs_no_identity(home: Path, tmp_path: Path) -> None:
    """A relay keeps others' feeds: import makes its home and store, not a key."""
    ok(tidings(home, "publish", "for the relay"))
    bundle = tmp_path / "x.bundle"
    ok(tidings(home, "export", "main", "-o", str(bundle)))
    relay = tmp_path / "relay"
    ok(tidings(relay, "import", str(bundle)))
    assert not (relay / "secret.key").exists()
    assert stat.S_IMODE(relay.stat().st_mode) == 0o700
    assert ok(tidings(relay, "verify")).out.count(" ok") == 1


def test_non_utf8_argument_is_refused_and_published_as_its_bytes_with_binary(
        home: Path) -> None:
    argv = [sys.executable, "-m", "tidings", "--home", str(home), "publish", b"\xff\xfe"]
    done = subprocess.run(argv, capture_output=True, env=_env(), timeout=60)  # type: ignore[list-item]
    assert done.returncode == 2 and b"not UTF-8 text" in done.stderr, done.stderr
    assert ok(tidings(home, "feeds")).out == ""  # nothing was published
    done = subprocess.run([*argv[:-1], "--binary", argv[-1]], capture_output=True,  # type: ignore[list-item]
                          env=_env(), timeout=60)
    assert done.returncode == 0, done.stderr
    shown = ok(tidings(home, "show", "main", "--json")).json_lines()
    assert shown[-1]["payload"] == base64.b64encode(b"\xff\xfe").decode()


def test_show_escapes_terminal_control_characters(home: Path, tmp_path: Path) -> None:
    hostile = "a\x1b]0;title\x07b\rc"
    # Text with control characters is refused: readers would show it as binary.
    usage_error(tidings(home, "publish", hostile), "control characters", "--binary")
    ok(tidings(home, "publish", "--binary", hostile))
    # A post's text may hold them (content allows it): show escapes them.
    path = tmp_path / "post.cbor"
    path.write_bytes(encode(Post("x\n" + hostile)))
    ok(tidings(home, "publish", "--binary", "--file", str(path)))
    out = ok(tidings(home, "show", "main")).out
    assert "\x1b" not in out and "\x07" not in out and "\r" not in out
    assert f"(binary, {len(hostile)} B)" in out
    assert "a\\x1b]0;title\\x07b\\rc" in out


def test_publish_lines_reports_what_was_published_before_a_long_line(home: Path) -> None:
    lines = b"".join(b"%d\n" % i for i in range(1500)) + b"x" * (2**20 + 1) + b"\nafter\n"
    result = tidings(home, "publish", "--lines", stdin=lines)
    usage_error(result, "line 1501", "published lines 1-1500", "last seq 1500")
    assert len(ok(tidings(home, "show", "main", "--json")).json_lines()) == 1500


@pytest.mark.parametrize("name", ["secret.key", "config.toml"])
def test_a_directory_where_a_file_belongs(home: Path, name: str) -> None:
    (home / name).unlink()
    (home / name).mkdir()
    usage_error(tidings(home, "publish", "x"), name)


def test_two_processes_publishing_to_one_home(home: Path) -> None:
    argv = [sys.executable, "-m", "tidings", "--home", str(home), "publish", "--lines"]
    writers = [
        subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=_env())
        for _ in range(2)
    ]
    for number, writer in enumerate(writers):
        assert writer.stdin is not None
        writer.stdin.write(b"".join(b"w%d %d\n" % (number, i) for i in range(3000)))
        writer.stdin.close()
    for writer in writers:
        assert writer.wait(timeout=120) == 0, writer.stderr.read() if writer.stderr else ""
    entries = ok(tidings(home, "show", "main", "--json")).json_lines()
    assert [e["seq"] for e in entries] == list(range(1, 6001))
    for number in range(2):  # each writer's lines keep their order
        mine = [e["payload"] for e in entries if str(e["payload"]).startswith(f"w{number} ")]
        assert mine == [f"w{number} {i}" for i in range(3000)]
    assert ok(tidings(home, "verify")).out.count(" ok") == 1


def test_concurrent_init_and_first_open_agree(tmp_path: Path) -> None:
    """Several processes creating one home (key, config, store) at once."""
    target = tmp_path / "fresh"
    argv = [sys.executable, "-m", "tidings", "--home", str(target), "init"]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
             for _ in range(4)]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert b"Traceback" not in err
        outputs.append(out.strip())
    assert len(set(outputs)) == 1
    assert ok(tidings(target, "whoami")).out.strip().encode() == outputs[0]
    assert sorted(p.name for p in target.iterdir() if not p.name.startswith("store")) == [
        "api.token", "config.toml", "secret.key",
    ]
    assert (target / "api.token").stat().st_mode & 0o777 == 0o600


def test_a_reader_that_goes_away_is_not_an_error(home: Path) -> None:
    ok(tidings(home, "publish", "x"))
    env = {k: v for k, v in _env().items() if k != "PYTHONUNBUFFERED"}
    for args in (["show", "main"], ["feeds"], ["whoami"]):
        proc = subprocess.Popen(
            [sys.executable, "-m", "tidings", "--home", str(home), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        )
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # like `| head -0`
        err = proc.stderr.read()
        assert proc.wait(timeout=60) == 0, err
        assert b"Traceback" not in err and b"Exception ignored" not in err


def test_interrupted_publish_lines_says_what_is_durable(home: Path) -> None:
    import signal
    import time

    argv = [sys.executable, "-m", "tidings", "--home", str(home), "publish", "--lines"]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
    assert proc.stdin is not None and proc.stderr is not None
    proc.stdin.write(b"".join(b"%d\n" % i for i in range(2500)))
    proc.stdin.flush()  # stdin stays open: the CLI waits for more after two batches
    store = home / "store.sqlite3"
    deadline = time.monotonic() + 600  # a hang guard: a loaded machine may take long
    count = 0
    while count < 2000:
        assert time.monotonic() < deadline, f"only {count} entries published"
        time.sleep(0.05)
        db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
        try:
            count = db.execute("SELECT count(*) FROM entries").fetchone()[0]
        finally:
            db.close()
    proc.send_signal(signal.SIGINT)
    err = proc.stderr.read().decode()
    proc.stdin.close()
    assert proc.wait(timeout=60) == 130
    assert "published lines 1-2000 (last seq 2000)" in err, err
    assert "Traceback" not in err


def test_a_ctrl_c_inside_a_step_waits_for_the_step() -> None:
    """sigint_deferred: a SIGINT that comes inside the block (taken by whichever thread
    the kernel picks: a store's checkpointer may be one) raises only once it ends."""
    import os
    import signal
    import threading

    from tidings.cli.common import sigint_deferred

    steps: list[str] = []
    with pytest.raises(KeyboardInterrupt), sigint_deferred():
        other = threading.Thread(target=os.kill, args=(os.getpid(), signal.SIGINT))
        other.start()
        other.join()
        for _ in range(1000):  # (bytecodes: where a KeyboardInterrupt would land)
            steps.append("x")
        steps.append("done")
    assert steps[-1] == "done"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
