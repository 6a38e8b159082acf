"""LAN discovery (spec/08-transport.md §7): beacons scoped by network key."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from tests.nodes import running
from tidings.node.discovery import (
    BEACON_PREFIX,
    BEACON_SIZE,
    MULTICAST_GROUP,
    MULTICAST_PORT,
    make_beacon,
    read_beacon,
)
from tidings.protocol.channel import DEFAULT_NETWORK_KEY

PRIVATE = bytes(range(32))


def test_a_beacon_names_its_port_to_its_network_only() -> None:
    beacon = make_beacon(PRIVATE, 7654)
    assert len(beacon) == BEACON_SIZE and beacon.startswith(BEACON_PREFIX)
    assert read_beacon(PRIVATE, beacon) == 7654
    assert read_beacon(DEFAULT_NETWORK_KEY, beacon) is None


def test_a_beacon_carries_no_node_key_and_never_repeats() -> None:
    first, second = make_beacon(PRIVATE, 7654), make_beacon(PRIVATE, 7654)
    assert first != second  # a fresh nonce each time: beacons cannot be linked by bytes


@pytest.mark.parametrize("damage", ["truncate", "extend", "flip-port", "flip-tag", "prefix"])
def test_a_damaged_beacon_is_ignored(damage: str) -> None:
    beacon = bytearray(make_beacon(PRIVATE, 7654))
    if damage == "truncate":
        del beacon[-1]
    elif damage == "extend":
        beacon.append(0)
    elif damage == "flip-port":
        beacon[len(BEACON_PREFIX)] ^= 1
    elif damage == "flip-tag":
        beacon[-1] ^= 1
    else:
        beacon[0] ^= 1
    assert read_beacon(PRIVATE, bytes(beacon)) is None


def test_port_zero_is_not_an_address() -> None:
    assert read_beacon(PRIVATE, make_beacon(PRIVATE, 0)) is None


def _multicast_loops_back() -> bool:
    """Whether this machine delivers a multicast datagram back to itself."""
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        receiver.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        receiver.bind(("", MULTICAST_PORT))
        receiver.setsockopt(
            socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
            socket.inet_aton(MULTICAST_GROUP) + socket.inet_aton("0.0.0.0"),
        )
        receiver.settimeout(1.0)
        probe = os.urandom(8)
        sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        sender.sendto(probe, (MULTICAST_GROUP, MULTICAST_PORT))
        while True:
            data, _ = receiver.recvfrom(64)
            if data == probe:
                return True
    except OSError:
        return False
    finally:
        receiver.close()
        sender.close()


def test_two_nodes_on_one_lan_find_each_other(tmp_path: Path) -> None:
    if not _multicast_loops_back():
        pytest.skip("this machine has no multicast route (no LAN to discover)")
    key = os.urandom(32).hex()
    base = ["--listen", "0.0.0.0:0", "--network", key]
    with running(tmp_path / "one", *base, lan=True) as one, \
            running(tmp_path / "two", *base, lan=True) as two:
        found = two.wait_log(r"event=connected peer=([0-9a-f]{8})", timeout=30)
        assert found.group(1) == one.key
        two.wait_log(r"event=lan-peer")
