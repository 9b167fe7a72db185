"""Rebuilding a ledger from the evidence an output holds (spec.output.resume): what is done stays done,
what was interrupted resumes from its checkpoint under a new attempt number, and another plan's work is
refused."""

from __future__ import annotations

import pytest

from datajob_core.shards.ledger import ShardState
from datajob_core.shards.recovery import RESUMED_REASON, Evidence, ResumeMismatchError, rebuild
from datajob_core.shards.stages import Layout


def test_committed_shards_are_never_assigned_again() -> None:
    rebuilt = rebuild(Layout.new(6), Evidence(committed=frozenset({0, 1, 2, 4})))
    ledger = rebuilt.ledger
    assert rebuilt.committed == 4
    handed_out = []
    while (assignment := ledger.assign("w", now=0.0)) is not None:
        handed_out.append(assignment.shard)
        ledger.complete(assignment.shard, "w", assignment.attempt, now=0.0)
    assert sorted(handed_out) == [3, 5, 6]  # 6 is the job-commit task
    assert ledger.is_finished()


def test_interrupted_shard_resumes_from_its_newest_checkpoint_with_a_new_attempt_number() -> None:
    checkpoint = {"records": 500, "offset": 4096, "state": "3.7"}
    rebuilt = rebuild(
        Layout.new(4), Evidence(committed=frozenset({0}), checkpoints={1: checkpoint}, attempts={1: 3, 2: 1})
    )
    assert (rebuilt.committed, rebuilt.resumed, rebuilt.restarted) == (1, 1, 1)
    first = rebuilt.ledger.assign("w", now=0.0)
    assert first is not None
    assert (first.shard, first.attempt, first.checkpoint) == (1, 4, checkpoint)
    second = rebuilt.ledger.assign("w", now=0.0)
    assert second is not None
    assert (second.shard, second.attempt, second.checkpoint) == (2, 2, None)
    assert rebuilt.ledger.assign("w", now=0.0) is not None  # shard 3: fresh
    assert rebuilt.ledger.retry == {}


def test_rebuilt_entries_say_why_they_are_pending() -> None:
    rebuilt = rebuild(Layout.new(4), Evidence(attempts={1: 1}))
    assert {s: r.reason for s, r in rebuilt.ledger.retry.items()} == {0: RESUMED_REASON, 1: RESUMED_REASON}


def test_shards_beyond_all_evidence_stay_fresh_so_the_status_stays_small() -> None:
    rebuilt = rebuild(Layout.new(10_000), Evidence(committed=frozenset(range(100)), attempts={101: 1}))
    ledger = rebuilt.ledger
    assert ledger.next_fresh == 102
    assert set(ledger.retry) == {100, 101}
    assert ledger.succeeded.interval_count == 1
    assert ledger.state_of(5_000) is ShardState.PENDING


def test_after_the_job_commit_only_the_commit_task_runs_again() -> None:
    layout = Layout.new(5, partitions=2)
    rebuilt = rebuild(layout, Evidence(job_committed=True))
    ledger = rebuilt.ledger
    assignment = ledger.assign("w", now=0.0)
    assert assignment is not None and assignment.shard == layout.commit
    assert ledger.assign("w", now=0.0) is None


def test_reduce_tasks_wait_for_map_shards_that_resume() -> None:
    layout = Layout.new(3, partitions=2)
    rebuilt = rebuild(layout, Evidence(committed=frozenset({0, 2, 3}), attempts={1: 2}))
    ledger = rebuilt.ledger
    first = ledger.assign("w", now=0.0)
    assert first is not None and first.shard == 1
    assert ledger.assign("w2", now=0.0) is None  # reduce task 4 waits behind the barrier
    ledger.complete(1, "w", first.attempt, now=0.0)
    reducer = ledger.assign("w", now=0.0)
    assert reducer is not None and reducer.shard == 4


def test_an_output_with_no_work_gives_a_fresh_ledger() -> None:
    rebuilt = rebuild(Layout.new(3), Evidence())
    assert not rebuilt.found_work
    assert rebuilt.ledger.next_fresh == 0


def test_work_of_another_plan_is_refused() -> None:
    with pytest.raises(ResumeMismatchError, match="task 7"):
        rebuild(Layout.new(3), Evidence(committed=frozenset({0, 7})))


def test_a_checkpoint_too_large_for_the_status_restarts_the_shard_instead() -> None:
    huge = {"records": 1, "state": "1.1", "pad": "x" * 1000}
    rebuilt = rebuild(Layout.new(2), Evidence(checkpoints={0: huge}, attempts={0: 1}))
    assignment = rebuilt.ledger.assign("w", now=0.0)
    assert assignment is not None and assignment.checkpoint is None and assignment.attempt == 2
