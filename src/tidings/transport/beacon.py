"""LAN beacons, pure (spec/08 §7): "a node of this network listens on this port".

A beacon is ``b"tidings-lan/1" || port (2 bytes, big-endian) || nonce (16) ||
tag (16)``, the tag a keyed BLAKE2b-128 of everything before it under the
network key. Nodes on another network cannot read or forge one, and a beacon
carries no node key. Sending and hearing them is :mod:`tidings.node.discovery`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct

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
