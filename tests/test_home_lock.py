"""Two nodes on one home: the second refuses to start (issue 13)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.nodes import running
from tests.test_cli import _env, ok, tidings
from tidings.errors import UsageError
from tidings.node.home import Home


def test_the_lock_is_held_once_and_freed_on_release(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    lock = home.lock()
    with pytest.raises(UsageError, match="another node runs"):
        home.lock()
    lock.release()
    home.lock().release()


@pytest.mark.system
def test_a_second_up_on_one_home_refuses(tmp_path: Path) -> None:
    home = tmp_path / "home"
    ok(tidings(home, "init"))
    with running(home) as first:
        second = subprocess.run(
            [sys.executable, "-m", "tidings", "--home", str(home), "up", "--listen",
             "127.0.0.1:0", "--no-lan", "--api", "127.0.0.1:0"],
            capture_output=True, env=_env(), timeout=60)
        assert second.returncode == 2, second.stderr
        assert b"another node runs" in second.stderr
        assert first.proc.poll() is None  # the first goes on
    # Once it has stopped, the home is free again.
    with running(home):
        pass
