"""The home directory: the identity, the store and the configuration of one node.

Layout (spec-independent, local only)::

    HOME/secret.key      the author's secret key, mode 0600
    HOME/store.sqlite3   the SQLite store (plus -wal and -shm beside it)
    HOME/config.toml     settings, all optional
    HOME/node.key        the node's transport key, mode 0600 (sync.key: `tidings sync`'s)
    HOME/node.sqlite3    follows, known peers, clock memory
    HOME/api.token       the local HTTP API's bearer token, mode 0600
    HOME/api.json        where a running node's local API listens (while it runs)
    HOME/node.lock       locked by the node that runs on the home (one at a time)
    HOME/imports.sqlite3 the feed items `tidings import-feed` brought in, per log

HOME is ``--home``, else ``$TIDINGS_HOME``, else the platform's user data
directory for "tidings".
"""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import field
from pathlib import Path
from typing import Any

from tidings.core.ids import check_log_id
from tidings.core.records import record
from tidings.errors import InvalidId, UsageError
from tidings.identity import Identity, read_key_file, write_key_file
from tidings.node.options import (
    DEFAULT_API_LISTEN,
    DEFAULT_LISTEN,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_PER_ADDRESS,
    NodeOptions,
)
from tidings.replication.limits import DEFAULT_RELAY_MAX_BYTES, DEFAULT_RELAY_MAX_FEEDS
from tidings.storage.logbook import DEFAULT_LOG, Logbook
from tidings.storage.sqlite import SqliteStore
from tidings.transport.beacon import MULTICAST_PORT

ENV_VAR = "TIDINGS_HOME"
#: A config file is a few settings; a bound keeps a mistaken path from eating memory.
MAX_CONFIG_BYTES = 64 * 1024
KEY_FILE = "secret.key"
STORE_FILE = "store.sqlite3"
CONFIG_FILE = "config.toml"
NODE_STATE_FILE = "node.sqlite3"
NODE_KEY_FILE = "node.key"
SYNC_KEY_FILE = "sync.key"
NODE_KEY_HEADER = "tidings-node-key-1"
API_TOKEN_FILE = "api.token"
#: Held (flock) by the one node that runs on the home; holds its pid, for messages.
LOCK_FILE = "node.lock"
#: Written by a running node: where its local API listens (removed when it stops).
API_FILE = "api.json"
DEFAULT_CONFIG = f"""\
# tidings configuration. Every setting is optional.

# The log `tidings publish` writes to when --log is not given.
default_log = "{DEFAULT_LOG}"

[node]
# Where `tidings up` listens for peers (--listen).
# listen = "{DEFAULT_LISTEN}"
# Peers to dial at start (--peer), as "HOST:PORT".
# peers = []
# "public", or a private network's key from `tidings network new` (--network).
# network = "public"
# Store every feed peers offer, up to relay_max_feeds (--relay).
# relay = false
# relay_max_feeds = {DEFAULT_RELAY_MAX_FEEDS}
# Bytes of others' feeds a relay stores per run (entries and payloads).
# relay_max_bytes = {DEFAULT_RELAY_MAX_BYTES}
# 1: replicate the feeds you follow; 2: also the feeds their authors follow.
# hops = 1
# Connections in all; 8 of them are kept for the peers this node dials, and
# strangers take at most max_per_address from one address (spec/14).
# max_connections = {DEFAULT_MAX_CONNECTIONS}
# max_per_address = {DEFAULT_MAX_PER_ADDRESS}
# Find nodes of the same network on the LAN by UDP multicast.
# lan_discovery = true
# The IPv4 address of the interface for beacons (--lan-interface), and their UDP port.
# lan_interface = "0.0.0.0"
# lan_port = {MULTICAST_PORT}
# Attachments (blobs) of followed feeds to fetch: "all", "none" or up to a size.
# blob_fetch = "512MiB"
# What the chunk store (HOME/blobs) may take; least recently used blobs go first.
# blob_quota = "10GiB"
# Blob bytes per second sent to each peer (no bound by default).
# blob_upload_rate = "10MB"

[blob_feeds]
# The fetch policy of single feeds, by feed id: "all", "none" or a size.
# "tf1...._podcast" = "all"

[api]
# The local HTTP API for apps (--api). Every request needs the token in
# HOME/{API_TOKEN_FILE}. Keep it on loopback unless you know why not.
# listen = "{DEFAULT_API_LISTEN}"
# enabled = true
# Web origins allowed to call the API from a browser (CORS); none by default.
# cors_origins = []

[feeds]
# The public URL `tidings serve-feeds` is reached at (--base-url), for the links of
# its pages and feeds; without it, links are relative to each page.
# base_url = "https://feeds.example.org"
"""
_SETTINGS: dict[str, dict[str, type]] = {
    "node": {
        "listen": str, "peers": list, "network": str, "relay": bool, "relay_max_feeds": int,
        "relay_max_bytes": int,
        "hops": int, "max_connections": int, "max_per_address": int, "lan_discovery": bool,
        "lan_interface": str, "lan_port": int,
        "blob_fetch": str, "blob_quota": str, "blob_upload_rate": str,
    },
    # Per feed: "all", "none" or a size, as blob_fetch (names are feed ids).
    "blob_feeds": {},
    "api": {"listen": str, "enabled": bool, "cors_origins": list},
    "feeds": {"base_url": str},
}


@record
class Config:
    default_log: str = DEFAULT_LOG
    #: The [node] table, checked for names and types (values checked where used).
    node: dict[str, object] = field(default_factory=dict)
    #: The [api] table, checked the same way.
    api: dict[str, object] = field(default_factory=dict)
    #: The [feeds] table (the public gateway, `tidings serve-feeds`), checked the same way.
    feeds: dict[str, object] = field(default_factory=dict)
    #: The [blob_feeds] table: the fetch policy of single feeds.
    blob_feeds: dict[str, object] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Config:
        if not path.exists():
            return cls()
        import tomllib  # (here: a home without a config file starts without it)

        try:
            if not path.is_file():
                raise UsageError(f"{path} is not a regular file")
            with open(path, "rb") as handle:
                raw = handle.read(MAX_CONFIG_BYTES + 1)
            if len(raw) > MAX_CONFIG_BYTES:
                raise UsageError(f"{path} is over {MAX_CONFIG_BYTES} bytes: not a config file")
            data = tomllib.loads(raw.decode("utf-8"))
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise UsageError(f"{path}: not valid TOML: {exc}") from None
        unknown = set(data) - {"default_log", *_SETTINGS}
        if unknown:
            raise UsageError(f"{path}: unknown setting(s) {', '.join(sorted(unknown))}")
        default_log = data.get("default_log", DEFAULT_LOG)
        try:
            check_log_id(default_log)
        except InvalidId as exc:
            raise UsageError(f"{path}: default_log: {exc}") from None
        tables: dict[str, dict[str, object]] = {}
        for table, kinds in _SETTINGS.items():
            values = tables[table] = data.get(table, {})
            if not isinstance(values, dict):
                raise UsageError(f"{path}: {table} must be a table ([{table}])")
            for name, value in values.items():
                kind = kinds.get(name, str if table == "blob_feeds" else None)
                if kind is None:
                    raise UsageError(f"{path}: unknown setting {table}.{name}")
                if type(value) is not kind:
                    raise UsageError(f"{path}: {table}.{name} must be a {kind.__name__}")
        return cls(default_log=default_log, **tables)


class HomeLock:
    """A held home lock; :meth:`release` (or the process's end) frees it."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


class Home:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()

    @classmethod
    def resolve(cls, explicit: str | None = None) -> Home:
        """``explicit``, else ``$TIDINGS_HOME``, else the platform default."""
        chosen = explicit or os.environ.get(ENV_VAR)
        if not chosen:
            import platformdirs  # (here: --home and $TIDINGS_HOME need none of it)

            chosen = platformdirs.user_data_dir("tidings")
        return cls(chosen)

    @property
    def key_path(self) -> Path:
        return self.path / KEY_FILE

    @property
    def store_path(self) -> Path:
        return self.path / STORE_FILE

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    def transport_key(self, name: str = NODE_KEY_FILE) -> bytes:
        """The node's X25519 transport key (made on first use, mode 0600).

        Separate from the author key: it names the node to its peers, never an author.
        """
        path = self.path / name
        if not path.exists():
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Another process may make it first: then use theirs.
            with contextlib.suppress(FileExistsError):
                write_key_file(path, NODE_KEY_HEADER, os.urandom(32))
        return read_key_file(path, NODE_KEY_HEADER, "node key")

    @property
    def api_token_path(self) -> Path:
        return self.path / API_TOKEN_FILE

    def api_token(self) -> str:
        """The local API's bearer token (made on first use, mode 0600)."""
        path = self.api_token_path
        if not path.exists():
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Written whole under another name, then linked into place: a
            # process racing us sees no file or a complete one, never half.
            draft = self.path / f".{API_TOKEN_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
            fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(fd, "w") as handle:
                    handle.write(secrets.token_urlsafe(32) + "\n")
                    handle.flush()
                    os.fsync(handle.fileno())
                with contextlib.suppress(FileExistsError):
                    os.link(draft, path)
            finally:
                draft.unlink()
        mode = path.stat().st_mode
        if mode & 0o077:  # refused like a key file: it grants the API to whoever reads it
            raise UsageError(
                f"{path} can be read by other users (mode {mode & 0o777:o}); "
                f"run `chmod 600 {path}` and try again"
            )
        token = path.read_text().strip()
        if len(token) < 16:
            raise UsageError(f"{path} holds no usable token: delete it and start the node again")
        return token

    def lock(self) -> HomeLock:
        """Lock the home for one running node (``tidings up``, an app's node): a second
        one refuses to start, so the store and ``api.json`` are never shared by accident.
        The lock is the kernel's (flock): it ends with the process, even after kill -9."""
        import fcntl

        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.path / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", errors="replace").strip() or "?"
            os.close(fd)
            raise UsageError(
                f"another node runs on {self.path} (pid {holder}): stop it first, or give "
                "this one another home (--home DIR)") from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return HomeLock(fd)

    @property
    def api_file(self) -> Path:
        return self.path / API_FILE

    @property
    def node_state_path(self) -> Path:
        return self.path / NODE_STATE_FILE

    def is_initialized(self) -> bool:
        return self.key_path.exists()

    def init(self) -> tuple[Identity, bool]:
        """Create the home and a new identity; returns ``(identity, created)``.

        An existing identity is kept, never replaced.
        """
        if self.is_initialized():
            return self.identity(), False
        identity = Identity.generate()
        try:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
            try:
                identity.save(self.key_path)
            except FileExistsError:
                if not self.key_path.exists():
                    raise
                return self.identity(), False  # another `init` won the race: keep its key
            if not self.config_path.exists():
                # 0600: it may hold a private network's key.
                private_file(self.config_path)
                self.config_path.write_text(DEFAULT_CONFIG)
            self.api_token()
        except OSError as exc:
            raise UsageError(
                f"cannot create the home {self.path}: {exc.strerror}; choose another with "
                f"--home DIR or {ENV_VAR}"
            ) from None
        private_file(self.store_path)
        SqliteStore(self.store_path).close()
        return identity, True

    def _require(self) -> None:
        if not self.path.is_dir():
            raise UsageError(
                f"no tidings home at {self.path}: run `tidings init` (or pass --home DIR, "
                f"or set {ENV_VAR})"
            )

    def identity(self) -> Identity:
        self._require()
        return Identity.load(self.key_path)

    def config(self) -> Config:
        return Config.load(self.config_path)

    def node_options(self, mode: str = "daemon", **overrides: Any) -> NodeOptions:
        """This home's ``config.toml`` as node options, with ``overrides`` (command-line
        flags, :func:`tidings.open_node`'s arguments) on top; see
        :meth:`NodeOptions.from_config`."""
        config = self.config()
        return NodeOptions.from_config(config.node, config.api, mode=mode,
                                       blob_feeds=config.blob_feeds, **overrides)

    def open_logbook(self, *, need_identity: bool = False, create: bool = False) -> Logbook:
        """Open the store, with the identity when there is one.

        With ``create`` a missing home is made (mode 0700) without an identity:
        a node that only keeps others' feeds needs no key of its own.
        """
        if create and not self.path.exists():
            try:
                self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError as exc:
                raise UsageError(f"cannot create the home {self.path}: {exc.strerror}") from None
        self._require()
        identity = self.identity() if need_identity or self.is_initialized() else None
        private_file(self.store_path)
        return Logbook(SqliteStore(self.store_path), identity)


def private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 if it is missing (SQLite gives its journal
    files the mode of the database file): every file of a home is the owner's alone."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
