"""How a node runs: one :class:`NodeOptions`, built from ``config.toml`` plus overrides.

``tidings up``, ``tidings sync``, ``tidings fetch`` and :func:`tidings.open_node`
all build their options here, so a setting means the same everywhere and each
default is written once. Trio-free: reading options loads no networking.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from tidings.core.ids import FeedId
from tidings.errors import InvalidId, UsageError
from tidings.replication.blob_policy import DEFAULT_FETCH_LIMIT, BlobPolicy, parse_size
from tidings.replication.limits import DEFAULT_RELAY_MAX_BYTES, DEFAULT_RELAY_MAX_FEEDS
from tidings.transport.beacon import ANY_INTERFACE, MULTICAST_PORT
from tidings.transport.network import DEFAULT_NETWORK_KEY

DEFAULT_PORT = 7654
DEFAULT_LISTEN = f"0.0.0.0:{DEFAULT_PORT}"
DEFAULT_API_PORT = 7655
DEFAULT_API_LISTEN = f"127.0.0.1:{DEFAULT_API_PORT}"
#: Open connections, both directions; more are refused at accept.
DEFAULT_MAX_CONNECTIONS = 64
#: Connections a node dials itself: enough sources for its feeds, few enough
#: that a node is mostly dialed, not dialing.
DEFAULT_MAX_OUTBOUND = 8
#: Inbound connections from one source address (node/slots.py, spec/14 §2).
DEFAULT_MAX_PER_ADDRESS = 8
MAX_HOPS = 3
#: The chunk store's quota: what a node keeps of others' blobs before it evicts
#: the least recently used (its own, pinned, are never evicted).
DEFAULT_BLOB_QUOTA = 10 * 1024**3


def parse_address(text: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """``HOST:PORT`` (or ``[v6]:PORT``, or ``HOST`` for the default port)."""
    text = text.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep or "]" in port_text:
        host, port_text = text, str(default_port)
    host = host.strip("[]")
    try:
        port = int(port_text)
    except ValueError:
        raise UsageError(f"{text!r} is not HOST:PORT") from None
    if not host or not 0 <= port <= 65535:
        raise UsageError(f"{text!r} is not HOST:PORT")
    return host, port


def format_address(address: tuple[str, int]) -> str:
    """``HOST:PORT``, with brackets around an IPv6 host."""
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _HasSocket(Protocol):
    @property
    def socket(self) -> Any: ...


def peer_address(stream: _HasSocket) -> tuple[str, int]:
    """The remote ``(host, port)`` of a socket stream: ``("local", 0)`` for a Unix
    domain socket's client, ``("?", 0)`` once the socket is gone."""
    try:
        name = stream.socket.getpeername()
    except OSError:
        return "?", 0
    if not isinstance(name, tuple) or len(name) < 2:
        return "local", 0
    return str(name[0]), int(name[1])


def parse_network_key(text: str) -> bytes:
    """``public`` or 64 hex digits (from `tidings network new`)."""
    text = text.strip().lower()
    if text in ("", "public"):
        return DEFAULT_NETWORK_KEY
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise UsageError(
            "a network key is 'public' or 64 hex digits; make one with `tidings network new`"
        )
    return key


def _ipv4(text: str) -> str:
    try:
        return str(ipaddress.IPv4Address(text.strip()))
    except ValueError:
        raise UsageError(f"lan_interface {text!r} is not an IPv4 address "
                         "(the address of the interface to use, or 0.0.0.0)") from None


@dataclass
class NodeOptions:
    """Everything that decides how a node runs. The defaults are the node's defaults."""

    #: Where peers connect (None: this node only dials).
    listen: tuple[str, int] | None = None
    peers: list[tuple[str, int]] = field(default_factory=list)
    network_key: bytes = DEFAULT_NETWORK_KEY
    relay: bool = False
    relay_max_feeds: int = DEFAULT_RELAY_MAX_FEEDS
    relay_max_bytes: int = DEFAULT_RELAY_MAX_BYTES
    hops: int = 1
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_outbound: int = DEFAULT_MAX_OUTBOUND
    max_per_address: int = DEFAULT_MAX_PER_ADDRESS
    lan_discovery: bool = False
    #: The IPv4 address of the interface that beacons use ("0.0.0.0": the system's choice).
    lan_interface: str = ANY_INTERFACE
    #: The UDP port of the beacon group (spec/08 §7); another keeps a test's beacons apart.
    lan_port: int = MULTICAST_PORT
    #: Where the local HTTP API listens (None: no API).
    api: tuple[str, int] | None = None
    cors_origins: tuple[str, ...] = ()
    #: Attachments of replicated feeds to fetch (spec/13 §9): up to this many
    #: bytes (None: all, 0: none), and per feed.
    blob_fetch: int | None = DEFAULT_FETCH_LIMIT
    blob_feeds: dict[FeedId, int | None] = field(default_factory=dict)
    #: Bytes the chunk store may take (None: no bound).
    blob_quota: int | None = DEFAULT_BLOB_QUOTA
    #: Blob bytes per second sent to one peer (None: as fast as it reads).
    blob_upload_rate: int | None = None

    @property
    def blob_policy(self) -> BlobPolicy:
        return BlobPolicy(self.blob_fetch, dict(self.blob_feeds))

    def __post_init__(self) -> None:
        if not 1 <= self.hops <= MAX_HOPS:
            raise UsageError(f"hops must be 1 to {MAX_HOPS}")
        if not 1 <= self.lan_port <= 65535:
            raise UsageError(f"lan_port {self.lan_port} is not a UDP port (1-65535)")
        if self.relay_max_feeds < 0 or self.max_connections < 1 or self.max_per_address < 1:
            raise UsageError("relay_max_feeds must be 0 or more, max_connections and "
                             "max_per_address 1 or more")

    @classmethod
    def from_config(
        cls,
        node: Mapping[str, object],
        api: Mapping[str, object] | None = None,
        *,
        mode: str = "daemon",
        listen: str | None = None,
        peers: Sequence[str] = (),
        network: str | None = None,
        relay: bool | None = None,
        hops: int | None = None,
        lan: bool | None = None,
        lan_interface: str | None = None,
        api_listen: str | None = None,
        no_api: bool = False,
        blob_feeds: Mapping[str, object] | None = None,
    ) -> NodeOptions:
        """Options from a home's ``[node]`` and ``[api]`` tables, then the overrides given.

        ``mode`` picks the defaults of what the config leaves out:

        * ``"daemon"`` (``tidings up``): listen on 0.0.0.0:7654, serve the local
          API on 127.0.0.1:7655, discover LAN peers;
        * ``"embedded"`` (:func:`tidings.open_node`): an app's node listens,
          serves the API and beacons only where asked (here or in the config);
        * ``"client"`` (``sync``, ``fetch``): it only dials; no listener, API or LAN.
        """
        if mode not in ("daemon", "embedded", "client"):
            raise ValueError(f"unknown mode {mode!r}")
        api = api or {}
        daemon = mode == "daemon"
        configured = [parse_address(str(p)) for p in node.get("peers", [])]  # type: ignore[attr-defined]
        options = cls(
            peers=configured + [parse_address(p) for p in peers],
            network_key=parse_network_key(network or str(node.get("network", "public"))),
            hops=_int(hops or node.get("hops", 1)),
            relay=bool(relay) or bool(node.get("relay", False)),
            relay_max_feeds=_int(node.get("relay_max_feeds", DEFAULT_RELAY_MAX_FEEDS)),
            relay_max_bytes=_int(node.get("relay_max_bytes", DEFAULT_RELAY_MAX_BYTES)),
            max_connections=_int(node.get("max_connections", DEFAULT_MAX_CONNECTIONS)),
            max_per_address=_int(node.get("max_per_address", DEFAULT_MAX_PER_ADDRESS)),
            lan_interface=_ipv4(lan_interface or str(node.get("lan_interface", ANY_INTERFACE))),
            lan_port=_int(node.get("lan_port", MULTICAST_PORT)),
            cors_origins=tuple(str(o) for o in api.get("cors_origins", [])),  # type: ignore[attr-defined]
        )
        _blob_options(options, node, blob_feeds or {})
        if mode == "client":
            return options
        listen = listen or _text(node.get("listen", DEFAULT_LISTEN if daemon else None))
        options.listen = None if listen is None else parse_address(listen)
        options.lan_discovery = bool(node.get("lan_discovery", daemon)) if lan is None else lan
        api_default = DEFAULT_API_LISTEN if daemon and api.get("enabled", True) else None
        chosen = api_listen or _text(api.get("listen", api_default))
        if not no_api and chosen is not None and (api_listen or api.get("enabled", True)):
            options.api = parse_address(chosen, DEFAULT_API_PORT)
        return options


def _int(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise UsageError(f"{value!r} is not a whole number")
    return value


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _blob_options(options: NodeOptions, node: Mapping[str, object],
                  feeds: Mapping[str, object]) -> None:
    """``[node]`` blob_fetch, blob_quota, blob_upload_rate and the ``[blob_feeds]`` table."""
    if "blob_fetch" in node:
        options.blob_fetch = BlobPolicy.parse_limit(node["blob_fetch"])
    if "blob_quota" in node:
        quota = str(node["blob_quota"])
        options.blob_quota = None if quota.strip().lower() == "none" else parse_size(quota)
    if "blob_upload_rate" in node:
        options.blob_upload_rate = parse_size(str(node["blob_upload_rate"])) or None
    for text, value in feeds.items():
        try:
            feed = FeedId.parse(text)
        except InvalidId as exc:
            raise UsageError(f"blob_feeds: {exc}") from None
        options.blob_feeds[feed] = BlobPolicy.parse_limit(value)
