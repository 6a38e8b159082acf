"""Text forms of author ids and feed ids (spec/01-identifiers.md).

Both are made of ``[a-z0-9_-]`` only, so they survive copy-paste, URLs, shells
and double-click selection of the key part. Each starts with a type prefix that
carries the format version (``ta1`` author, ``tf1`` feed) and ends its key part
with a 2-byte checksum, so a mistyped id is refused instead of naming a stranger.
"""

from __future__ import annotations

import base64
import hashlib
import re
import weakref
from functools import lru_cache

from tidings.core.records import record
from tidings.errors import InvalidId

AUTHOR_PREFIX = "ta1"
FEED_PREFIX = "tf1"
#: An author's identity (spec/12; core/kel.py) and an invite to follow one (core/invite.py).
IDENTITY_PREFIX = "ti1"
INVITE_PREFIX = "tinv1"
KEY_SIZE = 32
CHECKSUM_SIZE = 2
#: 34 bytes (key + checksum) in unpadded base32.
KEY_TEXT_LEN = 55
#: Log ids are short names readers pick a topic by; 64 bytes is plenty for a
#: name and keeps every entry well under its size bound.
MAX_LOG_ID_LEN = 64
LOG_ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


def _checksum(prefix: str, key: bytes, log_id: str = "") -> bytes:
    data = prefix.encode() + key + log_id.encode()
    return hashlib.blake2b(data, digest_size=CHECKSUM_SIZE).digest()


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode().rstrip("=").lower()


def _unb32(text: str, what: str) -> bytes:
    """The 34 bytes of a key part (spec checks A2-A4 / F3-F4, in that order)."""
    if not re.fullmatch(r"[a-z2-7]*", text):
        raise InvalidId(f"{what}: the key part may only hold a-z and 2-7", "bad-chars")
    raw = base64.b32decode(text.upper() + "=" * (-len(text) % 8))
    if _b32(raw) != text:
        raise InvalidId(
            f"{what}: non-canonical base32 (trailing bits must be zero)", "non-canonical-base32"
        )
    return raw


@lru_cache(maxsize=1024)
def _valid_log_id(log_id: str) -> bool:
    # Cached: a few log ids name most feeds, and a client reading 10,000 of them spent
    # more on the pattern than on the rest of making each FeedId.
    return LOG_ID_PATTERN.fullmatch(log_id) is not None


def check_log_id(log_id: str) -> str:
    """Return ``log_id`` if it is a valid log id, else raise :class:`InvalidId`."""
    if not isinstance(log_id, str) or not _valid_log_id(log_id):
        raise InvalidId(
            f"invalid log id {log_id!r}: use 1-64 characters of a-z, 0-9, '_' and '-', "
            "starting with a letter or digit", "bad-log-id",
        )
    return log_id


#: What a parser of typed or pasted ids drops from both ends (spec/01 §4): space,
#: tab, line feed and carriage return, and nothing else.
INPUT_WHITESPACE = " \t\n\r"


@record
class AuthorId:
    """An author: an Ed25519 public key. ``str()`` gives the text form."""

    key: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.key, bytes) or len(self.key) != KEY_SIZE:
            raise InvalidId("an author key is exactly 32 bytes", "bad-key")

    def __str__(self) -> str:
        return _author_text(self.key)

    def __repr__(self) -> str:
        return f"AuthorId({str(self)!r})"

    @classmethod
    def from_input(cls, text: str) -> AuthorId:
        """Parse what a person typed or pasted: ASCII whitespace around it is dropped."""
        return cls.parse(text.strip(INPUT_WHITESPACE))

    @classmethod
    def parse(cls, text: str) -> AuthorId:
        """Parse the text form exactly (spec/01 §4); raises :class:`InvalidId`.

        Nothing is trimmed: this is how ids are read from signed data.
        """
        if not text.startswith(AUTHOR_PREFIX):
            hint = " (that is a feed id)" if text.startswith(FEED_PREFIX) else ""
            raise InvalidId(
                f"not an author id: it must start with {AUTHOR_PREFIX!r}{hint}", "wrong-prefix"
            )
        rest = text[len(AUTHOR_PREFIX):]
        if len(rest) != KEY_TEXT_LEN:
            raise InvalidId(
                f"author id: {len(rest)} characters after {AUTHOR_PREFIX!r}, it must be "
                f"{KEY_TEXT_LEN}: is it cut short?", "bad-length",
            )
        raw = _unb32(rest, "author id")
        key, check = raw[:KEY_SIZE], raw[KEY_SIZE:]
        if check != _checksum(AUTHOR_PREFIX, key):
            raise InvalidId(
                "author id checksum does not match: is it mistyped?", "bad-checksum"
            )
        return cls(key)

    def feed(self, log_id: str) -> FeedId:
        return FeedId(self.key, log_id)


@lru_cache(maxsize=4096)
def _author_text(key: bytes) -> str:
    return AUTHOR_PREFIX + _b32(key + _checksum(AUTHOR_PREFIX, key))


@lru_cache(maxsize=65536)
def _feed_text(author_key: bytes, log_id: str) -> str:
    # Cached: a node with 10,000 feeds names them in logs, clocks and state often.
    check = _checksum(FEED_PREFIX, author_key, log_id)
    return f"{FEED_PREFIX}{_b32(author_key + check)}_{log_id}"


class _Reference(weakref.ref["FeedId"]):
    """A weak reference to an interned FeedId that carries its key (for :func:`_forget`)."""

    __slots__ = ("key",)
    key: tuple[bytes, str]


#: The one FeedId of each (author key, log id) still referred to, by weak reference;
#: a plain dict of C-level weak references (not a WeakValueDictionary, whose Python-level
#: references cost a client that reads 10,000 feeds about half its FeedId time).
_INTERNED: dict[tuple[bytes, str], _Reference] = {}
_new_object = object.__new__


def _forget(reference: weakref.ref[FeedId]) -> None:
    """A FeedId is gone: drop its entry, unless a newer one took the key meanwhile."""
    assert isinstance(reference, _Reference)
    if _INTERNED.get(reference.key) is reference:
        del _INTERNED[reference.key]


class FeedId:
    """A feed: one log of one author, ``(author key, log id)``. Immutable.

    Feeds key every clock, router and store dict, so each distinct feed is one
    object while anything refers to it (interned): dict lookups then match by
    identity, and the hash is computed once.
    """

    __slots__ = ("__weakref__", "_hash", "author_key", "log_id")
    author_key: bytes
    log_id: str
    _hash: int

    def __new__(cls, author_key: bytes, log_id: str) -> FeedId:
        key = (author_key, log_id)
        try:
            reference = _INTERNED.get(key)
        except TypeError:  # unhashable input: let the checks below name it
            reference = None
        if reference is not None:
            found = reference()
            if found is not None:
                return found
        if not isinstance(author_key, bytes) or len(author_key) != KEY_SIZE:
            raise InvalidId("an author key is exactly 32 bytes", "bad-key")
        check_log_id(log_id)
        self = _new_object(cls)
        _set_author_key(self, author_key)
        _set_log_id(self, log_id)
        _set_hash(self, hash(key))
        reference = _Reference(self, _forget)
        reference.key = key
        _INTERNED[key] = reference
        return self

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("FeedId is immutable")

    def __reduce__(self) -> tuple[type[FeedId], tuple[bytes, str]]:
        return FeedId, (self.author_key, self.log_id)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if type(other) is not FeedId:
            return NotImplemented
        return self.author_key == other.author_key and self.log_id == other.log_id

    @property
    def author(self) -> AuthorId:
        return AuthorId(self.author_key)

    def __str__(self) -> str:
        return _feed_text(self.author_key, self.log_id)

    def __repr__(self) -> str:
        return f"FeedId({str(self)!r})"

    @classmethod
    def from_input(cls, text: str) -> FeedId:
        """Parse what a person typed or pasted: ASCII whitespace around it is dropped."""
        return cls.parse(text.strip(INPUT_WHITESPACE))

    @classmethod
    def parse(cls, text: str) -> FeedId:
        """Parse the text form exactly (spec/01 §4); raises :class:`InvalidId`.

        Nothing is trimmed: this is how ids are read from signed data.
        """
        if not text.startswith(FEED_PREFIX):
            hint = " (that is an author id)" if text.startswith(AUTHOR_PREFIX) else ""
            raise InvalidId(
                f"not a feed id: it must start with {FEED_PREFIX!r}{hint}", "wrong-prefix"
            )
        body = text[len(FEED_PREFIX):]
        sep = KEY_TEXT_LEN
        if len(body) < sep + 1 or body[sep] != "_":
            raise InvalidId(
                f"not a feed id: expected {FEED_PREFIX}<{KEY_TEXT_LEN} characters>_<log id>",
                "bad-separator",
            )
        raw = _unb32(body[:sep], "feed id")
        log_id = check_log_id(body[sep + 1:])
        key, check = raw[:KEY_SIZE], raw[KEY_SIZE:]
        if check != _checksum(FEED_PREFIX, key, log_id):
            raise InvalidId("feed id checksum does not match: is it mistyped?", "bad-checksum")
        return cls(key, log_id)


#: FeedId's slots, set straight through their descriptors (FeedId refuses setattr):
#: a fifth of making each of the 10,000 FeedIds a client reads at start.
_set_author_key = vars(FeedId)["author_key"].__set__
_set_log_id = vars(FeedId)["log_id"].__set__
_set_hash = vars(FeedId)["_hash"].__set__


def is_identity_text(text: str) -> bool:
    """Whether ``text`` names an author's identity (``ti1...``, an invite ``tinv1...``)
    rather than a feed: which way a command that takes either reads it."""
    text = text.strip()
    return text.startswith(IDENTITY_PREFIX) or text.startswith(INVITE_PREFIX)
