"""Adaptive prefetch: a worker that finished everything it held before the operator's next pass (it waited)
may hold twice as many shards, up to 8; one that still holds most of them holds half as many, down to the
policy's prefetch. Short supply is still spread level by level."""

from __future__ import annotations

from typing import Any

from datajob_core.cluster.reconciler import JobState, ObservedReport, ObservedWorker, Policy, reconcile
from datajob_core.protocol import ReportMessage, ShardOutcome
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


def test_a_worker_that_falls_behind_gets_its_window_halved_back_to_the_default() -> None:
    state, policy, pods, running = _job(1)
    for seq in range(1, 5):  # grows to 8
        reports = {0: _report(state, pods[0], 0, seq)}
        reconcile("j", policy, state=state, workers=running, reports=reports, plan=PLAN, now=float(seq))
    sizes = []
    for seq in range(5, 10):  # now it finishes one shard per report
        reports = {0: _report(state, pods[0], 0, seq, finish=1)}
        reconcile("j", policy, state=state, workers=running, reports=reports, plan=PLAN, now=float(seq))
        sizes.append(state.slots[0].window or policy.prefetch)
    assert sizes == [4, 2, 2, 2, 2]


def test_limits_are_topped_up_level_by_level_so_short_supply_is_spread() -> None:
    ledger = Ledger.new(4)
    made = plan_assignments(ledger, ["fast", "slow"], 2, 0.0, limits={"fast": 10})
    assert [worker for worker, _ in made] == ["fast", "slow", "fast", "slow"]
