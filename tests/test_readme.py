"""The README's command-line walk-through runs as written."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

#: Every test here starts real processes (see tests/conftest.py).
pytestmark = pytest.mark.system

README = Path(__file__).resolve().parents[1] / "README.md"


def run_sh_block(
    heading: str, tmp_path: Path, *, python: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run the first ``sh`` block under ``heading`` as a bash script, in ``tmp_path``.

    With ``python``, a leading ``python`` is the interpreter running the tests.
    """
    text = README.read_text()
    block = re.search(r"```sh\n(.*?)```", text[text.index(heading):], re.S)
    assert block is not None
    script = block.group(1)
    if python:
        script = re.sub(r"^python ", f"{sys.executable} ", script, flags=re.M)
    env = {k: v for k, v in os.environ.items() if k != "TIDINGS_HOME"}
    # the `tidings` script sits beside the interpreter running the tests
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["TMPDIR"] = str(tmp_path)
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done


def test_the_cli_walk_through_runs(tmp_path: Path) -> None:
    done = run_sh_block("## The command line", tmp_path)
    assert "_notes  10000" in done.stdout  # the relay's `feeds`


def test_the_node_walk_through_runs(tmp_path: Path) -> None:
    done = run_sh_block("## The node", tmp_path)
    assert "Traceback" not in (tmp_path / "author.log").read_text()
    lines = done.stdout.splitlines()
    assert any(re.fullmatch(r"caught up with 127\.0\.0\.1:\d+: 100 new entries, "
                            r"1 followed feeds", line) for line in lines)
    assert any(line.split()[0] == "98" for line in lines)  # fetch --latest 3 starts at 98
    assert re.search(r"^[0-9a-f]{64}$", done.stdout, re.M)  # network new
    assert lines[-1] == "2"  # the author's node saw the sync and the fetch


def test_the_gateway_walk_through_runs(tmp_path: Path) -> None:
    done = run_sh_block("## Feeds for people and feed readers", tmp_path)
    index, text, feed_page, entry_page, media = done.stdout.splitlines()[-5:]
    assert re.fullmatch(r'<h2><a href="\./feeds/tf1\w+_blog"><bdi>blog by ta1\w+</bdi></a></h2>',
                        index), index
    assert text == "The first entry of this blog."
    link = r'<link rel="alternate" type="text/html" href="\.\./feeds/tf1\w+_blog{}"/>'
    assert re.fullmatch(link.format(""), feed_page), feed_page
    assert re.fullmatch(link.format("/1"), entry_page), entry_page  # the entry's page: its link
    assert media == "application/xml; charset=utf-8"  # what a browser renders


def test_the_import_feed_walk_through_runs(tmp_path: Path) -> None:
    done = run_sh_block("## Bringing a blog or a podcast", tmp_path)
    assert done.stdout.splitlines()[-2:] == ["1\tFirst post", "2\tSecond post"]
    assert "imported 2 new items" in done.stderr
    assert "imported 0 new items" in done.stderr  # the second run


def test_the_simulator_command_runs(tmp_path: Path) -> None:
    done = run_sh_block("## Simulating a network", tmp_path, python=True)
    assert "converged in" in done.stdout, done.stdout
    assert "redundancy" in done.stdout


def run_python_block(heading: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run the first ``python`` block under ``heading``, in ``tmp_path``."""
    text = README.read_text()
    block = re.search(r"```python\n(.*?)```", text[text.index(heading):], re.S)
    assert block is not None
    env = {k: v for k, v in os.environ.items() if k != "TIDINGS_HOME"}
    done = subprocess.run(
        [sys.executable, "-c", block.group(1)], cwd=tmp_path, capture_output=True, text=True,
        timeout=120, env=env,
    )
    assert done.returncode == 0, done.stderr
    return done


def test_the_library_snippet_runs(tmp_path: Path) -> None:
    run_python_block("## The library", tmp_path)
    assert (tmp_path / "relay.sqlite3").exists()


def test_the_embedding_snippet_sees_the_post_arrive(tmp_path: Path) -> None:
    done = run_python_block("## Embedding tidings in an app", tmp_path)
    feed, seq, content = done.stdout.split(" ", 2)
    assert feed.startswith("tf1") and feed.endswith("_blog") and seq == "1"
    assert content.startswith("Post(text='Week 1: what a feed is'"), content
    assert (tmp_path / "alice" / "api.token").stat().st_mode & 0o777 == 0o600


def test_the_http_api_walk_through_runs(tmp_path: Path) -> None:
    done = run_sh_block("## The local HTTP API", tmp_path)
    published = json.loads((tmp_path / "published.json").read_text())
    assert published["seq"] == 1 and published["content"]["text"] == "hello from curl"
    entries = json.loads(done.stdout.splitlines()[0])["entries"]
    assert [e["content"]["text"] for e in entries] == ["hello from curl"]
    assert "401" in done.stdout.splitlines()
    assert "no peer connected" in done.stdout  # tidings status: alone on its network


def test_the_blob_walk_through_runs(tmp_path: Path) -> None:
    done = run_sh_block("## Podcasts and files: blobs", tmp_path)
    assert re.search(r'<enclosure url="http://127\.0\.0\.1:1/feeds/tf1[^"]+\.mp3" '
                     r'type="audio/mpeg" length="3000000"/>', done.stdout), done.stdout
    assert "206 1024" in done.stdout
    assert "publish it as an attachment" in done.stderr.lower() or "--attach" in done.stderr
