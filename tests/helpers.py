"""Fixed-seed authors and small logs built with the real code."""

from __future__ import annotations

from collections.abc import Callable

from tidings import Identity, Logbook, MemoryStore
from tidings.core.entry import Entry


def author(n: int) -> Identity:
    """A deterministic identity: seed is the byte ``n`` repeated."""
    return Identity.from_seed(bytes([n]) * 32)


def make_log(
    count: int, *, log_id: str = "blog", who: int = 1, payload: Callable[[int], bytes] | None = None
) -> tuple[list[Entry], list[bytes]]:
    """``count`` entries of one feed and their payloads, made by the real publisher."""
    book = Logbook(MemoryStore(), author(who), clock=lambda: 1_700_000_000_000_000)
    payloads = [(payload or (lambda i: b"entry %d" % i))(i) for i in range(1, count + 1)]
    entries = book.publish_batch(payloads, log_id) if payloads else []
    return entries, payloads


def forge(who: Identity, **fields: object) -> bytes:
    """Entry bytes with any field values, validly signed by ``who``.

    Defaults make entry 1 of "blog"; tests override what the rule under test needs.
    """
    from tidings.core.entry import SIG_HEAD, encode_body, payload_hash

    values: dict[str, object] = {
        "tag": 0, "author": who.author.key, "log_id": "blog", "seq": 1, "timestamp": 0,
        "backlink": None, "lipmaa_link": None, "payload_size": 0,
        "payload_hash": payload_hash(b""),
    }
    values.update(fields)
    body = encode_body(**values)  # type: ignore[arg-type]
    return body + SIG_HEAD + who.secret_key.sign(body)


def sign_raw_body(who: Identity, body: bytes) -> bytes:
    """Sign arbitrary body bytes (for non-canonical encodings)."""
    from tidings.core.entry import SIG_HEAD

    return body + SIG_HEAD + who.secret_key.sign(body)


def vouched_log(who: Identity) -> tuple[bytes, bytes, bytes]:
    """Entries 1-3 of "blog" where entry 2's own signature is broken but the
    author's entry 3 links to it: batch verification accepts all three."""
    from tidings.core.entry import entry_hash

    first = forge(who)
    good_second = forge(who, seq=2, backlink=entry_hash(first))
    second = good_second[:-1] + bytes([good_second[-1] ^ 1])
    return first, second, forge(who, seq=3, backlink=entry_hash(second))
