"""What the CLI's commands share: exit codes, errors, feed arguments, entry printing."""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import re
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

from tidings.core.entry import Entry
from tidings.core.ids import AUTHOR_PREFIX, FEED_PREFIX, FeedId
from tidings.errors import InvalidId, UsageError
from tidings.storage.logbook import Logbook

EXIT_OK, EXIT_BAD_DATA, EXIT_USAGE = 0, 1, 2
#: A command stopped by Ctrl-C exits as shells report it: 128 + SIGINT.
EXIT_INTERRUPTED = 130


class CommandError(Exception):
    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


@contextlib.contextmanager
def sigint_deferred() -> Iterator[None]:
    """Ctrl-C held back inside the block, then acted on: a command stops between two
    steps, never inside one, so what it says it did is what it did.

    The Python-level handler is swapped, not the thread's signal mask: a process
    with other threads (the store's checkpointer) may take the signal on one of
    them, and a mask on this thread would not hold it back.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # (handlers are the main thread's to set)
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            if callable(previous):
                previous(signal.SIGINT, None)  # (Python's default raises KeyboardInterrupt)
            elif previous == signal.SIG_DFL:
                signal.raise_signal(signal.SIGINT)
            # (SIG_IGN: the command was told to ignore Ctrl-C, and does)


def err(message: str) -> None:
    print(f"tidings: {message}", file=sys.stderr)


def print_json(obj: Any) -> None:
    print(json.dumps(obj, ensure_ascii=False))


def feed_arg(text: str, book: Logbook) -> FeedId:
    """A feed id, or the name of one of your own logs."""
    if text.startswith(FEED_PREFIX):
        return FeedId.from_input(text)
    if text.startswith(AUTHOR_PREFIX):
        raise CommandError(
            f"{text[:12]}... is an author id; give one of the author's feed ids "
            "(see `tidings feeds`)"
        )
    if book.identity is None:
        raise CommandError(
            f"{text!r} is not a feed id (they start with {FEED_PREFIX!r}), and there is no "
            "identity here to read it as one of your logs"
        )
    try:
        return book.feed(text)
    except InvalidId:
        raise CommandError(
            f"{text!r} is neither a feed id (starting {FEED_PREFIX!r}) nor a log name"
        ) from None


def entry_json(entry: Entry, payload: bytes | None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "feed": str(entry.feed),
        "author": str(entry.feed.author),
        "log": entry.log_id,
        "seq": entry.seq,
        "hash": entry.hash.hex(),
        "timestamp": entry.timestamp,
        "payload_size": entry.payload_size,
        "end_of_log": entry.is_end_of_log,
    }
    if payload is None:
        obj["payload"] = None
    else:
        try:
            obj["payload"] = payload.decode("utf-8")
            obj["payload_encoding"] = "utf-8"
        except UnicodeDecodeError:
            obj["payload"] = base64.b64encode(payload).decode()
            obj["payload_encoding"] = "base64"
    return obj


#: A host name to listen on: DNS labels (RFC 1123), at most 253 characters.
_HOST_NAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                        r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?")


def listen_address(text: str) -> str:
    """``HOST:PORT`` to listen on, checked before the node starts: a malformed one is
    named as such, not left to fail as an unknown host or a port in use."""
    import ipaddress

    from tidings.node.options import parse_address

    example = "such as 127.0.0.1:7654, 0.0.0.0:7654 or [::1]:0"
    host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not an address HOST:PORT ({example})")
    try:
        host, _ = parse_address(text)
    except UsageError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an address HOST:PORT with a port from 0 to 65535 "
            f"({example})") from None
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _HOST_NAME.fullmatch(host):
            raise argparse.ArgumentTypeError(
                f"{host!r} in {text!r} is neither an IP address nor a host name "
                f"({example})") from None
    return text


def seconds_arg(text: str) -> float:
    """An argparse type: a positive number of seconds (``--timeout``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0 seconds")
    return value
