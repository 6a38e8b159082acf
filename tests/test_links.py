"""spec/03-links.md: the lipmaa function, link targets, paths and certificate pools."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings import certificate_pool, lipmaa
from tidings.core.lipmaa import (
    is_spine,
    link_target,
    link_targets,
    links_needed,
    shortest_path,
)


def test_lipmaa_matches_bamboo_for_small_numbers() -> None:
    assert [lipmaa(n) for n in range(2, 14)] == [1, 2, 1, 4, 5, 6, 4, 8, 9, 10, 8, 4]


def test_spine_numbers_link_back_by_a_power_of_three() -> None:
    power = 1
    spine = 1
    for _ in range(1, 30):
        spine, power = 3 * spine + 1, power * 3
        assert is_spine(spine)
        assert lipmaa(spine) == spine - power


@given(st.integers(min_value=2, max_value=10**12))
def test_lipmaa_points_strictly_back(n: int) -> None:
    assert 1 <= lipmaa(n) < n


def test_link_target_is_absent_where_it_would_repeat_the_backlink() -> None:
    assert link_target(1) is None
    assert link_target(2) is None  # lipmaa(2) == 1 == 2 - 1
    assert link_target(4) == 1
    assert link_target(13) == 4


def test_link_targets_from_the_table_are_lipmaa_on_both_sides_of_its_limit() -> None:
    """link_target keeps a table of jumps up to _TABLE_LIMIT (grown as asked), an LRU
    cache above: both give lipmaa(n), unless it repeats the backlink."""
    from tidings.core.lipmaa import _TABLE_LIMIT

    def reference(n: int) -> int | None:
        return None if lipmaa(n) == n - 1 else lipmaa(n)

    # Small seqs first (the table grows block by block), then far ones (in one step
    # to its limit), then a stride across it, twice: the second read is the table's.
    far = [_TABLE_LIMIT - 1, _TABLE_LIMIT, _TABLE_LIMIT + 1, 10**12, 2**63 - 1]
    seqs = [*range(2, 20_000), *far, *range(20_000, _TABLE_LIMIT + 5000, 97)]
    expected = [reference(n) for n in seqs]
    for _ in range(2):
        assert [link_target(n) for n in seqs] == expected


def test_the_table_of_jumps_is_lipmaa_at_every_seq_it_holds() -> None:
    """The table is made block by block from its own start (not one lipmaa per seq):
    every entry of it, and every size it is cut at, is lipmaa's."""
    from tidings.core.lipmaa import _TABLE_LIMIT, _jump_table

    table = _jump_table(_TABLE_LIMIT)
    assert len(table) == _TABLE_LIMIT and table[0] == table[1] == 1
    assert all(table[n] == n - lipmaa(n) for n in range(2, _TABLE_LIMIT))
    for size in (2, 3, 4, 5, 13, 14, 40, 41, 4097):
        assert _jump_table(size) == table[:size]


@pytest.mark.parametrize("first,count", [(1, 0), (1, 1), (1, 1024), (2, 300), (5000, 1024),
                                         (262_000, 1024), (10**12, 5)])
def test_link_targets_of_a_run_are_link_target_of_each(first: int, count: int) -> None:
    assert link_targets(first, count) == [link_target(n) for n in range(first, first + count)]


@given(st.integers(min_value=1, max_value=10**9), st.integers(min_value=1, max_value=10**9))
def test_shortest_path_follows_real_links(a: int, b: int) -> None:
    newer, older = max(a, b), min(a, b)
    path = shortest_path(newer, older)
    assert path[0] == newer and path[-1] == older
    for here, there in pairwise(path):
        assert there in (here - 1, lipmaa(here))
    assert len(path) < 200


def test_certificate_pool_sizes_stay_logarithmic() -> None:
    assert len(certificate_pool(10**6)) == 52
    assert len(certificate_pool(1000)) == 21
    assert certificate_pool(1) == [1]
    assert max(len(certificate_pool(n)) for n in range(1, 5000)) < 40


@given(st.integers(min_value=1, max_value=3000), st.integers(min_value=1, max_value=3000))
def test_two_pools_hold_a_path_from_the_newer_through_the_older_to_one(x: int, y: int) -> None:
    x, y = min(x, y), max(x, y)
    union = set(certificate_pool(x)) | set(certificate_pool(y))
    # Walk from y down to 1 using only links between members of the union,
    # and pass through x (the property Bamboo's pool definition guarantees).
    reachable = {y}
    for n in sorted(union, reverse=True):
        if n in reachable and n > 1:
            for target in (n - 1, lipmaa(n)):
                if target in union:
                    reachable.add(target)
    assert x in reachable and 1 in reachable


def test_links_needed_lists_what_a_run_links_to_below_it() -> None:
    assert links_needed(1, 10) == set()
    needed = links_needed(5, 13)
    assert 4 in needed
    assert all(n < 5 for n in needed)
    assert needed == {4} | {t for n in range(5, 14) if (t := link_target(n)) and t < 5}


def test_lipmaa_refuses_zero() -> None:
    with pytest.raises(ValueError):
        lipmaa(0)
