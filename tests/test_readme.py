"""The README's command-line walk-through runs as written."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

#: Every test here starts real processes (see tests/conftest.py).
pytestmark = pytest.mark.system

README = Path(__file__).resolve().parents[1] / "README.md"


#: Where the README's reader pastes into one shell: every ``sh`` block after the
#: quick start's two (which install and then run a node, or the whole suite) and
#: before "## Development" (the inner loop, from the checkout).
FIRST, LAST = "## Quick start", "## Development"


def readme_blocks() -> list[tuple[str, str]]:
    """``(heading, script)`` of each ``sh`` block a reader pastes, in order."""
    text = README.read_text()
    text = text[text.index(FIRST):text.index(LAST)]
    blocks = []
    for found in re.finditer(r"```sh\n(.*?)```", text, re.S):
        heading = re.findall(r"^## .*$", text[:found.start()], re.M)[-1]
        blocks.append((heading, found.group(1)))
    assert [h for h, _ in blocks[:2]] == [FIRST, FIRST], "the quick start has two commands"
    return blocks[2:]


def test_no_block_waits_on_a_file_an_earlier_block_wrote() -> None:
    """The blocks run in one shell and one directory, as a reader pastes them. A
    block that starts a program in the background with its output in FILE, then
    waits with ``until grep ... FILE``, must not reuse a FILE an earlier block wrote:
    the shell truncates FILE in the background job, so the wait can match the
    earlier program's line first (and read its address: the podcast walk-through's
    first curl once went to the gateway walk-through's stopped server)."""
    written: dict[str, str] = {}
    for heading, script in readme_blocks():
        for polled in re.findall(r"until grep -q [^;]*?(\S+);", script):
            assert polled not in written, (
                f"{heading!r} waits on {polled}, which {written[polled]!r} wrote too")
        for name in re.findall(r"[12]?> ?([\w.-]+\.(?:log|out|txt))", script):
            written.setdefault(name, heading)


@pytest.fixture(scope="module")
def pasted(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], Path]:
    """Every block run in order in one fresh shell, as a reader pastes them: ``env -i``
    (only HOME and a system PATH), from a checkout. Returns each heading's stdout and
    the scratch directory the README moves to.

    Pasted once per test run: with pytest-xdist, the first worker to get here runs it
    and the others read its outcome (under a lock in the run's shared directory)."""
    if sys.prefix == sys.base_prefix:
        pytest.skip("the README installs into a virtual environment; run the tests in one")
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    with open(shared / "readme.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        outcome_file = shared / "readme.json"
        if not outcome_file.exists():
            try:
                outputs, scratch = _paste(tmp_path_factory)
                outcome = {"outputs": outputs, "scratch": str(scratch)}
            except AssertionError as exc:
                outcome = {"failure": str(exc)}
            outcome_file.write_text(json.dumps(outcome))
        outcome = json.loads(outcome_file.read_text())
    if "failure" in outcome:
        raise AssertionError(outcome["failure"])
    return outcome["outputs"], Path(outcome["scratch"])


def _paste(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], Path]:
    tmp = tmp_path_factory.mktemp("reader")
    checkout = tmp / "checkout"  # the checkout as the reader has it: .venv installed
    checkout.mkdir()
    (checkout / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    (checkout / "examples").symlink_to(README.parent / "examples", target_is_directory=True)
    (tmp / "home").mkdir()
    (tmp / "tmp").mkdir()  # mktemp -d makes its directories here, cleaned with the test's
    parts = []
    for number, (heading, script) in enumerate(readme_blocks()):
        parts.append(f"echo '@@block {number} {heading}'\n{script}")
    parts.append('echo "@@scratch $PWD"')
    env = {"HOME": str(tmp / "home"), "PATH": "/usr/bin:/bin", "TMPDIR": str(tmp / "tmp")}
    # Its own process group: a block that fails leaves no node of its running behind.
    shell = subprocess.Popen(
        ["env", "-i", *(f"{k}={v}" for k, v in env.items()),
         "bash", "-euo", "pipefail", "-c", "\n".join(parts)],
        cwd=checkout, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = shell.communicate(timeout=900)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(shell.pid, signal.SIGTERM)
        shell.wait()
    done = subprocess.CompletedProcess(shell.args, shell.returncode, stdout, stderr)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    assert "Traceback" not in done.stderr, done.stderr
    outputs: dict[str, str] = {}
    scratch = None
    for chunk in re.split(r"^@@", done.stdout, flags=re.M)[1:]:
        header, _, body = chunk.partition("\n")
        if header.startswith("scratch "):
            scratch = Path(header[len("scratch "):])
        else:
            heading = header.split(" ", 2)[2]
            outputs[heading] = outputs.get(heading, "") + body
    assert scratch is not None and scratch.is_relative_to(tmp / "tmp")
    assert not (checkout / "ep1.txt").exists()  # nothing written into the checkout
    return outputs, scratch


def test_every_block_runs_in_order_in_a_fresh_shell(pasted: tuple[dict[str, str], Path]
                                                    ) -> None:
    outputs, _ = pasted
    assert set(outputs) >= {"## The command line", "## The node", "## The local HTTP API",
                            "## Feeds for people and feed readers",
                            "## Bringing a blog or a podcast", "## Examples",
                            "## Simulating a network"}


def test_the_identity_walk_through_runs(pasted: tuple[dict[str, str], Path]) -> None:
    lines = pasted[0]["## One author, several devices"].splitlines()
    shown = [line for line in lines if "written on the" in line]
    assert len(shown) == 2 and {"laptop", "phone"} <= {w for line in shown for w in line.split()}
    assert any(line.strip().startswith("phone") and "active" in line for line in lines)


def test_the_cli_walk_through_runs(pasted: tuple[dict[str, str], Path]) -> None:
    out = pasted[0]["## The command line"]
    assert "_notes  10000" in out  # the relay's `feeds`
    shown = out[out.index("Week 1"):]
    assert "What a feed is, in a few lines." in shown and "tags: #notes" in shown
    assert "link: https://example.org/feeds" in shown and "And a reply to it." in shown


def test_the_node_walk_through_runs(pasted: tuple[dict[str, str], Path]) -> None:
    outputs, scratch = pasted
    assert "Traceback" not in (scratch / "author.log").read_text()
    lines = outputs["## The node"].splitlines()
    assert any(re.fullmatch(r"caught up with 127\.0\.0\.1:\d+: 100 new entries, "
                            r"1 followed feeds", line) for line in lines)
    assert any(line.split()[0] == "98" for line in lines)  # fetch --latest 3 starts at 98
    assert any(re.fullmatch(r"[0-9a-f]{64}", line) for line in lines)  # network new
    assert lines[-1] == "2"  # the author's node saw the sync and the fetch


def test_the_gateway_walk_through_runs(pasted: tuple[dict[str, str], Path]) -> None:
    out = pasted[0]["## Feeds for people and feed readers"]
    index, text, feed_page, entry_page, media = out.splitlines()[-5:]
    assert re.fullmatch(r'<h2><a href="\./feeds/tf1\w+_blog"><bdi>blog by ta1\w+</bdi></a></h2>',
                        index), index
    assert text == "The first entry of this blog."
    link = r'<link rel="alternate" type="text/html" href="\.\./feeds/tf1\w+_blog{}"/>'
    assert re.fullmatch(link.format(""), feed_page), feed_page
    assert re.fullmatch(link.format("/1"), entry_page), entry_page  # the entry's page: its link
    assert media == "application/xml; charset=utf-8"  # what a browser renders


def test_the_import_feed_walk_through_runs(pasted: tuple[dict[str, str], Path]) -> None:
    out = pasted[0]["## Bringing a blog or a podcast"]
    assert out.splitlines()[-2:] == ["1\tFirst post", "2\tSecond post"]


def test_the_examples_run(pasted: tuple[dict[str, str], Path]) -> None:
    out = pasted[0]["## Examples"]
    assert "hello, network" in out  # bob read alice's post from her node


def test_the_simulator_command_runs(pasted: tuple[dict[str, str], Path]) -> None:
    out = pasted[0]["## Simulating a network"]
    assert "converged in" in out, out
    assert "redundancy" in out


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


def test_the_http_api_walk_through_runs(pasted: tuple[dict[str, str], Path]) -> None:
    outputs, scratch = pasted
    published = json.loads((scratch / "published.json").read_text())
    assert published["seq"] == 1 and published["content"]["text"] == "hello from curl"
    out = outputs["## The local HTTP API"].splitlines()
    entries = json.loads(out[0])["entries"]
    assert [e["content"]["text"] for e in entries] == ["hello from curl"]
    assert "401" in out
    assert "no peer connected" in "\n".join(out)  # tidings status: alone on its network
    assert "hello from curl" in (scratch / "watch.txt").read_text()  # tidings watch saw it


def test_the_blob_walk_through_runs(pasted: tuple[dict[str, str], Path]) -> None:
    out = pasted[0]["## Podcasts and files: blobs"]
    assert re.search(r'<enclosure url="http://127\.0\.0\.1:1/feeds/tf1[^"]+\.mp3" '
                     r'type="audio/mpeg" length="3000000"/>', out), out
    assert "206 1024" in out
    assert "tidings publish --attach" in out  # the payload bound's message
