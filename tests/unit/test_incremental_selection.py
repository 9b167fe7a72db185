"""Which objects the next batch of an incremental or continuous job takes (datajob_core.data.increments)."""

from __future__ import annotations

import random

import pytest

from datajob_core.data import increments
from datajob_core.data.planning import InputFile

pytestmark = pytest.mark.unit


def _file(path: str, size: int = 10, modified: float = 0.0, version: str = "v1") -> InputFile:
    return InputFile(path, size, modified, version)


def test_the_next_batch_takes_only_objects_no_earlier_batch_took_oldest_first() -> None:
    listing = [_file("/in/b", modified=3), _file("/in/a", modified=5), _file("/in/c", modified=1)]
    taken = {"/in/b": increments.describe(listing[0])}
    selection = increments.select(listing, taken)
    assert [f.path for f in selection.new] == ["/in/c", "/in/a"]
    assert selection.changed == [] and selection.waiting == []


def test_an_object_rewritten_after_a_batch_took_it_is_changed_not_new() -> None:
    before = _file("/in/a", size=10, version="v1")
    taken = {"/in/a": increments.describe(before)}
    for rewritten in (_file("/in/a", size=11, version="v1"), _file("/in/a", size=10, version="v2")):
        selection = increments.select([rewritten], taken)
        assert selection.new == [] and selection.changed == [rewritten]
    assert increments.select([before], taken).new == []


def test_a_batch_takes_at_most_its_limit_and_the_rest_waits() -> None:
    listing = [_file(f"/in/{n:03}", modified=n) for n in range(10)]
    selection = increments.select(listing, {}, limit=4)
    assert [f.path for f in selection.new] == ["/in/000", "/in/001", "/in/002", "/in/003"]
    assert len(selection.waiting) == 6


def test_two_drivers_listing_the_same_objects_in_any_order_plan_the_same_batch() -> None:
    listing = [_file(f"/in/{n}", modified=n % 3) for n in range(30)]
    shuffled = random.Random(4).sample(listing, len(listing))
    assert increments.select(listing, {}).new == increments.select(shuffled, {}).new


def test_every_object_is_in_exactly_one_batch_however_objects_arrive() -> None:
    """A property: objects arrive at random between batches; every batch plans from what no plan took.
    Every arrived object ends in exactly one plan."""
    rng = random.Random(7)
    arrived: list[InputFile] = []
    plans: dict[int, list[dict[str, object]]] = {}
    for step in range(200):
        arrived += [_file(f"/in/{step}-{k}", modified=step) for k in range(rng.randint(0, 5))]
        listing = rng.sample(arrived, len(arrived))
        selection = increments.select(listing, increments.ingested_objects(plans), limit=rng.randint(1, 8))
        if selection.new:
            plans[increments.next_batch(plans)] = [increments.describe(f) for f in selection.new]
    while selection := increments.select(arrived, increments.ingested_objects(plans)):
        if not selection.new:
            break
        plans[increments.next_batch(plans)] = [increments.describe(f) for f in selection.new]
    paths = [str(o["path"]) for plan in plans.values() for o in plan]
    assert sorted(paths) == sorted(f.path for f in arrived)
    assert len(paths) == len(set(paths))


def test_the_open_batch_is_the_planned_one_without_a_commit() -> None:
    assert increments.open_batch({0: [], 1: []}, {0: {}}) == 1
    assert increments.open_batch({0: []}, {0: {}}) is None
    assert increments.next_batch({}) == 0 and increments.next_batch({0: [], 1: []}) == 2


def test_log_entry_names_round_trip() -> None:
    assert increments.entry_number(increments.plan_entry(12).rsplit("/", 1)[-1]) == (12, "plan")
    assert increments.entry_number(increments.commit_entry(12)) == (12, "commit")
    assert increments.entry_number("notes.json") is None
    assert increments.entry_number("x.plan.json") is None


def test_the_backlog_counts_pending_objects_bytes_and_the_oldest_ones_age() -> None:
    pending = [_file("/a", 100, modified=50.0), _file("/b", 20, modified=80.0)]
    backlog = increments.backlog(pending, now=100.0)
    assert (backlog.objects, backlog.bytes, backlog.lag_seconds) == (2, 120, 50.0)
    assert increments.backlog([], now=100.0).lag_seconds is None


def test_merging_processors_merge_batches_and_the_others_append() -> None:
    assert increments.combines({"processor": {"builtin": "wordcount"}})
    assert increments.combines({})  # wordcount is the default
    assert increments.combines({"processor": {"builtin": "aggregate"}, "reduce": {"partitions": 4}})
    assert not increments.combines({"processor": {"sql": "select 1"}})  # row by row: appended
    assert not increments.combines({"processor": {"sql": "select 1"}, "reduce": {"sql": "select 1"}})
    assert not increments.combines({"processor": {"builtin": "grep"}})
    assert not increments.combines({"processor": {"function": "m:f"}, "reduce": {"function": "m:r"}})
    assert not increments.combines({"command": ["python", "job.py"]})


def test_lag_is_shown_for_people() -> None:
    assert [increments.human_seconds(s) for s in (0, 4.24, 42.4, 190, 7500)] == [
        "0s",
        "4.2s",
        "42s",
        "3m10s",
        "2h05m",
    ]
    assert increments.human_seconds(None) == "-"


def test_percentiles_are_nearest_rank() -> None:
    values = [float(n) for n in range(1, 101)]
    assert increments.percentile(values, 0.5) == 50.0
    assert increments.percentile(values, 0.99) == 99.0
    assert increments.percentile([], 0.5) is None


def test_the_jobs_own_output_is_never_taken_as_its_input() -> None:
    listing = [_file("s3://b/data/a.txt"), _file("s3://b/data/out/result"), _file("s3://b/data/outer.txt")]
    assert [f.path for f in increments.outside(listing, "s3://b/data/out")] == [
        "s3://b/data/a.txt",
        "s3://b/data/outer.txt",
    ]


def test_the_identity_names_the_job_and_its_computation_not_how_the_spec_was_written() -> None:
    from datajob_core.api.identity import incremental_owner  # noqa: PLC0415

    spec = {
        "image": "x",
        "input": {"uris": ["s3://b/in/*"], "incremental": True},
        "output": {"uri": "s3://b/o"},
    }
    written = {**spec, "processor": {"builtin": "wordcount", "options": {}}}
    job = {"metadata": {"name": "j", "namespace": "a"}}
    assert incremental_owner({**job, "spec": spec}) == incremental_owner({**job, "spec": written})
    assert incremental_owner({**job, "spec": spec}) == incremental_owner(
        {**job, "spec": {**spec, "image": "y"}}
    )
    other_namespace = {"metadata": {"name": "j", "namespace": "b"}, "spec": spec}
    assert incremental_owner({**job, "spec": spec}) != incremental_owner(other_namespace)
    grep = {**spec, "processor": {"builtin": "grep", "options": {"pattern": "x"}}}
    assert incremental_owner({**job, "spec": spec}) != incremental_owner({**job, "spec": grep})
