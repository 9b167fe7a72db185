"""Small-file packing in ``size`` partitioning (Hadoop's CombineFileInputFormat): pure planning."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datajob_core.api.models import DataJobSpec
from datajob_core.data.planning import InputFile, PlanError, plan_shards
from datajob_testenv.specs import spec_with

MI = 2**20


def _files_in_order(plan: list[dict[str, Any]]) -> list[tuple[str, int, int]]:
    return [(p["path"], p["start"], p["end"]) for shard in plan for p in shard["pieces"]]


def test_fifty_thousand_tiny_files_become_about_a_hundred_shards() -> None:
    files = [InputFile(f"/in/{n:05}.txt", 14) for n in range(50_000)]
    plan = plan_shards(files, {"mode": "size", "targetShardSize": "64Mi"})
    assert 100 <= len(plan) <= 140, len(plan)
    assert _files_in_order(plan) == [(f.path, 0, 14) for f in files]


def test_packing_does_not_idle_workers_that_a_few_medium_files_would_keep_busy() -> None:
    # Eight 10 MB files: one shard each, as before packing, not two shards of 64 MiB (eight workers busy).
    files = [InputFile(f"/in/{n}", 10 * 10**6) for n in range(8)]
    assert len(plan_shards(files, {"mode": "size", "targetShardSize": "64Mi"})) == 8
    # 2,000 of them (20 GB) pack up to the target.
    files = [InputFile(f"/in/{n}", 10 * 10**6) for n in range(2000)]
    assert len(plan_shards(files, {"mode": "size", "targetShardSize": "64Mi"})) == 2000 // 6 + 1


def test_files_larger_than_the_target_are_cut_as_before_and_small_ones_around_them_packed() -> None:
    files = [InputFile("/a", 100), InputFile("/b", 100), InputFile("/big", 5 * MI + 1), InputFile("/c", 100)]
    plan = plan_shards(files, {"mode": "size", "targetShardSize": "1Mi", "fileOpenCost": "0"})
    assert [[(p["path"], p["start"], p["end"]) for p in s["pieces"]] for s in plan] == [
        [("/a", 0, 100), ("/b", 0, 100)],
        *[[("/big", start, min(start + MI, 5 * MI + 1))] for start in range(0, 5 * MI + 1, MI)],
        [("/c", 0, 100)],
    ]


def test_the_open_cost_of_each_file_bounds_how_many_share_a_shard() -> None:
    files = [InputFile(f"/in/{n}", 10) for n in range(10_000)]
    plan = plan_shards(files, {"mode": "size", "targetShardSize": "1Mi", "fileOpenCost": "100Ki"})
    assert [len(s["pieces"]) for s in plan] == [10] * 1000  # 10 x (10 B + 100 KiB) fit in 1 MiB, 11 do not


def test_combine_files_false_keeps_one_file_per_shard() -> None:
    files = [InputFile(f"/in/{n}", 10) for n in range(5)]
    plan = plan_shards(files, {"mode": "size", "targetShardSize": "1Mi", "combineFiles": False})
    assert len(plan) == 5


def test_a_bad_open_cost_reaching_the_planner_is_an_invalid_spec() -> None:
    with pytest.raises(PlanError, match="fileOpenCost") as caught:
        plan_shards([InputFile("/a", 1)], {"mode": "size", "targetShardSize": "1Mi", "fileOpenCost": "x"})
    assert caught.value.reason == "InvalidSpec"


@pytest.mark.parametrize("zero", ["0", "0Ki", "+0", "0e3", "500m", "0.0", "-0"])
def test_every_zero_open_cost_the_api_server_admits_means_zero_to_validation_and_the_planner(
    zero: str,
) -> None:
    partitioning = {"mode": "size", "targetShardSize": "64Mi", "combineFiles": True, "fileOpenCost": zero}
    DataJobSpec.model_validate(spec_with(input={"uris": ["a"], "partitioning": partitioning}))
    files = [InputFile(f"/in/{n}", 10) for n in range(20_000)]
    plan = plan_shards(files, {**partitioning, "targetShardSize": "1000"})
    assert [len(s["pieces"]) for s in plan] == [100] * 200  # bytes alone decide


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    sizes=st.lists(st.integers(0, 5000), min_size=1, max_size=60),
    target=st.integers(1, 4000),
    open_cost=st.integers(0, 500),
)
def test_packing_covers_every_byte_once_in_order_within_the_target(
    sizes: list[int], target: int, open_cost: int
) -> None:
    files = [InputFile(f"/in/{n}", size) for n, size in enumerate(sizes)]
    plan = plan_shards(
        files, {"mode": "size", "targetShardSize": str(target), "fileOpenCost": str(open_cost)}
    )
    covered: list[tuple[str, int, int]] = []
    for shard in plan:
        pieces = shard["pieces"]
        assert pieces
        if len(pieces) > 1:  # a packed shard holds whole small files within the target
            assert all(p["start"] == 0 for p in pieces)
            assert sum(p["end"] + open_cost for p in pieces) <= target
        covered.extend((p["path"], p["start"], p["end"]) for p in pieces)
    # Every byte of every file exactly once, in input order.
    for f in files:
        mine = [(start, end) for path, start, end in covered if path == f.path]
        assert mine[0][0] == 0 and mine[-1][1] == f.size
        assert all(a[1] == b[0] for a, b in itertools.pairwise(mine))
    assert [path for path, _, _ in covered] == sorted(
        (path for path, _, _ in covered), key=lambda p: int(p.rsplit("/", 1)[1])
    )
