"""Noise handshakes over 25519, ChaChaPoly and BLAKE2b, sans-IO (the Noise Protocol
Framework, revision 34), with the ``psk`` modifiers of its §9.

tidings speaks ``Noise_XXpsk0_25519_ChaChaPoly_BLAKE2b`` with the network key as
the PSK (spec/08). The engine also runs ``XX`` and ``NN`` with any ``pskN``
modifiers, so it can be checked against the published vectors of those.

Each side feeds :class:`NoiseHandshake` the handshake messages in turn, then
:meth:`NoiseHandshake.split` gives it one :class:`CipherState` to send with and one to
receive with. Nothing here touches a socket; the caller moves the bytes.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from tidings.errors import BadFrame, HandshakeFailed, LocalProtocolError

#: What tidings speaks (spec/08 §4).
PROTOCOL_NAME = b"Noise_XXpsk0_25519_ChaChaPoly_BLAKE2b"
DH_LEN = 32
HASH_LEN = 64
TAG_LEN = 16
MAX_MESSAGE_LEN = 65535  # Noise's own bound on one message

_KEY_LEN = 32  # ChaChaPoly keys; BLAKE2b outputs 64 bytes, so HKDF outputs are cut to this
_MAX_NONCE = 2**64 - 1  # reserved by the spec: a cipher state that reaches it is spent

# The base patterns (Noise §7.5). Even-numbered steps go initiator -> responder.
_PATTERNS: dict[str, tuple[tuple[str, ...], ...]] = {
    "XX": (("e",), ("e", "ee", "s", "es"), ("s", "se")),
    "NN": (("e",), ("e", "ee")),
}
_SUITE = "_25519_ChaChaPoly_BLAKE2b"
PSK_LEN = 32


def handshake_pattern(protocol_name: bytes) -> tuple[tuple[str, ...], ...]:
    """The message patterns of ``Noise_<base><modifiers>_25519_ChaChaPoly_BLAKE2b``.

    ``psk0`` puts a ``psk`` token first in message 1; ``pskN`` (N >= 1) last in message N.
    """
    name = protocol_name.decode("ascii", "replace")
    if not name.startswith("Noise_") or not name.endswith(_SUITE):
        raise ValueError(f"unsupported Noise protocol {name!r}")
    handshake = name[len("Noise_"):-len(_SUITE)]
    base = handshake[:2]
    if base not in _PATTERNS:
        raise ValueError(f"unsupported Noise pattern {handshake!r}")
    messages = [list(tokens) for tokens in _PATTERNS[base]]
    modifiers = handshake[2:].split("+") if handshake[2:] else []
    for modifier in modifiers:
        if not modifier.startswith("psk") or not modifier[3:].isdigit():
            raise ValueError(f"unsupported Noise modifier {modifier!r}")
        number = int(modifier[3:])
        if number == 0:
            messages[0].insert(0, "psk")
        elif number <= len(messages):
            messages[number - 1].append("psk")
        else:
            raise ValueError(f"{modifier} names a message {base} does not have")
    return tuple(tuple(tokens) for tokens in messages)


class CipherState:
    """A key ``k`` (or None: no encryption yet) and the nonce ``n`` of the next message."""

    def __init__(self, k: bytes | None = None, n: int = 0) -> None:
        if k is not None and len(k) != _KEY_LEN:
            raise ValueError(f"a ChaChaPoly key is {_KEY_LEN} bytes, got {len(k)}")
        self._k = k
        self._aead = None if k is None else ChaCha20Poly1305(k)
        self.n = n

    @property
    def k(self) -> bytes | None:
        """The cipher key; read-only so it can never drift from the AEAD object."""
        return self._k

    def _nonce(self) -> bytes:
        return b"\x00\x00\x00\x00" + self.n.to_bytes(8, "little")

    def encrypt_with_ad(self, ad: bytes, plaintext: bytes | memoryview) -> bytes:
        """Encrypt with the next nonce; pass ``plaintext`` through while there is no key."""
        if self._aead is None:
            return bytes(plaintext)
        if self.n >= _MAX_NONCE:
            raise LocalProtocolError("this cipher state has used every nonce; handshake again")
        if len(plaintext) > MAX_MESSAGE_LEN - TAG_LEN:
            raise LocalProtocolError(f"a message may hold at most {MAX_MESSAGE_LEN} bytes")
        ciphertext, self.n = self._aead.encrypt(self._nonce(), plaintext, ad), self.n + 1
        return ciphertext

    def decrypt_with_ad(self, ad: bytes, ciphertext: bytes | memoryview) -> bytes:
        """Decrypt with the next nonce (unchanged on failure); BadFrame if it does not verify."""
        if self._aead is None:
            return bytes(ciphertext)
        if self.n >= _MAX_NONCE:
            raise BadFrame("the peer sent more messages than one cipher state allows")
        if not TAG_LEN <= len(ciphertext) <= MAX_MESSAGE_LEN:
            raise BadFrame(
                f"an encrypted message is {len(ciphertext)} bytes; "
                f"it must be {TAG_LEN} to {MAX_MESSAGE_LEN}"
            )
        try:
            plaintext = self._aead.decrypt(self._nonce(), ciphertext, ad)
        except InvalidTag:
            raise BadFrame(f"message {self.n} failed authentication") from None
        self.n += 1
        return plaintext


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.blake2b).digest()


def _hkdf(chaining_key: bytes, input_key_material: bytes) -> tuple[bytes, bytes, bytes]:
    """Noise's HKDF with three outputs (callers that need two ignore the third)."""
    temp_key = _hmac(chaining_key, input_key_material)
    output1 = _hmac(temp_key, b"\x01")
    output2 = _hmac(temp_key, output1 + b"\x02")
    return output1, output2, _hmac(temp_key, output2 + b"\x03")


class _SymmetricState:
    """The chaining key ``ck``, the handshake hash ``h`` and the current cipher state."""

    def __init__(self, protocol_name: bytes) -> None:
        # Names up to HASH_LEN bytes are padded, longer ones hashed (Noise §5.2).
        self.h = (protocol_name.ljust(HASH_LEN, b"\x00") if len(protocol_name) <= HASH_LEN
                  else hashlib.blake2b(protocol_name).digest())
        self.ck = self.h
        self.cipher = CipherState()

    def mix_hash(self, data: bytes) -> None:
        self.h = hashlib.blake2b(self.h + data).digest()

    def mix_key(self, input_key_material: bytes) -> None:
        self.ck, temp_k, _ = _hkdf(self.ck, input_key_material)
        self.cipher = CipherState(temp_k[:_KEY_LEN])

    def mix_key_and_hash(self, input_key_material: bytes) -> None:
        self.ck, temp_h, temp_k = _hkdf(self.ck, input_key_material)
        self.mix_hash(temp_h)
        self.cipher = CipherState(temp_k[:_KEY_LEN])

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        ciphertext = self.cipher.encrypt_with_ad(self.h, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        plaintext = self.cipher.decrypt_with_ad(self.h, ciphertext)
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[CipherState, CipherState]:
        temp_k1, temp_k2, _ = _hkdf(self.ck, b"")
        return CipherState(temp_k1[:_KEY_LEN]), CipherState(temp_k2[:_KEY_LEN])


def _private_key(raw: bytes, which: str) -> X25519PrivateKey:
    if len(raw) != DH_LEN:
        raise ValueError(f"the {which} private key must be {DH_LEN} bytes, got {len(raw)}")
    return X25519PrivateKey.from_private_bytes(raw)


class NoiseHandshake:
    """One side of a handshake: write and read its messages in turn, then split.

    ``psks`` are the pre-shared keys of the pattern's ``psk`` tokens, in order.
    """

    def __init__(self, *, initiator: bool, static_private: bytes | None = None,
                 prologue: bytes = b"", ephemeral_private: bytes | None = None,
                 protocol_name: bytes = PROTOCOL_NAME, psks: tuple[bytes, ...] = ()) -> None:
        self._pattern = handshake_pattern(protocol_name)
        tokens = [token for message in self._pattern for token in message]
        self._psk_mode = "psk" in tokens
        if len(psks) != tokens.count("psk") or any(len(k) != PSK_LEN for k in psks):
            raise ValueError(f"{protocol_name.decode()} needs {tokens.count('psk')} "
                             f"pre-shared keys of {PSK_LEN} bytes")
        self._psks = list(psks)
        self._initiator = initiator
        if static_private is None and "s" in tokens:
            raise ValueError(f"{protocol_name.decode()} needs a static key")
        self._s = None if static_private is None else _private_key(static_private, "static")
        # Only tests fix the ephemeral key (to replay published vectors); it must be fresh.
        self._e = (X25519PrivateKey.generate() if ephemeral_private is None
                   else _private_key(ephemeral_private, "ephemeral"))
        self._re: bytes | None = None
        self._rs: bytes | None = None
        self._step = 0  # index into the pattern of the next message
        self._failed = False
        self._split = False
        self._symmetric = _SymmetricState(protocol_name)
        self._symmetric.mix_hash(prologue)

    @property
    def static_public(self) -> bytes:
        """This side's static public key (32 bytes)."""
        if self._s is None:
            raise LocalProtocolError("this handshake has no static key")
        return self._s.public_key().public_bytes_raw()

    @property
    def complete(self) -> bool:
        """Whether every message has been written or read."""
        return self._step == len(self._pattern)

    def _shortest(self) -> int:
        """The shortest valid next message: keys in the clear or encrypted, and the
        payload's tag once a key is mixed in."""
        keyed = self._symmetric.cipher.k is not None
        size = 0
        for token in self._pattern[self._step]:
            if token == "e":
                size += DH_LEN
                keyed = keyed or self._psk_mode
            elif token == "s":
                size += DH_LEN + (TAG_LEN if keyed else 0)
            else:  # ee, es, se, psk: each mixes a key in
                keyed = True
        return size + (TAG_LEN if keyed else 0)

    @property
    def remote_static(self) -> bytes | None:
        """The peer's static public key once its message carrying it has verified."""
        return None if self._failed else self._rs

    @property
    def handshake_hash(self) -> bytes:
        """The final handshake hash ``h``, a unique name for this session (channel binding)."""
        if not self.complete:
            raise LocalProtocolError("the handshake hash is only final once the handshake is")
        return self._symmetric.h

    def write_message(self, payload: bytes = b"") -> bytes:
        """The next handshake message of this side, carrying ``payload``."""
        self._check_turn(writing=True)
        room = MAX_MESSAGE_LEN - self._shortest()
        if len(payload) > room:
            message = f"handshake message {self._step + 1} has room for {room} payload bytes"
            raise LocalProtocolError(f"{message}, not {len(payload)}")
        self._failed = True  # until the message is done: a DH failure leaves a broken state
        symmetric, parts = self._symmetric, []
        for token in self._pattern[self._step]:
            if token == "e":
                parts.append(self._e.public_key().public_bytes_raw())
                symmetric.mix_hash(parts[-1])
                if self._psk_mode:
                    symmetric.mix_key(parts[-1])
            elif token == "s":
                parts.append(symmetric.encrypt_and_hash(self.static_public))
            elif token == "psk":
                symmetric.mix_key_and_hash(self._psks.pop(0))
            else:
                symmetric.mix_key(self._dh(token))
        parts.append(symmetric.encrypt_and_hash(payload))
        self._failed, self._step = False, self._step + 1
        return b"".join(parts)

    def read_message(self, message: bytes) -> bytes:
        """Process the peer's next handshake message; return its decrypted payload."""
        self._check_turn(writing=False)
        number, shortest = self._step + 1, self._shortest()
        self._failed = True  # until the message is done: no retry on a half-mixed state
        if not shortest <= len(message) <= MAX_MESSAGE_LEN:
            raise HandshakeFailed(
                f"handshake message {number} is {len(message)} bytes; "
                f"it must be {shortest} to {MAX_MESSAGE_LEN}"
            )
        symmetric, rest = self._symmetric, bytes(message)
        try:
            for token in self._pattern[self._step]:
                if token == "e":
                    self._re, rest = rest[:DH_LEN], rest[DH_LEN:]
                    symmetric.mix_hash(self._re)
                    if self._psk_mode:
                        symmetric.mix_key(self._re)
                elif token == "psk":
                    symmetric.mix_key_and_hash(self._psks.pop(0))
                elif token == "s":
                    # XX always mixes a key in before s, so s carries a tag; the general rule stays.
                    size = DH_LEN + TAG_LEN if symmetric.cipher.k is not None else DH_LEN
                    self._rs, rest = symmetric.decrypt_and_hash(rest[:size]), rest[size:]
                else:
                    symmetric.mix_key(self._dh(token))
            payload = symmetric.decrypt_and_hash(rest)
        except BadFrame:
            raise HandshakeFailed(
                f"handshake message {number} failed authentication: the peer is on another "
                "network (another network key), speaks another protocol version, or the "
                "message was damaged"
            ) from None
        self._failed, self._step = False, self._step + 1
        return payload

    def split(self) -> tuple[CipherState, CipherState]:
        """``(send, receive)`` cipher states for this side; once only, so no nonce repeats."""
        if not self.complete:
            raise LocalProtocolError("split() needs a complete handshake")
        if self._split:
            raise LocalProtocolError("split() was already called; two copies would reuse nonces")
        self._split = True
        to_responder, to_initiator = self._symmetric.split()
        return (to_responder, to_initiator) if self._initiator else (to_initiator, to_responder)

    def _check_turn(self, *, writing: bool) -> None:
        if self._failed:
            raise LocalProtocolError("this handshake failed; start a new one")
        if self.complete:
            raise LocalProtocolError("the handshake is complete; use split() for transport")
        writes_next = (self._step % 2 == 0) == self._initiator
        if writing != writes_next:
            action = "write" if writes_next else "read"
            raise LocalProtocolError(
                f"out of turn: this side must {action} handshake message {self._step + 1} next"
            )

    def _dh(self, token: str) -> bytes:
        """The DH of token ``ee``/``es``/``se``: its first letter names the initiator's key."""
        local, remote = (token[0], token[1]) if self._initiator else (token[1], token[0])
        private = self._e if local == "e" else self._s
        public = self._re if remote == "e" else self._rs
        # The patterns always send a key before a DH uses it.
        assert public is not None and private is not None
        which = "ephemeral" if remote == "e" else "static"
        if len(public) != DH_LEN:
            raise HandshakeFailed(f"the peer's {which} key is {len(public)} bytes, not {DH_LEN}")
        try:
            shared = private.exchange(X25519PublicKey.from_public_bytes(public))
        except ValueError:  # OpenSSL refuses the all-zero output of a low-order point
            shared = bytes(DH_LEN)
        if shared == bytes(DH_LEN):
            raise HandshakeFailed(
                f"handshake message {self._step + 1}: the peer's {which} key is a low-order "
                "point (an all-zero shared secret)"
            )
        return shared
