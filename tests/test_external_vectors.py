"""The external vectors every clone carries are the published ones, unchanged."""

from __future__ import annotations

import pytest

from .vectors import HERE, SHARED, recorded_sums, sha256

SUMS = recorded_sums()


def test_every_vector_file_is_recorded() -> None:
    kept = {str(p.relative_to(HERE)) for p in HERE.glob("*/*.json")}
    assert kept == set(SUMS) and len(kept) == 3


@pytest.mark.parametrize("name", sorted(SUMS))
def test_the_copy_matches_its_recorded_sum(name: str) -> None:
    assert sha256(HERE / name) == SUMS[name]


@pytest.mark.parametrize("name", sorted(SUMS))
def test_the_copy_is_the_shared_folders_file(name: str) -> None:
    if not (SHARED / name).is_file():
        pytest.skip("no shared folder beside this clone: the recorded sum is the check")
    assert (SHARED / name).read_bytes() == (HERE / name).read_bytes()
