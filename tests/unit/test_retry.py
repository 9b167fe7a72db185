"""Retry policy: restart backoff, the crash-loop budget, and the shard attempt rule."""

from __future__ import annotations

import itertools
import json
import random

import pytest

from datajob_core.shards.retry import (
    RestartPolicy,
    RestartTracker,
    ShardRetryPolicy,
    backoff_seconds,
    restart_allowed,
    shard_attempts_exhausted,
)

pytestmark = pytest.mark.unit


def test_backoff_doubles_from_initial_and_is_capped() -> None:
    waits = [backoff_seconds(n, 10.0, 300.0) for n in range(8)]
    assert waits == [0.0, 10.0, 20.0, 40.0, 80.0, 160.0, 300.0, 300.0]


def test_backoff_never_exceeds_maximum_even_when_initial_does() -> None:
    assert backoff_seconds(1, 50.0, 30.0) == 30.0


def test_backoff_survives_huge_restart_counts() -> None:
    assert backoff_seconds(10_000, 1.0, 60.0) == 60.0
    assert backoff_seconds(64, 1e-300, 1e300) == pytest.approx(1e-300 * 2**63)


def test_backoff_zero_initial_means_no_wait() -> None:
    assert backoff_seconds(5, 0.0, 60.0) == 0.0


@pytest.mark.parametrize(
    ("restarts", "initial", "maximum"),
    [
        (-1, 1.0, 2.0),
        (1, -1.0, 2.0),
        (1, 1.0, -2.0),
        (1, float("nan"), 2.0),
        (1, 1.0, float("inf")),
        (True, 1, 2),
    ],
)
def test_backoff_rejects_bad_arguments(restarts: int, initial: float, maximum: float) -> None:
    with pytest.raises(ValueError):
        backoff_seconds(restarts, initial, maximum)


@pytest.mark.parametrize("seed", range(5))
def test_backoff_is_monotonic_and_bounded(seed: int) -> None:
    rng = random.Random(seed)
    initial = rng.uniform(0, 30)
    maximum = rng.uniform(0, 600)
    waits = [backoff_seconds(n, initial, maximum) for n in range(80)]
    assert all(a <= b for a, b in itertools.pairwise(waits))
    assert all(0 <= w <= maximum for w in waits)


def test_restart_allowed_budget() -> None:
    assert [restart_allowed(n, 3) for n in range(5)] == [True, True, True, False, False]
    assert not restart_allowed(0, 0)  # 0 = never restart
    with pytest.raises(ValueError):
        restart_allowed(0, -1)


def test_tracker_walks_the_budget() -> None:
    policy = RestartPolicy(max_worker_restarts=3, initial_backoff=5.0, max_backoff=12.0)
    tracker = RestartTracker()
    now = 100.0
    waits = []
    for number in (1, 2, 3):
        decision = tracker.decide(policy, now)
        assert decision.allowed
        assert decision.restart_number == number
        assert decision.not_before == now + decision.wait_seconds
        waits.append(decision.wait_seconds)
        tracker = decision.tracker
        assert tracker.restarts == number
        now = decision.not_before + 1.0
    assert waits == [5.0, 10.0, 12.0]
    denied = tracker.decide(policy, now)
    assert not denied.allowed
    assert "maxWorkerRestarts=3" in denied.reason
    assert denied.tracker == tracker  # nothing to record when no restart happens


def test_tracker_decide_is_pure() -> None:
    policy = RestartPolicy(max_worker_restarts=2)
    tracker = RestartTracker(restarts=1, last_restart_at=50.0)
    assert tracker.decide(policy, 60.0) == tracker.decide(policy, 60.0)
    assert tracker == RestartTracker(restarts=1, last_restart_at=50.0)


def test_tracker_resets_after_a_healthy_run() -> None:
    policy = RestartPolicy(max_worker_restarts=1, initial_backoff=1.0, max_backoff=1.0, reset_after=600.0)
    tracker = RestartTracker(restarts=1, last_restart_at=1000.0)
    assert not tracker.decide(policy, 1599.0).allowed  # crashed again too soon: in a crash loop
    decision = tracker.decide(policy, 1600.0)  # ran 10 minutes: healthy, budget starts over
    assert decision.allowed
    assert decision.restart_number == 1
    assert decision.tracker == RestartTracker(restarts=1, last_restart_at=1601.0)


def test_without_reset_the_budget_lasts_the_whole_job() -> None:
    policy = RestartPolicy(max_worker_restarts=1)
    assert not RestartTracker(restarts=1, last_restart_at=0.0).decide(policy, 1e9).allowed


def test_tracker_round_trips_through_json() -> None:
    for tracker in (RestartTracker(), RestartTracker(restarts=4, last_restart_at=1760000000.125)):
        assert RestartTracker.from_dict(json.loads(json.dumps(tracker.to_dict()))) == tracker


@pytest.mark.parametrize(
    "doc",
    [[], {"restarts": -1}, {"restarts": "2"}, {"restarts": 1, "lastRestartAt": "x"}, {"restarts": True}],
)
def test_tracker_rejects_corrupt_documents(doc: object) -> None:
    with pytest.raises(ValueError, match="restart tracker"):
        RestartTracker.from_dict(doc)


def test_policy_validation() -> None:
    with pytest.raises(ValueError):
        RestartPolicy(max_worker_restarts=-1)
    with pytest.raises(ValueError):
        RestartPolicy(max_worker_restarts=1, initial_backoff=-1.0)
    with pytest.raises(ValueError):
        RestartPolicy(max_worker_restarts=1, reset_after=float("nan"))
    with pytest.raises(ValueError):
        ShardRetryPolicy(max_attempts=0)


def test_shard_attempt_rule() -> None:
    assert [shard_attempts_exhausted(n, 3) for n in range(5)] == [False, False, False, True, True]
    assert shard_attempts_exhausted(1, 1)  # max_attempts=1: never retried
    with pytest.raises(ValueError):
        shard_attempts_exhausted(0, 0)
    with pytest.raises(ValueError):
        shard_attempts_exhausted(-1, 3)


def test_shard_retry_policy() -> None:
    policy = ShardRetryPolicy(max_attempts=4, initial_backoff=2.0, max_backoff=5.0)
    assert [policy.exhausted(n) for n in (3, 4)] == [False, True]
    assert [policy.backoff(n) for n in range(5)] == [0.0, 2.0, 4.0, 5.0, 5.0]
