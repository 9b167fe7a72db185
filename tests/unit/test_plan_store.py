"""The stored plan: compact, chunked under the ConfigMap limit, and sent inline only when small."""

from __future__ import annotations

import gzip
import json

import pytest

from datajob_core.api.models import DataJob
from datajob_core.data import plan_store
from datajob_core.data.planning import MAX_SHARDS, InputFile, PlanError, byte_quantity, plan_shards
from datajob_testenv.specs import VALID_SPEC

CONFIG_MAP_LIMIT = 1024 * 1024


def files(count: int) -> list[InputFile]:
    return [
        InputFile(f"/data/landing/2026/11/25/events/part-{n:06d}.jsonl", 1000 + n % 7) for n in range(count)
    ]


@pytest.mark.parametrize("partitioning", [{"mode": "perFile"}, {"mode": "count", "shards": 4}])
def test_a_plan_of_100000_files_round_trips_in_chunks_under_the_object_limit(
    partitioning: dict[str, object],
) -> None:
    plan = plan_shards(files(100_000), partitioning)
    chunks = plan_store.split(plan_store.encode(plan))
    # base64 in the ConfigMap: 4/3 of the bytes, plus the metadata.
    assert all(len(chunk) * 4 / 3 + 4096 < CONFIG_MAP_LIMIT for chunk in chunks)
    assert plan_store.decode(b"".join(chunks)) == plan


def test_small_shards_travel_inline_and_large_ones_by_reference() -> None:
    plan = plan_shards(files(10_000), {"mode": "count", "shards": 4})
    assert not any(plan_store.inline(entry) for entry in plan)  # 2,500 files each: by reference
    per_file = plan_shards(files(3), {"mode": "perFile"})
    assert all(plan_store.inline(entry) for entry in per_file)


def test_a_plan_too_large_to_store_is_refused_with_a_clear_message() -> None:
    with pytest.raises(PlanError, match="MiB a job can store"):
        plan_store.split(b"x" * (plan_store.MAX_CHUNKS * plan_store.CHUNK_BYTES + 1))


def test_the_first_plan_format_is_still_read() -> None:
    old = [{"pieces": [{"path": "/a", "start": 0, "end": 5}]}]
    assert plan_store.decode(gzip.compress(json.dumps(old).encode())) == old


@pytest.mark.parametrize(
    ("text", "value"), [("64Mi", 64 * 2**20), ("1G", 10**9), ("4096", 4096), ("1e3", 1000), ("1Pi", 2**50)]
)
def test_byte_quantities(text: str, value: int) -> None:
    assert byte_quantity(text) == value


@pytest.mark.parametrize("text", ["100m", "1e400", "0", "lots", "-5"])
def test_bad_byte_quantities_are_value_errors_not_crashes(text: str) -> None:
    with pytest.raises(ValueError):
        byte_quantity(text)


def test_a_shard_size_that_would_make_too_many_shards_is_refused() -> None:
    with pytest.raises(PlanError, match="would make"):
        plan_shards([InputFile("/big", 10**12)], {"mode": "size", "targetShardSize": "1Ki"})
    assert MAX_SHARDS == 1_000_000


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("x" * 64, "at most 63 characters"),
        ("Bad_Name", "lowercase DNS name"),
        ("../../etc", "lowercase DNS name"),
    ],
)
def test_job_names_that_cannot_name_pods_labels_or_paths_are_refused(name: str, problem: str) -> None:
    manifest = {
        "apiVersion": "datajob.dev/v1alpha1",
        "kind": "DataJob",
        "metadata": {"name": name},
        "spec": VALID_SPEC,
    }
    with pytest.raises(ValueError, match=problem):
        DataJob.load(manifest)
