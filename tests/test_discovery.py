"""LAN discovery (spec/08-transport.md §7): beacons scoped by network key."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import pytest

from tests.nodes import running
from tidings.transport.beacon import (
    BEACON_PREFIX,
    BEACON_SIZE,
    MULTICAST_GROUP,
    make_beacon,
    read_beacon,
)
from tidings.transport.network import DEFAULT_NETWORK_KEY

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


LOOPBACK = "127.0.0.1"


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def _loopback_multicast_works(port: int) -> bool:
    """Whether a multicast datagram sent by the loopback interface comes back on it.

    Both ends are pinned to loopback (IP_MULTICAST_IF, and the membership's
    interface), so nothing leaves the machine.
    """
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        receiver.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        receiver.bind(("", port))
        receiver.setsockopt(
            socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
            socket.inet_aton(MULTICAST_GROUP) + socket.inet_aton(LOOPBACK),
        )
        receiver.settimeout(5.0)
        probe = os.urandom(8)
        sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(LOOPBACK))
        sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        sender.sendto(probe, (MULTICAST_GROUP, port))
        while True:
            data, _ = receiver.recvfrom(64)
            if data == probe:
                return True
    except OSError:
        return False
    finally:
        receiver.close()
        sender.close()


@pytest.mark.system
def test_two_nodes_on_one_lan_find_each_other(tmp_path: Path) -> None:
    """Two nodes find each other by beacons, on the loopback interface only.

    Beacons go out by loopback (``--lan-interface 127.0.0.1``) to a group port
    of this test's own, so the test sends nothing on the machine's real
    interfaces and never meets another node's beacons.
    """
    port = _free_udp_port()
    if not _loopback_multicast_works(port):
        pytest.skip("this machine does not loop multicast back on its loopback interface")
    key = os.urandom(32).hex()
    for home in ("one", "two"):
        (tmp_path / home).mkdir()
        (tmp_path / home / "config.toml").write_text(f"[node]\nlan_port = {port}\n")
    base = ["--listen", "127.0.0.1:0", "--network", key, "--lan-interface", LOOPBACK]
    with running(tmp_path / "one", *base, lan=True) as one, \
            running(tmp_path / "two", *base, lan=True) as two:
        found = two.wait_log(r"event=connected peer=([0-9a-f]{8})", timeout=30)
        assert found.group(1) == one.key
        # By a beacon: the node that heard the other's (usually one, from two's first
        # beacon; two hears one's only at one's next, seconds later) dialled it.
        heard = r"event=lan-peer addr=127\.0\.0\.1:"
        assert re.search(heard, one.log()) or re.search(heard, two.log())
