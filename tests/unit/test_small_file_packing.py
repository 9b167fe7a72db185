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


def test_fifty_thousand_tiny_files_become_a_few_dozen_shards() -> None:
    files = [InputFile(f"/in/{n:05}.txt", 14) for n in range(50_000)]
    plan = plan_shards(files, {"mode": "size", "targetShardSize": "64Mi"}, workers=4)
    assert 20 <= len(plan) <= 60, len(plan)
    assert _files_in_order(plan) == [(f.path, 0, 14) for f in files]


def test_packing_keeps_every_worker_busy_when_the_files_could() -> None:
    # Eight 10 MB files and eight workers: one shard each, as before packing, not two shards of 64 MiB.
    files = [InputFile(f"/in/{n}", 10 * 10**6) for n in range(8)]
    plan = plan_shards(files, {"mode": "size", "targetShardSize": "64Mi"}, workers=8)
    assert len(plan) == 8
    # One worker: the same files pack up to the target.
    assert len(plan_shards(files, {"mode": "size", "targetShardSize": "64Mi"}, workers=1)) == 2


def test_files_larger_than_the_target_are_cut_as_before_and_small_ones_around_them_packed() -> None:
    files = [InputFile("/a", 100), InputFile("/b", 100), InputFile("/big", 5 * MI + 1), InputFile("/c", 100)]
    plan = plan_shards(files, {"mode": "size", "targetShardSize": "1Mi", "fileOpenCost": "0"}, workers=1)
    assert [[(p["path"], p["start"], p["end"]) for p in s["pieces"]] for s in plan] == [
        [("/a", 0, 100), ("/b", 0, 100)],
        *[[("/big", start, min(start + MI, 5 * MI + 1))] for start in range(0, 5 * MI + 1, MI)],
        [("/c", 0, 100)],
    ]


def test_the_open_cost_of_each_file_bounds_how_many_share_a_shard() -> None:
    files = [InputFile(f"/in/{n}", 10) for n in range(100)]
    plan = plan_shards(files, {"mode": "size", "targetShardSize": "1Mi", "fileOpenCost": "100Ki"}, workers=1)
    assert [len(s["pieces"]) for s in plan] == [10] * 10


def test_combine_files_false_keeps_one_file_per_shard() -> None:
    files = [InputFile(f"/in/{n}", 10) for n in range(5)]
    plan = plan_shards(files, {"mode": "size", "targetShardSize": "1Mi", "combineFiles": False})
    assert len(plan) == 5


def test_a_bad_open_cost_reaching_the_planner_is_an_invalid_spec() -> None:
    with pytest.raises(PlanError, match="fileOpenCost") as caught:
        plan_shards([InputFile("/a", 1)], {"mode": "size", "targetShardSize": "1Mi", "fileOpenCost": "x"})
    assert caught.value.reason == "InvalidSpec"


def test_combine_files_and_open_cost_are_accepted_in_size_mode() -> None:
    partitioning = {"mode": "size", "targetShardSize": "64Mi", "combineFiles": True, "fileOpenCost": "0"}
    DataJobSpec.model_validate(spec_with(input={"uris": ["a"], "partitioning": partitioning}))


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    sizes=st.lists(st.integers(0, 5000), min_size=1, max_size=60),
    target=st.integers(1, 4000),
    open_cost=st.integers(0, 500),
    workers=st.integers(1, 10),
)
def test_packing_covers_every_byte_once_in_order_within_the_target(
    sizes: list[int], target: int, open_cost: int, workers: int
) -> None:
    files = [InputFile(f"/in/{n}", size) for n, size in enumerate(sizes)]
    plan = plan_shards(
        files, {"mode": "size", "targetShardSize": str(target), "fileOpenCost": str(open_cost)}, workers
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
