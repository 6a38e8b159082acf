"""What a node remembers besides the logs: follows, peers and past clocks.

One SQLite file, ``HOME/node.sqlite3`` (mode 0600), shared by ``tidings up``,
``tidings sync`` and ``tidings follow`` running at once (WAL, busy timeout).
"""

from __future__ import annotations

import ipaddress
import os
import random
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tidings.core.ids import FeedId
from tidings.core.records import record
from tidings.errors import UsageError
from tidings.replication.clock import clock_digest
from tidings.wire.messages import Note


class StaleStore(UsageError):
    """This store is behind what peers hold of its own feed: publishing would fork it."""


#: Addresses kept in the peer table; the least useful are dropped beyond it,
#: so peer exchange cannot grow the table without bound.
MAX_PEERS = 1000
#: Reconnect backoff: doubles per failure, capped, with jitter (×0.5 to ×1.5)
#: so that nodes restarted together do not reconnect in lockstep.
BACKOFF_BASE = 1.0
BACKOFF_CAP = 300.0
#: A peer that sent invalid data waits at least this long.
MISBEHAVIOUR_BACKOFF = 600.0
#: After a clean disconnect, try again this soon (a relay restarting, a laptop waking).
RECONNECT_AFTER = 5.0
BUSY_TIMEOUT_MS = 10_000
#: Peers whose last clocks are kept: enough for every peer a node meets often;
#: strangers with fresh keys cannot grow the file past it.
MAX_REMEMBERED = 256
#: Learned addresses (peer exchange, LAN) never connected to, kept per network
#: prefix (/24 for IPv4, /48 for IPv6): one party with one network cannot fill
#: the table or the dial queue with addresses it controls (spec/14 §5).
MAX_PER_PREFIX = 4
#: Learned addresses never connected to, kept from one source (the network prefix of
#: the peer that gave them, or of a LAN beacon) across all its sessions and restarts:
#: a party that reconnects, or comes back with fresh keys, cannot keep adding
#: addresses; the per-session bound alone would let it (spec/14 §5).
MAX_PER_SOURCE = 16
#: Where learned addresses come from; configured and once-connected ones are dialed first.
LEARNED = ("exchange", "lan")

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS follows (
        feed TEXT PRIMARY KEY, added REAL NOT NULL, author BLOB, log_id TEXT)""",
    """CREATE TABLE IF NOT EXISTS peers (
        host TEXT NOT NULL, port INTEGER NOT NULL, source TEXT NOT NULL,
        node_key BLOB, failures INTEGER NOT NULL DEFAULT 0,
        next_attempt REAL NOT NULL DEFAULT 0, last_connected REAL,
        PRIMARY KEY (host, port))""",
    """CREATE TABLE IF NOT EXISTS clock_peers (
        peer BLOB PRIMARY KEY, saved REAL NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS clocks (
        peer BLOB NOT NULL, sent INTEGER NOT NULL, author BLOB NOT NULL,
        log_id TEXT NOT NULL, seq INTEGER NOT NULL, flags INTEGER NOT NULL,
        head BLOB,
        PRIMARY KEY (peer, sent, author, log_id)) WITHOUT ROWID""",
    # Identities (spec/12): the logs held, the identities followed (logs: the log ids
    # followed, comma-separated; empty for every log), and this home's own.
    """CREATE TABLE IF NOT EXISTS identity_events (
        identity BLOB NOT NULL, hash BLOB NOT NULL, raw BLOB NOT NULL,
        PRIMARY KEY (identity, hash)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS identity_follows (
        identity BLOB PRIMARY KEY, logs TEXT NOT NULL, added REAL NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value BLOB NOT NULL)""",
    # This home's own feeds as peers hold them: publishing to a feed that a peer holds
    # further than the store would fork it (a restored backup, a copied home).
    """CREATE TABLE IF NOT EXISTS own_heads (feed TEXT PRIMARY KEY, seq INTEGER NOT NULL)""",
]
#: Columns added to tables made by an older tidings (``ALTER TABLE ... ADD COLUMN``).
#: A note names its head hash (spec/10 §2): without it a remembered note never
#: equals the note it remembers, and every reconnect resent every note.
#: A follow's feed also in binary (author key, log id): a client that follows
#: 10,000 feeds starts without decoding 10,000 text ids.
_ADDED_COLUMNS = [("clocks", "head", "BLOB"), ("follows", "author", "BLOB"),
                  ("follows", "log_id", "TEXT"),
                  # The digests of a peer's remembered clocks (spec/10 §3), kept with
                  # them: a reconnect that changed nothing computes none (NULL: computed).
                  ("clock_peers", "sent_digest", "BLOB"),
                  ("clock_peers", "received_digest", "BLOB"),
                  # Who gave a learned address (the network prefix of its source).
                  ("peers", "learned_from", "TEXT"),
                  # What the home was when a session with the peer ended settled (the
                  # clocks hold exactly this side's notes, nothing owed either way):
                  # the next one, finding the same, starts without loading the notes.
                  ("clock_peers", "settled", "BLOB")]

#: Notes as a clock memory keeps them: ``{feed: note}``, sent and received.
Clocks = tuple[dict[FeedId, Note], dict[FeedId, Note]]
#: ``clock_digest`` of each (None: not known).
Digests = tuple[bytes | None, bytes | None]


@record
class PeerRecord:
    host: str
    port: int
    source: str
    failures: int
    next_attempt: float
    last_connected: float | None

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port


def network_prefix(host: str) -> str:
    """The /24 (IPv4) or /48 (IPv6) an address is in; a DNS name is its own prefix."""
    try:
        parsed = ipaddress.ip_address(host)
    except ValueError:
        return host.lower()
    bits = 24 if parsed.version == 4 else 48
    return str(ipaddress.ip_network(f"{parsed}/{bits}", strict=False))


#: The jitter of reconnection waits: a generator of the node's own, so that neither
#: the app that embeds a node nor its tests see the module ``random`` move.
_JITTER = random.Random()


def backoff(failures: int, rng: random.Random | None = None) -> float:
    """Seconds to wait after ``failures`` failures in a row."""
    jitter = (rng or _JITTER).uniform(0.5, 1.5)
    return float(min(BACKOFF_BASE * 2 ** min(failures, 20), BACKOFF_CAP) * jitter)


class NodeState:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            # Created 0600 before SQLite opens it: it names the peers and feeds of this node.
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = FULL")
            for statement in _SCHEMA:
                self._db.execute(statement)
            for table, column, kind in _ADDED_COLUMNS:
                names = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
                if column not in names:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
            self._fill_binary_follows()
        except sqlite3.DatabaseError as exc:
            raise UsageError(f"cannot open the node state {self.path}: {exc}") from None
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    def data_version(self) -> int:
        """Changes when another connection commits (for cheap polling)."""
        with self._lock:
            return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    def _write(self, statement: str, rows: Iterable[tuple[object, ...]] = ((),)) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(statement, rows)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- follows ----------------------------------------------------------------

    def follow(self, feed: FeedId) -> bool:
        """Follow ``feed``; False if it was already followed."""
        return self._change(
            "INSERT OR IGNORE INTO follows (feed, added, author, log_id) VALUES (?, ?, ?, ?)",
            (str(feed), time.time(), feed.author_key, feed.log_id))

    def _fill_binary_follows(self) -> None:
        """Give follows written by an older tidings (or by hand) their binary form."""
        rows = self._db.execute("SELECT feed FROM follows WHERE author IS NULL").fetchall()
        if not rows:
            return
        filled = []
        for (text,) in rows:
            try:
                feed = FeedId.parse(text)
            except UsageError:
                continue  # (read as text, and refused there, by follows())
            filled.append((feed.author_key, feed.log_id, text))
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany("UPDATE follows SET author = ?, log_id = ? WHERE feed = ?",
                                 filled)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def unfollow(self, feed: FeedId) -> bool:
        """Stop following ``feed``; False if it was not followed."""
        return self._change("DELETE FROM follows WHERE feed = ?", (str(feed),))

    def _change(self, statement: str, row: tuple[object, ...]) -> bool:
        with self._lock:
            changed = self._db.execute(statement, row).rowcount
        return bool(changed)

    def following(self) -> bool:
        """Whether any feed is followed (without reading them)."""
        with self._lock:
            return self._db.execute("SELECT 1 FROM follows LIMIT 1").fetchone() is not None

    def follows(self) -> list[FeedId]:
        with self._lock:
            rows = self._db.execute(  # (the text form only where the binary one is missing)
                "SELECT CASE WHEN author IS NULL THEN feed END, author, log_id FROM follows "
                "ORDER BY added").fetchall()
        return [FeedId.parse(text) if author is None else FeedId(author, log_id)
                for text, author, log_id in rows]

    # -- identities (spec/12): the replicator's IdentityStore, and follows -------------

    def identity_logs(self) -> dict[bytes, list[bytes]]:
        with self._lock:
            rows = self._db.execute("SELECT identity, raw FROM identity_events").fetchall()
        logs: dict[bytes, list[bytes]] = {}
        for identity, raw in rows:
            logs.setdefault(bytes(identity), []).append(bytes(raw))
        return logs

    def identity_log(self, identity: bytes) -> list[bytes]:
        with self._lock:
            rows = self._db.execute("SELECT raw FROM identity_events WHERE identity = ?",
                                    (identity,)).fetchall()
        return [bytes(raw) for (raw,) in rows]

    def save_identity_log(self, identity: bytes, events: list[bytes]) -> None:
        """Keep exactly ``events`` of ``identity`` (what its IdentityLog keeps)."""
        from tidings.core.kel import event_hash

        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("DELETE FROM identity_events WHERE identity = ?", (identity,))
                self._db.executemany("INSERT INTO identity_events VALUES (?, ?, ?)",
                                     [(identity, event_hash(raw), raw) for raw in events])
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def follow_identity(self, identity: bytes, logs: Iterable[str] = ()) -> bool:
        """Follow ``identity`` (the logs named, or every log); False if nothing changed."""
        text = ",".join(sorted(set(logs)))
        with self._lock:
            row = self._db.execute("SELECT logs FROM identity_follows WHERE identity = ?",
                                   (identity,)).fetchone()
        if row is not None and row[0] == text:
            return False
        self._write("INSERT OR REPLACE INTO identity_follows VALUES (?, ?, ?)",
                    [(identity, text, time.time())])
        return True

    def unfollow_identity(self, identity: bytes) -> bool:
        return self._change("DELETE FROM identity_follows WHERE identity = ?", (identity,))

    def identity_follows(self) -> dict[bytes, frozenset[str]]:
        """Followed identities and the logs followed of each (empty: every log)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT identity, logs FROM identity_follows ORDER BY added").fetchall()
        return {bytes(i): frozenset(filter(None, logs.split(","))) for i, logs in rows}

    def note_own_head(self, feed: FeedId, seq: int) -> None:
        """A peer holds ``feed`` (one of this home's) up to ``seq``."""
        self._write("INSERT INTO own_heads VALUES (?, ?) ON CONFLICT (feed) DO UPDATE "
                    "SET seq = max(seq, excluded.seq)", [(str(feed), seq)])

    def own_head(self, feed: FeedId) -> int:
        """The highest seq of ``feed`` a peer was seen to hold (0: none seen)."""
        with self._lock:
            row = self._db.execute("SELECT seq FROM own_heads WHERE feed = ?",
                                   (str(feed),)).fetchone()
        return int(row[0]) if row is not None else 0

    def setting(self, name: str) -> bytes | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM settings WHERE name = ?",
                                   (name,)).fetchone()
        return bytes(row[0]) if row is not None else None

    def set_setting(self, name: str, value: bytes) -> None:
        self._write("INSERT OR REPLACE INTO settings VALUES (?, ?)", [(name, value)])

    # -- peers ----------------------------------------------------------------

    def add_peers(self, addresses: Iterable[tuple[str, int]], source: str, *,
                  learned_from: str | None = None) -> None:
        """Remember addresses (known ones keep their history).

        Learned ones (``exchange``, ``lan``) are taken only while their network
        prefix holds fewer than MAX_PER_PREFIX addresses never connected to, and
        while their source (``learned_from``: the host of the peer that gave them;
        a LAN beacon's own host) has given fewer than MAX_PER_SOURCE of those.
        """
        giver = network_prefix(learned_from) if learned_from is not None else None
        rows = [(host, port, source, giver) for host, port in addresses]
        if source in LEARNED and rows:
            with self._lock:
                unproven = self._db.execute(
                    "SELECT host, learned_from FROM peers "
                    "WHERE last_connected IS NULL AND source != 'config'"
                ).fetchall()
            per_prefix: dict[str, int] = {}
            from_giver = 0
            for host, given_by in unproven:
                per_prefix[network_prefix(host)] = per_prefix.get(network_prefix(host), 0) + 1
                from_giver += giver is not None and given_by == giver
            taken = []
            for row in rows:
                prefix = network_prefix(row[0])
                if per_prefix.get(prefix, 0) < MAX_PER_PREFIX and from_giver < MAX_PER_SOURCE:
                    per_prefix[prefix] = per_prefix.get(prefix, 0) + 1
                    from_giver += giver is not None
                    taken.append(row)
            rows = taken
        self._write("INSERT OR IGNORE INTO peers (host, port, source, learned_from) "
                    "VALUES (?, ?, ?, ?)", rows)
        self._trim()

    def forget_unproven(self, address: tuple[str, int]) -> bool:
        """Drop a learned address never connected to (its handshake or dial failed);
        True if it was dropped. Configured and once-connected addresses stay."""
        with self._lock:
            dropped = self._db.execute(
                "DELETE FROM peers WHERE host = ? AND port = ? AND last_connected IS NULL "
                "AND source IN ('exchange', 'lan')", address
            ).rowcount
        return bool(dropped)

    def _trim(self) -> None:
        with self._lock:
            (count,) = self._db.execute("SELECT count(*) FROM peers").fetchone()
        if count > MAX_PEERS:
            # Configured peers are never dropped: peer exchange must not evict them.
            self._write(
                "DELETE FROM peers WHERE rowid IN (SELECT rowid FROM peers "
                "WHERE source != 'config' "
                "ORDER BY last_connected IS NULL DESC, failures DESC LIMIT ?)",
                [(count - MAX_PEERS,)],
            )

    def peers(self) -> list[PeerRecord]:
        with self._lock:
            # Configured peers first, then those once connected to, then the learned
            # (spec/14 §5): a flood of learned addresses never delays the known ones.
            rows = self._db.execute(
                "SELECT host, port, source, failures, next_attempt, last_connected FROM peers "
                "ORDER BY source = 'config' DESC, last_connected IS NOT NULL DESC, "
                "next_attempt, failures"
            ).fetchall()
        return [PeerRecord(*row) for row in rows]

    def dial_soon(self, addresses: Iterable[tuple[str, int]]) -> None:
        """Make ``addresses`` due now (a restarted node dials its configured peers at once)."""
        self._write(
            "UPDATE peers SET next_attempt = 0 WHERE host = ? AND port = ?", list(addresses)
        )

    def due_peers(self, now: float, limit: int) -> list[PeerRecord]:
        return [p for p in self.peers() if p.next_attempt <= now][:limit]

    def connected(self, address: tuple[str, int], node_key: bytes, now: float) -> None:
        self._write(
            "UPDATE peers SET failures = 0, node_key = ?, last_connected = ?, "
            "next_attempt = ? WHERE host = ? AND port = ?",
            [(node_key, now, now + RECONNECT_AFTER, *address)],
        )

    def failed(self, address: tuple[str, int], now: float, *, misbehaved: bool = False,
               disconnected: bool = False) -> float:
        """Record a failure (or a disconnect); returns the seconds until the next attempt."""
        with self._lock:
            row = self._db.execute(
                "SELECT failures FROM peers WHERE host = ? AND port = ?", address
            ).fetchone()
        failures = (row[0] if row else 0) + (0 if disconnected else 1)
        wait = RECONNECT_AFTER * _JITTER.uniform(0.5, 1.5) if disconnected else backoff(failures)
        if misbehaved:
            wait = max(wait, MISBEHAVIOUR_BACKOFF)
        self._write(
            "UPDATE peers SET failures = ?, next_attempt = ? WHERE host = ? AND port = ?",
            [(failures, now + wait, *address)],
        )
        return wait

    def forget(self, address: tuple[str, int]) -> None:
        self._write("DELETE FROM peers WHERE host = ? AND port = ?", [address])

    def good_addresses(self, limit: int) -> list[tuple[str, int]]:
        """Addresses this node has connected to, most recent first (for peer exchange)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT host, port FROM peers WHERE last_connected IS NOT NULL "
                "ORDER BY last_connected DESC LIMIT ?", (limit,)
            ).fetchall()
        return [(host, port) for host, port in rows]

    # -- clocks of past sessions (the replicator's ClockMemory) ---------------

    def load(self, peer: bytes) -> Clocks:
        sent: dict[FeedId, Note] = {}
        received: dict[FeedId, Note] = {}
        with self._lock:
            rows = self._db.execute(
                "SELECT sent, author, log_id, seq, flags, head FROM clocks WHERE peer = ?",
                (peer,),
            ).fetchall()
        feeds: dict[tuple[bytes, str], FeedId] = {}  # (most feeds are in both clocks)
        for is_sent, author, log_id, seq, flags, head in rows:
            key = (author, log_id)
            feed = feeds.get(key)
            if feed is None:
                feed = feeds[key] = FeedId(author, log_id)
            (sent if is_sent else received)[feed] = Note(seq, flags, head)
        return sent, received

    def saved_at(self, peer: bytes) -> float | None:
        """When the clocks of ``peer`` were last saved (None: none are remembered)."""
        with self._lock:
            row = self._db.execute("SELECT saved FROM clock_peers WHERE peer = ?",
                                   (peer,)).fetchone()
        return None if row is None else float(row[0])

    def digests(self, peer: bytes) -> Digests:
        """``clock_digest`` of the clocks remembered for ``peer`` (sent, received), as
        saved with them; None where unknown (none saved, or by an older tidings)."""
        with self._lock:
            row = self._db.execute(
                "SELECT sent_digest, received_digest FROM clock_peers WHERE peer = ?",
                (peer,)).fetchone()
        return (None, None) if row is None else (row[0], row[1])

    def settled(self, peer: bytes) -> bytes | None:
        """The stamp the clocks of ``peer`` were saved settled under (see :meth:`save`)."""
        with self._lock:
            row = self._db.execute("SELECT settled FROM clock_peers WHERE peer = ?",
                                   (peer,)).fetchone()
        return None if row is None or row[0] is None else bytes(row[0])

    def stamp(self) -> bytes:
        """What this file holds that decides the feeds a home wants (follows, identities,
        its own feeds' heads seen on peers), summed up without a row per feed in Python:
        any change to those tables changes it."""
        with self._lock:
            row = self._db.execute(
                "SELECT (SELECT count(*) || ' ' || total(added) || ' ' || "
                "coalesce(max(rowid), 0) FROM follows), (SELECT count(*) || ' ' || "
                "total(added) || ' ' || coalesce(group_concat(hex(identity) || logs), '') FROM "
                "identity_follows), (SELECT count(*) FROM identity_events), "
                "(SELECT count(*) || ' ' || total(seq) FROM own_heads), "
                "(SELECT hex(value) FROM settings WHERE name = 'identity')").fetchone()
        return " | ".join(str(part) for part in row).encode()

    def save(self, peer: bytes, sent: dict[FeedId, Note], received: dict[FeedId, Note],
             *, since: Clocks | None = None, settled: bytes | None = None,
             ) -> tuple[float, Digests]:
        """Remember the clocks of a session with ``peer`` (the latest MAX_REMEMBERED peers);
        returns the time they are saved under (what :meth:`saved_at` gives until the
        next) and their digests (what :meth:`digests` gives).

        ``since`` is what this file holds for ``peer`` now (what :meth:`load` gave):
        then only the notes that changed are written, so a reconnect that changed
        nothing writes a few rows, not one per feed, and computes no digest.
        ``settled`` is the stamp of the home (the caller's, opaque here) when the clocks
        hold exactly what this side would say now and nothing is owed either way;
        :meth:`settled` gives it back until the next save.
        """
        def rows(is_sent: int, notes: Iterable[tuple[FeedId, Note]]) -> list[tuple[object, ...]]:
            return [(peer, is_sent, feed.author_key, feed.log_id, note.seq, note.flags,
                     note.head) for feed, note in notes]

        now = (sent, received)
        if since is None:
            parts = [rows(1, sent.items()), rows(0, received.items())]
            gones: list[list[tuple[object, ...]]] = [[], []]
        else:
            # (a note kept from the load is the same object: no comparison of fields; a
            # clock that did not change at all compares equal in one C-level pass)
            parts = [[] if notes == old else rows(is_sent, (
                (f, n) for f, n in notes.items() if (o := old.get(f)) is not n and o != n))
                for is_sent, notes, old in zip((1, 0), now, since, strict=True)]
            gones = [[] if notes.keys() == old.keys() else
                     [(peer, is_sent, f.author_key, f.log_id) for f in old if f not in notes]
                     for is_sent, notes, old in zip((1, 0), now, since, strict=True)]
        moved = [since is None or bool(part) or bool(gone) for part, gone in zip(
            parts, gones, strict=True)]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if since is None:
                    self._db.execute("DELETE FROM clocks WHERE peer = ?", (peer,))
                self._db.executemany(
                    "DELETE FROM clocks WHERE peer = ? AND sent = ? AND author = ? AND log_id = ?",
                    gones[0] + gones[1])
                self._db.executemany(
                    "INSERT OR REPLACE INTO clocks VALUES (?, ?, ?, ?, ?, ?, ?)",
                    parts[0] + parts[1])
                row = self._db.execute(
                    "SELECT sent_digest, received_digest FROM clock_peers WHERE peer = ?",
                    (peer,)).fetchone()
                kept = (None, None) if row is None else row
                sent_digest, received_digest = (
                    clock_digest(notes) if changed or old is None else bytes(old)
                    for notes, changed, old in zip(now, moved, kept, strict=True))
                saved = time.time()
                self._db.execute(
                    "INSERT OR REPLACE INTO clock_peers (peer, saved, sent_digest, "
                    "received_digest, settled) VALUES (?, ?, ?, ?, ?)",
                    (peer, saved, sent_digest, received_digest, settled))
                forgotten = [row[0] for row in self._db.execute(
                    "SELECT peer FROM clock_peers ORDER BY saved DESC LIMIT -1 OFFSET ?",
                    (MAX_REMEMBERED,),
                )]
                for old_peer in forgotten:
                    self._db.execute("DELETE FROM clocks WHERE peer = ?", (old_peer,))
                    self._db.execute("DELETE FROM clock_peers WHERE peer = ?", (old_peer,))
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return saved, (sent_digest, received_digest)


def check_not_behind(state: NodeState, logbook: Any, log_id: str) -> None:
    """Refuse to publish to ``log_id`` when a peer holds this home's feed further than the
    store does (a restored backup, a copied home): the post would fork the feed."""
    if logbook.identity is None:
        return
    own = state.setting("identity")
    if own is not None:  # spec/12 §7.5: never publish with a key the identity revoked
        from tidings.core.kel import fold

        current = fold(own, state.identity_log(own))  # (a few events: cheap)
        device = current.devices.get(logbook.identity.author.key)
        if device is not None and not device.active:
            raise StaleStore(
                f"this device ({device.name}) was revoked from its identity at log seq "
                f"{device.revoked_seq}: what it writes now is nobody's. Pair this machine "
                "again as a new device (`tidings device pair` in a new home)")
    feed = logbook.identity.author.feed(log_id)
    seen = state.own_head(feed)
    if not seen or logbook.store.fork_proofs(feed):
        return  # (a forked feed: the logbook refuses it, and says so)
    head = logbook.head(feed)
    held = head.seq if head is not None else 0
    if seen > held:
        raise StaleStore(
            f"a peer holds seq {seen} of {feed} but this store only {held}: publishing "
            "now would fork your own feed. Let the node sync first (`tidings up` with a "
            "peer that holds it, or `tidings sync --peer HOST:PORT` after following it); "
            "if this home was copied from another machine, make this one a new device "
            "instead (`tidings device pair` in a new home)")
