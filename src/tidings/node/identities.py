"""Identities on a node: the merged view read from the store, and the home's own identity.

The pure parts live in :mod:`tidings.core.kel` (the log and its fold),
:mod:`tidings.core.merge` (the merged view's order) and
:mod:`tidings.replication.identities` (what a node keeps and wants). This module
reads the store for them, and keeps the home's identity files:

    HOME/root.key       the identity's root secret key, mode 0600 (only on the
                        device that holds the root; `tidings identity export`)
    node.sqlite3        the identity logs held, the identities followed, and
                        which identity this home's device key belongs to
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tidings.core.content import About, decode
from tidings.core.entry import Entry
from tidings.core.ids import INVITE_PREFIX, FeedId, check_log_id
from tidings.core.invite import parse_invite_input
from tidings.core.kel import (
    IdentityState,
    format_identity,
    parse_identity_input,
)
from tidings.core.merge import MergedItem, merge
from tidings.errors import InvalidId, UsageError
from tidings.storage.logbook import Logbook

#: Entries read per device feed for one merged page: a view of a long log is read
#: newest first in pages, never whole into memory.
READ_BATCH = 1000


@dataclass(frozen=True, slots=True)
class MergedEntry:
    """One item of an identity's merged view, with its payload where held."""

    item: MergedItem
    payload: bytes | None

    @property
    def entry(self) -> Entry:
        return self.item.entry

    @property
    def feed(self) -> FeedId:
        return self.item.feed


@dataclass(frozen=True)
class Target:
    """An author to follow: the identity, the logs named (none: every log), addresses."""

    identity: bytes
    logs: tuple[str, ...] = ()
    addresses: tuple[tuple[str, int], ...] = ()


def parse_target(text: str) -> Target:
    """``ti1...``, ``ti1...:log`` (``:log1,log2`` for several) or an invite ``tinv1...``."""
    text = text.strip()
    try:
        if text.startswith(INVITE_PREFIX):
            invite = parse_invite_input(text)
            return Target(invite.identity, invite.logs, invite.addresses)
        ident, _, logs_text = text.partition(":")
        logs = tuple(log for log in logs_text.split(",") if log) if logs_text else ()
        for log in logs:
            check_log_id(log)
        return Target(parse_identity_input(ident), logs)
    except (InvalidId, ValueError) as exc:
        raise UsageError(f"{text[:20]}...: {exc}") from None


def device_feeds(logbook: Logbook, state: IdentityState, log_id: str) -> list[FeedId]:
    """The feeds of ``log_id`` of ``state``'s devices held in ``logbook``."""
    feeds = [FeedId(key, log_id) for key in sorted(state.devices)]
    return [feed for feed in feeds if logbook.head(feed) is not None]


def merged_view(logbook: Logbook, state: IdentityState, log_id: str, *,
                limit: int | None = None) -> list[MergedEntry]:
    """The merged view of ``log_id`` of the identity (spec/12 §7.3): every device's
    entries that count, by (timestamp, device key, seq); the last ``limit`` if given."""
    entries: list[Entry] = []
    payloads: dict[tuple[FeedId, int], bytes | None] = {}
    for feed in device_feeds(logbook, state, log_id):
        since = 1
        while True:
            page = logbook.read(feed, since, READ_BATCH)
            if not page:
                break
            for entry, payload in page:
                entries.append(entry)
                payloads[(feed, entry.seq)] = payload
            since = page[-1][0].seq + 1
    items = merge(state, log_id, entries)
    if limit is not None:
        items = items[-limit:] if limit > 0 else []
    return [MergedEntry(item, payloads.get((item.feed, item.seq))) for item in items]


def merged_entries(logbook: Logbook, state: IdentityState, log_ids: Iterable[str]
                   ) -> list[MergedEntry]:
    """The merged views of several logs, one order (the same key)."""
    out: list[MergedEntry] = []
    for log_id in log_ids:
        out += merged_view(logbook, state, log_id)
    out.sort(key=lambda m: (m.entry.timestamp, m.entry.author, m.entry.seq, m.entry.log_id))
    return out


#: The log an author's "about" entries go to (spec/content.md §6.3).
ABOUT_LOG = "about"


def identity_about(logbook: Logbook, state: IdentityState) -> About | None:
    """The identity's about: the newest about entry across its devices' ``about`` feeds,
    newest by the merged order (spec/12 §7.3; a revoked device's past its cut does not
    count); None if no device's about is held."""
    for item in reversed(merged_view(logbook, state, ABOUT_LOG)):
        if item.payload is not None:
            content = decode(item.payload)
            if isinstance(content, About):
                return content
    return None


def describe(state: IdentityState) -> dict[str, object]:
    """An identity's state as JSON-ready data (for `tidings identity show` and the API)."""
    return {
        "identity": format_identity(state.identity),
        "status": state.status,
        "seq": state.seq,
        "devices": [
            {"key": key.hex(), "author": str(FeedId(key, "main").author), "name": d.name,
             "added_seq": d.added_seq, "revoked_seq": d.revoked_seq,
             "cuts": {log: c.seq for log, c in d.cuts.items()}}
            for key, d in sorted(state.devices.items())
        ],
        "fork_seq": state.fork_seq,
        "dead_seq": state.dead_seq,
    }
