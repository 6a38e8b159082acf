"""``tidings import-feed``: bring a blog's or podcast's back catalogue into a log.

Reads an RSS 2.0, Atom or JSON Feed document from a URL (http or https, with a
size bound and a timeout) or a file, and publishes each item not imported
before as a post, oldest first, dated as the item is. Which items were
imported is remembered per log (``HOME/imports.sqlite3``, by each item's guid
or id), so running it again, say from cron, imports only new items. If it
stopped between publishing an item and remembering it, the next run finds the
item in the log by its payload's hash and does not publish it twice.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import sqlite3
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from tidings import __version__
from tidings.cli.common import EXIT_BAD_DATA, EXIT_OK, CommandError, err, print_json, seconds_arg
from tidings.core.content import encode
from tidings.core.entry import decode_entry, payload_hash
from tidings.core.ids import FeedId, check_log_id
from tidings.errors import InvalidId
from tidings.http.feedimport import NotAFeed, SourceFeed, oldest_first, parse_feed, to_post
from tidings.node.home import Home
from tidings.storage.logbook import Logbook

#: A feed document is read whole: 32 MiB holds years of a busy podcast's show notes
#: and keeps a wrong URL (a video, an endless stream) from filling memory.
MAX_FEED_BYTES = 32 * 1024 * 1024
DEFAULT_TIMEOUT = 30.0
IMPORTS_FILE = "imports.sqlite3"
LOCK_FILE = "imports.lock"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS imported (
    log TEXT NOT NULL,      -- the log imported into
    key TEXT NOT NULL,      -- the item's guid or id (or its hash, see feedimport.FeedItem.key)
    seq INTEGER NOT NULL,   -- the entry it became
    source TEXT NOT NULL,   -- the URL or file it came from
    at INTEGER NOT NULL,    -- when, in seconds since the epoch
    PRIMARY KEY (log, key)
) WITHOUT ROWID;
"""


class _NoOtherSchemes(urllib.request.HTTPRedirectHandler):
    """Redirects stay on http and https (urllib also follows ftp)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        if not newurl.lower().startswith(("http://", "https://")):
            raise urllib.error.HTTPError(newurl, code, f"a redirect to {newurl[:100]} "
                                         "(only http and https are followed)", headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def fetch(url: str, timeout: float = DEFAULT_TIMEOUT,
          max_bytes: int = MAX_FEED_BYTES) -> tuple[bytes, str | None, str]:
    """GET ``url``: ``(body, content type, final URL)``, refusing bodies over ``max_bytes``."""
    opener = urllib.request.build_opener(_NoOtherSchemes)
    request = urllib.request.Request(url, headers={
        "User-Agent": f"tidings/{__version__} import-feed",
        "Accept": "application/rss+xml, application/atom+xml, application/feed+json, "
                  "application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5",
    })
    try:
        with opener.open(request, timeout=timeout) as response:
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise CommandError(f"{url} is {declared} bytes; a feed is read only up to "
                                   f"{max_bytes}", EXIT_BAD_DATA)
            body = response.read(max_bytes + 1)
            if len(body) > max_bytes:
                raise CommandError(f"{url} is over {max_bytes} bytes; a feed is read only up "
                                   f"to that", EXIT_BAD_DATA)
            return body, response.headers.get("Content-Type"), response.geturl()
    except urllib.error.HTTPError as exc:
        raise CommandError(f"{url}: the server answered {exc.code} {exc.reason}",
                           EXIT_BAD_DATA) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CommandError(f"cannot fetch {url}: {reason}", EXIT_BAD_DATA) from None


def read_source(source: str, timeout: float) -> tuple[SourceFeed, str]:
    """The feed at ``source`` (a URL or a file) and its name for messages."""
    if "://" in source:
        if not source.lower().startswith(("http://", "https://")):
            raise CommandError(f"{source}: only http and https URLs (or a file) can be read")
        body, content_type, final = fetch(source, timeout)
        url: str | None = final
    else:
        path = Path(source)
        try:
            with open(path, "rb") as handle:
                body = handle.read(MAX_FEED_BYTES + 1)  # bounded: never more
        except OSError as exc:
            raise CommandError(f"cannot read {source}: {exc.strerror}") from None
        if len(body) > MAX_FEED_BYTES:
            raise CommandError(f"{source} is over {MAX_FEED_BYTES} bytes: too big for a feed")
        content_type, url = None, None
    try:
        return parse_feed(body, url=url, content_type=content_type), source
    except NotAFeed as exc:
        raise CommandError(f"{source}: {exc}", EXIT_BAD_DATA) from None


@contextlib.contextmanager
def _import_lock(home: Home) -> Iterator[None]:
    """One import at a time per home: two cron runs must not publish an item twice."""
    fd = os.open(home.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CommandError("another import-feed is running for this home; try again "
                               "when it is done") from None
        yield
    finally:
        os.close(fd)


def _imports(home: Home) -> sqlite3.Connection:
    db = sqlite3.connect(home.path / IMPORTS_FILE, timeout=30)
    db.executescript(_SCHEMA)
    return db


def _published_hashes(book: Logbook, feed: FeedId) -> dict[bytes, int]:
    """Payload hash → seq of every entry of ``feed``: how an item published by a run
    that stopped before remembering it is found again."""
    found: dict[bytes, int] = {}
    since = 1
    while True:
        rows = book.store.entries(feed, since, 1000)
        for row in rows:
            entry = decode_entry(row.raw)
            found.setdefault(entry.payload_hash, entry.seq)
        if len(rows) < 1000:
            return found
        since = rows[-1].seq + 1


def cmd_import_feed(args: argparse.Namespace, home: Home) -> int:
    try:
        log_id = check_log_id(args.log)
    except InvalidId as exc:
        raise CommandError(str(exc)) from None
    source, name = read_source(args.source, args.timeout)
    if source.warning:
        err(f"warning: {name} is not well-formed ({source.warning}); read what could be read")
    items = oldest_first(source.items)
    book = home.open_logbook(need_identity=True)
    imported: list[tuple[int, str]] = []
    known = 0
    try:
        feed = book.feed(log_id)
        with _import_lock(home), contextlib.closing(_imports(home)) as db:
            remembered = {key for (key,) in db.execute(
                "SELECT key FROM imported WHERE log = ?", (log_id,))}
            hashes = _published_hashes(book, feed)
            now = time.time_ns() // 1000
            for item in items:
                if item.key in remembered:
                    known += 1
                    continue
                remembered.add(item.key)  # (a feed may list an item twice)
                post = to_post(item)
                payload = encode(post)
                seq = hashes.get(payload_hash(payload))
                if seq is None:
                    if args.dry_run:
                        imported.append((0, post.title or post.text[:60]))
                        continue
                    # Dated as the item was (timestamps are the author's word, spec/02);
                    # a date in the future is today.
                    when = min(max(item.published or now, 0), now)
                    dated = Logbook(book.store, book.identity, clock=_at(when))
                    seq = dated.publish(payload, log_id).seq
                    imported.append((seq, post.title or post.text[:60]))
                else:
                    known += 1  # published by a run that stopped before remembering it
                if not args.dry_run:
                    db.execute("INSERT OR REPLACE INTO imported VALUES (?, ?, ?, ?, ?)",
                               (log_id, item.key, seq, name, int(time.time())))
                    db.commit()
    finally:
        book.store.close()
    verb = "would import" if args.dry_run else "imported"
    if args.json:
        print_json({"feed": str(feed), "source": name, "kind": source.kind,
                    "imported": len(imported), "already_imported": known,
                    "dry_run": args.dry_run,
                    "seqs": [seq for seq, _ in imported] if not args.dry_run else []})
    else:
        for seq, title in imported:
            print(f"{seq}\t{title}" if not args.dry_run else title)
        err(f"{verb} {len(imported)} new items from {name} into {feed} "
            f"({known} imported before)")
    return EXIT_OK


def _at(timestamp: int) -> Callable[[], int]:
    return lambda: timestamp


def add_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    p = command("import-feed", "import an RSS, Atom or JSON Feed back catalogue into a log, "
                "oldest first, skipping items imported before (safe to run from cron)")
    p.add_argument("source", metavar="URL|FILE", help="the feed: an http(s) URL or a file")
    p.add_argument("--log", required=True, metavar="NAME", help="the log to import into")
    p.add_argument("--dry-run", action="store_true",
                   help="print what would be imported; publish nothing")
    p.add_argument("--timeout", type=seconds_arg, default=DEFAULT_TIMEOUT, metavar="S",
                   help=f"give up fetching a URL after S seconds (default {DEFAULT_TIMEOUT:g})")
    p.set_defaults(run=cmd_import_feed)


__all__ = ["MAX_FEED_BYTES", "add_commands", "fetch", "read_source"]
