"""``tidings retract`` and ``tidings edit``: correct your own entries (spec/content.md §12).

A correction is a new entry of the same log; the entry corrected never changes.
Both commands refuse a correction that would not take effect (an entry more
than 1024 back, one already retracted, a correction, a follow or about entry),
so what they publish is what readers will show.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable

from tidings.cli.common import EXIT_OK, CommandError, entry_json, err, feed_arg, print_json
from tidings.core.content import MAX_TEXT, LinkShare, Post, Replace, Retract, encode
from tidings.core.corrections import MAX_CORRECTION_DISTANCE, Shown, check_correction
from tidings.core.entry import Entry
from tidings.core.ids import FeedId
from tidings.http.feedview import read_entries
from tidings.node.home import Home
from tidings.storage.logbook import Logbook

#: Bytes of UTF-8 an edit reads at most: a post's text is at most 32768 characters
#: of up to 4 bytes each; anything longer cannot be a post.
MAX_EDIT_BYTES = 4 * MAX_TEXT


def _own_feed(book: Logbook, text: str) -> FeedId:
    feed = feed_arg(text, book)
    assert book.identity is not None
    if feed.author_key != book.identity.author.key:
        raise CommandError(f"{feed} is not yours: only its author can correct its entries")
    return feed


def _current(book: Logbook, feed: FeedId, target: int) -> Shown[Entry]:
    """What ``target`` shows now, after checking that a correction of it would take effect."""
    head = book.head(feed)
    if head is None:
        raise CommandError(f"{feed} has no entries here (see `tidings feeds`)")
    first = max(target, 1)
    window = read_entries(book.store, feed, first, min(head.seq, first + MAX_CORRECTION_DISTANCE))
    return check_correction(target, head.seq + 1, window)


def _published(args: argparse.Namespace, entry: Entry, what: str) -> int:
    if args.json:
        print_json(entry_json(entry, None) | {"payload": None})
    else:
        print(f"{entry.feed} {entry.seq} {entry.hash.hex()}")
        err(what)
    return EXIT_OK


def cmd_retract(args: argparse.Namespace, home: Home) -> int:
    book = home.open_logbook(need_identity=True)
    try:
        feed = _own_feed(book, args.feed)
        _current(book, feed, args.seq)
        entry = book.publish(encode(Retract(args.seq)), feed.log_id)
    finally:
        book.store.close()
    return _published(args, entry, f"retracted entry {args.seq} (entry {entry.seq} says so)")


def _new_text(args: argparse.Namespace) -> str:
    if (args.text is None) == (args.file is None):
        raise CommandError("give exactly one of TEXT or --file PATH")
    if args.text is not None:
        return str(args.text)
    try:
        if args.file == "-":
            data = sys.stdin.buffer.read(MAX_EDIT_BYTES + 1)
        else:
            with open(args.file, "rb") as handle:
                data = handle.read(MAX_EDIT_BYTES + 1)  # bounded: never more
    except OSError as exc:
        raise CommandError(f"cannot read {args.file}: {exc.strerror}") from None
    if len(data) > MAX_EDIT_BYTES:
        raise CommandError(f"{args.file} is over {MAX_EDIT_BYTES} bytes: too long for a post")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise CommandError(f"{args.file} is not UTF-8 text") from None


def cmd_edit(args: argparse.Namespace, home: Home) -> int:
    text = _new_text(args)
    book = home.open_logbook(need_identity=True)
    try:
        feed = _own_feed(book, args.feed)
        current = _current(book, feed, args.seq).content
        # The new text takes the place of the old; everything else the entry shows stays.
        replacement: Post | LinkShare
        if isinstance(current, Post):
            replacement = dataclasses.replace(current, text=text,
                                              title=args.title or current.title)
        elif isinstance(current, LinkShare):
            replacement = dataclasses.replace(current, comment=text or None,
                                              title=args.title or current.title)
        else:  # plain text, or anything else: now a post
            replacement = Post(text, title=args.title)
        entry = book.publish(encode(Replace(args.seq, replacement)), feed.log_id)
    finally:
        book.store.close()
    return _published(args, entry, f"entry {args.seq} now shows the new text "
                                   f"(entry {entry.seq} replaces it)")


def _seq(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a seq (a whole number)") from None
    if value < 1:
        raise argparse.ArgumentTypeError("seqs start at 1")
    return value


def add_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    p = command("retract", "retract one of your entries: readers show a tombstone instead "
                "(publishes a retract entry to the same log)")
    p.add_argument("feed", metavar="FEED", help="one of your feed ids, or a log name")
    p.add_argument("seq", type=_seq, metavar="SEQ", help="the entry to retract")
    p.set_defaults(run=cmd_retract)

    p = command("edit", "replace the text of one of your entries: readers show the new "
                "version (publishes a replace entry to the same log)")
    p.add_argument("feed", metavar="FEED", help="one of your feed ids, or a log name")
    p.add_argument("seq", type=_seq, metavar="SEQ", help="the entry to edit")
    p.add_argument("text", nargs="?", metavar="TEXT", help="the new text")
    p.add_argument("--file", metavar="PATH", help="take the new text from a UTF-8 file "
                   "('-' for stdin)")
    p.add_argument("--title", metavar="TITLE", help="a new title (default: keep the title)")
    p.set_defaults(run=cmd_edit)


__all__ = ["add_commands"]
