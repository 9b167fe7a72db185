"""One reconcile pass of a DataJob, as a pure function of what was observed.

The operator (and local mode) observe pods/processes and worker reports, call :func:`reconcile`, persist the
returned state, and only then carry out the returned actions. Everything that must survive a restart is in
:class:`JobState`, which the operator keeps in the DataJob status.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from datajob_core.assignment import plan_assignments
from datajob_core.ledger import Ledger
from datajob_core.protocol import AssignmentMessage, ReportMessage, ShardTask
from datajob_core.retry import backoff_seconds

STATE_VERSION = 1


class Phase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUSPENDED = "Suspended"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


@dataclass(frozen=True)
class Policy:
    """The parts of the DataJob spec the decisions depend on (the adapter extracts them)."""

    workers: int
    suspend: bool = False
    prefetch: int = 2
    max_shard_attempts: int = 3
    max_worker_restarts: int = 10
    backoff_initial: float = 10.0
    backoff_max: float = 300.0
    max_failed_shards: int = 0
    heartbeat_timeout: float = 90.0


def policy_from_spec(spec: dict[str, Any]) -> Policy:
    """The policy of a spec as stored by the API server (camelCase, defaults applied)."""
    retry = spec.get("retryPolicy") or {}
    backoff = retry.get("backoff") or {}
    interval = float((spec.get("checkpoint") or {}).get("intervalSeconds", 30))
    return Policy(
        workers=int(spec.get("workers", 1)),
        suspend=bool(spec.get("suspend", False)),
        max_shard_attempts=int(retry.get("maxShardAttempts", 3)),
        max_worker_restarts=int(retry.get("maxWorkerRestarts", 10)),
        backoff_initial=float(backoff.get("initialSeconds", 10)),
        backoff_max=float(backoff.get("maxSeconds", 300)),
        max_failed_shards=int(retry.get("maxFailedShards", 0)),
        # Workers report at least every 5s; three missed checkpoints (min 30s) means hung.
        heartbeat_timeout=max(30.0, 3 * min(interval, 30.0)),
    )


@dataclass(frozen=True)
class ObservedWorker:
    """A worker pod (or local process) as seen now."""

    name: str
    slot: int
    phase: str  # Pending, Running, Succeeded, Failed
    deleting: bool = False
    started_at: float | None = None
    reason: str = ""  # why it ended: e.g. "Error (exit code 1)", "Evicted", "OOMKilled"
    unschedulable: str = ""  # the scheduler's message while it cannot be placed


@dataclass(frozen=True)
class ObservedReport:
    slot: int
    report: ReportMessage | None
    renewed_at: float | None  # the worker's last heartbeat


@dataclass
class Slot:
    """Worker slot state that must survive an operator restart."""

    pod: str | None = None
    incarnation: int = 0
    restarts: int = 0
    not_before: float = 0.0
    acked: int = 0
    created_at: float = 0.0
    draining: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "pod": self.pod,
            "inc": self.incarnation,
            "restarts": self.restarts,
            "notBefore": self.not_before,
            "acked": self.acked,
            "created": self.created_at,
            "draining": self.draining,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Slot:
        return cls(
            pod=data.get("pod"),
            incarnation=int(data.get("inc", 0)),
            restarts=int(data.get("restarts", 0)),
            not_before=float(data.get("notBefore", 0.0)),
            acked=int(data.get("acked", 0)),
            created_at=float(data.get("created", 0.0)),
            draining=bool(data.get("draining", False)),
        )


@dataclass
class JobState:
    ledger: Ledger
    slots: dict[int, Slot] = field(default_factory=dict)
    phase: Phase = Phase.PENDING
    restarts: int = 0
    message: str = ""
    records: int = 0  # records in committed shards, counted once per shard
    bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": STATE_VERSION,
            "shards": self.ledger.to_dict(),
            "slots": {str(k): s.to_dict() for k, s in sorted(self.slots.items())},
            "phase": self.phase.value,
            "restarts": self.restarts,
            "message": self.message,
            "records": self.records,
            "bytes": self.bytes,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobState:
        if data.get("v") != STATE_VERSION:
            raise ValueError(f"unsupported job state version {data.get('v')!r}")
        return cls(
            ledger=Ledger.from_dict(data["shards"]),
            slots={int(k): Slot.from_dict(v) for k, v in (data.get("slots") or {}).items()},
            phase=Phase(data.get("phase", Phase.PENDING.value)),
            restarts=int(data.get("restarts", 0)),
            message=str(data.get("message", "")),
            records=int(data.get("records", 0)),
            bytes=int(data.get("bytes", 0)),
        )


@dataclass(frozen=True)
class Event:
    type: str  # Normal or Warning
    reason: str
    message: str


@dataclass
class Decision:
    create: list[tuple[int, str]] = field(default_factory=list)  # (slot, pod name)
    delete: list[tuple[str, bool]] = field(default_factory=list)  # (pod name, graceful)
    assignments: dict[int, AssignmentMessage] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    unschedulable: str = ""
    finished: bool = False


def pod_name(job: str, slot: int, incarnation: int) -> str:
    suffix = f"-{slot}-{incarnation}"
    return job[: 63 - len(suffix)] + suffix


def reconcile(
    job: str,
    policy: Policy,
    *,
    state: JobState,
    workers: list[ObservedWorker],
    reports: dict[int, ObservedReport],
    plan: list[dict[str, Any]],
    now: float,
) -> Decision:
    """Advances ``state`` (mutated in place) and says what to do. Safe to repeat: every step is idempotent."""
    decision = Decision()
    by_name = {w.name: w for w in workers}
    ledger = state.ledger

    # 1. Fold what workers reported into the ledger, before judging anything else.
    for slot_number, slot in state.slots.items():
        observed = reports.get(slot_number)
        if slot.pod and observed and observed.report and observed.report.pod == slot.pod:
            _fold(state, slot, observed.report, policy=policy, now=now, decision=decision)

    # 2. Judge each slot's current pod; release the shards of the dead ones.
    for slot_number, slot in sorted(state.slots.items()):
        if slot.pod is None:
            continue
        worker = by_name.get(slot.pod)
        death = _death(worker, slot, reports.get(slot_number), policy, now)
        if death is None:
            if worker and worker.unschedulable:
                decision.unschedulable = worker.unschedulable
            continue
        graceful = slot.draining or (worker is not None and worker.phase == "Succeeded")
        ledger.release_worker(
            slot.pod, death, now, max_attempts=policy.max_shard_attempts, count_attempt=not graceful
        )
        if worker is not None:
            decision.delete.append((worker.name, False))
        if not graceful:
            slot.restarts += 1
            state.restarts += 1
            slot.not_before = now + backoff_seconds(slot.restarts, policy.backoff_initial, policy.backoff_max)
            decision.events.append(
                Event("Warning", "WorkerFailed", f"worker {slot.pod} (slot {slot_number}) failed: {death}")
            )
        slot.pod = None
        slot.draining = False
        slot.acked = 0

    # 3. Decide the phase.
    finished = _finish(state, policy, decision)
    crash_looping = [n for n, s in state.slots.items() if s.restarts > policy.max_worker_restarts]
    if not finished and crash_looping:
        state.phase = Phase.FAILED
        state.message = (
            f"worker slot {crash_looping[0]} restarted more than retryPolicy.maxWorkerRestarts "
            f"({policy.max_worker_restarts}) times"
        )
        decision.events.append(Event("Warning", "BackoffLimitExceeded", state.message))
        finished = True
    decision.finished = finished

    # 4. Scale: which slots should have a live worker.
    wanted = 0 if finished or policy.suspend else policy.workers
    for slot_number, slot in sorted(state.slots.items()):
        if slot.pod and slot_number >= wanted and not slot.draining:
            # Graceful: the worker checkpoints on SIGTERM; its shards are released once it is gone.
            slot.draining = True
            decision.delete.append((slot.pod, True))
    for slot_number in range(wanted):
        slot = state.slots.setdefault(slot_number, Slot())
        if slot.pod is None and now >= slot.not_before:
            slot.incarnation += 1
            slot.pod = pod_name(job, slot_number, slot.incarnation)
            slot.created_at = now
            slot.acked = 0
            decision.create.append((slot_number, slot.pod))
    # Slots above `wanted` are kept (without a pod) so their incarnation numbers, and with them pod names,
    # are never reused: a new pod must not be mistaken for an old one in its Lease's report.

    # 5. Hand out shards to live workers and describe every slot's assignment.
    live = [s.pod for _, s in sorted(state.slots.items()) if s.pod and not s.draining]
    if not finished and not policy.suspend:
        plan_assignments(ledger, [p for p in live if p], policy.prefetch, now)
    for slot_number, slot in state.slots.items():
        if slot.pod is None:
            continue
        tasks = [
            ShardTask(
                shard=shard,
                attempt=ledger.in_flight[shard].attempt,
                checkpoint=ledger.in_flight[shard].checkpoint,
                input=plan[shard] if shard < len(plan) else {},
            )
            for shard in ledger.in_flight_for(slot.pod)
        ]
        decision.assignments[slot_number] = AssignmentMessage(
            pod=slot.pod, shards=tasks, ack=slot.acked, stop=slot.draining or finished
        )

    if not finished:
        if policy.suspend:
            state.phase = Phase.SUSPENDED
        elif any(
            by_name.get(s.pod or "") and by_name[s.pod or ""].phase == "Running" for s in state.slots.values()
        ):
            state.phase = Phase.RUNNING
        elif state.phase is not Phase.RUNNING:
            state.phase = Phase.PENDING
    return decision


def _fold(
    state: JobState, slot: Slot, report: ReportMessage, *, policy: Policy, now: float, decision: Decision
) -> None:
    """Applies a worker's report; outcomes up to ``slot.acked`` were applied before and are skipped."""
    ledger = state.ledger
    worker = report.pod
    for outcome in report.done:
        if outcome.seq > slot.acked and ledger.complete(outcome.shard, worker, outcome.attempt, now).accepted:
            state.records += outcome.records
            state.bytes += outcome.bytes
    for outcome in report.failed:
        if outcome.seq > slot.acked:
            result = ledger.fail_attempt(
                outcome.shard,
                worker,
                outcome.attempt,
                outcome.reason or "worker reported failure",
                now,
                max_attempts=policy.max_shard_attempts,
                backoff_seconds=backoff_seconds(1, policy.backoff_initial, policy.backoff_max),
            )
            if result.failed:
                decision.events.append(
                    Event(
                        "Warning",
                        "ShardFailed",
                        f"shard {outcome.shard} failed after {result.failures} attempts: {outcome.reason}",
                    )
                )
    for shard, progress in report.progress.items():
        # Oversized or malformed checkpoints are refused by the ledger; the previous one stands.
        if progress.checkpoint is not None and shard.isdigit():
            ledger.record_checkpoint(int(shard), worker, progress.attempt, progress.checkpoint, now)
    slot.acked = max(slot.acked, report.seq)


def _death(
    worker: ObservedWorker | None, slot: Slot, report: ObservedReport | None, policy: Policy, now: float
) -> str | None:
    """Why the slot's current pod no longer counts as a live worker, or None if it does."""
    if worker is None:
        return "pod disappeared (deleted, evicted or its node is gone)"
    if worker.phase == "Failed":
        return worker.reason or "pod failed"
    if worker.phase == "Succeeded":
        return "worker exited"
    if worker.deleting:
        return None  # wait until it is gone, so its final report is folded
    if worker.phase == "Running":
        last = max(
            (report.renewed_at if report and report.renewed_at else 0.0),
            worker.started_at or 0.0,
            slot.created_at,
        )
        if now - last > policy.heartbeat_timeout:
            return f"no heartbeat for {now - last:.0f}s"
    return None


def _finish(state: JobState, policy: Policy, decision: Decision) -> bool:
    ledger = state.ledger
    if state.phase in (Phase.SUCCEEDED, Phase.FAILED):
        return True
    failed = ledger.failed_count()
    if failed > policy.max_failed_shards:
        state.phase = Phase.FAILED
        state.message = (
            f"{failed} shard(s) failed permanently, "
            f"more than retryPolicy.maxFailedShards ({policy.max_failed_shards})"
        )
        decision.events.append(Event("Warning", "ShardsFailed", state.message))
        return True
    if ledger.is_finished():
        state.phase = Phase.SUCCEEDED
        counts = ledger.counts()
        state.message = (
            f"all {counts.total} shards done ({counts.succeeded} succeeded, {counts.failed} failed)"
        )
        decision.events.append(Event("Normal", "Completed", state.message))
        return True
    return False
