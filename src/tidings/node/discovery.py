"""Finding nodes on the same LAN: UDP multicast beacons scoped by network key.

A beacon is ``b"tidings-lan/1" || port (2 bytes, big-endian) || nonce (16) ||
tag (16)``, the tag a keyed BLAKE2b-128 of everything before it under the
network key (spec/08-transport.md §7). Nodes on another network cannot read
or forge one, and a beacon carries no node key: it only says "a node of this
network listens on this port at the sender's address".
"""

from __future__ import annotations

import hashlib
import hmac
import os
import socket
import struct

import trio

from tidings.node.log import Logger

MULTICAST_GROUP = "239.255.77.77"
MULTICAST_PORT = 7657
#: Beacons go out by (and are heard on) the system's default multicast interface.
ANY_INTERFACE = "0.0.0.0"
BEACON_PREFIX = b"tidings-lan/1"
BEACON_SIZE = len(BEACON_PREFIX) + 2 + 16 + 16
#: Seconds between beacons: quick enough to find a neighbour within a minute.
BEACON_INTERVAL = 15.0


def make_beacon(network_key: bytes, port: int, nonce: bytes | None = None) -> bytes:
    body = BEACON_PREFIX + struct.pack(">H", port) + (nonce or os.urandom(16))
    return body + hashlib.blake2b(body, key=network_key, digest_size=16).digest()


def read_beacon(network_key: bytes, data: bytes) -> int | None:
    """The port a beacon announces, or None if it is not one of this network's."""
    if len(data) != BEACON_SIZE or not data.startswith(BEACON_PREFIX):
        return None
    body, tag = data[:-16], data[-16:]
    expected = hashlib.blake2b(body, key=network_key, digest_size=16).digest()
    if not hmac.compare_digest(tag, expected):
        return None
    (port,) = struct.unpack_from(">H", body, len(BEACON_PREFIX))
    return port if port else None


def is_loopback(host: str) -> bool:
    return host.startswith("127.") or host == "::1"


async def announce(network_key: bytes, port: int, log: Logger, own: set[bytes], *,
                   interface: str = ANY_INTERFACE, group_port: int = MULTICAST_PORT,
                   interval: float = BEACON_INTERVAL) -> None:
    """Send a beacon now and every ``interval`` seconds (with jitter).

    Beacons leave by the interface whose IPv4 address is ``interface`` (the
    system's choice for ``0.0.0.0``). Each beacon's nonce goes into ``own``, so
    :func:`listen` can skip this node's own beacons (multicast loops back).
    """
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    with sock:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        if interface != ANY_INTERFACE:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                            socket.inet_aton(interface))
        while True:
            nonce = os.urandom(16)
            own.add(nonce)
            try:
                await sock.sendto(
                    make_beacon(network_key, port, nonce), (MULTICAST_GROUP, group_port)
                )
            except OSError as exc:
                log.warning("lan-beacon-failed", error=exc.strerror or str(exc))
                return
            await trio.sleep(interval * (0.75 + 0.5 * int.from_bytes(os.urandom(1)) / 255))


async def listen(network_key: bytes, found: trio.MemorySendChannel[tuple[str, int]],
                 log: Logger, own: set[bytes], *, interface: str = ANY_INTERFACE,
                 group_port: int = MULTICAST_PORT) -> None:
    """Receive beacons; send each (address, port) found into ``found``, except our own.

    The group is joined on the interface whose IPv4 address is ``interface``.
    """
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    with sock:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if hasattr(socket, "SO_REUSEPORT"):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if hasattr(socket, "IP_MULTICAST_ALL"):
                # Only the group joined here, not every group any socket of the host joined.
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_ALL, 0)
            await sock.bind(("", group_port))
            membership = socket.inet_aton(MULTICAST_GROUP) + socket.inet_aton(interface)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
        except OSError as exc:
            log.warning("lan-discovery-unavailable", error=exc.strerror or str(exc))
            return
        while True:
            data, (host, _) = await sock.recvfrom(BEACON_SIZE + 1)
            port = read_beacon(network_key, data)
            nonce = data[len(BEACON_PREFIX) + 2:len(BEACON_PREFIX) + 18]
            if port is not None and nonce not in own:
                await found.send((host, port))
