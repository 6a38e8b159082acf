# PYTHON_ARGCOMPLETE_OK  (tab completion with argcomplete, the `completion` extra)
"""``tidings``: the command line. Data goes to stdout, messages to stderr.

Exit codes: 0 success; 1 the data is bad (verification failed, a bundle is
damaged, a peer or the node's API refused); 2 the command cannot run as asked
(bad arguments, no home, unknown feed); 3 no node runs for the home (`status`,
`watch`); 130 stopped by Ctrl-C (SIGINT), with one line and no traceback.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import gc
import importlib
import os
import sqlite3
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from tidings import __version__
from tidings.cli.common import (
    EXIT_BAD_DATA,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    entry_json,
    err,
    feed_arg,
    print_json,
    sigint_deferred,
)
from tidings.core.entry import MAX_PAYLOAD_SIZE
from tidings.core.ids import FeedId
from tidings.errors import InvalidEntry, PeerError, TidingsError, UsageError
from tidings.node.home import Home
from tidings.storage.logbook import BATCH_BYTES, BATCH_SIZE, ImportResult


def cmd_init(args: argparse.Namespace, home: Home) -> int:
    identity, created = home.init()
    if args.json:
        print_json({"author": str(identity.author), "home": str(home.path), "created": created})
    else:
        print(identity.author)
        if created:
            err(f"created a new identity in {home.path}")
        else:
            err(f"already initialized; keeping the identity in {home.path}")
    return EXIT_OK


def cmd_whoami(args: argparse.Namespace, home: Home) -> int:
    identity = home.identity()
    if args.json:
        print_json({"author": str(identity.author), "home": str(home.path)})
    else:
        print(identity.author)
    return EXIT_OK


def _stdin_lines_batches(stream: BinaryIO, binary: bool = False) -> Iterator[list[bytes]]:
    """Lines without their ending (one ``\\n`` or ``\\r\\n``), in batches.

    Each read is bounded, so a line longer than a payload may be is refused
    without reading it whole. Unless ``binary``, a line must be text that is
    not blank (:func:`authoring.check_line`).
    """
    from tidings.cli import authoring

    batch: list[bytes] = []
    batch_bytes = 0
    number = 0
    while line := stream.readline(MAX_PAYLOAD_SIZE + 2):
        number += 1
        if line.endswith(b"\n"):
            line = line[:-2] if line.endswith(b"\r\n") else line[:-1]
        problem = (f"line {number} is over {MAX_PAYLOAD_SIZE} bytes, the payload bound"
                   if len(line) > MAX_PAYLOAD_SIZE
                   else None if binary else authoring.check_line(line, number))
        if problem is not None:
            if batch:
                yield batch  # the lines before it are fine: publish them first
            raise _LineTooLong(number, problem)
        batch.append(line)
        batch_bytes += len(line)
        if len(batch) >= BATCH_SIZE or batch_bytes >= BATCH_BYTES:
            yield batch
            batch, batch_bytes = [], 0
    if batch:
        yield batch


class _LineTooLong(Exception):
    """A line that cannot be published (too long, or not text without --binary)."""

    def __init__(self, number: int, problem: str) -> None:
        super().__init__(number)
        self.number = number
        self.problem = problem


def cmd_publish(args: argparse.Namespace, home: Home) -> int:
    from tidings.cli import authoring
    from tidings.cli.blobs import publish_attachments, too_large_message

    if args.attach:
        return publish_attachments(args, home)
    sources = sum([args.text is not None, args.file is not None, args.lines])
    if sources != 1:
        raise CommandError("give exactly one of TEXT, --file PATH or --lines")
    authoring.check_publish_args(args)
    book = home.open_logbook(need_identity=True)
    log_id = args.log or home.config().default_log
    authoring.refuse_if_behind(home, book, log_id)
    if args.lines:
        if args.end:
            raise CommandError("--end publishes one entry; it does not go with --lines")
        total, first, last = 0, None, None
        try:
            for batch in _stdin_lines_batches(sys.stdin.buffer, args.binary):
                # A Ctrl-C waits for the batch: what the message below says is durable is.
                with sigint_deferred():
                    published = book.publish_batch(batch, log_id)
                    first = first or published[0]
                    last = published[-1]
                    total += len(batch)
                if sys.stderr.isatty():
                    print(f"\rpublished {total} entries", end="", file=sys.stderr, flush=True)
        except BaseException as exc:
            if sys.stderr.isatty():
                print(file=sys.stderr)
            done = f"published lines 1-{total}" if total else "published nothing"
            if last is not None:
                done += f" (last seq {last.seq})"
            if not isinstance(exc, _LineTooLong | TidingsError):
                err(done)  # whatever stopped us, say what is already durable
                raise
            if isinstance(exc, _LineTooLong):
                raise CommandError(
                    f"{exc.problem}; {done}; the lines after it were not read"
                ) from None
            raise CommandError(f"{exc}; {done}", EXIT_BAD_DATA
                               if isinstance(exc, InvalidEntry) else EXIT_USAGE) from None
        if sys.stderr.isatty() and total:
            print(file=sys.stderr)
        if last is None or first is None:
            err("standard input was empty; nothing published")
            return EXIT_OK
        if args.json:
            print_json({"feed": str(last.feed), "count": total, "first_seq": first.seq,
                         "last_seq": last.seq, "hash": last.hash.hex()})
        else:
            # Another process may publish to the log at the same time, so the
            # entries need not be contiguous: report the count and the last.
            print(f"{last.feed} {last.seq} {last.hash.hex()}")
            err(f"published {total} entries; the last is seq {last.seq}")
        return EXIT_OK
    if args.file is not None:
        try:
            if args.file == "-":
                payload = sys.stdin.buffer.read(MAX_PAYLOAD_SIZE + 1)
                size = -1 if len(payload) > MAX_PAYLOAD_SIZE else len(payload)
            else:
                with open(args.file, "rb") as handle:
                    payload = handle.read(MAX_PAYLOAD_SIZE + 1)  # bounded: never more
                    size = os.fstat(handle.fileno()).st_size
        except OSError as exc:
            raise CommandError(f"cannot read {args.file}: {exc.strerror}") from None
        if len(payload) > MAX_PAYLOAD_SIZE:
            raise CommandError(too_large_message(size, MAX_PAYLOAD_SIZE, args.file))
    else:
        payload = authoring.argv_bytes(args.text)  # the argument's bytes, even if not UTF-8
    source = "TEXT" if args.text is not None else ("standard input" if args.file == "-"
                                                   else args.file)
    if len(payload) <= MAX_PAYLOAD_SIZE:
        payload = authoring.payload_of(args, payload, source, book)
    if len(payload) > MAX_PAYLOAD_SIZE:
        raise CommandError(
            f"the payload is {len(payload)} bytes; an entry's payload holds at most "
            f"{MAX_PAYLOAD_SIZE} bytes"
        )
    entry = book.publish(payload, log_id, end_of_log=args.end)
    if args.json:
        print_json(entry_json(entry, None) | {"payload": None})
    else:
        print(f"{entry.feed} {entry.seq} {entry.hash.hex()}")
    return EXIT_OK


def cmd_feeds(args: argparse.Namespace, home: Home) -> int:
    book = home.open_logbook()
    mine = book.identity.author.key if book.identity else None
    for info in book.feeds():
        if args.json:
            print_json({"feed": str(info.feed), "author": str(info.feed.author),
                         "log": info.feed.log_id, "latest_seq": info.latest_seq,
                         "forked_at": info.forked_at, "mine": info.feed.author_key == mine})
        else:
            flags = " (mine)" if info.feed.author_key == mine else ""
            if info.forked_at is not None:
                flags += f" FORKED at {info.forked_at}"
            print(f"{info.feed}  {info.latest_seq}{flags}")
    return EXIT_OK


def cmd_export(args: argparse.Namespace, home: Home) -> int:
    from tidings.cli.identity import bundle_contents, identity_events_for

    book = home.open_logbook()
    # An author (ti1...[:log]): its device feeds and its identity log, one merged stream.
    author = bundle_contents(home, book, args.feed)
    if author is None:
        feed = feed_arg(args.feed, book)
        if book.head(feed) is None and not book.fork_proofs(feed):
            raise CommandError(f"{feed} is not in this store (see `tidings feeds`)")
        feeds, events = [feed], identity_events_for(home, [feed])
    else:
        feeds, events = author
        if not feeds:
            raise CommandError(f"this store holds no device feed of {args.feed}")
    out = Path(args.output)
    tmp = out.with_name(out.name + ".part")
    try:
        with open(tmp, "wb") as handle:
            count = book.export_bundle(feeds, handle.write, identity_events=events)
        tmp.replace(out)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise CommandError(f"cannot write {out}: {exc.strerror}") from None
    named = ", ".join(str(f) for f in feeds)
    if args.json:
        print_json({"feed": str(feeds[0]), "feeds": [str(f) for f in feeds], "entries": count,
                    "identity_events": len(events), "file": str(out)})
    else:
        err(f"wrote {count} entries of {named}"
            + (f" and {len(events)} identity log events" if events else "") + f" to {out}")
    return EXIT_OK


def cmd_import(args: argparse.Namespace, home: Home) -> int:
    if not Path(args.file).exists():
        raise CommandError(f"cannot read {args.file}: no such file")
    book = home.open_logbook(create=True)
    show_progress = sys.stderr.isatty()

    def progress(result: ImportResult) -> None:
        print(f"\rimported {result.added} entries", end="", file=sys.stderr, flush=True)

    try:
        with open(args.file, "rb") as handle:
            result = book.import_bundle(handle.read, progress=progress if show_progress else None)
    except OSError as exc:
        raise CommandError(f"cannot read {args.file}: {exc.strerror}") from None
    if show_progress:
        print(file=sys.stderr)
    refused: list[str] = []
    if result.identity_events:  # the logs that place the device feeds (spec/07 §3)
        from tidings.cli.identity import fold_imported

        _, refused = fold_imported(home, result.identity_events)
    if args.json:
        print_json({
            "added": result.added, "duplicates": result.duplicates,
            "fork_proofs": result.fork_proofs, "feeds": sorted(str(f) for f in result.feeds),
            "identity_events": len(result.identity_events), "identity_refused": refused,
            "error": None if result.error is None else _error_json(result.error),
        })
    else:
        err(f"imported {result.added} new entries ({result.duplicates} already held, "
             f"{result.fork_proofs} fork proofs) from {args.file}")
        for line in refused:
            err(line)
    if refused and result.error is None:
        err("the entries stand on their own; the refused identity events were not kept")
        return EXIT_BAD_DATA
    if result.error is not None:
        err(f"stopped at the first bad record: {result.error}")
        err("everything before it was verified and stored; nothing after it was")
        return EXIT_BAD_DATA
    return EXIT_OK


def _error_json(error: Exception) -> dict[str, Any]:
    if isinstance(error, InvalidEntry):
        return {"rule": error.rule, "feed": error.feed, "seq": error.seq, "detail": error.detail}
    return {"rule": type(error).__name__, "detail": str(error)}


def cmd_verify(args: argparse.Namespace, home: Home) -> int:
    book = home.open_logbook()
    feed = feed_arg(args.feed, book) if args.feed else None
    if feed is not None and book.head(feed) is None:
        raise CommandError(f"{feed} is not in this store (see `tidings feeds`)")
    bad = 0

    def progress(checking: FeedId, done: int) -> None:
        print(f"\rverifying {checking}: {done} entries", end="", file=sys.stderr, flush=True)

    reports = book.verify(feed, progress=progress if sys.stderr.isatty() else None)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    for report in reports:
        bad += not report.ok
        if args.json:
            print_json({"feed": str(report.feed), "entries": report.entries,
                         "payloads": report.payloads, "forked_at": report.forked_at,
                         "ok": report.ok,
                         "error": None if report.error is None else _error_json(report.error)})
            continue
        status = "ok" if report.ok else "FAILED"
        line = f"{report.feed}  {report.entries} entries, {report.payloads} payloads  {status}"
        if report.forked_at is not None:
            line += f"  (forked at seq {report.forked_at})"
        print(line)
        if report.error is not None:
            err(str(report.error))
    return EXIT_BAD_DATA if bad else EXIT_OK


def cmd_delete_payload(args: argparse.Namespace, home: Home) -> int:
    book = home.open_logbook()
    feed = feed_arg(args.feed, book)
    if not book.delete_payload(feed, args.seq):
        raise CommandError(f"{feed} holds no payload at seq {args.seq}")
    err(f"deleted the payload of {feed} seq {args.seq}; the entry stays")
    return EXIT_OK


def cmd_forks(args: argparse.Namespace, home: Home) -> int:
    book = home.open_logbook()
    for proof in book.fork_proofs():
        if args.json:
            print_json({"feed": str(proof.feed), "seq": proof.seq,
                         "proof": base64.b64encode(proof.to_bytes()).decode()})
        else:
            print(f"{proof.feed}  seq {proof.seq}  {proof.first[0].hash.hex()[:12]} "
                  f"vs {proof.second[0].hash.hex()[:12]}")
    return EXIT_OK


# -- parser -----------------------------------------------------------------


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


#: The module of tidings.cli that adds each command ("main": this module): a command
#: loads its own module alone, so `tidings sync` imports neither the content types nor
#: the identities nor the HTTP side, and `tidings publish` neither the daemon nor the
#: replication nor the HTTP side (tests/test_cli_startup.py checks both).
COMMAND_MODULES = {
    **dict.fromkeys(("init", "whoami", "publish", "feeds", "export", "import", "verify",
                     "delete-payload", "forks"), "main"),
    **dict.fromkeys(("status", "serve-feeds"), "api"),
    "about": "authoring",
    "blob": "blobs",
    **dict.fromkeys(("retract", "edit"), "corrections"),
    **dict.fromkeys(("identity", "share", "device"), "identity"),
    "import-feed": "import_feed",
    **dict.fromkeys(("up", "sync", "fetch", "follow", "unfollow", "following", "network"),
                    "node"),
    **dict.fromkeys(("show", "watch"), "reading"),
}


def command_named(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names, when only ``--home DIR`` comes before it (else None)."""
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg == "--home":
            index += 2
        elif arg.startswith("--home="):
            index += 1
        else:
            return None if arg.startswith("-") else arg
    return None


def _add_module_commands(module: str, command: Callable[..., argparse.ArgumentParser]) -> None:
    add = importlib.import_module(f"tidings.cli.{module}").add_commands
    if module == "reading":
        add(command, _positive)
    else:
        add(command)


def _add_publish_arguments(p: argparse.ArgumentParser) -> None:
    """What makes ``publish`` write a post (cli/authoring.py reads them)."""
    p.add_argument("--title", metavar="TITLE", help="make a post with this title")
    p.add_argument("--tag", action="append", metavar="TAG",
                   help="make a post with this tag (repeat for more)")
    p.add_argument("--link", action="append", metavar="URL",
                   help="make a post that links to this http(s) URL (repeat for more)")
    p.add_argument("--reply-to", metavar="FEED:SEQ",
                   help="make a post that answers entry SEQ of FEED (a feed id or a log name)")
    p.add_argument("--binary", action="store_true",
                   help="publish the bytes as they are (default: UTF-8 text, not blank)")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with ``only`` (a module of COMMAND_MODULES), just the
    commands that module adds (what running one of them needs): the whole has this
    module's commands in two parts, with authoring's and reading's between them."""
    parser = argparse.ArgumentParser(
        prog="tidings",
        description="Signed, append-only logs: publish, follow, replicate, verify, export.",
    )
    parser.add_argument("--version", action="version", version=f"tidings {__version__}")
    home_help = ("the node's home directory (default: $TIDINGS_HOME, else the "
                 "platform's user data directory)")
    parser.add_argument("--home", metavar="DIR", help=home_help)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help_text: str, json_flag: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        # --home after the subcommand too; it wins over one before it.
        p.add_argument("--home", metavar="DIR", default=argparse.SUPPRESS, help=home_help)
        if json_flag:
            p.add_argument("--json", action="store_true", help="print JSON (one object a line)")
        return p

    if only is not None and only != "main":
        _add_module_commands(only, command)
        return parser

    p = command("init", "create the home directory and a new identity (keeps an existing one)")
    p.set_defaults(run=cmd_init)
    p = command("whoami", "print your author id")
    p.set_defaults(run=cmd_whoami)

    p = command("publish", "publish one entry (or one per line of standard input)")
    p.add_argument("text", nargs="?", metavar="TEXT",
                   help="the text (plain text, or a post's with --title, --tag, ...)")
    p.add_argument("--log", metavar="NAME",
                   help="the log to publish to (default from config: main)")
    p.add_argument("--file", metavar="PATH", help="take the payload from a file ('-' for stdin)")
    p.add_argument("--lines", action="store_true",
                   help="publish each line of standard input as its own entry")
    p.add_argument("--end", action="store_true",
                   help="make this the log's last entry (end of log)")
    _add_publish_arguments(p)
    p.add_argument("--attach", action="append", metavar="FILE", default=[],
                   help="attach a file of any size (audio, video, PDF, image...) as a blob; "
                        "TEXT is the post's text (repeat for several files)")
    p.set_defaults(run=cmd_publish)
    if only is None:
        _add_module_commands("authoring", command)
        _add_module_commands("reading", command)

    p = command("feeds", "list the feeds in the store with their latest seq")
    p.set_defaults(run=cmd_feeds)

    p = command("export", "write a feed (or an author's feeds) to a bundle file")
    p.add_argument("feed", metavar="FEED", help="a feed id, the name of one of your logs, or "
                   "an author (ti1...[:LOG]: its devices' feeds and identity log)")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="the bundle to write")
    p.set_defaults(run=cmd_export)

    p = command("import", "verify a bundle file and store what is valid")
    p.add_argument("file", metavar="FILE")
    p.set_defaults(run=cmd_import)

    p = command("verify", "re-check the stored entries and payloads")
    p.add_argument("feed", nargs="?", metavar="FEED", help="one feed (default: every feed)")
    p.set_defaults(run=cmd_verify)

    p = command("delete-payload", "forget one entry's payload; the entry stays", json_flag=False)
    p.add_argument("feed", metavar="FEED")
    p.add_argument("seq", type=_positive, metavar="SEQ")
    p.set_defaults(run=cmd_delete_payload)

    p = command("forks", "list the fork proofs in the store")
    p.set_defaults(run=cmd_forks)
    if only is None:
        for module in ("node", "api", "corrections", "import_feed", "identity", "blobs"):
            _add_module_commands(module, command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:
        err("interrupted")
        return EXIT_INTERRUPTED
    except BaseExceptionGroup as group:
        # trio gathers a Ctrl-C with what it cancelled: one line, not a traceback.
        if group.subgroup(KeyboardInterrupt) is None:
            raise
        err("interrupted")
        return EXIT_INTERRUPTED
    finally:
        if argv is None:  # run as the program (not called from Python): it exits next
            _exit_without_collecting()


def _exit_without_collecting() -> None:
    """Spare the interpreter's last garbage collections, which walk every object left
    (about 0.3 s after a sync of 10,000 feeds, half a no-op reconnect's CPU): the process
    ends now and frees its memory whole. Files and the store are closed already."""
    gc.freeze()


def _complete(parser: argparse.ArgumentParser) -> None:
    """Answer the shell's tab completion, if it asks and argcomplete is installed."""
    if "_ARGCOMPLETE" not in os.environ:
        return  # not completing: costs one lookup
    try:
        import argcomplete
    except ImportError:
        return
    argcomplete.autocomplete(parser)  # (prints the completions and exits)


def _main(argv: Sequence[str] | None) -> int:
    words = sys.argv[1:] if argv is None else argv
    if list(words) == ["--version"]:  # (what argparse prints, without building the parser)
        print(f"tidings {__version__}")
        return EXIT_OK
    completing = "_ARGCOMPLETE" in os.environ  # (the shell asks for every command)
    parser = build_parser(None if completing else COMMAND_MODULES.get(command_named(words) or ""))
    _complete(parser)
    args = parser.parse_args(argv)
    home = Home.resolve(args.home)
    try:
        code = int(args.run(args, home))
        sys.stdout.flush()  # a closed pipe shows up here, not after main returns
        return code
    except CommandError as exc:
        err(str(exc))
        return exc.code
    except (InvalidEntry, PeerError) as exc:
        err(str(exc))
        return EXIT_BAD_DATA
    except (UsageError, TidingsError) as exc:
        err(str(exc))
        return EXIT_USAGE
    except sqlite3.OperationalError as exc:
        what = "full: free some space" if "full" in str(exc) else "busy or unreadable"
        err(f"the store is {what} ({exc}); try again, or check {home.path}")
        return EXIT_USAGE
    except sqlite3.Error as exc:
        err(f"the store failed: {exc}")
        return EXIT_USAGE
    except BrokenPipeError:
        # The reader went away (`tidings show ... | head`): stop quietly, and
        # keep Python from complaining when it flushes stdout at exit.
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        return EXIT_OK
    except OSError as exc:
        err(f"{exc.filename or 'input/output'}: {exc.strerror or exc}")
        return EXIT_USAGE
