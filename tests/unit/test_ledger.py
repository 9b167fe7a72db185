"""Shard ledger and assignment planning: operations, invariants under random histories, status size."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

import pytest

from datajob_core.shards.assignment import plan_assignments
from datajob_core.shards.ledger import (
    MAX_CHECKPOINT_BYTES,
    MAX_REASON_CHARS,
    Assignment,
    CompletionStatus,
    Counts,
    InFlight,
    Ledger,
    OutcomeKind,
    ShardState,
    checkpoint_problem,
)
from datajob_core.shards.rangeset import RangeSet

pytestmark = pytest.mark.unit


def round_trip(ledger: Ledger) -> Ledger:
    return Ledger.from_dict(json.loads(json.dumps(ledger.to_dict(), allow_nan=False)))


# -- basic operations -----------------------------------------------------------------------------------


def test_new_ledger_is_all_pending() -> None:
    ledger = Ledger.new(5)
    assert ledger.counts() == Counts(total=5, pending=5, running=0, succeeded=0, failed=0)
    assert [ledger.state_of(s) for s in range(5)] == [ShardState.PENDING] * 5
    assert not ledger.is_finished()
    assert Ledger.new(0).is_finished()


def test_fresh_assignment_in_order_and_until_exhausted() -> None:
    ledger = Ledger.new(3)
    got = [ledger.assign("w1", 0.0) for _ in range(4)]
    assert got == [Assignment(0, 1, None), Assignment(1, 1, None), Assignment(2, 1, None), None]
    assert ledger.in_flight_for("w1") == [0, 1, 2]  # prefetch: one worker may hold several
    assert ledger.workers() == {"w1"}
    assert ledger.counts().running == 3


def test_checkpoint_accepted_only_from_the_current_attempt() -> None:
    ledger = Ledger.new(2)
    ledger.assign("w1", 0.0)
    assert ledger.record_checkpoint(0, "w1", 1, {"offset": 10}, 1.0)
    assert not ledger.record_checkpoint(0, "w2", 1, {"offset": 99}, 2.0)  # wrong worker
    assert not ledger.record_checkpoint(0, "w1", 2, {"offset": 99}, 2.0)  # never-issued attempt
    assert not ledger.record_checkpoint(1, "w1", 1, {"offset": 99}, 2.0)  # not in flight
    assert not ledger.record_checkpoint(7, "w1", 1, {"offset": 99}, 2.0)  # out of range
    entry = ledger.in_flight[0]
    assert entry.checkpoint == {"offset": 10}
    assert (entry.assigned_at, entry.updated_at) == (0.0, 1.0)


def test_checkpoint_is_copied_and_validated() -> None:
    ledger = Ledger.new(1)
    ledger.assign("w1", 0.0)
    checkpoint: dict[str, Any] = {"offset": 1, "files": ["a"]}
    ledger.record_checkpoint(0, "w1", 1, checkpoint, 1.0)
    checkpoint["files"].append("b")  # the caller's later mutation must not leak into the ledger
    assert ledger.in_flight[0].checkpoint == {"offset": 1, "files": ["a"]}
    before = ledger.to_dict()
    for bad in ([1, 2], None, {"x": float("nan")}, {"x": object()}, {"blob": "x" * MAX_CHECKPOINT_BYTES}):
        assert checkpoint_problem(bad) is not None
        assert not ledger.record_checkpoint(0, "w1", 1, bad, 2.0)  # type: ignore[arg-type]
    assert ledger.to_dict() == before
    assert checkpoint_problem({"offset": 1}) is None


def test_worker_failure_resumes_from_checkpoint_on_another_worker() -> None:
    ledger = Ledger.new(3)
    ledger.assign("w1", 0.0)
    ledger.record_checkpoint(0, "w1", 1, {"offset": 1234, "records": 99}, 5.0)
    outcomes = ledger.release_worker("w1", "OOMKilled", 6.0, max_attempts=3, charge=(0, 1))
    assert [(o.shard, o.kind, o.failures) for o in outcomes] == [(0, OutcomeKind.RETRY, 1)]
    assert ledger.state_of(0) is ShardState.PENDING
    got = ledger.assign("w2", 7.0)
    assert got == Assignment(0, 2, {"offset": 1234, "records": 99})
    assert got is not None and got.resumed


def test_retry_shards_go_before_fresh_ones_lowest_first() -> None:
    ledger = Ledger.new(10)
    for _ in range(4):
        ledger.assign("w1", 0.0)
    ledger.release_worker("w1", "crash", 1.0, max_attempts=5)
    assert [ledger.assign("w2", 2.0) for _ in range(5)] == [
        Assignment(0, 2, None),
        Assignment(1, 2, None),
        Assignment(2, 2, None),
        Assignment(3, 2, None),
        Assignment(4, 1, None),
    ]


def test_backoff_delays_reassignment() -> None:
    ledger = Ledger.new(1)
    ledger.assign("w1", 100.0)
    outcome = ledger.fail_attempt(0, "w1", 1, "boom", 100.0, max_attempts=3, backoff_seconds=30.0)
    assert outcome.retrying and outcome.not_before == 130.0
    assert ledger.next_retry_time() == 130.0
    assert ledger.assign("w1", 129.9) is None
    assert not ledger.is_finished()
    assert ledger.assign("w1", 130.0) == Assignment(0, 2, None)


def test_attempts_exhausted_fail_the_shard() -> None:
    ledger = Ledger.new(1)
    kinds = []
    for attempt in (1, 2, 3):
        assert ledger.assign("w", float(attempt)) == Assignment(0, attempt, None)
        outcome = ledger.fail_attempt(
            0, "w", attempt, f"bad record #{attempt}", 0.0, max_attempts=3, backoff_seconds=0
        )
        kinds.append(outcome.kind)
    assert kinds == [OutcomeKind.RETRY, OutcomeKind.RETRY, OutcomeKind.FAILED]
    assert ledger.state_of(0) is ShardState.FAILED
    assert ledger.failed[0].reason == "bad record #3"
    assert ledger.failed_count() == 1
    assert ledger.is_finished()
    assert ledger.assign("w", 10.0) is None


def test_stale_failure_report_is_ignored() -> None:
    ledger = Ledger.new(1)
    ledger.assign("w1", 0.0)
    ledger.release_worker("w1", "node lost", 1.0, max_attempts=3)
    ledger.assign("w2", 2.0)
    before = ledger.to_dict()
    outcome = ledger.fail_attempt(0, "w1", 1, "late", 3.0, max_attempts=3, backoff_seconds=0.0)
    assert outcome.ignored
    assert ledger.fail_attempt(5, "w1", 1, "x", 3.0, max_attempts=3, backoff_seconds=0.0).ignored
    assert ledger.to_dict() == before


def test_graceful_release_does_not_use_up_attempts_but_advances_attempt_numbers() -> None:
    ledger = Ledger.new(1)
    for attempt in range(1, 6):
        assert ledger.assign("w", 0.0) == Assignment(0, attempt, None)
        (outcome,) = ledger.release_worker("w", "scale down", 0.0, max_attempts=1)
        assert outcome.retrying and outcome.failures == 0
    # The one real failure allowed by max_attempts=1 is still available; after it (and the attempt that
    # verifies the dead worker had not committed) the shard fails.
    assert ledger.assign("w", 0.0) == Assignment(0, 6, None)
    (outcome,) = ledger.release_worker("w", "OOMKilled", 0.0, max_attempts=1, charge=(0, 6))
    assert outcome.retrying and ledger.retry[0].verify == "OOMKilled"
    assert ledger.assign("w", 0.0) == Assignment(0, 7, None)
    outcome = ledger.fail_attempt(0, "w", 7, "no commit record", 0.0, max_attempts=1, backoff_seconds=0.0)
    assert outcome.failed
    assert ledger.failed[0].reason == "OOMKilled"  # the death's reason, not the verification's
    assert ledger.failed[0].attempts == 7 and ledger.failed[0].failures == 2


def test_release_worker_only_touches_that_worker() -> None:
    ledger = Ledger.new(6)
    plan_assignments(ledger, ["a", "b"], 3, 0.0)
    outcomes = ledger.release_worker("a", "OOMKilled", 1.0, max_attempts=3, charge=(0, 1))
    assert [o.shard for o in outcomes] == [0, 2, 4]
    # Only the shard "a" was processing is charged; 2 and 4 waited in its queue and never started.
    assert [o.failures for o in outcomes] == [1, 0, 0]
    assert ledger.in_flight_for("b") == [1, 3, 5]
    assert ledger.in_flight_for("a") == []
    assert ledger.release_worker("nobody", "gone", 1.0, max_attempts=3) == []


def test_only_the_shard_the_worker_reported_processing_is_charged_not_a_lower_queued_retry() -> None:
    ledger = Ledger.new(4)
    plan_assignments(ledger, ["a"], 1, 0.0)  # a: shard 0
    plan_assignments(ledger, ["b"], 2, 0.0)  # b: shards 1, 2
    ledger.release_worker("b", "disrupted", 1.0, max_attempts=3)  # 1 and 2 wait for retry, uncharged
    ledger.complete(0, "a", 1, 2.0)
    ledger.assign("a", 3.0)  # a: shard 1 (retry, attempt 2)...
    # ...but a reported shard 3? No: a keeps working on what it holds; say it holds 1 and 2 and runs 2.
    ledger.assign("a", 3.0)
    assert ledger.in_flight_for("a") == [1, 2]
    outcomes = ledger.release_worker("a", "Error (exit code 1)", 4.0, max_attempts=3, charge=(2, 2))
    assert {o.shard: o.failures for o in outcomes} == {1: 0, 2: 1}


def test_a_worker_that_died_before_starting_anything_charges_nothing() -> None:
    ledger = Ledger.new(3)
    plan_assignments(ledger, ["a"], 2, 0.0)
    outcomes = ledger.release_worker("a", "Error (exit code 1)", 1.0, max_attempts=1, charge=None)
    assert [(o.shard, o.kind, o.failures) for o in outcomes] == [
        (0, OutcomeKind.RETRY, 0),
        (1, OutcomeKind.RETRY, 0),
    ]


def test_a_charge_naming_another_attempt_charges_nothing() -> None:
    ledger = Ledger.new(1)
    ledger.assign("a", 0.0)
    (outcome,) = ledger.release_worker("a", "crash", 1.0, max_attempts=1, charge=(0, 7))
    assert outcome.retrying and outcome.failures == 0


def test_a_permanent_failure_fails_the_shard_at_once() -> None:
    ledger = Ledger.new(2)
    ledger.assign("a", 0.0)
    ledger.assign("a", 0.0)
    result = ledger.fail_attempt(
        0, "a", 1, "malformed record", 1.0, max_attempts=5, backoff_seconds=0.0, permanent=True
    )
    assert result.failed and ledger.state_of(0) is ShardState.FAILED
    outcomes = ledger.release_worker("a", "FailShard", 2.0, max_attempts=5, charge=(1, 1), permanent=True)
    # A death: the worker may have committed before it died, so one attempt verifies before the verdict.
    assert [o.kind for o in outcomes] == [OutcomeKind.RETRY] and ledger.retry[1].verify == "FailShard"


def test_a_shard_whose_worker_died_after_committing_is_not_failed_by_that_death() -> None:
    ledger = Ledger.new(1)
    ledger.assign("a", 0.0)
    (death,) = ledger.release_worker("a", "killed by SIGKILL", 1.0, max_attempts=1, charge=(0, 1))
    assert death.retrying and ledger.state_of(0) is ShardState.PENDING
    assert ledger.assign("b", 2.0) == Assignment(0, 2, None) and ledger.in_flight[0].verify
    assert ledger.complete(0, "b", 2, 3.0).accepted  # it found the dead worker's commit record
    assert ledger.state_of(0) is ShardState.SUCCEEDED


def test_reason_is_bounded() -> None:
    ledger = Ledger.new(1)
    ledger.assign("w", 0.0)
    ledger.fail_attempt(0, "w", 1, "x" * 10_000, 0.0, max_attempts=2, backoff_seconds=0.0)
    assert len(ledger.retry[0].reason) == MAX_REASON_CHARS


# -- completion -----------------------------------------------------------------------------------------


def test_completion_from_current_attempt() -> None:
    ledger = Ledger.new(2)
    ledger.assign("w1", 0.0)
    result = ledger.complete(0, "w1", 1, 1.0)
    assert result.accepted and result.preempted_worker is None
    assert result.previous_state is ShardState.ASSIGNED
    assert ledger.state_of(0) is ShardState.SUCCEEDED
    again = ledger.complete(0, "w1", 1, 2.0)
    assert again.duplicate
    assert ledger.counts() == Counts(total=2, pending=1, running=0, succeeded=1, failed=0)


def test_late_completion_of_an_older_attempt_wins_and_preempts_the_current_one() -> None:
    ledger = Ledger.new(1)
    ledger.assign("w1", 0.0)
    ledger.release_worker("w1", "presumed dead", 10.0, max_attempts=3)
    ledger.assign("w2", 11.0)
    result = ledger.complete(0, "w1", 1, 12.0)
    assert result.accepted
    assert (result.preempted_worker, result.preempted_attempt) == ("w2", 2)
    assert ledger.in_flight == {}
    assert ledger.complete(0, "w2", 2, 13.0).duplicate
    assert not ledger.record_checkpoint(0, "w2", 2, {"offset": 1}, 13.0)


def test_completion_of_a_shard_waiting_for_retry_or_failed() -> None:
    ledger = Ledger.new(2)
    ledger.assign("w1", 0.0)
    ledger.assign("w1", 0.0)
    ledger.release_worker("w1", "crash", 1.0, max_attempts=3, charge=(0, 1), backoff_seconds=60.0)
    assert ledger.state_of(1) is ShardState.PENDING
    result = ledger.complete(1, "w1", 1, 2.0)  # its commit was just slow to be reported
    assert result.accepted and result.previous_state is ShardState.PENDING
    assert 1 not in ledger.retry
    ledger.assign("w2", 100.0)
    ledger.fail_attempt(0, "w2", 2, "x", 102.0, max_attempts=2, backoff_seconds=0.0)
    assert ledger.state_of(0) is ShardState.FAILED
    result = ledger.complete(0, "anyone", 2, 103.0)
    assert result.accepted and result.previous_state is ShardState.FAILED
    assert ledger.failed_count() == 0
    assert ledger.counts().succeeded == 2 and ledger.is_finished()


@pytest.mark.parametrize(
    ("shard", "worker", "attempt", "why"),
    [
        (0, "w1", 2, "never issued"),
        (0, "w1", 0, "invalid attempt"),
        (0, "w2", 1, "belongs to worker"),
        (1, "w1", 1, "never issued"),  # not assigned yet
        (5, "w1", 1, "out of range"),
        (-1, "w1", 1, "out of range"),
    ],
)
def test_bad_completions_are_rejected_and_change_nothing(
    shard: int, worker: str, attempt: int, why: str
) -> None:
    ledger = Ledger.new(5)
    ledger.assign("w1", 0.0)
    before = ledger.to_dict()
    result = ledger.complete(shard, worker, attempt, 1.0)
    assert result.status is CompletionStatus.REJECTED
    assert why in result.reason
    assert ledger.to_dict() == before


def test_state_of_rejects_out_of_range() -> None:
    with pytest.raises(ValueError, match="out of range"):
        Ledger.new(3).state_of(3)


def test_assign_validates_arguments() -> None:
    ledger = Ledger.new(3)
    with pytest.raises(ValueError):
        ledger.assign("", 0.0)
    with pytest.raises(ValueError):
        ledger.assign("w", float("nan"))
    ledger.assign("w", 0.0)
    with pytest.raises(ValueError):
        ledger.fail_attempt(0, "w", 1, "x", 0.0, max_attempts=0, backoff_seconds=0.0)
    with pytest.raises(ValueError):
        ledger.fail_attempt(0, "w", 1, "x", 0.0, max_attempts=1, backoff_seconds=-1.0)
    assert ledger.in_flight_for("w") == [0]


# -- serialisation --------------------------------------------------------------------------------------


def sample_ledger() -> Ledger:
    t = 1760000000.25
    ledger = Ledger.new(10)
    plan_assignments(ledger, ["w-a", "w-b"], 3, t)  # w-a: 0, 2, 4; w-b: 1, 3, 5
    ledger.record_checkpoint(0, "w-a", 1, {"offset": 1234, "records": 99}, t + 3)
    ledger.record_checkpoint(4, "w-a", 1, {"offset": 50}, t + 3)
    ledger.complete(1, "w-b", 1, t + 4)
    ledger.complete(3, "w-b", 1, t + 4)
    ledger.release_worker("w-a", "OOMKilled", t + 5, max_attempts=2, charge=(0, 1), backoff_seconds=10.0)
    ledger.assign("w-c", t + 20)  # shard 0, attempt 2, resumed
    ledger.fail_attempt(0, "w-c", 2, "bad record at 1300", t + 21, max_attempts=2, backoff_seconds=0.0)
    ledger.assign("w-c", t + 21)  # shard 2, attempt 2
    ledger.record_checkpoint(2, "w-c", 2, {"offset": 7}, t + 22)
    return ledger


def test_to_dict_format() -> None:
    ledger = sample_ledger()
    assert ledger.to_dict() == {
        "v": 1,
        "total": 10,
        "next": 6,
        "succeeded": [1, 2, 3, 4],
        "running": {
            # Queued behind shard 0 when w-a died: released without a counted failure.
            "2": {"w": "w-c", "a": 2, "c": {"offset": 7}, "t": 1760000021.25, "u": 1760000022.25},
            "5": {"w": "w-b", "a": 1, "t": 1760000000.25, "u": 1760000000.25},
        },
        # Shard 4 only waited in w-a's queue: released uncharged, ready at once (no "nb").
        "retry": {"4": {"a": 1, "c": {"offset": 50}, "r": "OOMKilled"}},
        "failed": {"0": {"a": 2, "f": 2, "r": "bad record at 1300"}},
    }
    assert [ledger.state_of(s) for s in (0, 1, 2, 4, 6)] == [
        ShardState.FAILED,
        ShardState.SUCCEEDED,
        ShardState.ASSIGNED,
        ShardState.PENDING,
        ShardState.PENDING,
    ]
    assert round_trip(ledger) == ledger


def test_from_dict_does_not_alias_the_document() -> None:
    ledger = Ledger.new(2)
    ledger.assign("w", 0.0)
    ledger.record_checkpoint(0, "w", 1, {"offset": [1]}, 0.0)
    doc = ledger.to_dict()
    loaded = Ledger.from_dict(doc)
    doc["running"]["0"]["c"]["offset"].append(2)
    assert loaded.in_flight[0].checkpoint == {"offset": [1]}
    assert ledger.in_flight[0].checkpoint == {"offset": [1]}


def _corrupt(mutate: Any) -> dict[str, Any]:
    doc = sample_ledger().to_dict()
    mutate(doc)
    return doc


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("v"), "format version"),
        (lambda d: d.update(v=2), "format version"),
        (lambda d: d.pop("total"), "total is missing"),
        (lambda d: d.update(total="10"), "total must be an int"),
        (lambda d: d.update(next=11), "next_fresh"),
        (lambda d: d.update(next=5), "outside"),
        (lambda d: d.update(next=7), "in no state"),
        (lambda d: d.update(succeeded=[1, 3, 2, 5]), "succeeded"),
        (lambda d: d.update(succeeded=[1, 2]), "in no state"),
        (lambda d: d.update(succeeded=[1, 6]), "both succeeded"),
        (lambda d: d["retry"].update({"5": {"a": 1}}), "both"),
        (lambda d: d["retry"].update({"05": {"a": 1}}), "not a shard number"),
        (lambda d: d["retry"].update({"x": {"a": 1}}), "not a shard number"),
        (lambda d: d.update(retry=[]), "keyed by shard number"),
        (lambda d: d["retry"].update({"2": "oops"}), "must be an object"),
        (lambda d: d["retry"]["4"].update(a=0), "attempts must be >= 1"),
        (lambda d: d["retry"]["4"].update(f=5), "failures must be in"),
        (lambda d: d["retry"]["4"].update(nb=float("inf")), "finite"),
        (lambda d: d["retry"]["4"].update(c=[1]), "must be an object"),
        (lambda d: d["running"]["5"].pop("w"), "missing"),
        (lambda d: d["running"]["5"].update(w=""), "empty worker"),
        (lambda d: d["running"]["5"].update(a=True), "must be an int"),
        (lambda d: d["running"]["5"].update(f=1), "in-flight failures"),
        (lambda d: d["running"]["5"].update(t="now"), "must be a number"),
        (lambda d: d["failed"]["0"].update(r=7), "must be a string"),
    ],
)
def test_from_dict_rejects_corrupt_documents(mutate: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Ledger.from_dict(_corrupt(mutate))


def test_from_dict_rejects_non_objects() -> None:
    with pytest.raises(ValueError, match="expected an object"):
        Ledger.from_dict([])


def test_direct_construction_checks_the_invariant() -> None:
    with pytest.raises(ValueError, match="in no state"):
        Ledger(total=5, next_fresh=2)
    with pytest.raises(ValueError, match="never assigned"):
        Ledger(total=5, next_fresh=2, succeeded=RangeSet([(0, 3)]))
    with pytest.raises(ValueError, match="attempt must be >= 1"):
        Ledger(total=5, next_fresh=1, in_flight={0: InFlight("w", 0, 0, None, 0.0, 0.0)})


# -- assignment planning --------------------------------------------------------------------------------


def test_plan_is_round_robin() -> None:
    ledger = Ledger.new(100)
    plan = plan_assignments(ledger, ["a", "b", "c"], 2, 0.0)
    assert [(w, a.shard) for w, a in plan] == [("a", 0), ("b", 1), ("c", 2), ("a", 3), ("b", 4), ("c", 5)]
    assert plan_assignments(ledger, ["a", "b", "c"], 2, 1.0) == []  # already topped up


def test_plan_tops_up_levels_first() -> None:
    ledger = Ledger.new(100)
    ledger.assign("a", 0.0)
    plan = plan_assignments(ledger, ["a", "b", "c"], 2, 0.0)
    assert [w for w, _ in plan] == ["b", "c", "a", "b", "c"]
    assert {w: len(ledger.in_flight_for(w)) for w in "abc"} == {"a": 2, "b": 2, "c": 2}


def test_plan_spreads_a_short_supply() -> None:
    ledger = Ledger.new(4)
    plan = plan_assignments(ledger, ["a", "b", "c", "a"], 3, 0.0)  # duplicate "a" is ignored
    assert [w for w, _ in plan] == ["a", "b", "c", "a"]
    assert ledger.next_fresh == 4


def test_plan_leaves_unlisted_workers_alone() -> None:
    ledger = Ledger.new(10)
    ledger.assign("old", 0.0)
    plan_assignments(ledger, ["new"], 1, 0.0)
    assert ledger.in_flight_for("old") == [0]
    assert ledger.in_flight_for("new") == [1]
    assert plan_assignments(ledger, ["new"], 0, 0.0) == []
    with pytest.raises(ValueError):
        plan_assignments(ledger, ["new"], -1, 0.0)


# -- property-style: random histories against a reference model ----------------------------------------


@dataclass
class Model:
    """What the ledger must contain, tracked independently of its representation."""

    total: int
    next_fresh: int = 0
    running: dict[int, tuple[str, int]] = field(default_factory=dict)  # shard -> (worker, attempt)
    retry: dict[int, float] = field(default_factory=dict)  # shard -> not_before
    failed: set[int] = field(default_factory=set)
    succeeded: set[int] = field(default_factory=set)
    issued: dict[int, int] = field(default_factory=dict)  # shard -> highest attempt issued
    failures: dict[int, int] = field(default_factory=dict)
    checkpoint: dict[int, dict[str, Any]] = field(default_factory=dict)
    history: list[tuple[int, str, int]] = field(default_factory=list)  # every issued (shard, worker, attempt)
    verifying: set[int] = field(default_factory=set)  # a death used their last attempt: one more verifies

    def expect_assignment(self, assignment: Assignment | None, worker: str, now: float) -> None:
        ready = [s for s, not_before in self.retry.items() if not_before <= now]
        if ready:
            shard = min(ready)
            del self.retry[shard]
        elif self.next_fresh < self.total:
            shard = self.next_fresh
            self.next_fresh += 1
        else:
            assert assignment is None
            return
        assert assignment is not None
        assert assignment.shard == shard
        assert shard not in self.succeeded, "completed shards are never reassigned"
        assert assignment.attempt == self.issued.get(shard, 0) + 1, "attempt numbers increase by one"
        assert assignment.checkpoint == self.checkpoint.get(shard), "resume from the last checkpoint"
        self.issued[shard] = assignment.attempt
        self.running[shard] = (worker, assignment.attempt)
        self.history.append((shard, worker, assignment.attempt))

    def end_attempt(
        self, shard: int, counted: bool, max_attempts: int, not_before: float, *, died: bool = False
    ) -> OutcomeKind:
        del self.running[shard]
        if counted:
            self.failures[shard] = self.failures.get(shard, 0) + 1
            if self.failures[shard] >= max_attempts:
                if shard in self.verifying or not died:
                    self.verifying.discard(shard)
                    self.failed.add(shard)
                    return OutcomeKind.FAILED
                # The dead worker may have committed first: one more attempt checks storage.
                self.verifying.add(shard)
                self.retry[shard] = 0.0
                return OutcomeKind.RETRY
        self.retry[shard] = not_before
        return OutcomeKind.RETRY


def check_against_model(ledger: Ledger, model: Model, workers: list[str]) -> None:
    ledger.check_invariant()
    expected_state = {}
    for shard in range(model.total):
        if shard in model.running:
            expected_state[shard] = ShardState.ASSIGNED
        elif shard in model.succeeded:
            expected_state[shard] = ShardState.SUCCEEDED
        elif shard in model.failed:
            expected_state[shard] = ShardState.FAILED
        else:
            expected_state[shard] = ShardState.PENDING
    # Every shard is in exactly one state, and it is the one the model expects.
    assert {s: ledger.state_of(s) for s in range(model.total)} == expected_state
    counts = ledger.counts()
    assert counts.pending + counts.running + counts.succeeded + counts.failed == counts.total == model.total
    assert counts.running == len(model.running)
    assert counts.succeeded == len(model.succeeded)
    assert counts.failed == len(model.failed)
    assert ledger.next_fresh == model.next_fresh
    assert {s: (e.worker, e.attempt) for s, e in ledger.in_flight.items()} == model.running
    assert {s: r.not_before for s, r in ledger.retry.items()} == model.retry
    verifying = {s for s, e in ledger.in_flight.items() if e.verify} | {
        s for s, r in ledger.retry.items() if r.verify
    }
    assert verifying == model.verifying
    # No shard is in flight on two workers.
    held = [s for w in workers for s in ledger.in_flight_for(w)]
    assert sorted(held) == sorted(ledger.in_flight)
    for shard, running in ledger.in_flight.items():
        assert running.checkpoint == model.checkpoint.get(shard)
        assert running.failures == model.failures.get(shard, 0)
    for shard, waiting in ledger.retry.items():
        assert waiting.checkpoint == model.checkpoint.get(shard)
        assert waiting.attempts == model.issued[shard]
    assert ledger.is_finished() == (not model.running and not model.retry and model.next_fresh == model.total)
    # Serialisation round-trips exactly, through real JSON.
    doc = ledger.to_dict()
    text = json.dumps(doc, allow_nan=False)
    loaded = Ledger.from_dict(json.loads(text))
    assert loaded == ledger
    assert loaded.to_dict() == doc


def run_random_history(seed: int, total: int, n_workers: int, steps: int, max_attempts: int) -> None:
    rng = random.Random(seed)
    ledger = Ledger.new(total)
    model = Model(total)
    workers = [f"worker-{i}" for i in range(n_workers)]
    now = 1760000000.0
    for step in range(steps):
        now += rng.choice([0.0, rng.random(), rng.random() * 20])
        op = rng.random()
        if op < 0.25:
            worker = rng.choice(workers)
            model.expect_assignment(ledger.assign(worker, now), worker, now)
        elif op < 0.32:
            chosen = rng.sample(workers, rng.randint(1, n_workers))
            per_worker = rng.randint(0, 3)
            held = {w: sum(1 for r in model.running.values() if r[0] == w) for w in workers}
            before = dict(held)
            plan = plan_assignments(ledger, chosen, per_worker, now)
            for worker, assignment in plan:
                model.expect_assignment(assignment, worker, now)
                held[worker] += 1
            # Only listed workers get shards, never beyond per_worker; all are topped up unless supply ran out
            assert all(held[w] == before[w] for w in workers if w not in chosen)
            assert all(held[w] <= max(per_worker, before[w]) for w in chosen)
            if len(plan) < sum(max(0, per_worker - before[w]) for w in chosen):
                assert not any(nb <= now for nb in model.retry.values())
                assert model.next_fresh == model.total
        elif op < 0.47 and model.history:
            shard, worker, attempt = report(rng, model)
            checkpoint = {"offset": rng.randrange(10**9), "step": step}
            accepted = ledger.record_checkpoint(shard, worker, attempt, checkpoint, now)
            assert accepted == (model.running.get(shard) == (worker, attempt))
            if accepted:
                model.checkpoint[shard] = checkpoint
        elif op < 0.67 and model.history:
            shard, worker, attempt = report(rng, model)
            if rng.random() < 0.1:
                attempt = model.issued.get(shard, 0) + rng.randint(1, 3)  # never issued
            result = ledger.complete(shard, worker, attempt, now)
            current = model.running.get(shard)
            if shard in model.succeeded:
                assert result.status is CompletionStatus.DUPLICATE
            elif attempt > model.issued.get(shard, 0) or (
                current is not None and current[1] == attempt and current[0] != worker
            ):
                assert result.status is CompletionStatus.REJECTED
            else:
                assert result.status is CompletionStatus.ACCEPTED
                preempted = current if current is not None and current != (worker, attempt) else None
                assert (result.preempted_worker, result.preempted_attempt) == (preempted or (None, None))
                model.running.pop(shard, None)
                model.retry.pop(shard, None)
                model.failed.discard(shard)
                model.verifying.discard(shard)
                model.succeeded.add(shard)
        elif op < 0.8 and model.history:
            shard, worker, attempt = report(rng, model)
            backoff = rng.choice([0.0, 0.0, 5.0, 30.0])
            outcome = ledger.fail_attempt(
                shard, worker, attempt, f"err {step}", now, max_attempts=max_attempts, backoff_seconds=backoff
            )
            if model.running.get(shard) == (worker, attempt):
                kind = model.end_attempt(shard, True, max_attempts, now + backoff if backoff else 0.0)
                assert outcome.kind is kind
            else:
                assert outcome.ignored
        elif op < 0.93:
            worker = rng.choice(workers)
            # The shard it reported processing: one of its own, a stale one, or none (a disruption).
            own = sorted((s, a) for s, (w, a) in model.running.items() if w == worker)
            roll = rng.random()
            charge: tuple[int, int] | None = None
            if own and roll < 0.5:
                charge = rng.choice(own)
            elif model.history and roll < 0.8:
                charge = report(rng, model)[::2]
            backoff = rng.choice([0.0, 10.0])
            outcomes = ledger.release_worker(
                worker, "gone", now, max_attempts=max_attempts, charge=charge, backoff_seconds=backoff
            )
            expected = sorted(s for s, (w, _) in model.running.items() if w == worker)
            assert [o.shard for o in outcomes] == expected
            for outcome in outcomes:
                # Only the shard the worker said it was processing, in that attempt, is charged.
                charged = charge == (outcome.shard, model.running[outcome.shard][1])
                kind = model.end_attempt(
                    outcome.shard,
                    charged,
                    max_attempts,
                    now + backoff if backoff and charged else 0.0,
                    died=True,
                )
                assert outcome.kind is kind
        else:
            # A snapshot/restore in the middle of the history, as a restarted operator would do.
            ledger = round_trip(ledger)
        check_against_model(ledger, model, workers)


def report(rng: random.Random, model: Model) -> tuple[int, str, int]:
    """A worker report: mostly from a current attempt, sometimes a stale or misattributed one."""
    if model.running and rng.random() < 0.7:
        shard = rng.choice(sorted(model.running))
        worker, attempt = model.running[shard]
        return shard, worker, attempt
    shard, worker, attempt = rng.choice(model.history)
    if rng.random() < 0.1:
        worker = "impostor"
    return shard, worker, attempt


@pytest.mark.parametrize("seed", range(30))
def test_random_histories_keep_the_invariants(seed: int) -> None:
    rng = random.Random(1000 + seed)
    run_random_history(
        seed,
        total=rng.choice([1, 3, 20, 60]),
        n_workers=rng.choice([1, 2, 5, 12]),
        steps=500,
        max_attempts=rng.choice([1, 2, 4]),
    )


def test_random_history_runs_to_completion() -> None:
    """With no further failures every shard ends SUCCEEDED or FAILED, and the ledger is finished."""
    rng = random.Random(7)
    ledger = Ledger.new(300)
    workers = [f"w{i}" for i in range(8)]
    now = 0.0
    while not ledger.is_finished():
        now += 1.0
        plan_assignments(ledger, workers, 2, now)
        for shard, entry in sorted(ledger.in_flight.items()):
            roll = rng.random()
            if roll < 0.6:
                assert ledger.complete(shard, entry.worker, entry.attempt, now).accepted
            elif roll < 0.7:
                ledger.fail_attempt(
                    shard, entry.worker, entry.attempt, "x", now, max_attempts=3, backoff_seconds=2.0
                )
            elif roll < 0.75:
                ledger.release_worker(
                    entry.worker, "crash", now, max_attempts=3, charge=(shard, entry.attempt)
                )
        ledger.check_invariant()
        assert now < 10_000
    counts = ledger.counts()
    assert counts.succeeded + counts.failed == 300
    assert counts.pending == counts.running == 0


# -- size -------------------------------------------------------------------------------------------------


def build_large_ledger() -> Ledger:
    """100k shards, 1k workers mid-job: ~50k done in realistic order, a few hundred retries, some failures.

    Workers take shards in order and finish them at different speeds, so completions are roughly in order
    with out-of-order tails per worker; crashes send shards back with their checkpoints.
    """
    rng = random.Random(42)
    total, n_workers = 100_000, 1_000
    workers = [f"bigjob-7f9c2-worker-{i:04d}" for i in range(n_workers)]
    ledger = Ledger.new(total)
    now = 1760000000.0
    holding = {worker: a.shard for worker, a in plan_assignments(ledger, workers, 1, now)}
    succeeded = 0
    while succeeded < 50_000:
        now += rng.random() * 0.01
        worker = rng.choice(workers)
        shard = holding[worker]
        attempt = ledger.in_flight[shard].attempt
        roll = rng.random()
        if roll < 0.985:
            assert ledger.complete(shard, worker, attempt, now).accepted
            succeeded += 1
        elif roll < 0.9985:
            ledger.release_worker(worker, "OOMKilled", now, max_attempts=3, charge=(shard, attempt))
        else:
            ledger.fail_attempt(
                shard, worker, attempt, "ValueError: bad record", now, max_attempts=1, backoff_seconds=0.0
            )
        assignment = ledger.assign(worker, now)
        assert assignment is not None
        holding[worker] = assignment.shard
    # The current moment: a batch of workers just crashed, their shards wait out a backoff...
    for worker in rng.sample(workers, 300):
        shard = holding[worker]
        entry = ledger.in_flight[shard]
        ledger.record_checkpoint(
            shard, worker, entry.attempt, {"offset": rng.randrange(10**9), "records": 9}, now
        )
        ledger.release_worker(
            worker,
            "Error (exit code 1)",
            now,
            max_attempts=5,
            charge=(shard, entry.attempt),
            backoff_seconds=60.0,
        )
        assignment = ledger.assign(worker, now)  # ...while their replacements already took fresh shards.
        assert assignment is not None and assignment.attempt == 1
        holding[worker] = assignment.shard
    # ...and every worker has reported progress on its shard.
    for worker in workers:
        shard = holding[worker]
        now += rng.random() * 0.01
        checkpoint = {"offset": rng.randrange(10**10), "records": rng.randrange(10**6)}
        assert ledger.record_checkpoint(shard, worker, ledger.in_flight[shard].attempt, checkpoint, now)
    return ledger


def test_large_ledger_fits_comfortably_in_the_status() -> None:
    ledger = build_large_ledger()
    counts = ledger.counts()
    assert counts.total == 100_000
    assert counts.running == 1_000
    assert 50_000 <= counts.succeeded <= 50_001
    assert 250 <= len(ledger.retry) <= 1_000
    assert counts.failed > 0
    assert all(entry.checkpoint is not None for entry in ledger.in_flight.values())
    text = json.dumps(ledger.to_dict(), separators=(",", ":"))
    size = len(text.encode())
    print(
        f"\nledger status: {size} bytes ({size / 1024:.1f} KiB); {ledger.succeeded.interval_count} succeeded "
        f"intervals, {counts.running} running, {len(ledger.retry)} retry, {counts.failed} failed"
    )
    assert size < 512 * 1024
    assert Ledger.from_dict(json.loads(text)) == ledger
