"""Backup attempts in the ledger (speculation): first commit wins, the loser is never charged, the backup
takes over when the original ends, attempt numbers are never issued twice, and the ledger round-trips."""

from __future__ import annotations

import json
import random

import pytest

from datajob_core.shards.assignment import plan_assignments
from datajob_core.shards.ledger import CompletionStatus, Ledger, OutcomeKind, ShardState
from datajob_core.shards.speculation import Running, SpeculationPolicy, stragglers

pytestmark = pytest.mark.unit


def round_trip(ledger: Ledger) -> Ledger:
    return Ledger.from_dict(json.loads(json.dumps(ledger.to_dict(), allow_nan=False)))


def _running_with_backup() -> Ledger:
    ledger = Ledger.new(3)
    assert ledger.assign("slow", 0.0) is not None
    assert ledger.record_checkpoint(0, "slow", 1, {"piece": 0, "offset": 40}, 5.0)
    return ledger


def test_a_backup_resumes_from_the_originals_checkpoint_with_the_next_attempt_number() -> None:
    ledger = _running_with_backup()
    backup = ledger.speculate(0, "idle", 10.0)
    assert backup is not None
    assert (backup.shard, backup.attempt, backup.checkpoint) == (0, 2, {"piece": 0, "offset": 40})
    assert ledger.held_by("idle")[0][1].attempt == 2
    assert ledger.workers() == {"slow", "idle"}
    # One backup per shard, never on the original's own worker.
    assert ledger.speculate(0, "third", 11.0) is None
    assert round_trip(ledger) == ledger


def test_a_backup_is_never_started_on_the_originals_worker_or_for_a_shard_not_running() -> None:
    ledger = _running_with_backup()
    assert ledger.speculate(0, "slow", 10.0) is None
    assert ledger.speculate(1, "idle", 10.0) is None  # pending, not running


def test_when_the_backup_commits_first_it_wins_and_the_original_is_dropped_uncharged() -> None:
    ledger = _running_with_backup()
    ledger.speculate(0, "idle", 10.0)
    done = ledger.complete(0, "idle", 2, 20.0)
    assert done.status is CompletionStatus.ACCEPTED and done.speculation == "won"
    assert (done.preempted_worker, done.preempted_attempt) == ("slow", 1)
    assert ledger.state_of(0) is ShardState.SUCCEEDED
    assert ledger.held_by("slow") == [] and ledger.held_by("idle") == []
    # The original's late commit is a duplicate, never a failure.
    assert ledger.complete(0, "slow", 1, 21.0).duplicate


def test_when_the_original_commits_first_the_backup_is_dropped_uncharged() -> None:
    ledger = _running_with_backup()
    ledger.speculate(0, "idle", 10.0)
    done = ledger.complete(0, "slow", 1, 20.0)
    assert done.accepted and done.speculation == "lost"
    assert (done.preempted_worker, done.preempted_attempt) == ("idle", 2)
    assert ledger.backups == {}


def test_a_failing_backup_is_not_charged_and_the_original_goes_on() -> None:
    ledger = _running_with_backup()
    ledger.speculate(0, "idle", 10.0)
    outcome = ledger.fail_attempt(0, "idle", 2, "boom", 12.0, max_attempts=1, backoff_seconds=0)
    assert outcome.kind is OutcomeKind.IGNORED
    assert ledger.in_flight[0].worker == "slow" and ledger.in_flight[0].failures == 0
    # Its number is never issued again: the next attempt after the original's death is 3.
    ledger.release_worker("slow", "killed", 13.0, max_attempts=3)
    nxt = ledger.assign("other", 14.0)
    assert nxt is not None and (nxt.shard, nxt.attempt) == (0, 3)


def test_when_the_original_dies_the_backup_becomes_the_shards_attempt() -> None:
    ledger = _running_with_backup()
    ledger.speculate(0, "idle", 10.0)
    outcomes = ledger.release_worker("slow", "OOMKilled", 12.0, max_attempts=3, charge=(0, 1))
    assert [o.kind for o in outcomes] == [OutcomeKind.RETRY]
    assert ledger.in_flight[0].worker == "idle" and ledger.in_flight[0].attempt == 2
    assert ledger.in_flight[0].failures == 1 and 0 not in ledger.retry and ledger.backups == {}
    assert ledger.complete(0, "idle", 2, 20.0).accepted


def test_when_the_backups_worker_dies_nothing_is_charged() -> None:
    ledger = _running_with_backup()
    ledger.speculate(0, "idle", 10.0)
    ledger.release_worker("idle", "evicted", 12.0, max_attempts=1, charge=(0, 2))
    assert ledger.backups == {} and ledger.in_flight[0].failures == 0
    assert ledger.in_flight[0].issued == 2  # attempt 2 was issued; the next is 3
    assert round_trip(ledger).in_flight[0].issued == 2


def test_checkpoints_of_each_attempt_go_to_that_attempt() -> None:
    ledger = _running_with_backup()
    ledger.speculate(0, "idle", 10.0)
    assert ledger.record_checkpoint(0, "idle", 2, {"piece": 0, "offset": 90}, 11.0)
    assert ledger.in_flight[0].checkpoint == {"piece": 0, "offset": 40}
    assert ledger.backups[0].checkpoint == {"piece": 0, "offset": 90}
    assert not ledger.record_checkpoint(0, "idle", 1, {"piece": 0}, 12.0)  # not its attempt


def test_random_histories_with_backups_keep_the_invariant_and_never_reuse_an_attempt_number() -> None:
    for seed in range(300):
        rng = random.Random(seed)
        ledger = Ledger.new(4)
        workers = ["a", "b", "c", "d"]
        issued: dict[int, set[int]] = {s: set() for s in range(4)}
        now = 0.0
        for _ in range(60):
            now += 1
            worker = rng.choice(workers)
            action = rng.random()
            if action < 0.3:
                got = ledger.assign(worker, now)
            elif action < 0.5:
                got = ledger.speculate(rng.randrange(4), worker, now)
            else:
                got = None
                held = ledger.held_by(worker)
                if held:
                    shard, entry = rng.choice(held)
                    if action < 0.7:
                        ledger.complete(shard, worker, entry.attempt, now)
                    elif action < 0.85:
                        ledger.fail_attempt(
                            shard, worker, entry.attempt, "x", now, max_attempts=4, backoff_seconds=0
                        )
                    else:
                        ledger.release_worker(
                            worker, "gone", now, max_attempts=4, charge=(shard, entry.attempt)
                        )
            if got is not None:
                assert got.attempt not in issued[got.shard], (seed, got)
                issued[got.shard].add(got.attempt)
            ledger.check_invariant()
            assert round_trip(ledger) == ledger


def test_a_shard_gets_one_backup_per_attempt_so_a_failing_backup_is_not_relaunched_for_ever() -> None:
    ledger = _running_with_backup()
    ledger.speculate(0, "idle", 10.0)
    ledger.release_worker("idle", "OOMKilled", 11.0, max_attempts=3, charge=(0, 2))
    assert ledger.speculate(0, "other", 12.0) is None
    # A later attempt of the shard may be backed up again.
    ledger.release_worker("slow", "killed", 13.0, max_attempts=3)
    nxt = ledger.assign("third", 14.0)
    assert nxt is not None and nxt.attempt == 3
    assert ledger.speculate(0, "fourth", 15.0) is not None


def test_a_reopened_shard_never_reuses_the_number_of_a_losing_backup() -> None:
    ledger = _running_with_backup()
    ledger.speculate(0, "idle", 10.0)  # attempt 2
    assert ledger.complete(0, "slow", 1, 20.0).accepted  # the original (1) wins; 2 was issued
    assert ledger.reopen(0, attempts=1, reason="output lost", now=21.0)  # the record names attempt 1
    nxt = ledger.assign("other", 22.0)
    assert nxt is not None and nxt.shard == 0 and nxt.attempt == 3


def test_a_worker_running_a_backup_is_not_also_prefetched_work() -> None:
    ledger = Ledger.new(4)
    plan_assignments(ledger, ["a"], 1, 0.0)
    ledger.speculate(0, "b", 1.0)
    made = plan_assignments(ledger, ["a", "b", "c"], 1, 2.0)
    assert [worker for worker, _ in made] == ["c"]  # a holds its shard, b its backup


def test_a_shard_assigned_this_very_pass_is_not_judged_even_with_no_minimum_runtime() -> None:
    policy = SpeculationPolicy(enabled=True, quantile=0.0, min_runtime=0.0)
    samples = [(1.0, 1000)] * 3
    assert stragglers([Running(0, "w", 0.0, 0, 1000)], samples, 1.0, policy) == []
    assert [s.shard for s in stragglers([Running(0, "w", 5.0, 0, 1000)], samples, 1.0, policy)] == [0]


def test_a_shard_time_limit_starts_a_backup_at_half_the_limit_before_any_rate_or_quantile_says_so() -> None:
    policy = SpeculationPolicy(enabled=True, time_limit=60.0)
    # No finished attempts yet (no typical rate) and no shard finished (quantile not reached).
    assert stragglers([Running(0, "w", 29.0, 10, 1000)], [], 0.0, policy) == []
    found = stragglers([Running(0, "w", 30.0, 10, 1000)], [], 0.0, policy)
    assert [(s.shard, s.timed) for s in found] == [(0, True)]
    # Without speculation the limit only fails attempts (the worker's watchdog).
    assert stragglers([Running(0, "w", 59.0, 10, 1000)], [], 0.0, SpeculationPolicy(time_limit=60.0)) == []


def test_an_original_that_runs_out_of_time_hands_its_shard_to_the_backup_instead_of_failing_it() -> None:
    ledger = _running_with_backup()
    assert ledger.speculate(0, "fast", 30.0) is not None
    # The watchdog ends the original's pod at the limit (exit 124): charged, even on its last attempt.
    [outcome] = ledger.release_worker("slow", "shardTimeoutSeconds", 60.0, max_attempts=1, charge=(0, 1))
    assert outcome.kind is OutcomeKind.RETRY
    assert ledger.state_of(0) is ShardState.ASSIGNED and ledger.in_flight[0].worker == "fast"
    # The backup running out too uses the shard's last attempt: one attempt only checks storage for a commit
    # (a death may come after it), then the shard fails with the time limit's reason.
    ledger.release_worker("fast", "shardTimeoutSeconds", 90.0, max_attempts=1, charge=(0, 2))
    assert ledger.state_of(0) is ShardState.PENDING and ledger.retry[0].verify == "shardTimeoutSeconds"
