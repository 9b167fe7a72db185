"""A continuous job between batches (datajob_core.cluster.continuous and the reconciler's idle state)."""

from __future__ import annotations

from typing import Any

import pytest

from datajob_core.cluster import continuous
from datajob_core.cluster.reconciler import (
    JobState,
    ObservedReport,
    ObservedWorker,
    Phase,
    Policy,
    idle,
    reconcile,
)
from datajob_core.protocol import CurrentShard, ReportMessage, ShardOutcome, ShardProgress
from datajob_core.shards.ledger import Ledger

pytestmark = pytest.mark.unit

PLAN: list[dict[str, Any]] = [{"pieces": []} for _ in range(2)]


def _run_batch(policy: Policy) -> tuple[JobState, list[str], dict[int, ObservedReport]]:
    """A one-batch job whose two shards ran; returns the state after their outcomes were folded."""
    state = JobState(Ledger.new(len(PLAN)), batch=0)
    pods = [
        pod for _, pod in reconcile("j", policy, state=state, workers=[], reports={}, plan=PLAN, now=0).create
    ]
    workers = [ObservedWorker(name=p, slot=n, phase="Running", started_at=0.0) for n, p in enumerate(pods)]
    reports = {
        n: ObservedReport(
            n, ReportMessage(pod=p, seq=1, done=[ShardOutcome(shard=n, attempt=1, seq=1, batch=0)]), 1.0
        )
        for n, p in enumerate(pods)
    }
    reconcile("j", policy, state=state, workers=workers, reports={}, plan=PLAN, now=1.0)
    reconcile("j", policy, state=state, workers=workers, reports=reports, plan=PLAN, now=2.0)
    return state, pods, reports


def test_a_continuous_job_whose_batch_committed_is_idle_not_succeeded_nor_stalled() -> None:
    policy = Policy(workers=2, continuous=True, progress_deadline=5.0)
    state, pods, reports = _run_batch(policy)
    workers = [ObservedWorker(name=p, slot=n, phase="Running", started_at=0.0) for n, p in enumerate(pods)]
    assert idle(state, policy)
    for now in (3.0, 30.0, 300.0):  # long past the progress deadline
        decision = reconcile("j", policy, state=state, workers=workers, reports=reports, plan=PLAN, now=now)
        assert not decision.finished and decision.stall is None
    assert state.phase is Phase.RUNNING and not state.stalled
    # The same ledger in a batch job is a finished job.
    batch, _, _ = _run_batch(Policy(workers=2))
    assert batch.phase is Phase.SUCCEEDED


def test_the_next_batch_keeps_the_workers_and_numbers_its_tasks_by_batch() -> None:
    policy = Policy(workers=2, continuous=True)
    state, pods, reports = _run_batch(policy)
    workers = [ObservedWorker(name=p, slot=n, phase="Running", started_at=0.0) for n, p in enumerate(pods)]
    assert continuous.quiescent(state, reports)
    continuous.begin_batch(state, 1, Ledger.new(3), now=10.0)
    plan: list[dict[str, Any]] = [{"pieces": []} for _ in range(3)]
    # The old reports (shards 0 and 1 done, seq 1) are still in the Leases: they are not the new batch's.
    decision = reconcile("j", policy, state=state, workers=workers, reports=reports, plan=plan, now=11.0)
    assert not decision.create and not decision.delete  # the same pods go on
    assert state.ledger.counts(0, 3).succeeded == 0
    tasks = [t for message in decision.assignments.values() for t in message.shards]
    assert tasks and {t.batch for t in tasks} == {1}


def test_a_late_report_about_the_last_batch_is_never_taken_for_the_new_batchs_shard() -> None:
    policy = Policy(workers=2, continuous=True)
    state, pods, _ = _run_batch(policy)
    continuous.begin_batch(state, 1, Ledger.new(2), now=10.0)
    workers = [ObservedWorker(name=p, slot=n, phase="Running", started_at=0.0) for n, p in enumerate(pods)]
    reconcile("j", policy, state=state, workers=workers, reports={}, plan=PLAN, now=11.0)
    assert state.ledger.attempt_of(0, pods[0], 1) is not None  # batch 1's shard 0, attempt 1, on pod 0
    # Pod 0 says "shard 0, attempt 1: done" and reports progress on shard 1, both about batch 0 (a lost
    # backup's late word, a report that lagged): neither is batch 1's.
    stale = ReportMessage(
        pod=pods[0],
        seq=5,
        done=[ShardOutcome(shard=0, attempt=1, seq=5, batch=0)],
        progress={"0": ShardProgress(attempt=1, batch=0, checkpoint={"offset": 99})},
        current=CurrentShard(shard=0, attempt=1, batch=0),
    )
    reconcile(
        "j",
        policy,
        state=state,
        workers=workers,
        reports={0: ObservedReport(0, stale, 12.0)},
        plan=PLAN,
        now=12.0,
    )
    assert state.ledger.counts(0, 2).succeeded == 0
    assert state.ledger.in_flight[0].checkpoint is None
    # The same words about batch 1 count.
    fresh = ReportMessage(pod=pods[0], seq=6, done=[ShardOutcome(shard=0, attempt=1, seq=6, batch=1)])
    reconcile(
        "j",
        policy,
        state=state,
        workers=workers,
        reports={0: ObservedReport(0, fresh, 13.0)},
        plan=PLAN,
        now=13.0,
    )
    assert state.ledger.counts(0, 2).succeeded == 1


def test_the_next_batch_waits_while_a_worker_still_reports_a_shard_of_the_last() -> None:
    policy = Policy(workers=2, continuous=True)
    state, pods, _ = _run_batch(policy)
    # Untagged words (a worker image from before batches were tagged) hold the next batch back...
    busy = {
        0: ObservedReport(0, ReportMessage(pod=pods[0], seq=2, current=CurrentShard(shard=1, attempt=1)), 1.0)
    }
    assert not continuous.quiescent(state, busy)
    # ...tagged ones are fenced, so a lost backup's lingering progress never blocks it.
    tagged = {
        0: ObservedReport(
            0, ReportMessage(pod=pods[0], seq=2, progress={"1": ShardProgress(attempt=2, batch=0)}), 1.0
        )
    }
    assert continuous.quiescent(state, tagged)
    progressing = {
        0: ObservedReport(0, ReportMessage(pod=pods[0], seq=2, progress={"1": ShardProgress(attempt=1)}), 1.0)
    }
    assert not continuous.quiescent(state, progressing)
    # A report of a pod that no longer holds the slot says nothing about this job's workers.
    stale = {
        0: ObservedReport(0, ReportMessage(pod="gone", seq=2, current=CurrentShard(shard=1, attempt=1)), 1.0)
    }
    assert continuous.quiescent(state, stale)


def test_workers_follow_the_backlog_within_min_and_max() -> None:
    scaling = {"minWorkers": 0, "maxWorkers": 4, "objectsPerWorker": 10}
    assert continuous.desired_workers(scaling, 0, idle=True) == 0
    assert continuous.desired_workers(scaling, 0, idle=False) == 1  # a running batch has a worker
    assert continuous.desired_workers(scaling, 25, idle=False) == 3
    assert continuous.desired_workers(scaling, 1000, idle=False) == 4
    assert continuous.desired_workers({**scaling, "minWorkers": 2}, 0, idle=True) == 2


def test_a_continuous_job_scaled_to_zero_while_idle_keeps_its_slots_for_the_next_batch() -> None:
    policy = Policy(workers=2, continuous=True)
    state, pods, reports = _run_batch(policy)
    workers = [ObservedWorker(name=p, slot=n, phase="Running", started_at=0.0) for n, p in enumerate(pods)]
    zero = Policy(workers=0, continuous=True, autoscaled=True)
    decision = reconcile("j", zero, state=state, workers=workers, reports=reports, plan=PLAN, now=3.0)
    assert sorted(name for name, graceful in decision.delete if graceful) == sorted(pods)
    assert any(e.reason == "Autoscaled" for e in decision.events)
    assert not decision.finished
