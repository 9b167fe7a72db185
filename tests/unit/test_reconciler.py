"""One reconcile pass as a pure function: who is charged, when, and what the user is told."""

from __future__ import annotations

import dataclasses
from typing import Any

from datajob_core.cluster.queueing import Admission
from datajob_core.cluster.reconciler import (
    MAX_FAILED_RANGES,
    MAX_POD_NAME,
    Decision,
    JobState,
    ObservedReport,
    ObservedWorker,
    Phase,
    Policy,
    deadline_at,
    failed_ranges,
    pod_name,
    policy_from_spec,
    reconcile,
)
from datajob_core.protocol import (
    REPORT_ANNOTATION_EVEN,
    CurrentShard,
    LostInput,
    ReportMessage,
    ShardOutcome,
    ShardProgress,
)
from datajob_core.shards.failure_policy import Action, ExitCodeRule
from datajob_core.shards.ledger import FailedShard, Ledger, ShardState
from datajob_core.shards.stages import Layout

PLAN: list[dict[str, Any]] = [{"pieces": []} for _ in range(10)]


def start(workers: int = 2, **policy: Any) -> tuple[JobState, Policy, list[str]]:
    """A job whose workers were created and are running, each holding two shards."""
    state = JobState(Ledger.new(len(PLAN)))
    rules = Policy(workers=workers, **{"backoff_initial": 10.0, **policy})
    decision = reconcile("job", rules, state=state, workers=[], reports={}, plan=PLAN, now=0.0)
    return state, rules, [pod for _, pod in decision.create]


def running(pods: list[str], **changes: Any) -> list[ObservedWorker]:
    return [
        ObservedWorker(name=pod, slot=slot, phase="Running", started_at=0.0, **changes.get(pod, {}))
        for slot, pod in enumerate(pods)
    ]


def processing(pod: str, slot: int, shard: int | None, attempt: int = 1) -> dict[int, ObservedReport]:
    current = CurrentShard(shard=shard, attempt=attempt) if shard is not None else None
    return {slot: ObservedReport(slot, ReportMessage(pod=pod, seq=1, current=current), renewed_at=1.0)}


def dies(pods: list[str], victim: int, **how: Any) -> list[ObservedWorker]:
    workers = running(pods)
    workers[victim] = ObservedWorker(name=pods[victim], slot=victim, phase="Failed", started_at=0.0, **how)
    return workers


def step(
    state: JobState,
    policy: Policy,
    workers: list[ObservedWorker],
    reports: dict[int, ObservedReport] | None = None,
    now: float = 2.0,
    **kwargs: Any,
) -> Decision:
    return reconcile(
        "job", policy, state=state, workers=workers, reports=reports or {}, plan=PLAN, now=now, **kwargs
    )


def failures(state: JobState, shard: int) -> int:
    """Counted failures of a shard wherever it is now (back in flight on a replacement, or waiting)."""
    ledger = state.ledger
    entry = ledger.in_flight.get(shard) or ledger.retry.get(shard)
    assert entry is not None, f"shard {shard} is {ledger.state_of(shard)}"
    return entry.failures


def phase(state: JobState) -> Phase:
    """Read afresh: mypy would otherwise keep an earlier assert's narrowing across reconcile calls."""
    return state.phase


def reasons(decision: Decision) -> list[str]:
    return [event.reason for event in decision.events]


def test_a_crash_charges_only_the_shard_the_worker_reported_processing() -> None:
    state, policy, pods = start()
    assert state.ledger.in_flight_for(pods[0]) == [0, 2]
    # The worker was on its second shard (it may have been handed a retry that sorts first: order is no clue).
    decision = step(
        state, policy, dies(pods, 0, exit_code=1, reason="Error (exit code 1)"), processing(pods[0], 0, 2)
    )
    assert state.ledger.retry[2].failures == 1
    assert state.ledger.retry[0].failures == 0
    assert state.slots[0].restarts == 1 and state.restarts == 1
    failed = next(e for e in decision.events if e.reason == "WorkerFailed")
    assert "shard 2 charged" in failed.message and "Error (exit code 1)" in failed.message


def test_a_worker_that_died_before_starting_a_shard_charges_no_shard_but_counts_a_restart() -> None:
    state, policy, pods = start()
    decision = step(state, policy, dies(pods, 0, exit_code=1, reason="ModuleNotFoundError: nope"))
    assert all(entry.failures == 0 for entry in state.ledger.retry.values())
    assert state.slots[0].restarts == 1
    assert state.slots[0].not_before == 2.0 + 10.0  # crash-loop backoff
    assert "no shard charged" in next(e.message for e in decision.events if e.reason == "WorkerFailed")


def test_disruptions_charge_nothing_and_are_replaced_at_once() -> None:
    state, policy, pods = start()
    evicted = dies(pods, 0, exit_code=137, disruption="EvictionByEvictionAPI: evicted", reason="Evicted")
    decision = step(state, policy, evicted, processing(pods[0], 0, 0))
    assert all(entry.failures == 0 for entry in state.ledger.retry.values())
    assert state.slots[0].restarts == 0 and state.restarts == 1 and state.disruptions == 1
    assert "WorkerDisrupted" in reasons(decision) and "WorkerFailed" not in reasons(decision)
    assert [slot for slot, _ in decision.create] == [0]  # no backoff for a disruption
    # A pod that simply vanished (deleted, its node gone) is a disruption too.
    state, policy, pods = start()
    step(state, policy, running(pods)[1:], processing(pods[0], 0, 0))
    assert all(entry.failures == 0 for entry in state.ledger.retry.values())
    assert state.slots[0].restarts == 0


def test_a_pod_deleted_by_someone_else_is_replaced_while_it_terminates_and_its_final_checkpoint_is_kept() -> (
    None
):
    state, policy, pods = start()
    deleting = running(pods, **{pods[0]: {"deleting": True}})
    decision = step(state, policy, deleting, processing(pods[0], 0, 0))
    new = state.slots[0].pod
    assert new is not None and new != pods[0] and (0, new) in decision.create  # in the same pass
    assert decision.assignments[0].pod == new and not decision.assignments[0].stop
    assert state.slots[0].leaving == pods[0]
    assert state.ledger.in_flight_for(pods[0]) == [0, 2]  # kept until it is gone or says it stopped
    # It reports under the key the old pod does not use: neither report overwrites the other.
    assert state.slots[0].report_key == REPORT_ANNOTATION_EVEN and state.slots[0].leaving_key == ""
    # Its final report, under its own key, carries its SIGTERM checkpoint; then its shards go back, uncharged.
    checkpoint = {"piece": 0, "offset": 99, "records": 7}
    final = ReportMessage(
        pod=pods[0], seq=2, progress={"0": ShardProgress(attempt=1, checkpoint=checkpoint)}, terminated=True
    )
    workers = [*deleting, ObservedWorker(name=new, slot=0, phase="Pending")]
    reports = {0: ObservedReport(0, None, renewed_at=3.0, leaving=final)}
    step(state, policy, workers, reports, now=3.0)
    assert state.ledger.in_flight_for(pods[0]) == [] and state.slots[0].leaving == ""
    assert state.ledger.retry[0].checkpoint == checkpoint and state.ledger.retry[0].failures == 0
    assert state.slots[0].restarts == 0 and state.disruptions == 1


def test_a_replaced_pod_that_is_gone_before_saying_it_stopped_releases_its_shards_uncharged() -> None:
    state, policy, pods = start()
    step(state, policy, running(pods, **{pods[0]: {"deleting": True}}), processing(pods[0], 0, 0))
    new = state.slots[0].pod
    assert new is not None
    step(state, policy, [ObservedWorker(name=new, slot=0, phase="Pending"), running(pods)[1]], now=3.0)
    assert state.slots[0].leaving == "" and set(state.ledger.retry) == {0, 2}
    assert all(entry.failures == 0 for entry in state.ledger.retry.values())


def test_a_second_replacement_beside_a_pod_still_terminating_never_shares_its_report_key() -> None:
    state, policy, pods = start()
    step(state, policy, running(pods, **{pods[0]: {"deleting": True}}), processing(pods[0], 0, 0))
    second = state.slots[0].pod
    assert second is not None
    # The replacement dies at once while the first pod still terminates: a third pod is made.
    crashed = ObservedWorker(name=second, slot=0, phase="Failed", started_at=0.0, reason="Error")
    step(state, policy, [*running(pods, **{pods[0]: {"deleting": True}}), crashed], now=3.0)
    step(state, policy, [*running(pods, **{pods[0]: {"deleting": True}})], now=60.0)
    third = state.slots[0].pod
    assert third not in (None, second) and state.slots[0].leaving == pods[0]
    assert state.slots[0].report_key == REPORT_ANNOTATION_EVEN  # the old pod reports under the default


def test_a_pod_that_never_finishes_terminating_gives_its_shards_back_after_the_longest_grace_period() -> None:
    state, policy, pods = start()
    stuck = running(pods, **{pods[0]: {"deleting": True}})  # its node is lost: it stays Running, deleted
    step(state, policy, stuck, processing(pods[0], 0, 0))
    step(state, policy, stuck, now=200.0)
    assert state.ledger.in_flight_for(pods[0]) == [0, 2]
    step(state, policy, stuck, now=2.0 + 300 + policy.heartbeat_timeout + 1)
    assert state.ledger.in_flight_for(pods[0]) == [] and state.slots[0].leaving == ""
    assert all(entry.failures == 0 for entry in state.ledger.retry.values())


def test_a_replacement_refused_while_the_old_pod_terminates_waits_without_a_warning() -> None:
    state, policy, pods = start()
    step(state, policy, running(pods, **{pods[0]: {"deleting": True}}), processing(pods[0], 0, 0))
    new = state.slots[0].pod
    assert new is not None
    refused = {new: ("PodCreateRejected", "exceeded quota: pods=2")}
    decision = step(
        state, policy, running(pods, **{pods[0]: {"deleting": True}}), now=3.0, create_failures=refused
    )
    assert "WorkersBlocked" not in reasons(decision) and decision.blocked is None
    assert state.slots[0].blocked_count == 0 and state.slots[0].not_before <= 4.0


def test_under_kueue_a_deleted_pod_is_replaced_only_once_it_is_gone() -> None:
    state, policy, pods = start()
    admitted = Admission(admitted=True, workers=2)
    decision = step(state, policy, running(pods, **{pods[0]: {"deleting": True}}), queue=admitted)
    assert decision.assignments[0].stop and decision.create == [] and state.slots[0].pod == pods[0]


def test_an_exit_0_nobody_asked_for_charges_the_shard_and_counts_a_restart() -> None:
    state, policy, pods = start()
    exited = running(pods)
    exited[0] = ObservedWorker(name=pods[0], slot=0, phase="Succeeded", started_at=0.0)
    decision = step(state, policy, exited, processing(pods[0], 0, 0))
    assert state.ledger.retry[0].failures == 1  # sys.exit(0)/os._exit(0) in user code, not a stop
    assert state.slots[0].restarts == 1 and state.disruptions == 0
    failed = next(e.message for e in decision.events if e.reason == "WorkerFailed")
    assert "exited with code 0 without being asked to stop" in failed and "shard 0 charged" in failed


def test_an_exit_0_after_a_sigterm_nobody_in_the_job_sent_charges_nothing_but_counts_a_restart() -> None:
    state, policy, pods = start()
    exited = running(pods)
    exited[0] = ObservedWorker(name=pods[0], slot=0, phase="Succeeded", started_at=0.0)
    current = CurrentShard(shard=0, attempt=1)
    terminated = ReportMessage(pod=pods[0], seq=1, current=current, terminated=True)
    step(state, policy, exited, {0: ObservedReport(0, terminated, renewed_at=1.0)})
    assert all(entry.failures == 0 for entry in state.ledger.retry.values())  # it checkpointed
    # Counted: user code that keeps sending its own process SIGTERM ends in BackoffLimitExceeded.
    assert state.slots[0].restarts == 1


def test_a_worker_on_a_draining_node_is_moved_gracefully_and_charged_nothing() -> None:
    state, policy, pods = start()
    why = "node n1 is cordoned (kubectl cordon/drain) (taint node.kubernetes.io/unschedulable)"
    decision = step(state, policy, running(pods, **{pods[0]: {"evacuate": why}}), processing(pods[0], 0, 0))
    assert decision.delete == [(pods[0], True)]  # graceful: it checkpoints on SIGTERM
    assert decision.assignments[0].stop and not decision.assignments[1].stop
    assert state.ledger.in_flight_for(pods[0]) == [0, 2]  # kept until its final report is folded
    moved = next(e for e in decision.events if e.reason == "WorkerDisrupted")
    assert "cordoned" in moved.message and pods[0] in moved.message
    # The next pass does not ask again while it stops.
    again = step(state, policy, running(pods, **{pods[0]: {"evacuate": why, "deleting": True}}), now=2.5)
    assert again.delete == [] and "WorkerDisrupted" not in reasons(again)
    # Gone: its shards go back uncharged, no restart budget used, and a replacement is created at once.
    gone = step(state, policy, running(pods)[1:], processing(pods[0], 0, 0), now=3.0)
    assert all(entry.failures == 0 for entry in state.ledger.retry.values())
    assert state.slots[0].restarts == 0 and state.disruptions == 1
    assert [slot for slot, _ in gone.create] == [0]


def test_a_worker_marked_as_a_disruption_target_is_moved_before_it_is_killed() -> None:
    state, policy, pods = start()
    target = {"evacuate": "PreemptionByScheduler: preempted"}
    decision = step(state, policy, running(pods, **{pods[1]: target}))
    assert decision.delete == [(pods[1], True)]
    assert state.slots[1].restarts == 0


def test_exit_code_rules_ignore_fail_the_shard_or_fail_the_job() -> None:
    def rule(action: Action, *codes: int) -> tuple[ExitCodeRule, ...]:
        return (ExitCodeRule(action, "In", frozenset(codes)),)

    state, policy, pods = start(failure_rules=rule(Action.IGNORE, 143))
    step(
        state, policy, dies(pods, 0, exit_code=143, reason="Error (exit code 143)"), processing(pods[0], 0, 0)
    )
    assert failures(state, 0) == 0 and state.slots[0].restarts == 0

    state, policy, pods = start(failure_rules=rule(Action.FAIL_SHARD, 3), max_failed_shards=5)
    decision = step(
        state, policy, dies(pods, 0, exit_code=3, reason="Error (exit code 3)"), processing(pods[0], 0, 2)
    )
    # The dead worker may have committed shard 2 before it exited: one attempt verifies before it fails.
    verify = {s: e.verify for s, e in state.ledger.retry.items()}
    verify.update({s: e.verify for s, e in state.ledger.in_flight.items()})
    assert verify[2] == "Error (exit code 3) (podFailurePolicy: FailShard)"
    assert failures(state, 0) == 0
    assert "ShardFailed" not in reasons(decision)

    state, policy, pods = start(failure_rules=rule(Action.FAIL_JOB, 42))
    decision = step(
        state, policy, dies(pods, 1, exit_code=42, reason="Error (exit code 42)"), processing(pods[1], 1, 1)
    )
    assert state.phase is Phase.FAILED and state.reason == "PodFailurePolicy"
    assert decision.finished


def test_a_refused_pod_blocks_its_slot_with_the_api_message_and_charges_nothing() -> None:
    state, policy, pods = start()
    message = 'pods "job-1-1" is forbidden: exceeded quota: workers, requested: cpu=1, limited: cpu=1'
    decision = step(
        state, policy, running(pods)[:1], create_failures={pods[1]: ("PodCreateRejected", message)}
    )
    assert decision.blocked == ("PodCreateRejected", message)
    assert "WorkersBlocked" in reasons(decision)
    assert all(entry.failures == 0 for entry in state.ledger.retry.values())
    assert state.slots[1].restarts == 0 and state.restarts == 0
    assert not decision.create  # backing off
    # The job goes on with the worker it has; the released shards wait for whoever is free first.
    assert state.ledger.in_flight_for(pods[0]) == [0, 2]
    assert state.ledger.state_of(1) is ShardState.PENDING and failures(state, 1) == 0
    # The same refusal again is not announced again, and the backoff grows.
    decision = step(state, policy, running(pods)[:1], now=12.0)
    ((_slot, pod),) = decision.create
    decision = step(
        state, policy, running(pods)[:1], now=12.5, create_failures={pod: ("PodCreateRejected", message)}
    )
    assert "WorkersBlocked" not in reasons(decision)
    assert state.slots[1].not_before == 12.5 + 20.0
    # Once a pod exists the condition clears.
    decision = step(state, policy, running(pods)[:1], now=40.0)
    assert decision.create == [(1, "job-1-3")]
    decision = step(state, policy, running([pods[0], "job-1-3"]), now=41.0)
    assert decision.blocked is None


def test_a_worker_that_cannot_start_is_reported_then_fails_the_job_after_the_startup_deadline() -> None:
    state, policy, pods = start(workers=1, startup_timeout=60.0)
    stuck = [
        ObservedWorker(
            name=pods[0],
            slot=0,
            phase="Pending",
            waiting='ImagePullBackOff: Back-off pulling image "nope:1"',
            waiting_reason="ImagePullBackOff",
        )
    ]
    decision = step(state, policy, stuck, now=5.0)
    assert decision.blocked is not None and decision.blocked[0] == "ImagePullBackOff"
    assert phase(state) is Phase.PENDING  # waiting, not failed yet
    decision = step(state, policy, stuck, now=61.0)
    assert phase(state) is Phase.FAILED and state.reason == "ImagePullBackOff"
    assert "startupTimeoutSeconds" in state.message and "nope:1" in state.message


def test_a_stuck_worker_is_replaced_when_others_run() -> None:
    state, policy, pods = start(workers=2, startup_timeout=60.0)
    workers = running(pods)
    workers[1] = ObservedWorker(
        name=pods[1], slot=1, phase="Pending", waiting="ErrImagePull: x", waiting_reason="ErrImagePull"
    )
    decision = step(state, policy, workers, now=61.0)
    assert state.phase is not Phase.FAILED
    assert (pods[1], False) in decision.delete
    assert state.slots[1].restarts == 1


def test_crash_loop_fails_the_job_with_backoff_limit_exceeded_and_the_last_error() -> None:
    state, policy, _pods = start(workers=1, max_worker_restarts=1, backoff_initial=1.0)
    now = 2.0
    for _ in range(2):
        pod = state.slots[0].pod
        assert pod is not None
        step(
            state,
            policy,
            [
                ObservedWorker(
                    pod,
                    0,
                    "Failed",
                    exit_code=1,
                    reason="Error (exit code 1): ModuleNotFoundError: No module named 'nope'",
                )
            ],
            now=now,
        )
        now += 100.0
        step(state, policy, [], now=now)
    assert state.phase is Phase.FAILED and state.reason == "BackoffLimitExceeded"
    assert "No module named 'nope'" in state.message
    assert all(entry.failures == 0 for entry in state.ledger.retry.values()), "crash-on-start charged a shard"


def test_events_tell_the_story_of_scaling_and_suspension() -> None:
    state, _policy, pods = start()
    decision = step(state, Policy(workers=3), running(pods))
    assert "Scaled" in reasons(decision)
    decision = step(state, Policy(workers=3, suspend=True), running(pods), now=3.0)
    assert "Suspended" in reasons(decision)
    decision = step(state, Policy(workers=3), [], now=4.0)
    assert "Resumed" in reasons(decision)


def test_pod_names_are_bounded_and_distinct_for_long_job_names() -> None:
    a, b = "x" * 60 + "-alpha", "x" * 60 + "-bravo"
    names = {pod_name(job, slot, inc) for job in (a, b) for slot in (0, 9999) for inc in (1, 123456)}
    assert len(names) == 8
    assert all(len(name) <= MAX_POD_NAME for name in names)
    assert pod_name("short", 3, 2) == "short-3-2"


def test_no_progress_past_the_deadline_stalls_the_job_once_and_progress_clears_it() -> None:
    state, policy, pods = start(progress_deadline=60.0)
    assert state.progressed_at == 0.0  # the clock starts with the job
    step(state, policy, running(pods), now=1.0)
    assert step(state, policy, running(pods), now=60.0).stall is None
    stalled = step(state, policy, running(pods), now=62.0)
    assert stalled.stall is not None and stalled.stall.reason == "NoProgress"
    assert reasons(stalled) == ["Stalled"]
    again = step(state, policy, running(pods), now=70.0)
    assert again.stall is not None and "Stalled" not in reasons(again)  # told once per stall
    assert phase(state) is Phase.RUNNING  # Report: the job keeps going
    # A checkpoint that advances is progress.
    report = ReportMessage.model_validate(
        {"pod": pods[0], "seq": 2, "progress": {"0": {"attempt": 1, "checkpoint": {"records": 5}}}}
    )
    resumed = step(state, policy, running(pods), {0: ObservedReport(0, report, 71.0)}, now=71.0)
    assert resumed.stall is None and "Progressing" in reasons(resumed)


def test_a_stall_with_action_fail_fails_the_job_naming_the_cause() -> None:
    state, policy, _ = start(progress_deadline=60.0, fail_on_stall=True)
    step(state, policy, [], now=1.0)  # no worker ever ran
    decision = step(state, policy, [], now=100.0)
    assert phase(state) is Phase.FAILED and state.reason == "ProgressDeadlineExceeded"
    assert decision.stall is not None and decision.stall.reason == "WorkersPending"
    assert decision.finished


def test_the_progress_clock_does_not_run_while_suspended() -> None:
    state, policy, pods = start(progress_deadline=60.0)
    step(state, policy, running(pods), now=1.0)
    suspended = Policy(**{**policy.__dict__, "suspend": True})
    step(state, suspended, running(pods), now=10.0)
    assert step(state, suspended, [], now=500.0).stall is None
    assert step(state, policy, [], now=501.0).stall is None  # resumed: the clock restarts
    assert step(state, policy, running(pods), now=555.0).stall is None


def test_a_queued_job_starts_no_worker_until_kueue_admits_it_and_then_only_as_many_as_admitted() -> None:
    state = JobState(Ledger.new(len(PLAN)))
    policy = Policy(workers=3)
    waiting = Admission(False, 0, reason="Pending", message="insufficient quota")
    decision = step(state, policy, [], queue=waiting, now=1.0)
    assert decision.create == [] and reasons(decision) == ["Queued"]
    assert phase(state) is Phase.PENDING
    assert state.ledger.in_flight == {}
    partial = Admission(True, 2, reason="Admitted", message="admitted with 2 worker(s)")
    decision = step(state, policy, [], queue=partial, now=2.0)
    assert [slot for slot, _ in decision.create] == [0, 1] and "Admitted" in reasons(decision)


def test_an_evicted_job_stops_its_workers_gracefully_charges_nothing_and_keeps_its_ledger() -> None:
    state, policy, pods = start()
    admitted = Admission(True, 2, reason="Admitted", message="admitted")
    step(state, policy, running(pods), queue=admitted, now=1.0)
    held = {s: e.checkpoint for s, e in state.ledger.in_flight.items()}
    evicted = Admission(False, 0, evicted=True, reason="Evicted", message="evicted by Kueue (Preempted)")
    decision = step(state, policy, running(pods), queue=evicted, now=2.0)
    assert sorted(decision.delete) == sorted((p, True) for p in pods)  # graceful: they checkpoint
    assert all(decision.assignments[s].stop for s in (0, 1))
    assert "Evicted" in reasons(decision)
    gone = step(state, policy, [], queue=evicted, now=3.0)
    assert gone.create == [] and phase(state) is Phase.PENDING
    assert set(held) <= set(state.ledger.retry)  # back to pending, with their checkpoints
    assert all(entry.failures == 0 for entry in state.ledger.retry.values())
    assert state.restarts == 0 and all(slot.restarts == 0 for slot in state.slots.values())
    readmitted = step(state, policy, [], queue=admitted, now=4.0)
    assert [slot for slot, _ in readmitted.create] == [0, 1] and "Admitted" in reasons(readmitted)


def test_a_retry_request_requeues_only_failed_shards_and_reopens_a_failed_job() -> None:
    state, policy, pods = start(max_shard_attempts=1)
    failed = ShardOutcome(shard=0, attempt=1, seq=1, reason="Error")
    step(
        state,
        policy,
        running(pods),
        {0: ObservedReport(0, ReportMessage(pod=pods[0], seq=1, failed=[failed]), 1.0)},
    )
    assert 0 in state.ledger.failed
    step(state, policy, running(pods)[1:], now=3.0)
    assert phase(state) is Phase.FAILED and state.reason == "ShardsFailed"
    retry = Policy(**{**policy.__dict__, "retry_request": "1"})
    decision = step(state, retry, running(pods)[1:], now=4.0)
    assert phase(state) is not Phase.FAILED and "Retrying" in reasons(decision)
    assert not state.ledger.failed and 0 in (set(state.ledger.retry) | set(state.ledger.in_flight))
    assert state.slots[0].restarts == 0
    # The same request is acted on once.
    again = step(state, retry, running(pods)[1:], now=5.0)
    assert "Retrying" not in reasons(again)


def test_a_retry_is_refused_when_the_job_commit_already_ran_without_a_failed_map_shard() -> None:
    state = JobState(Layout.new(4).ledger())  # 4 map shards, then the job commit (shard 4)
    for shard in range(4):
        state.ledger.next_fresh = max(state.ledger.next_fresh, shard + 1)
    state.ledger.succeeded.add_range(0, 3)
    state.ledger.failed[3] = FailedShard(attempts=3, failures=3, reason="bad record")
    state.ledger.next_fresh = 5
    state.ledger.failed[4] = FailedShard(attempts=3, failures=3, reason="commit failed")
    state.ledger.check_invariant()
    state.phase, state.reason = Phase.FAILED, "JobCommitFailed"
    decision = step(state, Policy(workers=1, retry_request="1", max_failed_shards=1), [], now=1.0)
    assert "RetryRefused" in reasons(decision)
    assert phase(state) is Phase.FAILED and 3 in state.ledger.failed


def test_the_job_commit_is_told_which_map_shards_failed_as_ranges_or_nothing_when_too_scattered() -> None:
    ledger = Layout.new(10).ledger()
    ledger.next_fresh = 10
    for shard in (1, 2, 3, 7):
        ledger.failed[shard] = FailedShard(attempts=1, failures=1, reason="bad")
    ledger.succeeded.add_range(0, 10)
    for shard in (1, 2, 3, 7):
        ledger.succeeded.discard(shard)
    assert failed_ranges(ledger, 10) == [1, 4, 7, 8]
    scattered = Layout.new(2 * MAX_FAILED_RANGES + 2).ledger()
    scattered.next_fresh = 2 * MAX_FAILED_RANGES + 2
    for shard in range(0, 2 * MAX_FAILED_RANGES + 2, 2):
        scattered.failed[shard] = FailedShard(attempts=1, failures=1, reason="bad")
    assert failed_ranges(scattered, 2 * MAX_FAILED_RANGES + 2) is None


# -- spec.activeDeadlineSeconds: active time only (not suspended, not queued) -----------------------------


def test_a_job_active_longer_than_its_deadline_fails_with_deadline_exceeded() -> None:
    state, policy, pods = start(active_deadline=100.0, progress_deadline=0.0)
    step(state, policy, running(pods), now=50.0)
    assert phase(state) is Phase.RUNNING
    assert deadline_at(state, policy) == 100.0
    decision = step(state, policy, running(pods), now=101.0)
    assert phase(state) is Phase.FAILED and state.reason == "DeadlineExceeded"
    assert "spec.activeDeadlineSeconds (100" in state.message
    assert decision.finished and {pod for pod, _ in decision.delete} == set(pods)


def test_time_suspended_is_not_counted_against_the_deadline() -> None:
    state, policy, pods = start(active_deadline=100.0, progress_deadline=0.0)
    step(state, policy, running(pods), now=60.0)
    suspended = dataclasses.replace(policy, suspend=True)
    step(state, suspended, running(pods), now=61.0)
    step(state, suspended, [], now=5000.0)
    assert deadline_at(state, suspended) is None
    step(state, policy, [], now=5001.0)  # resumed: 61 s used, 39 s left
    assert deadline_at(state, policy) == 5001.0 + 39.0
    step(state, policy, running(pods), now=5030.0)
    assert phase(state) is not Phase.FAILED
    step(state, policy, running(pods), now=5041.0)
    assert phase(state) is Phase.FAILED and state.reason == "DeadlineExceeded"


def test_time_queued_by_kueue_is_not_counted_and_the_clock_survives_a_restart() -> None:
    state, policy, pods = start(active_deadline=100.0, progress_deadline=0.0)
    queued = Admission(admitted=False, workers=0, reason="Pending", message="waiting")
    admitted = Admission(admitted=True, workers=2, reason="Admitted", message="ok")
    step(state, policy, [], now=10.0, queue=queued)
    step(state, policy, [], now=900.0, queue=queued)
    assert state.active == 10.0 and deadline_at(state, policy) is None  # before it was queued: 10 s
    step(state, policy, running(pods), now=901.0, queue=admitted)
    restored = JobState.from_dict(state.to_dict())  # an operator restart reads the status
    step(restored, policy, running(pods), now=990.0, queue=admitted)
    assert phase(restored) is not Phase.FAILED  # 99 s active
    step(restored, policy, running(pods), now=992.0, queue=admitted)
    assert phase(restored) is Phase.FAILED and restored.reason == "DeadlineExceeded"


def test_a_pass_that_changes_nothing_leaves_the_deadline_clock_unchanged() -> None:
    state, policy, pods = start(active_deadline=1000.0, progress_deadline=0.0)
    step(state, policy, running(pods), now=5.0)
    before = state.to_dict()
    step(state, policy, running(pods), now=6.0)
    after = state.to_dict()
    assert (before["active"], before["activeSince"]) == (after["active"], after["activeSince"])


def test_the_spec_field_reaches_the_policy() -> None:
    assert policy_from_spec({"activeDeadlineSeconds": 3600}).active_deadline == 3600.0
    assert policy_from_spec({}).active_deadline == 0.0


def test_a_retried_job_goes_on_from_the_active_time_it_had_used_not_from_its_failure() -> None:
    state, policy, pods = start(active_deadline=100.0, progress_deadline=0.0)
    step(state, policy, running(pods), now=101.0)
    assert state.reason == "DeadlineExceeded"
    step(state, policy, [], now=102.0)
    raised = dataclasses.replace(policy, active_deadline=1000.0, retry_request="1")
    step(state, raised, [], now=5000.0)  # a day later: 101 s used, not 5,000
    assert phase(state) is not Phase.FAILED, state.message
    assert deadline_at(state, raised) == 5000.0 + 1000.0 - 101.0


def test_the_deadline_does_not_fail_a_job_whose_commit_is_publishing() -> None:
    layout = Layout.new(len(PLAN))
    state = JobState(layout.ledger())
    policy = Policy(workers=1, active_deadline=100.0, progress_deadline=0.0)
    plan = [*PLAN, {"pieces": []}]
    created = reconcile("job", policy, state=state, workers=[], reports={}, plan=plan, now=0.0).create
    pod = created[0][1]
    for shard in range(layout.map_shards):
        state.ledger.in_flight.pop(shard, None)
    state.ledger.next_fresh = layout.map_shards
    for shard in range(layout.map_shards):
        state.ledger.succeeded.add(shard)
    worker = [ObservedWorker(name=pod, slot=0, phase="Running", started_at=0.0)]
    reconcile("job", policy, state=state, workers=worker, reports={}, plan=plan, now=50.0)
    assert layout.commit in state.ledger.in_flight  # the job commit is publishing
    alive = {0: ObservedReport(0, ReportMessage(pod=pod, seq=0), renewed_at=149.0)}
    reconcile("job", policy, state=state, workers=worker, reports=alive, plan=plan, now=150.0)
    assert layout.commit in state.ledger.in_flight
    assert phase(state) is not Phase.FAILED, state.message


def test_reducers_that_find_the_same_map_output_lost_are_not_charged_while_it_runs_again() -> None:
    layout = Layout.new(2, partitions=2)  # map 0-1, reduce 2-3, commit 4
    state = JobState(layout.ledger())
    policy = Policy(workers=2, max_shard_attempts=1)
    pods = [
        pod
        for _, pod in reconcile(
            "job", policy, state=state, workers=[], reports={}, plan=PLAN[:2], now=0.0
        ).create
    ]
    plan = PLAN[:2]
    reconcile("job", policy, state=state, workers=running(pods), reports={}, plan=plan, now=1.0)
    done = {
        slot: ObservedReport(
            slot,
            ReportMessage(pod=pods[slot], seq=1, done=[ShardOutcome(shard=slot, attempt=1, seq=1)]),
            renewed_at=2.0,
        )
        for slot in (0, 1)
    }
    reconcile("job", policy, state=state, workers=running(pods), reports=done, plan=plan, now=2.0)
    held = {slot: state.ledger.in_flight_for(pods[slot]) for slot in (0, 1)}
    assert sorted(s for shards in held.values() for s in shards) == [2, 3]  # one reducer each
    lost = {
        slot: ObservedReport(
            slot,
            ReportMessage(
                pod=pods[slot],
                seq=2,
                failed=[
                    ShardOutcome(
                        shard=held[slot][0],
                        attempt=1,
                        seq=2,
                        reason="map output gone",
                        lost=LostInput(shard=0, attempt=1),
                    )
                ],
            ),
            renewed_at=3.0,
        )
        for slot in (0, 1)
    }
    reconcile("job", policy, state=state, workers=running(pods), reports=lost, plan=plan, now=3.0)
    # The first report sent map shard 0 back; the second found it pending: neither reducer is charged.
    assert state.ledger.state_of(0) is not ShardState.SUCCEEDED
    assert not state.ledger.failed and all(entry.failures == 0 for entry in state.ledger.retry.values())
