"""Reading as a person: `tidings show`, `tidings watch`, and how entries look in a terminal.

Entries show as their content reads (spec/content.md): a post's title, date,
text, links, tags and attachments; plain text as text; anything else by its
length. The author's corrections are honoured (§12): an edited entry shows its
replacement, a retracted one a tombstone, and corrections themselves are not
entries to read (``--json`` lists them, with their ``state``).

Everything an author wrote is printed with control characters escaped and
bidirectional overrides removed, so a payload cannot drive the terminal.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from tidings.cli.api import EXIT_NOT_RUNNING, api_failure
from tidings.cli.common import (
    EXIT_BAD_DATA,
    EXIT_OK,
    CommandError,
    entry_json,
    err,
    feed_arg,
    print_json,
    sigint_deferred,
)
from tidings.core.content import (
    About,
    Attachment,
    Content,
    Follow,
    LinkShare,
    Post,
    Replace,
    Retract,
    Unfollow,
    Unknown,
    decode,
    plain_text,
    split_title,
    summary,
    to_json,
)
from tidings.core.corrections import (
    CORRECTION,
    MAX_CORRECTION_DISTANCE,
    REPLACED,
    RETRACTED,
    Shown,
    effective_view,
)
from tidings.core.entry import Entry
from tidings.core.ids import FeedId
from tidings.core.times import entry_datetime
from tidings.http.feedview import read_entries
from tidings.node.home import Home
from tidings.storage.logbook import BATCH_SIZE

#: Where the body of an entry starts: below its seq, date and hash.
INDENT = " " * 8

#: Control characters (C0, DEL, C1) shown escaped, so a payload cannot move the
#: cursor or send escape sequences to the reader's terminal.
_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}
_CONTROL.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})
#: Bidirectional overrides and isolates: they would reorder the text around them.
_BIDI = re.compile("[\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` on one line, safe for a terminal."""
    return _BIDI.sub("", text).translate(_CONTROL)


def _text_lines(text: str) -> list[str]:
    # Lines end at a line feed only (CRLF too): any other break is escaped, not obeyed.
    lines = [printable(line.rstrip()) for line in text.replace("\r\n", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def format_when(timestamp_us: int) -> str:
    return entry_datetime(timestamp_us).strftime("%Y-%m-%d %H:%M:%SZ")


def _size(count: int) -> str:
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"


def _duration(seconds: int) -> str:
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _attachment(attachment: Attachment) -> str:
    facts = [attachment.media_type]
    if attachment.size is not None:
        facts.append(_size(attachment.size))
    if attachment.duration is not None:
        facts.append(_duration(attachment.duration))
    where = attachment.url or str(attachment.blob)
    title = f"{printable(attachment.title)}: " if attachment.title else ""
    return f"attachment: {title}{where} ({', '.join(facts)})"


def _tags(tags: tuple[str, ...]) -> list[str]:
    return ["tags: " + " ".join(f"#{printable(tag)}" for tag in tags)] if tags else []


def headline_and_body(content: Content | None, payload: bytes | None,
                      size: int) -> tuple[str, list[str]]:
    """The line that names an entry, and the lines of the rest of it."""
    if isinstance(content, Post):
        if content.title:
            headline, body = printable(content.title), _text_lines(content.text)
        else:
            first, rest = split_title(content.text)
            headline, body = first, _text_lines(rest)
        if not headline:
            headline = printable(summary(content))
        body += [f"link: {link}" for link in content.links]
        body += _tags(content.tags)
        if content.reply_to is not None:
            body.append(f"reply to: {content.reply_to.feed} {content.reply_to.seq}")
        body += [_attachment(attachment) for attachment in content.attachments]
        return headline, body
    if isinstance(content, LinkShare):
        headline = printable(content.title) if content.title else content.url
        body = [*_text_lines(content.comment or ""), f"link: {content.url}"]
        return f"link: {headline}", body + _tags(content.tags)
    if isinstance(content, About):
        body = _text_lines(content.description or "")
        for log in content.logs:
            named = f": {printable(log.name)}" if log.name else ""
            body.append(f"log {log.log}{named}")
            body += [f"  {line}" for line in _text_lines(log.description or "")]
        return f"about: {printable(content.name)}", body
    if isinstance(content, Follow | Unfollow | Unknown):
        return printable(summary(content)), []
    if isinstance(content, Replace):  # seen as it arrives (watch, show --json aside)
        headline, body = headline_and_body(content.content, None, 0)
        return f"(edits entry {content.target}) {headline}", body
    if isinstance(content, Retract):
        return f"(retracts entry {content.target})", []
    if payload is None:
        return f"(payload not held, {size} B)", []
    text = plain_text(payload)
    if text is None:
        return f"(binary, {size} B)", []
    first, rest = split_title(text)
    return first, _text_lines(rest)


def render(shown: Shown[Entry], corrected_at: int | None = None) -> list[str]:
    """The lines ``show`` prints for one entry as it shows (a correction's own entry too)."""
    entry = shown.entry
    head = f"{entry.seq:>6}  {format_when(entry.timestamp)}  {entry.hash.hex()[:12]}  "
    end = "  [end of log]" if entry.is_end_of_log else ""
    when = f" on {format_when(corrected_at)}" if corrected_at is not None else ""
    if shown.state == RETRACTED:
        return [f"{head}(retracted by its author{when}, entry {shown.by}){end}"]
    headline, body = headline_and_body(shown.content, shown.payload, entry.payload_size)
    note = f"  [edited{when}, entry {shown.by}]" if shown.state == REPLACED else ""
    return [head + headline + note + end] + [INDENT + line for line in body]


def shown_json(shown: Shown[Entry], payload: bytes | None) -> dict[str, Any]:
    """An entry as data: the entry, its own payload, and what it shows (``content``)."""
    obj = entry_json(shown.entry, payload)
    obj["state"] = shown.state
    obj["corrected_by"] = shown.by
    obj["content"] = None if shown.content is None else to_json(shown.content)
    return obj


def print_shown(view: Iterable[tuple[Shown[Entry], bytes | None, int | None]],
                as_json: bool) -> int:
    """Print entries as they show; returns how many were printed."""
    count = 0
    for shown, payload, corrected_at in view:
        if as_json:
            print_json(shown_json(shown, payload))
        elif shown.state != CORRECTION:
            print("\n".join(render(shown, corrected_at)))
        else:
            continue
        count += 1
    return count


def view_of(window: list[tuple[Entry, bytes | None]], first: int, last: int
            ) -> Iterator[tuple[Shown[Entry], bytes | None, int | None]]:
    """Entries ``first..last`` of ``window`` as they show, each with its own payload and
    the time of the correction in effect. ``window`` must reach
    :data:`MAX_CORRECTION_DISTANCE` entries past ``last`` (or the head)."""
    times = {entry.seq: entry.timestamp for entry, _ in window}
    payloads = {entry.seq: payload for entry, payload in window}
    for shown in effective_view(window):
        if first <= shown.entry.seq <= last:
            at = times.get(shown.by) if shown.by is not None else None
            yield shown, payloads[shown.entry.seq], at


def view_entries(entries: list[tuple[Entry, bytes | None]]
                 ) -> Iterator[tuple[Shown[Entry], bytes | None, int | None]]:
    """Entries as they show, corrections among them applied (for ``fetch``)."""
    if not entries:
        return iter(())
    seqs = [entry.seq for entry, _ in entries]
    return view_of(entries, min(seqs), max(seqs))


# -- show -------------------------------------------------------------------------------


def cmd_show(args: argparse.Namespace, home: Home) -> int:
    from tidings.core.ids import is_identity_text

    if is_identity_text(args.feed):  # an author's merged stream (spec/12 §7.3)
        from tidings.cli.follow import show_merged  # (here: a feed's show loads less)

        return show_merged(args, home)
    book = home.open_logbook()
    try:
        feed = feed_arg(args.feed, book)
        head = book.head(feed)
        if head is None:
            raise CommandError(f"{feed} is not in this store (see `tidings feeds`)")
        first = args.since
        if first is None:
            first = 1 if args.limit is None else max(1, head.seq - args.limit + 1)
        last = head.seq if args.limit is None else min(head.seq, first + args.limit - 1)
        while first <= last:
            page_last = min(last, first + BATCH_SIZE - 1)
            # The page and the entries that may correct it (spec/content.md §12).
            window = read_entries(book.store, feed, first,
                                  min(head.seq, page_last + MAX_CORRECTION_DISTANCE))
            # Payloads over the content bound are not read for the view: read them here.
            big = [e.seq for e, p in window if p is None and e.seq <= page_last]
            held = dict(_payloads(book, feed, big)) if big and args.json else {}
            view = ((shown, held.get(shown.entry.seq, payload), at)
                    for shown, payload, at in view_of(window, first, page_last))
            print_shown(view, args.json)
            first = page_last + 1
    finally:
        book.store.close()
    return EXIT_OK


def _payloads(book: Any, feed: FeedId, seqs: list[int]) -> Iterator[tuple[int, bytes]]:
    for row in book.store.entries_at(feed, seqs):
        if row.payload is not None:
            yield row.seq, row.payload


# -- watch ------------------------------------------------------------------------------

#: The file in the home where `watch` remembers where it stopped.
WATCH_CURSOR_FILE = "watch.cursor"
#: An SSE line is an event's field; an entry's event is its JSON (payload
#: included, base64) and a payload is at most 4 MiB: a line longer than this
#: is not the node's.
MAX_EVENT_LINE = 8 << 20


def _events(home: Home, query: str, after: str | None
            ) -> Iterator[tuple[str, str | None, dict[str, Any]]]:
    """The node's event stream (``GET /v1/events``): ``(event, id, data)`` per event."""
    import urllib.error
    import urllib.request

    try:
        url = json.loads(home.api_file.read_text())["url"]
    except (OSError, ValueError, KeyError, TypeError):
        raise CommandError(
            f"no node with a local API is running for {home.path}: start one with "
            "`tidings up` (in another terminal, or as a service), then watch",
            EXIT_NOT_RUNNING) from None
    headers = {"Authorization": f"Bearer {home.api_token()}", "Accept": "text/event-stream"}
    if after:
        headers["Last-Event-ID"] = after
    request = urllib.request.Request(f"{url}/v1/events?{query}", headers=headers)
    try:
        response = urllib.request.urlopen(request)
    except (urllib.error.URLError, OSError) as exc:  # (HTTPError is a URLError)
        raise api_failure(exc, url) from None
    kind, event_id, data = "message", None, list[str]()
    with response:
        while True:
            raw = response.readline(MAX_EVENT_LINE + 1)
            if not raw:
                return  # the node stopped
            if len(raw) > MAX_EVENT_LINE:
                raise CommandError("the node sent an event line over 8 MiB", EXIT_BAD_DATA)
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if not line:
                parsed = _json_or_none("\n".join(data)) if data else None
                if parsed is not None:  # (else not JSON: not an event this client knows)
                    yield kind, event_id, parsed
                kind, event_id, data = "message", None, list[str]()
            elif line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("id:"):
                event_id = line[3:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip(" "))


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def cmd_watch(args: argparse.Namespace, home: Home) -> int:
    _require(home)
    cursor_path = home.path / WATCH_CURSOR_FILE
    after: str | None = args.after
    if args.from_start:
        after = "0-0"
    elif after is None and not args.from_now:
        try:
            after = cursor_path.read_text().strip() or None
        except FileNotFoundError:
            after = None  # the first watch: from what arrives now
    # Every followed feed and your own, unless --feed names some.
    query = "own=true"
    if args.feed:
        book = home.open_logbook()
        try:
            query += "&feeds=" + ",".join(item for text in args.feed
                                          for item in _stream_items(text, book))
        finally:
            book.store.close()
    if sys.stderr.isatty():
        err("watching for new entries; Ctrl-C stops, and the next watch resumes here")
    for kind, event_id, data in _events(home, query, after):
        # Printing an entry and remembering its cursor is one step as far as
        # Ctrl-C goes: a SIGINT that arrives in between waits until the cursor
        # is saved, so the next watch neither repeats a line already shown nor
        # skips one. (kill -9 in between repeats that one entry: at least once.)
        with sigint_deferred():
            if kind == "entry":
                _print_event(data, args.json)
                sys.stdout.flush()
            if event_id:
                _remember(cursor_path, event_id)
    err("the node stopped")
    return EXIT_OK


def _stream_items(text: str, book: Any) -> list[str]:
    """``--feed`` of watch: a feed (id, log or prefix), or an author (``ti1...``,
    ``ti1...:log1,log2`` or an invite): the ``/v1/events?feeds=`` items for it."""
    from tidings.core.ids import is_identity_text
    from tidings.core.kel import format_identity
    from tidings.errors import UsageError
    from tidings.node.identities import parse_target

    if not is_identity_text(text.strip()):
        return [str(feed_arg(text, book))]
    try:
        target = parse_target(text)
    except UsageError as exc:
        raise CommandError(str(exc)) from None
    author = format_identity(target.identity)
    return [f"{author}:{log}" for log in target.logs] or [author]


def _require(home: Home) -> None:
    if not home.path.is_dir():
        raise CommandError(f"no tidings home at {home.path}: run `tidings init` or "
                           "`tidings up` first (or pass --home DIR)")


def _remember(path: Any, cursor: str) -> None:
    draft = path.with_name(path.name + ".part")
    draft.write_text(cursor + "\n")
    draft.replace(path)


def _print_event(data: dict[str, Any], as_json: bool) -> None:
    """One entry event: a header naming the feed, then the entry as ``show`` prints it.

    A live entry shows as it arrives; a correction says what it corrects (the
    entry itself shows corrected in ``show``)."""
    if as_json:
        print_json(data)
        return
    import base64
    import binascii

    try:
        payload = base64.b64decode(data["payload_base64"]) if data.get("payload_base64") else None
        feed, seq, timestamp = FeedId.parse(data["feed"]), int(data["seq"]), data["timestamp"]
        size = int(data["payload_size"])
    except (KeyError, TypeError, ValueError, binascii.Error):
        return  # not an entry event as spec/http-api.md has it: skipped
    content = decode(payload)
    headline, body = headline_and_body(content, payload, size)
    when = format_when(timestamp) if isinstance(timestamp, int) else "?"
    print(f"{feed} {seq}  {when}  {headline}")
    for line in body:
        print(INDENT + line)


def add_commands(command: Callable[..., argparse.ArgumentParser],
                 positive: Callable[[str], int]) -> None:
    p = command("show", "print a feed's entries as they read, newest last (the author's "
                "edits and retractions applied)")
    p.add_argument("feed", metavar="FEED", help="a feed id, or the name of one of your logs")
    p.add_argument("--since", type=positive, metavar="SEQ", help="start at this seq")
    p.add_argument("--limit", type=positive, metavar="N",
                   help="at most N entries (without --since: the latest N)")
    p.set_defaults(run=cmd_show)

    p = command("watch", "print new entries as they arrive at the running node, until "
                "Ctrl-C; the next watch resumes where this one stopped")
    p.add_argument("--feed", action="append", metavar="FEED",
                   help="only this feed, or an author's (ti1..., ti1...:LOG: every "
                   "device's); repeat for more; default: every new entry")
    p.add_argument("--after", metavar="CURSOR", help="start after this cursor")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--from-start", action="store_true",
                       help="start with every entry stored, oldest first")
    start.add_argument("--from-now", action="store_true",
                       help="ignore where the last watch stopped; only what arrives now")
    p.set_defaults(run=cmd_watch)


__all__ = ["add_commands", "headline_and_body", "printable", "render", "view_entries"]
