"""Adaptive prefetch: a worker that finished everything it held before the operator's next pass (it waited)
may hold twice as many shards, up to 8; one that still holds most of them holds half as many, down to the
policy's prefetch. Short supply is still spread level by level."""

from __future__ import annotations

from typing import Any

from datajob_core.cluster.reconciler import JobState, ObservedReport, ObservedWorker, Policy, reconcile
from datajob_core.protocol import CurrentShard, ReportMessage, ShardOutcome
from datajob_core.shards.assignment import plan_assignments
from datajob_core.shards.ledger import Ledger

PLAN: list[dict[str, Any]] = [{"pieces": []} for _ in range(2000)]


def _job(workers: int) -> tuple[JobState, Policy, list[str], list[ObservedWorker]]:
    state = JobState(Ledger.new(len(PLAN)))
    policy = Policy(workers=workers)
    created = reconcile("j", policy, state=state, workers=[], reports={}, plan=PLAN, now=0.0).create
    pods = [pod for _, pod in created]
    running = [ObservedWorker(name=p, slot=n, phase="Running", started_at=0.0) for n, p in enumerate(pods)]
    reconcile("j", policy, state=state, workers=running, reports={}, plan=PLAN, now=0.5)
    return state, policy, pods, running


def _report(state: JobState, pod: str, slot: int, seq: int, finish: int | None = None) -> ObservedReport:
    held = state.ledger.in_flight_for(pod)
    done = [
        ShardOutcome(shard=shard, attempt=state.ledger.in_flight[shard].attempt, seq=seq * 100 + n)
        for n, shard in enumerate(held[:finish] if finish is not None else held, start=1)
    ]
    return ObservedReport(slot, ReportMessage(pod=pod, seq=seq * 100 + 99, done=done), renewed_at=1.0)


def test_a_worker_that_keeps_finishing_everything_it_holds_gets_a_larger_window_up_to_8() -> None:
    state, policy, pods, running = _job(1)
    sizes = []
    for seq in range(1, 8):
        reports = {0: _report(state, pods[0], 0, seq)}
        reconcile("j", policy, state=state, workers=running, reports=reports, plan=PLAN, now=float(seq))
        sizes.append(len(state.ledger.in_flight_for(pods[0])))
    assert sizes == [4, 8, 8, 8, 8, 8, 8]


def test_a_worker_that_reports_a_shard_done_while_busy_with_the_next_keeps_its_window() -> None:
    # The agent reports each shard as it finishes, with the next one current: it did not wait.
    state, policy, pods, running = _job(1)
    for seq in range(1, 5):
        held = state.ledger.in_flight_for(pods[0])
        done = [ShardOutcome(shard=held[0], attempt=1, seq=seq)]
        busy = CurrentShard(shard=held[1], attempt=1)
        report = ObservedReport(
            0, ReportMessage(pod=pods[0], seq=seq, done=done, current=busy), renewed_at=1.0
        )
        reconcile("j", policy, state=state, workers=running, reports={0: report}, plan=PLAN, now=float(seq))
    assert state.slots[0].window == 0 and len(state.ledger.in_flight_for(pods[0])) == 2


def test_a_worker_whose_shards_take_seconds_goes_back_to_the_default_window() -> None:
    state, policy, pods, running = _job(1)
    for seq in range(1, 4):  # grows to 8
        reports = {0: _report(state, pods[0], 0, seq)}
        reconcile("j", policy, state=state, workers=running, reports=reports, plan=PLAN, now=float(seq))
    assert state.slots[0].window == 8
    state.slots[0].shards, state.slots[0].busy = 10, 30.0  # 3 s a shard
    report = _report(state, pods[0], 0, 9, finish=1).report
    assert report is not None
    busy = report.model_copy(update={"current": CurrentShard(shard=1999, attempt=1)})
    reports = {0: ObservedReport(0, busy, 1.0)}
    reconcile("j", policy, state=state, workers=running, reports=reports, plan=PLAN, now=9.0)
    assert state.slots[0].window == 0


def test_limits_are_topped_up_level_by_level_so_short_supply_is_spread() -> None:
    ledger = Ledger.new(4)
    made = plan_assignments(ledger, ["fast", "slow"], 2, 0.0, limits={"fast": 10})
    assert [worker for worker, _ in made] == ["fast", "slow", "fast", "slow"]
