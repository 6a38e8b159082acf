"""What the CLI's commands share: exit codes, errors, feed arguments, entry printing."""

from __future__ import annotations

import base64
import json
import sys
from typing import Any

from tidings.core.entry import Entry
from tidings.core.ids import AUTHOR_PREFIX, FEED_PREFIX, FeedId
from tidings.core.times import entry_datetime
from tidings.errors import InvalidId
from tidings.storage.logbook import Logbook

EXIT_OK, EXIT_BAD_DATA, EXIT_USAGE = 0, 1, 2


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


def _when(timestamp_us: int) -> str:
    return entry_datetime(timestamp_us).strftime("%Y-%m-%d %H:%M:%SZ")


#: Control characters (C0, DEL, C1) shown escaped, so a payload cannot move the
#: cursor or send escape sequences to the reader's terminal.
_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}
_CONTROL.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})


def _payload_text(payload: bytes | None, size: int) -> str:
    if payload is None:
        return f"(payload not held, {size} B)"
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return f"(binary, {size} B)"
    return text.translate(_CONTROL)


# -- commands ---------------------------------------------------------------


def print_entries(page: list[tuple[Entry, bytes | None]], as_json: bool) -> None:
    for entry, payload in page:
        if as_json:
            print_json(entry_json(entry, payload))
        else:
            end = "  [end of log]" if entry.is_end_of_log else ""
            print(f"{entry.seq:>6}  {_when(entry.timestamp)}  {entry.hash.hex()[:12]}  "
                  f"{_payload_text(payload, entry.payload_size)}{end}")
