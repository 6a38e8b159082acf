"""Blobs on the command line: ``publish --attach`` and ``tidings blob ...`` (spec/13).

The chunk store (``HOME/blobs``) belongs to one process at a time. When a node
runs on the home it holds the store, so ``blob get``, ``pin``, ``unpin`` and
``rm`` go through its local API; ``publish --attach`` imports the file itself
(a whole blob renamed into place, which the node finds on first use).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tidings.cli.authoring import refuse_if_behind, reply_ref
from tidings.cli.common import EXIT_BAD_DATA, EXIT_OK, CommandError, err, print_json
from tidings.core.blob import BlobId
from tidings.core.content import Attachment, Post, encode
from tidings.core.media import duration_of, media_type_of
from tidings.errors import UsageError
from tidings.node.home import Home
from tidings.storage.blobs import BlobStore, ChunksMissing


def attach(home: Home, paths: list[str]) -> list[Attachment]:
    """Import files as pinned blobs; their attachments (media type, size, duration)."""
    attachments = []
    store = BlobStore.for_import(home.path)
    try:
        for name in paths:
            path = Path(name)
            try:
                with open(path, "rb") as handle:
                    head = handle.read(64 * 1024)
            except OSError as exc:
                raise CommandError(f"cannot read {name}: {exc.strerror}") from None
            if sys.stderr.isatty():
                err(f"storing {name} ...")
            blob = store.import_file(path, pin=True)
            kind = media_type_of(path.name, head)
            attachments.append(Attachment.of_blob(
                blob, kind, title=path.name, duration=duration_of(kind, head, blob.size)))
    finally:
        store.close()
    return attachments


def publish_attachments(args: argparse.Namespace, home: Home) -> int:
    """``tidings publish [TEXT] --attach FILE ...``: the blobs, then one post naming them."""
    if args.file is not None or args.lines or args.end:
        raise CommandError("--attach goes with TEXT (the post's text), not --file, --lines "
                           "or --end")
    book = home.open_logbook(need_identity=True)
    log_id = args.log or home.config().default_log
    refuse_if_behind(home, book, log_id)
    reply_to = reply_ref(args.reply_to, book) if args.reply_to else None
    attachments = attach(home, args.attach)
    post = Post(args.text or "", title=args.title, links=tuple(args.link or ()),
                tags=tuple(args.tag or ()), reply_to=reply_to, attachments=tuple(attachments))
    entry = book.publish(encode(post), log_id)
    if args.json:
        print_json({"feed": str(entry.feed), "seq": entry.seq, "hash": entry.hash.hex(),
                    "attachments": [_attachment_json(a) for a in attachments]})
    else:
        print(f"{entry.feed} {entry.seq} {entry.hash.hex()}")
        for a in attachments:
            err(f"attached {a.title}: {a.blob} ({a.media_type}, {a.size} bytes"
                + (f", {a.duration} s" if a.duration is not None else "") + ")")
    return EXIT_OK


def _attachment_json(a: Attachment) -> dict[str, Any]:
    return {"blob": str(a.blob), "media_type": a.media_type, "size": a.size,
            "title": a.title, "duration": a.duration}


def too_large_message(size: int, limit: int, source: str) -> str:
    """What `publish --file` says of a file over the payload bound."""
    what = f"{source} is {size:,} bytes" if size >= 0 else f"{source} is over {limit:,} bytes"
    return (f"{what}; an entry's payload holds at most {limit:,} bytes (1 MiB). "
            f"Publish it as an attachment instead: tidings publish --attach {source} "
            "[TEXT] (any size up to 4 GiB, fetched by readers chunk by chunk)")


# -- tidings blob ... -------------------------------------------------------------------


def _blob_arg(text: str) -> BlobId:
    try:
        return BlobId.from_input(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


@contextmanager
def _own_store(home: Home) -> Iterator[BlobStore | None]:
    """The home's chunk store, or None when its running node holds it."""
    try:
        store = BlobStore.in_home(home.path)
    except UsageError:
        yield None
        return
    try:
        yield store
    finally:
        store.close()


def _api(home: Home, method: str, path: str, *, output: Path | None = None) -> Any:
    """A call to the node's local API (JSON back), or a download into ``output``."""
    import json
    import shutil
    import urllib.error
    import urllib.request

    from tidings.cli.api import EXIT_NOT_RUNNING, api_failure

    try:
        url = json.loads(home.api_file.read_text())["url"]
    except (OSError, ValueError, KeyError, TypeError):
        raise CommandError(
            f"another process holds {home.path}/blobs and no node API is running for the "
            "home: stop that process, or start `tidings up` (without --no-api)",
            EXIT_NOT_RUNNING) from None
    request = urllib.request.Request(url + path, method=method, headers={
        "Authorization": f"Bearer {home.api_token()}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            if output is None:
                return json.loads(response.read())
            temporary = output.with_name(output.name + ".part")
            with open(temporary, "wb") as handle:
                shutil.copyfileobj(response, handle, 1024 * 1024)
            temporary.replace(output)
            return None
    except (urllib.error.URLError, OSError) as exc:  # (HTTPError is a URLError)
        raise api_failure(exc, url) from None


def _info_json(blob: BlobId, held: int, pinned: bool, disk: int) -> dict[str, Any]:
    return {"blob": str(blob), "size": blob.size, "chunks": blob.chunk_count, "held": held,
            "complete": held == blob.chunk_count, "pinned": pinned, "disk_bytes": disk}


def cmd_blob_ls(args: argparse.Namespace, home: Home) -> int:
    with _own_store(home) as store:
        if store is None:
            rows = _api(home, "GET", "/v1/blobs")["blobs"]
        else:
            rows = [_info_json(i.blob_id, i.held, i.pinned, i.disk_bytes) for i in store.blobs()]
    for row in rows:
        if args.json:
            print_json(row)
        else:
            held = "whole" if row["complete"] else f"{row['held']}/{row['chunks']} chunks"
            pin = "  pinned" if row["pinned"] else ""
            print(f"{row['blob']}  {row['size']:>12,} bytes  {held}{pin}")
    return EXIT_OK


def cmd_blob_get(args: argparse.Namespace, home: Home) -> int:
    blob: BlobId = args.blob
    output = Path(args.output)
    with _own_store(home) as store:
        if store is not None and store.has(blob):
            _write(output, lambda: store.iter_range(blob), blob.size)
        elif store is not None:
            raise CommandError(
                f"{blob} is not held here{' whole' if store.info(blob) else ''}; start the "
                "node (`tidings up`) and run this again: it fetches the blob from its peers",
                EXIT_BAD_DATA)
        else:
            _fetch_through_node(home, blob, output, args.timeout)
    err(f"wrote {blob.size:,} bytes to {output}")
    return EXIT_OK


def _write(output: Path, chunks: Callable[[], Iterator[bytes]], size: int) -> None:
    temporary = output.with_name(output.name + ".part")
    try:
        with open(temporary, "wb") as handle:
            done = 0
            for piece in chunks():
                handle.write(piece)
                done += len(piece)
                _progress(done, size)
        temporary.replace(output)
    except ChunksMissing as exc:
        temporary.unlink(missing_ok=True)
        raise CommandError(f"{exc}: run `tidings blob get` again with the node running",
                           EXIT_BAD_DATA) from None
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise CommandError(f"cannot write {output}: {exc.strerror}") from None
    if sys.stderr.isatty():
        print(file=sys.stderr)


def _progress(done: int, size: int) -> None:
    if sys.stderr.isatty():
        share = done * 100 // size if size else 100
        print(f"\r{done:,} of {size:,} bytes ({share}%)", end="", file=sys.stderr, flush=True)


def _fetch_through_node(home: Home, blob: BlobId, output: Path, timeout: float) -> None:
    """Ask the running node to fetch the blob (pinned), wait, then download it."""
    deadline = time.monotonic() + timeout
    _api(home, "POST", f"/v1/blobs/{blob}/fetch")
    while True:
        state = _api(home, "GET", f"/v1/blobs/{blob}/info")
        _progress(state["held"] * (blob.size // max(1, blob.chunk_count)), blob.size)
        if state["complete"]:
            break
        if time.monotonic() > deadline:
            raise CommandError(f"{blob}: {state['held']} of {state['chunks']} chunks after "
                               f"{timeout:.0f} s; the node keeps fetching it (run this "
                               "again later), or add a peer that holds it", EXIT_BAD_DATA)
        time.sleep(0.2)
    _api(home, "GET", f"/v1/blobs/{blob}", output=output)


def _pin(args: argparse.Namespace, home: Home, pinned: bool) -> int:
    blob: BlobId = args.blob
    with _own_store(home) as store:
        if store is None:
            _api(home, "POST", f"/v1/blobs/{blob}/{'pin' if pinned else 'unpin'}")
        elif pinned:
            store.pin(blob)
        else:
            store.unpin(blob)
    err(f"{'pinned' if pinned else 'unpinned'} {blob}")
    return EXIT_OK


def cmd_blob_rm(args: argparse.Namespace, home: Home) -> int:
    blob: BlobId = args.blob
    with _own_store(home) as store:
        if store is None:
            removed = _api(home, "DELETE", f"/v1/blobs/{blob}")["removed"]
        else:
            removed = store.remove(blob)
    err(f"removed {blob}" if removed else f"{blob} was not held")
    return EXIT_OK


def add_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    p = command("blob", "blobs (attachments): get, ls, pin, unpin, rm", json_flag=False)
    sub = p.add_subparsers(dest="blob_command", metavar="ACTION", required=True)

    def action(name: str, help_text: str, *, blob: bool = True,
               json_flag: bool = False) -> argparse.ArgumentParser:
        q = sub.add_parser(name, help=help_text, description=help_text)
        if blob:
            q.add_argument("blob", type=_blob_arg, metavar="BLOB", help="a blob id (tb1..._SIZE)")
        if json_flag:
            q.add_argument("--json", action="store_true", help="print JSON (one object a line)")
        return q

    q = action("get", "write a blob to a file, fetched from peers by the running node if needed")
    q.add_argument("-o", "--output", required=True, metavar="FILE")
    q.add_argument("--timeout", type=float, default=3600.0, metavar="SECONDS",
                   help="give up waiting for the node to fetch it after this long")
    q.set_defaults(run=cmd_blob_get)
    q = action("ls", "list the blobs held, wholly or in part", blob=False, json_flag=True)
    q.set_defaults(run=cmd_blob_ls)
    q = action("pin", "keep a blob: never evicted to make room")
    q.set_defaults(run=lambda args, home: _pin(args, home, True))
    q = action("unpin", "let a blob be evicted when room is needed")
    q.set_defaults(run=lambda args, home: _pin(args, home, False))
    q = action("rm", "remove a blob (the posts naming it stay valid; no fetch policy "
               "brings it back until you `blob get` it)")
    q.set_defaults(run=cmd_blob_rm)
