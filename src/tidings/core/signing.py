"""Signing a run: the new entries of one feed that one batch appends (spec/04).

:func:`sign_run` makes exactly the entries that :func:`~tidings.core.entry.sign_entry`
makes one by one, byte for byte, a whole batch at once: what is the same in every
entry (version, author, log id, timestamp) is encoded once, what differs but does
not depend on the entry before (flags, seq, payload size and hash) is made for the
whole run in C-level passes, and the one pass per entry joins those with the two
links, signs where asked and hashes the result. A batch of 1,000 entries is made
in about a quarter of the time of 1,000 calls of ``sign_entry``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import repeat

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tidings.core.entry import (
    BLAKE2B_256,
    FLAG_END_OF_LOG,
    FLAG_SIGNED,
    HASH_SIZE,
    MAX_PAYLOAD_SIZE,
    MAX_SEQ,
    VERSION,
    Entry,
    payload_hashes,
    sign_entry,
)
from tidings.core.heads import HASH_HEAD, NULL, SIG_HEAD, feed_part, head, uint_heads
from tidings.core.ids import KEY_SIZE, check_log_id
from tidings.core.lipmaa import link_target, link_targets
from tidings.errors import Oversize

_ARRAY_HEAD = bytes((0x80 | 10,))  # the body: an array of 10 fields (spec/04 §2)


def sign_run(
    secret: Ed25519PrivateKey,
    *,
    author: bytes,
    log_id: str,
    first_seq: int,
    timestamp: int,
    payloads: Sequence[bytes],
    signed: Sequence[bool],
    backlink: bytes | None,
    links: Mapping[int, bytes],
    end_of_log: bool = False,
) -> list[Entry]:
    """The entries for ``payloads`` at ``first_seq`` onwards, all with ``timestamp``.

    ``author`` is ``secret``'s public key. ``signed[i]`` says whether entry ``i`` is
    signed; with ``end_of_log`` the last one ends the log (and must be signed).
    ``backlink`` is the hash of the entry at ``first_seq - 1`` (None for seq 1), and
    ``links`` holds the hash of every entry before the run that one of the run's
    lipmaa links names (by seq). Raises ValueError (:class:`Oversize` for a payload)
    where ``sign_entry`` would, before anything is signed.
    """
    count = len(payloads)
    if len(signed) != count:
        raise ValueError("one signed flag per payload")
    if not count:
        return []
    check_log_id(log_id)
    if not isinstance(author, bytes) or len(author) != KEY_SIZE:
        raise ValueError("an author key is exactly 32 bytes")
    last_seq = first_seq + count - 1
    if not 1 <= first_seq <= last_seq <= MAX_SEQ or (first_seq == 1) != (backlink is None):
        raise ValueError(f"seq {first_seq}: entry 1 alone has no backlink, every later one "
                         "has one, and seqs end at 2^63 - 1")
    if not 0 <= timestamp < 1 << 64:
        raise ValueError("a timestamp is an unsigned 64-bit integer")
    if end_of_log and not signed[-1]:
        raise ValueError("an end-of-log entry is always signed")
    if count == 1:  # (one entry: the general encoder is quicker than a run's set-up)
        target = link_target(first_seq)
        lipmaa = None if target is None else links.get(target)
        if target is not None and lipmaa is None:
            raise ValueError(f"the hash of entry {target} is needed for a lipmaa link")
        return [sign_entry(secret, author=author, log_id=log_id, seq=first_seq,
                           timestamp=timestamp, payload=payloads[0], backlink=backlink,
                           lipmaa_link=lipmaa, end_of_log=end_of_log, signed=signed[0])]
    sizes = list(map(len, payloads))
    if max(sizes) > MAX_PAYLOAD_SIZE:
        size = max(sizes)
        raise Oversize(f"payload is {size} bytes, the bound is {MAX_PAYLOAD_SIZE}")
    targets = link_targets(first_seq, count)
    encoded: dict[int | None, bytes] = {None: NULL}
    for target in targets:
        if target is not None and target < first_seq and target not in encoded:
            linked = links.get(target)
            if linked is None or len(linked) != HASH_SIZE:
                raise ValueError(f"the hash of entry {target} is needed for a lipmaa link")
            encoded[target] = HASH_HEAD + linked
    if backlink is not None and len(backlink) != HASH_SIZE:
        raise ValueError("a backlink is a 32-byte hash")

    flags = [FLAG_SIGNED if s else 0 for s in signed]
    if end_of_log:
        flags[-1] |= FLAG_END_OF_LOG
    fields = feed_part(author, log_id)
    starts = {f: _ARRAY_HEAD + head(0, VERSION) + bytes((f,)) + fields for f in set(flags)}
    stamp = head(0, timestamp)
    hashes = payload_hashes(payloads)
    hasher = BLAKE2B_256.copy  # (a copy per hash: see BLAKE2B_256)
    size_heads = {size: head(0, size) for size in set(sizes)}
    # The body's bytes before the links (fields 0 to 5), and after them (7, 8).
    before = list(map(b"".join, zip(map(starts.__getitem__, flags),
                                    uint_heads(first_seq, count), repeat(stamp))))
    after = list(map(b"".join, zip(map(size_heads.__getitem__, sizes), repeat(HASH_HEAD),
                                   hashes)))
    sign = secret.sign
    join = b"".join
    new = tuple.__new__
    entries: list[Entry] = []
    keep = entries.append
    previous = backlink
    back = NULL if backlink is None else HASH_HEAD + backlink
    for seq, start, target, end, sign_it, flag, size, payload_hash in zip(
            range(first_seq, last_seq + 1), before, targets, after, signed, flags, sizes,
            hashes, strict=True):
        body = join((start, back, encoded[target], end))
        if sign_it:
            signature = sign(body)
            raw = body + SIG_HEAD + signature
        else:
            signature, raw = b"", body
        state = hasher()
        state.update(raw)
        entry_hash = state.digest()
        keep(new(Entry, (flag, author, log_id, seq, timestamp, previous,
                         None if target is None else encoded[target][2:], size, payload_hash,
                         signature, raw, entry_hash, VERSION)))
        previous = entry_hash
        back = encoded[seq] = HASH_HEAD + entry_hash
    return entries
