"""Passphrase-protected key files and recovery phrases (spec/12 appendix A).

An identity's root key and its pre-rotation (next) key are exported apart, so
the next key can live offline (a USB stick in a drawer, a sheet of paper) while
the root key approves devices. A key file is one line of text::

    tkey1<base32(payload || checksum)>

with ``payload`` the deterministic CBOR array ``[kind, identity, public_key,
log2_n, salt, nonce, ciphertext]``: the 32-byte secret seed sealed with
ChaCha20-Poly1305 under a key that scrypt (memory-hard) derives from the
passphrase. Everything but the ciphertext is associated data, so no field can
be changed without the passphrase check failing.

A recovery phrase is the seed as 24 BIP-39 English words (the ``mnemonic``
library, Trezor's reference implementation): its last word carries an 8-bit
checksum. The words encode the seed itself (BIP-39's own PBKDF2 seed
derivation is not used).
"""

from __future__ import annotations

import os
import stat
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import cbor2
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from mnemonic import Mnemonic

from tidings.core.invite import InvalidInvite, armor, unarmor
from tidings.core.kel import public_bytes
from tidings.errors import UsageError

KEY_FILE_PREFIX = "tkey1"
KIND_ROOT = 0
KIND_NEXT = 1
KIND_NAMES = {KIND_ROOT: "root", KIND_NEXT: "next"}
#: scrypt's cost: N = 2^17 with r = 8 takes 128 MiB and about half a second,
#: what the scrypt paper and OWASP suggest for interactive logins.
DEFAULT_LOG2_N = 17
#: Readers accept 2^10 (the vectors' cost, fast) to 2^20 (1 GiB of memory): a
#: crafted file cannot make a reader allocate more than that.
MIN_LOG2_N = 10
MAX_LOG2_N = 20
SCRYPT_R = 8
SCRYPT_P = 1
SALT_SIZE = 16
NONCE_SIZE = 12
SEED_SIZE = 32
TAG_SIZE = 16
#: A key file is one line of about 260 characters; anything longer is not one.
MAX_KEY_FILE_TEXT = 1024
PHRASE_WORDS = 24


class KeyFileError(UsageError):
    """A key file or recovery phrase cannot be read. ``reason`` names the check
    (spec/12 A.3): the text checks of invites, ``malformed``, ``non-canonical``,
    ``kdf-cost``, ``wrong-passphrase``, ``wrong-key``, ``bad-phrase``."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class SealedKey:
    """A key file's fields; ``open`` needs the passphrase."""

    kind: int
    identity: bytes
    public_key: bytes
    log2_n: int
    salt: bytes
    nonce: bytes
    ciphertext: bytes

    def header(self) -> bytes:
        """The associated data: the prefix and every field but the ciphertext."""
        return KEY_FILE_PREFIX.encode() + cbor2.dumps(
            [self.kind, self.identity, self.public_key, self.log2_n, self.salt, self.nonce])

    def __str__(self) -> str:
        return armor(KEY_FILE_PREFIX, cbor2.dumps(
            [self.kind, self.identity, self.public_key, self.log2_n, self.salt, self.nonce,
             self.ciphertext]))

    def open(self, passphrase: str) -> Ed25519PrivateKey:
        """The secret key; raises :class:`KeyFileError` (wrong passphrase, or a
        file whose public key is not the sealed key's)."""
        key = derive_key(passphrase, self.salt, self.log2_n)
        try:
            seed = ChaCha20Poly1305(key).decrypt(self.nonce, self.ciphertext, self.header())
        except InvalidTag:
            raise KeyFileError("the passphrase is wrong (or the file was changed)",
                               "wrong-passphrase") from None
        secret = Ed25519PrivateKey.from_private_bytes(seed)
        if public_bytes(secret) != self.public_key:
            raise KeyFileError("the sealed key is not the public key the file names", "wrong-key")
        return secret


def derive_key(passphrase: str, salt: bytes, log2_n: int) -> bytes:
    """scrypt(NFC(passphrase) as UTF-8, salt, N = 2^log2_n, r = 8, p = 1, 32 bytes)."""
    password = unicodedata.normalize("NFC", passphrase).encode()
    return Scrypt(salt=salt, length=32, n=1 << log2_n, r=SCRYPT_R, p=SCRYPT_P).derive(password)


def seal_key(secret: Ed25519PrivateKey, *, kind: int, identity: bytes, passphrase: str,
             log2_n: int = DEFAULT_LOG2_N, salt: bytes | None = None,
             nonce: bytes | None = None) -> SealedKey:
    """Seal ``secret`` under ``passphrase``. ``salt`` and ``nonce`` are random
    unless given (test vectors fix them)."""
    if kind not in KIND_NAMES:
        raise ValueError("kind is KIND_ROOT or KIND_NEXT")
    if not passphrase:
        raise KeyFileError("a key file needs a passphrase", "malformed")
    if not MIN_LOG2_N <= log2_n <= MAX_LOG2_N:
        raise ValueError(f"log2_n is {MIN_LOG2_N} to {MAX_LOG2_N}")
    salt = os.urandom(SALT_SIZE) if salt is None else salt
    nonce = os.urandom(NONCE_SIZE) if nonce is None else nonce
    unsealed = SealedKey(kind, identity, public_bytes(secret), log2_n, salt, nonce, b"")
    seed = secret.private_bytes_raw()
    ciphertext = ChaCha20Poly1305(derive_key(passphrase, salt, log2_n)).encrypt(
        nonce, seed, unsealed.header())
    return SealedKey(kind, identity, unsealed.public_key, log2_n, salt, nonce, ciphertext)


def _field(value: object, size: int, name: str) -> bytes:
    if type(value) is not bytes or len(value) != size:
        raise KeyFileError(f"key file: {name} is {size} bytes", "malformed")
    return value


def parse_key_file(text: str) -> SealedKey:
    """Parse a key file's text (one line; ASCII whitespace around it is dropped)."""
    text = text.strip(" \t\r\n")
    try:
        value, payload = unarmor(text, KEY_FILE_PREFIX, MAX_KEY_FILE_TEXT, "key file")
    except InvalidInvite as exc:
        raise KeyFileError(str(exc), exc.reason) from None
    if type(value) is not list or len(value) != 7:
        raise KeyFileError("key file: the payload is [kind, identity, public key, log2 N, "
                           "salt, nonce, ciphertext]", "malformed")
    kind, identity, public_key, log2_n, salt, nonce, ciphertext = value
    if type(kind) is not int or kind not in KIND_NAMES:
        raise KeyFileError("key file: kind is 0 (root) or 1 (next)", "malformed")
    if type(log2_n) is not int:
        raise KeyFileError("key file: log2 N is an integer", "malformed")
    sealed = SealedKey(kind, _field(identity, 32, "the identity"),
                       _field(public_key, 32, "the public key"), log2_n,
                       _field(salt, SALT_SIZE, "the salt"), _field(nonce, NONCE_SIZE, "the nonce"),
                       _field(ciphertext, SEED_SIZE + TAG_SIZE, "the ciphertext"))
    if cbor2.dumps(value) != payload:
        raise KeyFileError("key file: not the deterministic CBOR encoding", "non-canonical")
    if not MIN_LOG2_N <= log2_n <= MAX_LOG2_N:
        raise KeyFileError(f"key file: scrypt cost 2^{log2_n} is outside 2^{MIN_LOG2_N}.."
                           f"2^{MAX_LOG2_N}", "kdf-cost")
    return sealed


def write_sealed_key(path: Path, sealed: SealedKey) -> None:
    """Write a key file: a new file (never overwrites), mode 0600, synced."""
    text = f"{sealed}\n"
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    temporary = Path(name)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(temporary, path)  # fails if the path exists: a key is never overwritten
    finally:
        temporary.unlink(missing_ok=True)


def read_sealed_key(path: Path) -> SealedKey:
    """Read a key file; refuses one other users can read."""
    try:
        mode = path.stat().st_mode
        if not stat.S_ISREG(mode):
            raise KeyFileError(f"{path} is not a regular file", "malformed")
        with open(path, "rb") as handle:
            data = handle.read(MAX_KEY_FILE_TEXT + 1)
    except FileNotFoundError:
        raise KeyFileError(f"no key file at {path}", "malformed") from None
    if mode & 0o077:
        raise KeyFileError(f"{path} can be read by other users (mode {mode & 0o777:o}); "
                           f"run `chmod 600 {path}`", "malformed")
    if len(data) > MAX_KEY_FILE_TEXT:
        raise KeyFileError(f"{path} is too long to be a key file", "bad-length")
    return parse_key_file(data.decode("ascii", errors="replace"))


_WORDS = Mnemonic("english")


def recovery_phrase(secret: Ed25519PrivateKey) -> str:
    """The secret seed as 24 BIP-39 English words, separated by single spaces."""
    return str(_WORDS.to_mnemonic(secret.private_bytes_raw()))


def secret_from_phrase(phrase: str) -> Ed25519PrivateKey:
    """The key a recovery phrase holds. Words are matched in lower case and may
    be separated by any ASCII whitespace; the checksum word must match."""
    words = phrase.lower().split()
    if len(words) != PHRASE_WORDS:
        raise KeyFileError(f"a recovery phrase has {PHRASE_WORDS} words, not {len(words)}",
                           "bad-phrase")
    unknown = [w for w in words if w not in _WORDS.wordlist]
    if unknown:
        raise KeyFileError(f"not a recovery word: {unknown[0]!r}", "bad-phrase")
    normal = " ".join(words)
    if not _WORDS.check(normal):
        raise KeyFileError("the phrase's checksum does not match: is a word wrong?",
                           "bad-phrase")
    return Ed25519PrivateKey.from_private_bytes(bytes(_WORDS.to_entropy(normal)))
