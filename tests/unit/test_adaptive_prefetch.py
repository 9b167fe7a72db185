"""Adaptive prefetch: a worker holds about a second of its own measured shard rate (between the policy's
prefetch and 32 shards), so fast workers never idle between passes and slow ones do not hoard shards."""

from __future__ import annotations

from typing import Any

from datajob_core.cluster.reconciler import JobState, ObservedWorker, Policy, reconcile
from datajob_core.shards.assignment import plan_assignments
from datajob_core.shards.ledger import Ledger

PLAN: list[dict[str, Any]] = [{"pieces": []} for _ in range(500)]


def test_a_fast_worker_holds_about_a_second_of_shards_and_a_slow_one_the_default() -> None:
    state = JobState(Ledger.new(len(PLAN)))
    policy = Policy(workers=3)
    pods = [
        pod
        for _, pod in reconcile("j", policy, state=state, workers=[], reports={}, plan=PLAN, now=0.0).create
    ]
    state.slots[0].shards, state.slots[0].busy = 200, 1.0  # 200 shards/s: capped at 32
    state.slots[1].shards, state.slots[1].busy = 20, 2.0  # 10 shards/s: 10
    state.slots[2].shards, state.slots[2].busy = 5, 50.0  # 0.1 shards/s: the default, 2
    workers = [ObservedWorker(name=p, slot=n, phase="Running", started_at=0.0) for n, p in enumerate(pods)]
    reconcile("j", policy, state=state, workers=workers, reports={}, plan=PLAN, now=1.0)
    assert [len(state.ledger.in_flight_for(p)) for p in pods] == [32, 10, 2]


def test_a_worker_without_enough_history_holds_the_default() -> None:
    state = JobState(Ledger.new(len(PLAN)))
    policy = Policy(workers=1)
    pods = [
        pod
        for _, pod in reconcile("j", policy, state=state, workers=[], reports={}, plan=PLAN, now=0.0).create
    ]
    state.slots[0].shards, state.slots[0].busy = 3, 0.01  # three shards say little
    workers = [ObservedWorker(name=pods[0], slot=0, phase="Running", started_at=0.0)]
    reconcile("j", policy, state=state, workers=workers, reports={}, plan=PLAN, now=1.0)
    assert len(state.ledger.in_flight_for(pods[0])) == 2


def test_limits_are_topped_up_level_by_level_so_short_supply_is_spread() -> None:
    ledger = Ledger.new(4)
    made = plan_assignments(ledger, ["fast", "slow"], 2, 0.0, limits={"fast": 10})
    assert [worker for worker, _ in made] == ["fast", "slow", "fast", "slow"]
