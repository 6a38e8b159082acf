"""Noise_XX_25519_ChaChaPoly_BLAKE2b, sans-IO (the Noise Protocol Framework, revision 34).

Each side feeds :class:`NoiseHandshake` the three handshake messages in turn, then
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

PROTOCOL_NAME = b"Noise_XX_25519_ChaChaPoly_BLAKE2b"
DH_LEN = 32
HASH_LEN = 64
TAG_LEN = 16
MAX_MESSAGE_LEN = 65535  # Noise's own bound on one message

_KEY_LEN = 32  # ChaChaPoly keys; BLAKE2b outputs 64 bytes, so HKDF outputs are cut to this
_MAX_NONCE = 2**64 - 1  # reserved by the spec: a cipher state that reaches it is spent

# XX: -> e; <- e, ee, s, es; -> s, se. Even-numbered steps go initiator -> responder.
_PATTERN: tuple[tuple[str, ...], ...] = (("e",), ("e", "ee", "s", "es"), ("s", "se"))
# The shortest valid message of each step: the cleartext ephemeral keys, the encrypted
# static keys, and the payload's tag once a key is mixed in (there is none in message 1).
_MIN_LENGTHS = (DH_LEN, DH_LEN + (DH_LEN + TAG_LEN) + TAG_LEN, (DH_LEN + TAG_LEN) + TAG_LEN)


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

    def encrypt_with_ad(self, ad: bytes, plaintext: bytes) -> bytes:
        """Encrypt with the next nonce; pass ``plaintext`` through while there is no key."""
        if self._aead is None:
            return plaintext
        if self.n >= _MAX_NONCE:
            raise LocalProtocolError("this cipher state has used every nonce; handshake again")
        if len(plaintext) > MAX_MESSAGE_LEN - TAG_LEN:
            raise LocalProtocolError(f"a message may hold at most {MAX_MESSAGE_LEN} bytes")
        ciphertext, self.n = self._aead.encrypt(self._nonce(), plaintext, ad), self.n + 1
        return ciphertext

    def decrypt_with_ad(self, ad: bytes, ciphertext: bytes) -> bytes:
        """Decrypt with the next nonce (unchanged on failure); BadFrame if it does not verify."""
        if self._aead is None:
            return ciphertext
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


def _hkdf(chaining_key: bytes, input_key_material: bytes) -> tuple[bytes, bytes]:
    """Noise's HKDF with two outputs, the only count XX without a PSK needs."""
    temp_key = _hmac(chaining_key, input_key_material)
    output1 = _hmac(temp_key, b"\x01")
    return output1, _hmac(temp_key, output1 + b"\x02")


class _SymmetricState:
    """The chaining key ``ck``, the handshake hash ``h`` and the current cipher state."""

    def __init__(self) -> None:
        # The name is shorter than HASH_LEN, so the spec pads it instead of hashing it.
        self.h = PROTOCOL_NAME.ljust(HASH_LEN, b"\x00")
        self.ck = self.h
        self.cipher = CipherState()

    def mix_hash(self, data: bytes) -> None:
        self.h = hashlib.blake2b(self.h + data).digest()

    def mix_key(self, input_key_material: bytes) -> None:
        self.ck, temp_k = _hkdf(self.ck, input_key_material)
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
        temp_k1, temp_k2 = _hkdf(self.ck, b"")
        return CipherState(temp_k1[:_KEY_LEN]), CipherState(temp_k2[:_KEY_LEN])


def _private_key(raw: bytes, which: str) -> X25519PrivateKey:
    if len(raw) != DH_LEN:
        raise ValueError(f"the {which} private key must be {DH_LEN} bytes, got {len(raw)}")
    return X25519PrivateKey.from_private_bytes(raw)


class NoiseHandshake:
    """One side of an XX handshake: write and read the three messages in turn, then split."""

    def __init__(self, *, initiator: bool, static_private: bytes, prologue: bytes = b"",
                 ephemeral_private: bytes | None = None) -> None:
        self._initiator = initiator
        self._s = _private_key(static_private, "static")
        # Only tests fix the ephemeral key (to replay published vectors); it must be fresh.
        self._e = (X25519PrivateKey.generate() if ephemeral_private is None
                   else _private_key(ephemeral_private, "ephemeral"))
        self._re: bytes | None = None
        self._rs: bytes | None = None
        self._step = 0  # index into _PATTERN of the next message
        self._failed = False
        self._split = False
        self._symmetric = _SymmetricState()
        self._symmetric.mix_hash(prologue)

    @property
    def static_public(self) -> bytes:
        """This side's static public key (32 bytes)."""
        return self._s.public_key().public_bytes_raw()

    @property
    def complete(self) -> bool:
        """Whether all three messages have been written or read."""
        return self._step == len(_PATTERN)

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
        room = MAX_MESSAGE_LEN - _MIN_LENGTHS[self._step]
        if len(payload) > room:
            message = f"handshake message {self._step + 1} has room for {room} payload bytes"
            raise LocalProtocolError(f"{message}, not {len(payload)}")
        self._failed = True  # until the message is done: a DH failure leaves a broken state
        symmetric, parts = self._symmetric, []
        for token in _PATTERN[self._step]:
            if token == "e":
                parts.append(self._e.public_key().public_bytes_raw())
                symmetric.mix_hash(parts[-1])
            elif token == "s":
                parts.append(symmetric.encrypt_and_hash(self.static_public))
            else:
                symmetric.mix_key(self._dh(token))
        parts.append(symmetric.encrypt_and_hash(payload))
        self._failed, self._step = False, self._step + 1
        return b"".join(parts)

    def read_message(self, message: bytes) -> bytes:
        """Process the peer's next handshake message; return its decrypted payload."""
        self._check_turn(writing=False)
        number, shortest = self._step + 1, _MIN_LENGTHS[self._step]
        self._failed = True  # until the message is done: no retry on a half-mixed state
        if not shortest <= len(message) <= MAX_MESSAGE_LEN:
            raise HandshakeFailed(
                f"handshake message {number} is {len(message)} bytes; "
                f"it must be {shortest} to {MAX_MESSAGE_LEN}"
            )
        symmetric, rest = self._symmetric, bytes(message)
        try:
            for token in _PATTERN[self._step]:
                if token == "e":
                    self._re, rest = rest[:DH_LEN], rest[DH_LEN:]
                    symmetric.mix_hash(self._re)
                elif token == "s":
                    # XX always mixes a key in before s, so s carries a tag; the general rule stays.
                    size = DH_LEN + TAG_LEN if symmetric.cipher.k is not None else DH_LEN
                    self._rs, rest = symmetric.decrypt_and_hash(rest[:size]), rest[size:]
                else:
                    symmetric.mix_key(self._dh(token))
            payload = symmetric.decrypt_and_hash(rest)
        except BadFrame:
            raise HandshakeFailed(
                f"handshake message {number} failed authentication: "
                "a different network key or a corrupted message"
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
        assert public is not None  # the pattern always sends a key before a DH uses it
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
