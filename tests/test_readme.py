"""The README's command-line walk-through runs as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

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
    assert "caught up with 127.0.0.1:7710: 100 new entries, 1 followed feeds" in lines
    assert any(line.split()[0] == "98" for line in lines)  # fetch --latest 3 starts at 98
    assert re.search(r"^[0-9a-f]{64}$", done.stdout, re.M)  # network new
    assert lines[-1] == "2"  # the author's node saw the sync and the fetch


def test_the_simulator_command_runs(tmp_path: Path) -> None:
    done = run_sh_block("## Simulating a network", tmp_path, python=True)
    assert "converged in" in done.stdout, done.stdout
    assert "redundancy" in done.stdout


def test_the_library_snippet_runs(tmp_path: Path) -> None:
    text = README.read_text()
    block = re.search(r"```python\n(.*?)```", text, re.S)
    assert block is not None
    done = subprocess.run(
        [sys.executable, "-c", block.group(1)], cwd=tmp_path, capture_output=True, text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "relay.sqlite3").exists()
