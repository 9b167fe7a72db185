"""Stages in the ledger: the job commit runs after every map shard, once, and is retried like a shard."""

from __future__ import annotations

import json
from typing import Any

import pytest

from datajob_core.cluster.reconciler import JobState, ObservedReport, ObservedWorker, Phase, Policy, reconcile
from datajob_core.protocol import ReportMessage, ShardOutcome
from datajob_core.shards.ledger import Assignment, Ledger, ShardState
from datajob_core.shards.stages import Layout, is_commit

pytestmark = pytest.mark.unit

PLAN: list[dict[str, Any]] = [{"pieces": []} for _ in range(3)]


def test_a_stage_after_a_barrier_waits_until_every_earlier_shard_finished() -> None:
    ledger = Layout.new(3).ledger()
    assert [ledger.assign("w1", 0.0).shard for _ in range(3)] == [0, 1, 2]  # type: ignore[union-attr]
    assert ledger.assign("w2", 0.0) is None, "the commit must wait for the map shards"
    ledger.complete(0, "w1", 1, 1.0)
    ledger.complete(1, "w1", 1, 1.0)
    assert ledger.assign("w2", 1.0) is None
    # A failed map shard is finished too (tolerated by maxFailedShards): the commit may go.
    ledger.fail_attempt(2, "w1", 1, "bad", 2.0, max_attempts=1, backoff_seconds=0.0)
    commit = ledger.assign("w2", 2.0)
    assert commit is not None and commit.shard == 3
    assert Layout.of(ledger) == Layout(map_shards=3, commit=3)


def test_barriers_survive_the_status_round_trip() -> None:
    ledger = Layout.new(5, partitions=3).ledger()
    again = Ledger.from_dict(json.loads(json.dumps(ledger.to_dict())))
    assert again.barriers == (5, 8)
    assert Layout.of(again) == Layout(map_shards=5, commit=8, partitions=3)
    assert [Layout.of(again).name(s) for s in (4, 5, 7, 8)] == [
        "shard 4",
        "reduce partition 0",
        "reduce partition 2",
        "the job commit",
    ]
    # A ledger written before stages existed has no commit task.
    assert Layout.of(Ledger.new(5)) == Layout(map_shards=5, commit=None)


def test_a_reopened_map_shard_runs_again_before_any_further_reduce_task_starts() -> None:
    layout = Layout.new(2, partitions=2)
    ledger = layout.ledger()
    for shard in (0, 1):
        assert ledger.assign("m", 0.0) is not None
        ledger.complete(shard, "m", 1, 1.0)
    reducer = ledger.assign("r1", 2.0)
    assert reducer is not None and layout.is_reduce(reducer.shard)
    # The reducer found map shard 1's output deleted: the shard runs again, with a new attempt number.
    assert ledger.reopen(1, attempts=1, reason="output lost", now=3.0)
    # (3, not 2: a backup of the winning attempt may have been issued, and a succeeded shard forgets it)
    assert ledger.assign("r2", 3.0) == Assignment(shard=1, attempt=3, checkpoint=None)
    assert ledger.assign("r3", 3.0) is None, "no reducer may start while a map shard is unfinished"
    ledger.complete(1, "r2", 3, 4.0)
    assert ledger.assign("r3", 4.0) is not None
    assert not ledger.reopen(3, attempts=1, reason="not succeeded", now=5.0)


def pass_(
    state: JobState, workers: list[ObservedWorker], reports: dict[int, ObservedReport], now: float
) -> Any:
    policy = Policy(workers=1, max_shard_attempts=2, backoff_initial=1.0)
    return reconcile("job", policy, state=state, workers=workers, reports=reports, plan=PLAN, now=now)


def phase(state: JobState) -> Phase:
    """Read through a call, so the type checker does not narrow the phase across reconcile passes."""
    return state.phase


def report(
    pod: str, now: float, done: tuple[int, ...] = (), failed: tuple[int, ...] = ()
) -> dict[int, ObservedReport]:
    """Outcomes stay listed until acked; each has its own seq (here: its position in the job's history)."""
    done_outcomes = [ShardOutcome(shard=s, attempt=1, seq=s + 1) for s in done]
    failed_outcomes = [
        ShardOutcome(shard=3, attempt=a, seq=10 + a, reason="MissingOutputError: shard 1 is gone")
        for a in failed
    ]
    seq = max([o.seq for o in done_outcomes + failed_outcomes], default=0)
    message = ReportMessage(pod=pod, seq=seq, done=done_outcomes, failed=failed_outcomes)
    return {0: ObservedReport(0, message, renewed_at=now)}


def test_the_job_succeeds_only_when_its_commit_task_reports_done() -> None:
    state = JobState(Layout.new(len(PLAN)).ledger())
    pod = pass_(state, [], {}, 0.0).create[0][1]
    worker = [ObservedWorker(name=pod, slot=0, phase="Running", started_at=0.0)]
    decision = pass_(state, worker, report(pod, 1.0), 1.0)
    assert [t.shard for t in decision.assignments[0].shards] == [0, 1]
    pass_(state, worker, report(pod, 2.0, done=(0, 1)), 2.0)
    decision = pass_(state, worker, report(pod, 3.0, done=(0, 1, 2)), 3.0)
    [task] = decision.assignments[0].shards
    assert task.shard == 3 and is_commit(task.input) and task.input["shards"] == 3
    assert state.phase is Phase.RUNNING, "all map shards done is not success yet"
    decision = pass_(state, worker, report(pod, 4.0, done=(0, 1, 2, 3)), 4.0)
    assert phase(state) is Phase.SUCCEEDED and decision.finished
    assert state.message == "all 3 shards done (3 succeeded, 0 failed), output committed"
    assert state.ledger.state_of(3) is ShardState.SUCCEEDED


def test_a_job_commit_that_keeps_failing_fails_the_job_with_its_reason() -> None:
    state = JobState(Layout.new(len(PLAN)).ledger())
    pod = pass_(state, [], {}, 0.0).create[0][1]
    worker = [ObservedWorker(name=pod, slot=0, phase="Running", started_at=0.0)]
    pass_(state, worker, report(pod, 1.0), 1.0)
    pass_(state, worker, report(pod, 2.0, done=(0, 1)), 2.0)
    pass_(state, worker, report(pod, 3.0, done=(0, 1, 2)), 3.0)
    pass_(state, worker, report(pod, 4.0, done=(0, 1, 2), failed=(1,)), 4.0)
    assert state.phase is Phase.RUNNING, "one failed commit attempt is retried"
    pass_(state, worker, report(pod, 10.0, done=(0, 1, 2), failed=(1,)), 10.0)  # reassigned after backoff
    pass_(state, worker, report(pod, 11.0, done=(0, 1, 2), failed=(1, 2)), 11.0)
    assert phase(state) is Phase.FAILED
    assert state.reason == "JobCommitFailed"
    assert "MissingOutputError: shard 1 is gone" in state.message
