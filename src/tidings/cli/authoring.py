"""Writing as a person: what `tidings publish` makes of its text, and `tidings about`.

`publish TEXT` writes plain text (spec/content.md §11); with ``--title``,
``--tag``, ``--link`` or ``--reply-to`` it writes a post (§6.1). Text must be
UTF-8 without control characters and not blank: an entry is permanent, so a
mistaken empty or garbled one is refused before it is signed. ``--binary``
publishes free bytes as they are.

`about` publishes the author's about entry (§6.3) in the log "about": the
author's name and description, and the names of their logs (``logs``).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable

from tidings.cli.common import EXIT_OK, CommandError, entry_json, err, feed_arg, print_json
from tidings.core.blob import BlobId
from tidings.core.content import (
    About,
    EntryRef,
    LogAbout,
    Post,
    encode,
    plain_text,
    to_json,
)
from tidings.core.ids import check_log_id
from tidings.errors import InvalidContent, InvalidId
from tidings.node.home import Home
from tidings.storage.logbook import Logbook


def wants_post(args: argparse.Namespace) -> bool:
    """Whether ``publish`` was asked for a post rather than plain text."""
    return bool(args.title or args.tag or args.link or args.reply_to)


def check_publish_args(args: argparse.Namespace) -> None:
    """Refuse combinations that cannot mean anything, before anything is read."""
    if args.binary and wants_post(args):
        raise CommandError("--binary publishes bytes as they are; --title, --tag, --link and "
                           "--reply-to make a post of text: use one or the other")
    if args.lines and wants_post(args):
        raise CommandError("--lines publishes each line as plain text; --title, --tag, "
                           "--link and --reply-to make one post: publish it without --lines")


def text_of(data: bytes, source: str) -> str:
    """``data`` as text to publish, or a :class:`CommandError` saying what is wrong."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CommandError(
            f"{source} is not UTF-8 text (byte {exc.start + 1} is not): publish text, or "
            "pass --binary to publish the bytes as they are") from None
    if plain_text(data) is None:
        raise CommandError(
            f"{source} holds control characters that readers would show as binary: "
            "remove them, or pass --binary to publish the bytes as they are")
    return text


def check_line(line: bytes, number: int) -> str | None:
    """Why line ``number`` of ``--lines`` cannot be published as text, or None."""
    if not line.strip():
        return f"line {number} is blank: an entry is permanent, so blank ones are refused"
    try:
        text_of(line, f"line {number}")
    except CommandError as exc:
        return str(exc)
    return None


def reply_ref(text: str, book: Logbook) -> EntryRef:
    """``--reply-to FEED:SEQ`` as an entry reference."""
    feed_text, sep, seq_text = text.rpartition(":")
    if not sep or not seq_text.isdigit() or not feed_text:
        raise CommandError(f"--reply-to {text!r}: give FEED:SEQ, a feed id (or one of your "
                           "log names) and the entry's seq, e.g. blog:3")
    seq = int(seq_text)
    if seq < 1:
        raise CommandError(f"--reply-to {text!r}: seqs start at 1")
    return EntryRef(feed_arg(feed_text, book), seq)


def refuse_if_behind(home: Home, book: Logbook, log_id: str) -> None:
    """Refuse to publish when a peer holds this home's feed further than its store (a
    restored backup, a copied home): the post would fork the feed (spec/12 §7.5)."""
    if home.node_state_path.exists():
        from tidings.node.state import NodeState, check_not_behind

        state = NodeState(home.node_state_path)
        try:
            check_not_behind(state, book, log_id)
        finally:
            state.close()


def payload_of(args: argparse.Namespace, data: bytes, source: str, book: Logbook) -> bytes:
    """The payload ``publish`` writes for ``data`` (the TEXT or the file's bytes)."""
    if args.binary:
        if not data:
            raise CommandError(f"{source} is empty: nothing to publish")
        return data
    text = text_of(data, source)
    if not wants_post(args):
        if not text.strip():
            raise CommandError(f"{source} is blank: nothing to publish (an entry is "
                               "permanent, so blank ones are refused)")
        return data
    post = Post(
        text, title=args.title, links=tuple(args.link or ()), tags=tuple(args.tag or ()),
        reply_to=reply_ref(args.reply_to, book) if args.reply_to else None,
    )
    if not text.strip() and not post.title and not post.links:
        raise CommandError("the post is empty: give it some text, a --title or a --link")
    try:
        return encode(post)
    except InvalidContent as exc:
        raise CommandError(f"cannot publish this post: {exc}") from None


def argv_bytes(text: str) -> bytes:
    """The argument's bytes as the shell gave them, even if they are not UTF-8."""
    return os.fsencode(text)


# -- about ----------------------------------------------------------------------------


def cmd_about(args: argparse.Namespace, home: Home) -> int:
    # (Here, as printable in _print_about: `tidings publish` loads this module too.)
    from tidings.http.feedview import ABOUT_LOG, about_of

    book = home.open_logbook(need_identity=_changes(args))
    try:
        if book.identity is None:
            raise CommandError(f"no identity in {home.path}: run `tidings init` first")
        author_feed = book.feed(ABOUT_LOG)
        current = about_of(book.store, author_feed)
        if not _changes(args):
            return _print_about(args, current)
        updated = _updated(args, current)
        if updated == current:
            err("nothing changed; nothing published")
            return _print_about(args, current)
        entry = book.publish(encode(updated), ABOUT_LOG)
    except InvalidContent as exc:
        raise CommandError(f"cannot publish this about: {exc}") from None
    finally:
        book.store.close()
    if args.json:
        print_json(entry_json(entry, None) | {"payload": None,
                                               "content": _about_json(updated)})
    else:
        print(f"{entry.feed} {entry.seq} {entry.hash.hex()}")
        err("published your about entry: readers and the gateway show it from now on")
    return EXIT_OK


_SHOW_FIELDS = ("language", "category", "explicit", "artwork")


def _changes(args: argparse.Namespace) -> bool:
    return args.name is not None or args.description is not None or any(
        getattr(args, name) is not None for name in _SHOW_FIELDS)


def _artwork(text: str) -> BlobId | str | None:
    if not text:
        return None
    if text.startswith("tb"):
        try:
            return BlobId.parse(text)
        except InvalidId as exc:
            raise CommandError(f"--artwork: {exc}; give a blob id (`tidings blob ls`) or "
                               "an image's http(s) URL") from None
    return text


def _updated(args: argparse.Namespace, current: About | None) -> About:
    if args.log is None:
        given = [f"--{name}" for name in _SHOW_FIELDS if getattr(args, name) is not None]
        if given:
            raise CommandError(f"{', '.join(given)} describe one of your logs as a podcast "
                               "show: add --log LOG")
        if current is None:
            if args.name is None:
                raise CommandError("you have no about entry yet: give your --name first")
            return About(args.name, description=args.description or None)
        return dataclasses.replace(
            current, name=args.name if args.name is not None else current.name,
            description=(current.description if args.description is None
                         else args.description or None))
    try:
        log = check_log_id(args.log)
    except InvalidId as exc:
        raise CommandError(f"--log: {exc}") from None
    if current is None:
        raise CommandError("you have no about entry yet: give your own --name first "
                           "(`tidings about --name NAME`), then name your logs")
    logs = {item.log: item for item in current.logs}
    old = logs.get(log, LogAbout(log))
    # '' removes a name or a description; a log with neither is not listed.
    new = LogAbout(log, name=old.name if args.name is None else args.name or None,
                   description=(old.description if args.description is None
                                else args.description or None),
                   language=old.language if args.language is None else args.language or None,
                   category=old.category if args.category is None else args.category or None,
                   explicit=old.explicit if args.explicit is None else args.explicit,
                   artwork=old.artwork if args.artwork is None else _artwork(args.artwork))
    logs[log] = new
    if new == LogAbout(log):
        del logs[log]
    return dataclasses.replace(current, logs=tuple(logs[name] for name in sorted(logs)))


def _about_json(about: About | None) -> dict[str, object] | None:
    return None if about is None else to_json(about)


def _print_about(args: argparse.Namespace, about: About | None) -> int:
    from tidings.cli.reading import printable

    if args.json:
        print_json(_about_json(about))
        return EXIT_OK
    if about is None:
        err("you have no about entry yet: `tidings about --name NAME` publishes one")
        return EXIT_OK
    print(f"name         {printable(about.name)}")
    if about.description:
        print(f"description  {printable(about.description)}")
    for log in about.logs:
        line = f"log {printable(log.log)}"
        if log.name:
            line += f": {printable(log.name)}"
        if log.description:
            line += f" ({printable(log.description)})"
        show = [f"{name} {printable(str(value))}" for name, value in (
            ("language", log.language), ("category", log.category),
            ("explicit", None if log.explicit is None else str(log.explicit).lower()),
            ("artwork", log.artwork)) if value is not None]
        if show:
            line += f" [{', '.join(show)}]"
        print(line)
    return EXIT_OK


def add_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    p = command("about", "show or set your name and description, or those of one of your "
                "logs (publishes an about entry to your log 'about')")
    p.add_argument("--name", metavar="NAME",
                   help="your name (with --log: the log's name; '' removes it)")
    p.add_argument("--description", metavar="TEXT",
                   help="a few words about you (with --log: about the log); '' removes it")
    p.add_argument("--log", metavar="LOG",
                   help="name or describe this log of yours instead of yourself")
    show = p.add_argument_group("a log as a podcast show (with --log; '' removes a value)")
    show.add_argument("--language", metavar="TAG", help="its language, such as en or pt-BR")
    show.add_argument("--category", metavar="TEXT",
                      help="its Apple Podcasts category, such as Technology or "
                      "Science/Mathematics")
    show.add_argument("--explicit", action=argparse.BooleanOptionalAction, default=None,
                      help="whether it holds explicit content")
    show.add_argument("--artwork", metavar="BLOB|URL",
                      help="its square artwork: a blob id (`tidings blob ls`) or an image URL")
    p.set_defaults(run=cmd_about)


__all__ = ["add_commands", "argv_bytes", "check_line",
           "check_publish_args", "payload_of", "text_of", "wants_post"]

