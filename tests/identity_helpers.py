"""Building identity logs for tests: keys from names, and an owner who appends events."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tidings.core import kel
from tidings.core.kel import Cut, Event, IdentityState, Revocation


def key(name: str) -> Ed25519PrivateKey:
    """A fixed key per name, so tests and failures are reproducible."""
    seed = hashlib.blake2b(b"tidings test key " + name.encode(), digest_size=32).digest()
    return Ed25519PrivateKey.from_private_bytes(seed)


def pub(name: str) -> bytes:
    return kel.public_bytes(key(name))


class Owner:
    """An identity's owner: the root key, the next key, and the events made so far.

    Keys are named ``root0, next1, root1, next2, ...``: rotation ``i`` reveals
    ``next{i}`` and installs ``root{i}``, committing to ``next{i+1}``.
    """

    def __init__(self, tag: str = "") -> None:
        self.tag = tag
        self.epoch = 0
        inception = kel.make_inception(self.root, pub(f"{tag}next1"))
        self.identity = inception.hash
        self.events: list[Event] = [inception]

    @property
    def root(self) -> Ed25519PrivateKey:
        return key(f"{self.tag}root{self.epoch}")

    @property
    def next(self) -> Ed25519PrivateKey:
        return key(f"{self.tag}next{self.epoch + 1}")

    def state(self, events: Iterable[Event] | None = None) -> IdentityState:
        chosen = self.events if events is None else events
        return kel.fold(self.identity, [e.raw for e in chosen])

    def raws(self) -> list[bytes]:
        return [e.raw for e in self.events]

    def device_sig(self, device: str, name: str) -> bytes:
        return kel.sign_device_claim(key(device), self.identity, name)

    def add(self, device: str, name: str | None = None, *,
            state: IdentityState | None = None, signer: Ed25519PrivateKey | None = None,
            keep: bool = True) -> Event:
        name = name or device
        event = kel.make_device_add(signer or self.root, state or self.state(), pub(device),
                                    name, self.device_sig(device, name))
        if keep:
            self.events.append(event)
        return event

    def revoke(self, device: str, cuts: Iterable[Cut] = (), *,
               state: IdentityState | None = None, keep: bool = True) -> Event:
        event = kel.make_device_revoke(self.root, state or self.state(), pub(device), cuts)
        if keep:
            self.events.append(event)
        return event

    def rotate(self, revoke: Iterable[Revocation] = (), *, after_seq: int | None = None,
               state: IdentityState | None = None, keep: bool = True) -> Event:
        current = state or self.state()
        event = kel.make_rotation(self.next, current, pub(f"{self.tag}root{self.epoch + 1}"),
                                  pub(f"{self.tag}next{self.epoch + 2}"), revoke,
                                  after_seq=after_seq)
        if keep:
            self.epoch += 1
            self.events.append(event)
        return event
