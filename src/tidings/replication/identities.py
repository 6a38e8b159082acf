"""The identity logs a node keeps, and the device feeds they make it want (spec/12 §6, §7).

Pure but for the store it is given (an :class:`IdentityStore`: the node state's
tables, or a dict in tests and the simulator). The replicator asks it:

* which identities this node follows (and which logs of them), and their state;
* which device feeds those identities make it want (:meth:`IdentityBook.device_feeds`);
* where a revoked device's feed stops counting (:meth:`IdentityBook.caps`): entries
  past a cut are not the identity's, and a node that follows the identity neither
  stores nor serves them (spec/12 §7.2, §7.5).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import field
from typing import Protocol

from tidings.core.ids import FeedId
from tidings.core.kel import IdentityLog, IdentityState, Refusal, event_hash
from tidings.core.records import record
from tidings.wire.messages import IdentityNote, identity_note

#: Identities a relay keeps besides those it follows: each log is a few KB, and a
#: stranger offering fresh identities cannot grow the table past this.
MAX_RELAYED_IDENTITIES = 1024
#: Log ids learned per device key from peers' notes (an author with more logs than
#: this is followed by naming the logs).
MAX_LOGS_PER_DEVICE = 64
#: Author keys whose log ids are remembered before any followed identity names them
#: a device (a peer's note can come before the device-add): a cache, oldest first
#: out. 4096 keys x a few log ids is well under a MB, and a peer naming more keys
#: than this only evicts; what is evicted is learned again from the next clock.
MAX_UNPLACED_KEYS = 4096
#: The log an author's "about" entries go to (core/content.py): followed with every
#: identity, so a reader can title its feeds.
ABOUT_LOG = "about"
#: Events in one answer to an identity-request: a few 2 MiB messages at most (an honest
#: log is a few KB); a peer that needs more asks again from where the answer ended.
MAX_ANSWER_EVENTS = 512
#: "Every log of the identity": a follow that names no log.
ALL_LOGS: frozenset[str] = frozenset()


class IdentityStore(Protocol):
    """Where identity logs are kept (the node state, or a dict)."""

    def identity_logs(self) -> dict[bytes, list[bytes]]:
        """Every stored identity's events."""
        ...

    def save_identity_log(self, identity: bytes, events: list[bytes]) -> None:
        ...


@record(frozen=False, slots=False)
class MemoryIdentities:
    """Identity logs in a dict, for tests and the simulator."""

    logs: dict[bytes, list[bytes]] = field(default_factory=dict)

    def identity_logs(self) -> dict[bytes, list[bytes]]:
        return {k: list(v) for k, v in self.logs.items()}

    def save_identity_log(self, identity: bytes, events: list[bytes]) -> None:
        self.logs[identity] = list(events)


@record(slots=False)
class Added:
    """What :meth:`IdentityBook.add` did with events of one identity."""

    state: IdentityState
    #: The state changed (chain, status or the proofs): tell peers, recompute feeds.
    changed: bool
    #: The events of the input that the fold refused, with why.
    refused: tuple[tuple[bytes, Refusal], ...] = ()


class IdentityBook:
    """The identity logs of one node and what it follows of them."""

    def __init__(self, store: IdentityStore | None = None,
                 follows: Mapping[bytes, Iterable[str]] | None = None) -> None:
        self.store: IdentityStore = store or MemoryIdentities()
        self.logs: dict[bytes, IdentityLog] = {}
        #: Followed identities and the logs followed of each (ALL_LOGS: every log).
        self.follows: dict[bytes, frozenset[str]] = {}
        #: Log ids seen per device key (from the store and from peers' notes).
        self.device_logs: dict[bytes, set[str]] = {}
        #: Log ids seen per author key that is no followed identity's device (yet):
        #: kept, bounded, so "every log" of an author holds whatever order the notes
        #: and the device-add arrive in. Insertion order is age (oldest first).
        #: Oldest first (an OrderedDict: evicting the oldest is O(1), where deleting a
        #: plain dict's first key again and again scans the holes it leaves).
        self.unplaced_logs: OrderedDict[bytes, set[str]] = OrderedDict()
        self.reload()
        self.set_follows(follows or {})

    # -- what is kept --------------------------------------------------------------

    def reload(self) -> list[bytes]:
        """Re-read the store (another process appended events); returns the identities
        whose state changed."""
        changed = []
        for identity, events in self.store.identity_logs().items():
            log = self.logs.get(identity)
            if log is None:
                log = self.logs[identity] = IdentityLog(identity, events)
                changed.append(identity)
            elif set(events) - set(log.events()):
                before = log.state
                log.add(events)
                if _moved(before, log.state):
                    changed.append(identity)
        return changed

    def set_follows(self, follows: Mapping[bytes, Iterable[str]]) -> None:
        self.follows = {identity: frozenset(logs) for identity, logs in follows.items()}
        for identity in self.follows:
            self.logs.setdefault(identity, IdentityLog(identity))

    def state(self, identity: bytes) -> IdentityState | None:
        log = self.logs.get(identity)
        return log.state if log is not None else None

    def held(self) -> list[bytes]:
        return list(self.logs)

    def wants(self, identity: bytes) -> bool:
        return identity in self.follows

    def hold(self, identity: bytes) -> bool:
        """Keep ``identity`` (a relay keeps what it is offered); False past the bound."""
        if identity in self.logs:
            return True
        if len(self.logs) >= MAX_RELAYED_IDENTITIES + len(self.follows):
            return False
        self.logs[identity] = IdentityLog(identity)
        return True

    def note(self, identity: bytes) -> IdentityNote:
        log = self.logs.get(identity)
        state = log.state if log is not None else IdentityLog(identity).state
        return identity_note(state)

    def notes(self) -> list[IdentityNote]:
        return [self.note(identity) for identity in sorted(self.logs)]

    def served(self, identity: bytes, from_seq: int = 1) -> list[bytes]:
        """The events served of ``identity`` (spec/12 §6.3, 3): seq ≥ ``from_seq``, and
        with ``from_seq`` > 1 the proofs' events and their ancestors as well."""
        log = self.logs.get(identity)
        if log is None:
            return []
        state = log.state
        served = state.served()
        if from_seq > 1 and state.status not in ("forked", "dead"):
            served = [raw for raw in served if state.events[event_hash(raw)].seq >= from_seq]
        return served[:MAX_ANSWER_EVENTS]

    def add(self, identity: bytes, events: Iterable[bytes]) -> Added:
        """Fold ``events`` into what is kept of ``identity`` and store the result."""
        events = list(events)
        log = self.logs.get(identity)
        if log is None:
            log = self.logs[identity] = IdentityLog(identity)
        before = log.state
        kept_before = log.events()
        state = log.add(events)
        refused = tuple(
            (h, state.refusals[h]) for h in dict.fromkeys(event_hash(raw) for raw in events)
            if h in state.refusals)
        if log.events() != kept_before:
            self.store.save_identity_log(identity, log.events())
        return Added(state, _moved(before, state), refused)

    # -- device feeds ----------------------------------------------------------------

    def learn_feeds(self, feeds: Iterable[FeedId]) -> bool:
        """Note the log ids of author keys' feeds (from the store, or peers' notes);
        True if a followed identity's device has a log not seen before. Log ids of
        keys that are no device yet are remembered (bounded) until one becomes one."""
        devices = self._devices()
        found = self._place(devices)
        if not devices and not self.unplaced_logs:
            feeds = list(feeds)
            if len(feeds) > MAX_UNPLACED_KEYS and self._remember_grouped(feeds):
                return found
        for feed in feeds:
            key = feed.author_key
            if key in devices:
                logs = self.device_logs.setdefault(key, set())
                if feed.log_id not in logs and len(logs) < MAX_LOGS_PER_DEVICE:
                    logs.add(feed.log_id)
                    found = True
            else:
                self._remember(key, feed.log_id)
        return found

    def _remember_grouped(self, feeds: list[FeedId]) -> bool:
        """What :meth:`_remember` of each feed in turn leaves, from an empty cache, when
        each key's feeds come together (the store's feeds, sorted: a client's 10,000 at
        start): the last MAX_UNPLACED_KEYS keys, each with the log ids it came with,
        without evicting the ones before one by one. False (nothing done) otherwise."""
        grouped: dict[bytes, set[str]] = {}
        last: bytes | None = None
        logs: set[str] = set()
        for feed in feeds:
            key = feed.author_key
            if key != last:
                if key in grouped:
                    return False  # this key came before another: not grouped
                logs = grouped[key] = set()
                last = key
            if len(logs) < MAX_LOGS_PER_DEVICE:
                logs.add(feed.log_id)
        for key in list(grouped)[-MAX_UNPLACED_KEYS:]:
            self.unplaced_logs[key] = grouped[key]
        return True

    def _remember(self, key: bytes, log_id: str) -> None:
        logs = self.unplaced_logs.get(key)
        if logs is None:
            logs = set()
            while len(self.unplaced_logs) >= MAX_UNPLACED_KEYS:
                self.unplaced_logs.popitem(last=False)
            self.unplaced_logs[key] = logs
        else:
            self.unplaced_logs.move_to_end(key)  # now the newest
        if len(logs) < MAX_LOGS_PER_DEVICE:
            logs.add(log_id)

    def _place(self, devices: set[bytes]) -> bool:
        """Move the remembered log ids of keys that are devices now; True if any is new."""
        found = False
        for key in [key for key in self.unplaced_logs if key in devices]:
            logs = self.device_logs.setdefault(key, set())
            for log_id in self.unplaced_logs.pop(key):
                if log_id not in logs and len(logs) < MAX_LOGS_PER_DEVICE:
                    logs.add(log_id)
                    found = True
        return found

    def _devices(self) -> set[bytes]:
        keys: set[bytes] = set()
        for identity in self.follows:
            state = self.state(identity)
            if state is not None:
                keys.update(state.devices)
        return keys

    def device_feeds(self) -> set[FeedId]:
        """The device feeds the followed identities make this node want (spec/12 §7.5):
        the followed logs (and ``about``) of every device that may contribute."""
        wanted: set[FeedId] = set()
        for identity, logs in self.follows.items():
            state = self.state(identity)
            if state is None or state.status == "unknown":
                continue
            for key, device in state.devices.items():
                names = set(self.device_logs.get(key, ())) if logs == ALL_LOGS else set(logs)
                names.add(ABOUT_LOG)
                if not device.active:
                    names = {name for name in names if device.limit(name) is not None}
                wanted.update(FeedId(key, name) for name in names)
        return wanted

    def caps(self) -> dict[FeedId, int]:
        """Feeds of revoked devices of followed identities, and the last seq of each that
        counts (its cut; 0 without one). Known feeds only: those seen in the store or notes."""
        caps: dict[FeedId, int] = {}
        for identity in self.follows:
            state = self.state(identity)
            if state is None:
                continue
            for key, device in state.devices.items():
                if device.active:
                    continue
                names = set(self.device_logs.get(key, ())) | set(device.cuts)
                for name in names:
                    cut = device.limit(name)
                    caps[FeedId(key, name)] = cut.seq if cut is not None else 0
        return caps

    def identity_of(self, author_key: bytes) -> bytes | None:
        """The followed identity ``author_key`` is a device of (None: none)."""
        for identity in self.follows:
            state = self.state(identity)
            if state is not None and author_key in state.devices:
                return identity
        return None


def _moved(before: IdentityState, after: IdentityState) -> bool:
    return (before.status, before.seq, before.head, before.fork_proof, before.dead_proof) != (
        after.status, after.seq, after.head, after.fork_proof, after.dead_proof)


__all__ = ["ALL_LOGS", "Added", "IdentityBook", "IdentityStore", "MemoryIdentities"]
