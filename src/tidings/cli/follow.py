"""Following an author (an identity, spec/12 §7): `tidings follow ti1...[:log,...]` or an
invite (`tinv1...`), and its merged stream in `tidings show ti1...[:log]`."""

from __future__ import annotations

import argparse

from tidings.cli.common import (
    EXIT_OK,
    entry_json,
    print_json,
)
from tidings.cli.identity import held_identity
from tidings.cli.reading import INDENT, format_when, headline_and_body, printable
from tidings.core.content import decode
from tidings.core.kel import format_identity
from tidings.node.home import Home
from tidings.node.identities import identity_about, merged_entries, parse_target
from tidings.node.state import NodeState
from tidings.replication.identities import ABOUT_LOG, IdentityBook


def follow_identity(text: str, home: Home, follow: bool) -> int:
    target = parse_target(text)
    home.open_logbook(create=True).store.close()
    state = NodeState(home.node_state_path)
    try:
        if follow:
            changed = state.follow_identity(target.identity, target.logs)
            if target.addresses:
                state.add_peers(target.addresses, "invite")
                state.dial_soon(target.addresses)
        else:
            changed = state.unfollow_identity(target.identity)
    finally:
        state.close()
    logs = ", ".join(target.logs) if target.logs else "every log"
    verb = "following" if follow else "no longer following"
    note = "" if changed else " (already)" if follow else " (was not)"
    print(f"{verb} {format_identity(target.identity)} ({logs}){note}")
    return EXIT_OK


def identity_follows(home: Home) -> dict[bytes, frozenset[str]]:
    home.open_logbook(create=True).store.close()
    state = NodeState(home.node_state_path)
    try:
        return state.identity_follows()
    finally:
        state.close()


def show_merged(args: argparse.Namespace, home: Home) -> int:
    """`tidings show ti1...[:log]`: the author's merged stream (spec/12 §7.3), each line
    naming the device it came from."""
    target = parse_target(args.feed)
    book = home.open_logbook()
    state = NodeState(home.node_state_path)
    try:
        current = held_identity(IdentityBook(state), target.identity)
        logs = target.logs or tuple(sorted(
            {info.feed.log_id for info in book.feeds() if info.feed.author_key in
             current.devices} - {ABOUT_LOG}))
        items = merged_entries(book, current, logs)
        about = identity_about(book, current)
    finally:
        state.close()
        book.store.close()
    if args.since is not None:
        items = items[args.since - 1:]
    if args.limit is not None:
        items = items[:args.limit] if args.since is not None else items[-args.limit:]
    if about is not None and not args.json:
        # The author's display name (their newest about, across devices) as a heading.
        print(f"{printable(about.name)} ({format_identity(target.identity)})")
    for item in items:
        device = current.devices[item.entry.author]
        if args.json:
            print_json(entry_json(item.entry, item.payload) | {"device": device.name,
                                                                "identity": format_identity(
                                                                    target.identity)})
        else:
            headline, body = headline_and_body(decode(item.payload), item.payload,
                                               item.entry.payload_size)
            print(f"{format_when(item.entry.timestamp)}  {device.name[:12]:12}  "
                  f"{item.entry.log_id}#{item.entry.seq}  {headline}")
            for line in body:
                print(INDENT + line)
    return EXIT_OK
