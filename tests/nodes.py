"""Real node processes for the integration tests: `tidings up` on loopback TCP."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.test_cli import _env, ok, tidings
from tidings import FeedId
from tidings.node.home import Home

LISTENING = re.compile(r"event=ready addr=[0-9.]+:(\d+) node=([0-9a-f]{8})")


class NodeProcess:
    """A running ``tidings up``; its log is a file beside the home."""

    def __init__(self, home: Path, *args: str, lan: bool = False) -> None:
        self.home = home
        self.log_path = home.parent / f"{home.name}.log"
        self.log_file = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tidings", "--home", str(home), "up",
             *([] if lan else ["--listen", "127.0.0.1:0", "--no-lan"]),
             *([] if "--no-api" in args or "--api" in args else ["--api", "127.0.0.1:0"]),
             *args],
            stdout=subprocess.DEVNULL, stderr=self.log_file, env=_env(),
        )
        self.port, self.key = self._wait_listening()

    def _wait_listening(self) -> tuple[int, str]:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            found = LISTENING.search(self.log())
            if found:
                return int(found.group(1)), found.group(2)
            if self.proc.poll() is not None:
                raise AssertionError(f"node exited {self.proc.returncode}: {self.log()}")
            time.sleep(0.05)
        raise AssertionError(f"node did not start listening: {self.log()}")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.log())
            if found:
                return found
            time.sleep(0.05)
        raise AssertionError(f"no {pattern!r} in the log: {self.log()}")

    def stop(self) -> int:
        """SIGTERM, then wait for a clean exit; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_file.close()
        assert "Traceback" not in self.log(), self.log()
        return self.proc.returncode


@contextmanager
def running(home: Path, *args: str, lan: bool = False) -> Iterator[NodeProcess]:
    node = NodeProcess(home, *args, lan=lan)
    try:
        yield node
    finally:
        node.stop()


def transport_keys(home: Path) -> set[str]:
    """Short forms (as logged) of every transport key a home has used."""
    keys = set()
    for name in ("node.key", "sync.key"):
        if (home / name).exists():
            from tidings.transport.channel import public_key

            keys.add(public_key(Home(home).transport_key(name)).hex()[:8])
    return keys


def feed_of(home: Path, log_id: str) -> FeedId:
    book = Home(home).open_logbook()
    try:
        return book.feed(log_id)
    finally:
        book.store.close()


def heads(home: Path) -> dict[str, int]:
    result = ok(tidings(home, "feeds", "--json"))
    return {str(line["log"]): int(line["latest_seq"]) for line in result.json_lines()}  # type: ignore[call-overload]


def wait_for(predicate: object, timeout: float = 30, what: str = "") -> float:
    """Poll ``predicate()`` until true; returns the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():  # type: ignore[operator]
            return time.monotonic() - start
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what or predicate}")
