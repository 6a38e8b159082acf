"""Finding nodes on the same LAN: UDP multicast beacons scoped by network key.

The beacons themselves (:mod:`tidings.transport.beacon`, spec/08 §7) say only
"a node of this network listens on this port at the sender's address"; this
module sends them and listens for them.
"""

from __future__ import annotations

import os
import socket

import trio

from tidings.node.log import Logger
from tidings.transport.beacon import (
    ANY_INTERFACE,
    BEACON_INTERVAL,
    BEACON_PREFIX,
    BEACON_SIZE,
    MULTICAST_GROUP,
    MULTICAST_PORT,
    make_beacon,
    read_beacon,
)


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
