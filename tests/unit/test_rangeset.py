"""RangeSet: interval arithmetic, canonical form, JSON form, and agreement with a plain set."""

from __future__ import annotations

import itertools
import json
import random

import pytest

from datajob_core.shards.rangeset import RangeSet

pytestmark = pytest.mark.unit


def test_empty() -> None:
    s = RangeSet()
    assert len(s) == 0
    assert not s
    assert 0 not in s
    assert list(s.intervals()) == []
    assert s.to_list() == []
    assert s.first_gap_from(0) == 0
    assert s.max() is None


def test_adjacent_values_coalesce() -> None:
    s = RangeSet()
    for value in (0, 2, 1):
        s.add(value)
    assert list(s.intervals()) == [(0, 3)]
    s.add_range(3, 5)
    s.add_range(7, 9)
    assert s.to_list() == [0, 5, 7, 9]
    s.add(6)
    assert s.to_list() == [0, 5, 6, 9]
    s.add(5)
    assert s.to_list() == [0, 9]
    assert len(s) == 9


def test_add_is_idempotent_and_overlaps_merge() -> None:
    s = RangeSet([(10, 20), (30, 40)])
    s.add(15)
    s.add_range(12, 18)
    assert s.to_list() == [10, 20, 30, 40]
    s.add_range(5, 35)
    assert s.to_list() == [5, 40]
    s.add_range(0, 100)
    assert s.to_list() == [0, 100]
    s.add_range(50, 50)  # empty range: no-op
    assert s.to_list() == [0, 100]


def test_discard_splits_and_trims() -> None:
    s = RangeSet([(0, 10)])
    s.discard(5)
    assert s.to_list() == [0, 5, 6, 10]
    s.discard(0)
    assert s.to_list() == [1, 5, 6, 10]
    s.discard(9)
    assert s.to_list() == [1, 5, 6, 9]
    s.discard(42)  # absent: no-op
    s.discard_range(3, 7)
    assert s.to_list() == [1, 3, 7, 9]
    s.discard_range(0, 100)
    assert s.to_list() == []


def test_contains_and_len() -> None:
    s = RangeSet([(2, 5), (8, 9)])
    assert [i for i in range(12) if i in s] == [2, 3, 4, 8]
    assert s.contains(8)
    assert not s.contains(9)
    assert len(s) == 4
    assert list(s) == [2, 3, 4, 8]
    assert s.interval_count == 2
    assert s.max() == 8
    assert "3" not in s
    assert True not in RangeSet([(0, 5)])  # bool is not a shard number


def test_first_gap_from() -> None:
    s = RangeSet([(0, 5), (6, 9)])
    assert s.first_gap_from(0) == 5
    assert s.first_gap_from(3) == 5
    assert s.first_gap_from(5) == 5
    assert s.first_gap_from(6) == 9
    assert s.first_gap_from(9) == 9
    assert s.first_gap_from(100) == 100
    assert RangeSet([(3, 4)]).first_gap_from(0) == 0


def test_json_round_trip() -> None:
    s = RangeSet([(0, 5), (7, 8), (100, 1000)])
    text = json.dumps(s.to_list())
    assert RangeSet.from_list(json.loads(text)) == s


def test_to_list_does_not_alias() -> None:
    s = RangeSet([(0, 5)])
    flat = s.to_list()
    flat.append(99)
    assert s.to_list() == [0, 5]
    copy = s.copy()
    copy.add(10)
    assert s.to_list() == [0, 5]


@pytest.mark.parametrize(
    "flat",
    [
        "0,5",
        {"a": 1},
        [0],
        [0, 5, 7],
        [5, 5],
        [5, 3],
        [0, 5, 5, 7],  # adjacent: not canonical
        [0, 5, 4, 7],  # overlapping
        [6, 9, 0, 5],  # unsorted
        [-1, 3],
        [0, 1.5],
        [0, True],
        [0, "5"],
    ],
)
def test_from_list_rejects_corrupt_documents(flat: object) -> None:
    with pytest.raises(ValueError, match="range set"):
        RangeSet.from_list(flat)


def test_rejects_bad_members() -> None:
    s = RangeSet()
    with pytest.raises(ValueError):
        s.add(-1)
    with pytest.raises(TypeError):
        s.add(1.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        s.add(True)
    with pytest.raises(ValueError):
        s.first_gap_from(-3)


def test_equality_and_unhashable() -> None:
    assert RangeSet([(0, 2), (2, 4)]) == RangeSet([(0, 4)])
    assert RangeSet([(0, 2)]) != RangeSet([(0, 3)])
    assert RangeSet() != [0, 2]
    with pytest.raises(TypeError):
        hash(RangeSet())


@pytest.mark.parametrize("seed", range(25))
def test_agrees_with_a_plain_set(seed: int) -> None:
    rng = random.Random(seed)
    universe = rng.choice([8, 40, 300])
    s = RangeSet()
    model: set[int] = set()
    for _ in range(400):
        op = rng.random()
        a = rng.randrange(universe)
        b = rng.randrange(universe + 1)
        if op < 0.35:
            s.add(a)
            model.add(a)
        elif op < 0.55:
            s.add_range(a, b)
            model.update(range(a, b))
        elif op < 0.8:
            s.discard(a)
            model.discard(a)
        else:
            s.discard_range(a, b)
            model.difference_update(range(a, b))
        flat = s.to_list()
        # Canonical: strictly increasing boundaries, so no empty, overlapping or adjacent intervals.
        assert all(x < y for x, y in itertools.pairwise(flat))
        assert len(s) == len(model)
        assert list(s) == sorted(model)
        probe = rng.randrange(universe + 2)
        assert (probe in s) == (probe in model)
        gap = probe
        while gap in model:
            gap += 1
        assert s.first_gap_from(probe) == gap
        assert RangeSet.from_list(json.loads(json.dumps(flat))) == s
