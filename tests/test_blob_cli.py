"""`tidings publish --attach` and `tidings blob ...` without a node (spec/13 §7)."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest

from tests.test_cli import ok, tidings, usage_error
from tidings.core.blob import blob_id_of
from tidings.core.content import Post, decode
from tidings.core.media import duration_of, media_type_of
from tidings.node.home import Home

pytestmark = pytest.mark.system  # (the CLI in real processes)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    ok(tidings(home, "init"))
    return home


def test_a_file_over_the_payload_bound_gets_its_true_size_and_a_pointer_to_attach(
        home: Path, tmp_path: Path) -> None:
    """Issue 14, Must show 6: the 2 MB file of the report."""
    path = tmp_path / "slides.pdf"
    path.write_bytes(b"%PDF-" + bytes(2_000_000 - 5))
    result = usage_error(tidings(home, "publish", "--file", str(path)),
                         "2,000,000 bytes", "--attach")
    assert "1048577" not in result.err


def test_publish_attach_stores_the_blob_and_writes_a_post_naming_it(
        home: Path, tmp_path: Path) -> None:
    data = b"ID3" + os.urandom(300_000)
    path = tmp_path / "episode-1.mp3"
    path.write_bytes(data)
    result = ok(tidings(home, "publish", "--log", "podcast", "--attach", str(path),
                        "Episode 1", "--json"))
    [line] = result.json_lines()
    attachment = line["attachments"][0]  # type: ignore[index]
    assert attachment["blob"] == str(blob_id_of(data))
    assert (attachment["media_type"], attachment["size"]) == ("audio/mpeg", len(data))
    shown = ok(tidings(home, "show", "podcast", "--json")).json_lines()[0]
    import base64

    post = decode(base64.b64decode(shown["payload"]))  # type: ignore[arg-type]
    assert isinstance(post, Post) and post.text == "Episode 1"
    assert post.attachments[0].blob == blob_id_of(data)
    listed = [json.loads(x) for x in ok(tidings(home, "blob", "ls", "--json")).out.splitlines()]
    assert listed == [{"blob": str(blob_id_of(data)), "size": len(data), "chunks": 5,
                       "held": 5, "complete": True, "pinned": True,
                       "disk_bytes": listed[0]["disk_bytes"]}]


def test_blob_get_pin_unpin_rm(home: Path, tmp_path: Path) -> None:
    data = os.urandom(200_000)
    path = tmp_path / "paper.pdf"
    path.write_bytes(data)
    ok(tidings(home, "publish", "--attach", str(path)))
    blob = str(blob_id_of(data))
    out = tmp_path / "copy.pdf"
    ok(tidings(home, "blob", "get", blob, "-o", str(out)))
    assert out.read_bytes() == data
    ok(tidings(home, "blob", "unpin", blob))
    assert json.loads(ok(tidings(home, "blob", "ls", "--json")).out)["pinned"] is False
    ok(tidings(home, "blob", "pin", blob))
    assert json.loads(ok(tidings(home, "blob", "ls", "--json")).out)["pinned"] is True
    ok(tidings(home, "blob", "rm", blob))
    assert ok(tidings(home, "blob", "ls")).out == ""
    # The post stays valid without its blob; getting it now says what to do.
    ok(tidings(home, "verify"))
    missing = tidings(home, "blob", "get", blob, "-o", str(out))
    assert missing.code == 1 and "tidings up" in missing.err
    bad = tidings(home, "blob", "get", "tb1nonsense_3", "-o", str(out))
    assert bad.code == 2 and "not a blob id" in bad.err


def test_media_types_and_durations_where_cheap(tmp_path: Path) -> None:
    wav = b"RIFF" + bytes(4) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, 8000, 16000,
                                                          2, 16) + b"data" + struct.pack(
        "<I", 16000 * 90)
    assert media_type_of("x", wav) == "audio/wav"
    assert duration_of("audio/wav", wav, len(wav) + 16000 * 90) == 90
    mp3 = bytes([0xFF, 0xFB, 0x90, 0x00])  # MPEG-1 layer III, 128 kbit/s
    assert duration_of(media_type_of("x", mp3), mp3, 128_000 // 8 * 60) == 60
    assert media_type_of("x.pdf", b"%PDF-1.7") == "application/pdf"
    assert media_type_of("talk.m4a", b"\0\0\0\x20ftypM4A ") == "audio/mp4"
    assert media_type_of("notes.txt", b"hello") == "text/plain"
    assert media_type_of("blob", b"\0\1") == "application/octet-stream"


def test_the_home_config_takes_blob_settings(home: Path) -> None:
    config = home / "config.toml"
    config.write_text(config.read_text().replace(
        "[node]\n", '[node]\nblob_fetch = "none"\nblob_quota = "2GiB"\n', 1).replace(
        "[blob_feeds]\n", '[blob_feeds]\n"tf1aaaa" = "all"\n', 1))
    with pytest.raises(Exception, match="blob_feeds"):
        Home(home).node_options()
    config.write_text(config.read_text().replace('"tf1aaaa" = "all"\n', ""))
    options = Home(home).node_options()
    assert (options.blob_fetch, options.blob_quota) == (0, 2 * 1024**3)
