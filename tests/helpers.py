"""Fixed-seed authors and small logs built with the real code."""

from __future__ import annotations

from collections.abc import Callable

from tidings import Identity, Logbook, MemoryStore
from tidings.core.entry import Entry


def author(n: int) -> Identity:
    """A deterministic identity: seed is the byte ``n`` repeated."""
    return Identity.from_seed(bytes([n]) * 32)


def make_log(
    count: int, *, log_id: str = "blog", who: int = 1,
    payload: Callable[[int], bytes] | None = None, per_append: int | None = None,
) -> tuple[list[Entry], list[bytes]]:
    """``count`` entries of one feed and their payloads, made by the real publisher.

    One append by default (the last entry and every 64th signed); ``per_append``
    entries per append otherwise (1: every entry signed).
    """
    book = Logbook(MemoryStore(), author(who), clock=lambda: 1_700_000_000_000_000)
    payloads = [(payload or (lambda i: b"entry %d" % i))(i) for i in range(1, count + 1)]
    step = per_append or max(count, 1)
    entries: list[Entry] = []
    for start in range(0, count, step):
        entries += book.publish_batch(payloads[start:start + step], log_id)
    return entries, payloads


def forge(who: Identity, **fields: object) -> bytes:
    """Entry bytes with any field values, signed by ``who`` if the flags say signed.

    Defaults make a signed entry 1 of "blog"; tests override what the rule under test needs.
    """
    from tidings.core.entry import FLAG_SIGNED, SIG_HEAD, encode_body, payload_hash

    values: dict[str, object] = {
        "flags": FLAG_SIGNED, "author": who.author.key, "log_id": "blog", "seq": 1,
        "timestamp": 0, "backlink": None, "lipmaa_link": None, "payload_size": 0,
        "payload_hash": payload_hash(b""),
    }
    values.update(fields)
    body = encode_body(**values)  # type: ignore[arg-type]
    if int(values["flags"]) & FLAG_SIGNED:  # type: ignore[call-overload]
        return body + SIG_HEAD + who.secret_key.sign(body)
    return body


def sign_raw_body(who: Identity, body: bytes) -> bytes:
    """Sign arbitrary body bytes (for non-canonical encodings)."""
    from tidings.core.entry import SIG_HEAD

    return body + SIG_HEAD + who.secret_key.sign(body)


def examples(count: int) -> int:
    """``count`` Hypothesis examples, scaled by the profile in use (tests/conftest.py):
    the default profile runs ``count``; ``--fast`` a fifth; ``thorough`` ten times."""
    from hypothesis import settings

    return max(3, round(count * settings.default.max_examples / 100))
