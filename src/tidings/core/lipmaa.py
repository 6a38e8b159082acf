"""Lipmaa links and certificate pools (spec/03-links.md).

Every entry ``n > 1`` links to ``n - 1`` (the backlink) and to ``lipmaa(n)``.
These links, from Buldas, Laud and Lipmaa's anti-monotone graphs as Bamboo uses
them, give a path of O(log n) links between any two entries, so a reader can
verify recent entries of a long log without fetching the rest.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from functools import lru_cache

#: Powers of 3 and the spine numbers (3^k - 1) / 2, far enough for any 64-bit seq.
_POW3: tuple[int, ...] = tuple(3**k for k in range(42))
_SPINES: tuple[int, ...] = tuple((power - 1) // 2 for power in _POW3)


def lipmaa(n: int) -> int:
    """The sequence number entry ``n`` links to besides ``n - 1`` (0 for ``n == 1``).

    Spine numbers ``(3^k - 1) / 2`` (1, 4, 13, 40, ...) link back by ``3^(k-1)``;
    every other number recurses into the ternary block it sits in.
    """
    if n < 1:
        raise ValueError(f"sequence numbers start at 1, got {n}")
    if n == 1:
        return 0
    k = bisect_left(_SPINES, n)  # the smallest spine >= n (tables, not loops: ingest's hot path)
    if _SPINES[k] == n:
        return n - _POW3[k - 1]
    rest, spine = n, n
    k -= 1
    while rest:
        spine = _SPINES[k]
        k -= 1
        rest %= spine
    power = _POW3[k]
    return n - (spine if spine != power else power)


def is_spine(n: int) -> bool:
    """True for 1, 4, 13, 40, 121, ...: numbers ``(3^k - 1) / 2`` with ``k >= 1``."""
    return _spine_at_or_above(n) == n


#: Every entry's link target is asked for several times (compacting, decoding,
#: verifying a run): up to _TABLE_LIMIT they are kept in a table of jumps
#: (``n - lipmaa(n)``, 4 bytes a seq, grown to the largest seq asked for: 1 MiB at
#: most), which a long log's stream reads in order without ever computing one
#: twice; an LRU cache for larger seqs. (An LRU of 64k alone missed every time on a
#: stream of more seqs than it holds, and a miss costs about 1.5 us.)
_TABLE_LIMIT = 1 << 18
_TABLE_BLOCK = 4096
_jumps = array("I", (1, 1))  # seqs 0 and 1: no lipmaa link of their own


def _grow(n: int) -> array[int]:
    """The table of jumps, grown to hold ``n``. A new table replaces the old one
    whole, so a thread reading the old one meanwhile still reads correct jumps."""
    global _jumps
    old = _jumps
    if n < len(old):
        return old
    # Made anew (a few ms for the whole table), at least doubling: a log read in
    # order makes it a few times, not once per block.
    table = _jump_table(min(_TABLE_LIMIT, max(n + _TABLE_BLOCK, 2 * len(old))))
    _jumps = table
    return table


def _jump_table(size: int) -> array[int]:
    """``n - lipmaa(n)`` for ``n`` below ``size`` (1 for 0 and 1), made block by block
    instead of one :func:`lipmaa` per seq (about 1.5 us each: most of a long log's
    first sync once spent here).

    :func:`lipmaa` of a seq ``n`` that is no spine reduces ``n`` modulo every spine
    below it, largest first, and jumps back by the spine that leaves nothing. So
    between spines ``S`` and ``3S + 1`` the jumps are those of ``1 .. S``, twice, where
    each spine of these stands for itself: ``chain[1 .. S]`` repeated. A spine's own
    jump is ``3^(k-1)`` (spec/03).
    """
    chain = array("I", (1, 1))  # [0] a placeholder, [1] spine 1
    spine = 1
    while len(chain) < size:
        block = chain[1:spine + 1]
        chain += block
        chain += block
        spine = 3 * spine + 1
        chain.append(spine)
    del chain[size:]
    for k in range(2, len(_SPINES)):
        if _SPINES[k] >= size:
            break
        chain[_SPINES[k]] = _POW3[k - 1]
    return chain


def link_target(n: int) -> int | None:
    """``lipmaa(n)`` when entry ``n`` carries a lipmaa link, ``None`` when it has none.

    Entry 1 has no links; where ``lipmaa(n) == n - 1`` the lipmaa link would
    repeat the backlink, so it is left out.
    """
    if n <= 1:
        return None
    if n >= _TABLE_LIMIT:
        return _far_link_target(n)
    table = _jumps
    jump = table[n] if n < len(table) else _grow(n)[n]
    return None if jump == 1 else n - jump


def link_targets(first: int, count: int) -> list[int | None]:
    """:func:`link_target` of each of ``first .. first + count - 1``, in one call: a
    run of up to 1024 entries reads its jumps in one slice of the table instead of
    one call per entry."""
    last = first + count - 1
    if first < 2 or last >= _TABLE_LIMIT:
        return [link_target(n) for n in range(first, last + 1)]
    table = _jumps if last < len(_jumps) else _grow(last)
    return [None if jump == 1 else n - jump
            for n, jump in zip(range(first, last + 1), table[first:last + 1], strict=True)]


@lru_cache(maxsize=1 << 12)
def _far_link_target(n: int) -> int | None:
    target = lipmaa(n)
    return None if target == n - 1 else target


def shortest_path(newer: int, older: int) -> list[int]:
    """The sequence numbers on the shortest link path from ``newer`` down to ``older``.

    Both ends are included. Taking the lipmaa link whenever it does not jump past
    ``older`` and the backlink otherwise is optimal on this graph.
    """
    if not 1 <= older <= newer:
        raise ValueError(f"need 1 <= older <= newer, got older={older} newer={newer}")
    path = [newer]
    current = newer
    while current > older:
        target = lipmaa(current)
        current = target if target >= older else current - 1
        path.append(current)
    return path


def _spine_below(n: int) -> int:
    """The largest spine number strictly below ``n`` (0 if none)."""
    below, spine = 0, 1
    while spine < n:
        below, spine = spine, 3 * spine + 1
    return below


def _spine_at_or_above(n: int) -> int:
    spine = 1
    while spine < n:
        spine = 3 * spine + 1
    return spine


def certificate_pool(seq: int) -> list[int]:
    """The sequence numbers of ``seq``'s certificate pool, ascending.

    The union of the shortest paths from ``seq`` to the spine number ``w`` below
    it, from ``w`` to 1, and from the spine number ``z >= seq`` down to ``seq``.
    The last part may name entries that do not exist yet: they let a later pool
    join this one. For any ``x < y`` the union of both pools holds a link path
    from ``y`` through ``x`` to 1.
    """
    if seq < 1:
        raise ValueError(f"sequence numbers start at 1, got {seq}")
    below = _spine_below(seq)
    members = set(shortest_path(_spine_at_or_above(seq), seq))
    if below:
        members.update(shortest_path(seq, below))
        members.update(shortest_path(below, 1))
    return sorted(members)


def links_needed(first: int, last: int) -> set[int]:
    """Sequence numbers below ``first`` that entries ``first..last`` link to.

    A verifier (or an author appending) needs the hashes of exactly these
    entries to check (or make) the links of the run.
    """
    return set(_links_needed(first, last))


@lru_cache(maxsize=64)
def _links_needed(first: int, last: int) -> frozenset[int]:
    # Kept for the last few runs: a received run asks three times (its wire check,
    # its rebuild, the ingest's anchor), each a pass over its seqs.
    needed = {target for target in link_targets(first, last - first + 1)
              if target is not None and target < first}
    if first > 1:
        needed.add(first - 1)
    return frozenset(needed)
