"""What the CLI's commands share: exit codes, errors, feed arguments, entry printing."""

from __future__ import annotations

import base64
import json
import sys
from typing import Any

from tidings.core.entry import Entry
from tidings.core.ids import AUTHOR_PREFIX, FEED_PREFIX, FeedId
from tidings.errors import InvalidId
from tidings.storage.logbook import Logbook

EXIT_OK, EXIT_BAD_DATA, EXIT_USAGE = 0, 1, 2
#: A command stopped by Ctrl-C exits as shells report it: 128 + SIGINT.
EXIT_INTERRUPTED = 130


class CommandError(Exception):
    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


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
