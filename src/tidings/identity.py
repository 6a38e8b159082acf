"""An author's key pair and the file that keeps the secret half.

The secret key file holds one line of text and has mode 0600. The secret never
appears in ``repr``, logs or error messages.
"""

from __future__ import annotations

import base64
import errno
import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tidings.core.ids import AuthorId
from tidings.errors import UsageError

KEY_FILE_HEADER = "tidings-secret-key-1"
#: errno values of filesystems (FAT, some FUSE and SMB mounts) that refuse hard links.
_NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK}


def _write_synced(fd: int, text: str) -> None:
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


class Identity:
    """An author: an Ed25519 key pair. ``identity.author`` is the public id."""

    __slots__ = ("_secret", "author")

    def __init__(self, secret: Ed25519PrivateKey) -> None:
        self._secret = secret
        # (the raw forms: cryptography's serialization module costs a sync ~25 ms to import)
        self.author = AuthorId(secret.public_key().public_bytes_raw())

    @classmethod
    def generate(cls) -> Identity:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> Identity:
        """The identity for a 32-byte seed (test vectors use fixed seeds)."""
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @property
    def secret_key(self) -> Ed25519PrivateKey:
        return self._secret

    def __repr__(self) -> str:
        return f"Identity({self.author})"

    def save(self, path: Path) -> None:
        """Write the secret key to a new file with mode 0600; never overwrites."""
        seed = self._secret.private_bytes_raw()
        write_key_file(path, KEY_FILE_HEADER, seed)

    @classmethod
    def load(cls, path: Path) -> Identity:
        """Read a secret key file; refuses one that others can read."""
        return cls.from_seed(read_key_file(path, KEY_FILE_HEADER, "secret key"))


def write_key_file(path: Path, header: str, key: bytes) -> None:
    """Write ``header`` and ``key`` (base32) to a new file with mode 0600.

    The key is written whole to a temporary file, synced, then linked into
    place, so a crash leaves either no key file or a complete one, and two
    processes saving at once cannot both win (the loser gets
    ``FileExistsError``).
    """
    import tempfile  # (here: every command loads this module, few write a key)

    text = f"{header} {base64.b32encode(key).decode().rstrip('=').lower()}\n"
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    temporary = Path(name)  # mkstemp makes it 0600
    try:
        _write_synced(fd, text)
        try:
            os.link(temporary, path)
        except OSError as exc:
            if exc.errno not in _NO_HARD_LINKS:
                raise
            # a filesystem without hard links: create the file in place
            _write_synced(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), text)
    finally:
        temporary.unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def read_key_file(path: Path, header: str, what: str) -> bytes:
    """The 32-byte key in a key file; refuses one that other users can read."""
    try:
        mode = path.stat().st_mode
        if not stat.S_ISREG(mode):
            raise UsageError(f"{path} is not a regular file, so not a {what} file")
        with open(path, "rb") as handle:
            text = handle.read(4096).decode("ascii", errors="replace")  # a key file is < 80 bytes
    except FileNotFoundError:
        raise UsageError(f"no {what} at {path}: run `tidings init` first") from None
    except OSError as exc:
        raise UsageError(f"cannot read the {what} {path}: {exc.strerror}") from None
    if mode & 0o077:
        raise UsageError(
            f"{path} can be read by other users (mode {mode & 0o777:o}); "
            f"run `chmod 600 {path}` and try again"
        )
    parts = text.split()
    if len(parts) != 2 or parts[0] != header:
        raise UsageError(f"{path} is not a tidings {what} file")
    try:
        key = base64.b32decode(parts[1].upper() + "=" * (-len(parts[1]) % 8))
    except ValueError:
        raise UsageError(f"{path} is not a tidings {what} file") from None
    if len(key) != 32:
        raise UsageError(f"{path} is not a tidings {what} file")
    return key
