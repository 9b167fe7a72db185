"""One reconcile pass of a DataJob, as a pure function of what was observed.

The operator (and local mode) observe pods/processes and worker reports, call :func:`reconcile`, persist the
returned state, and only then carry out the returned actions. Everything that must survive a restart is in
:class:`JobState`, which the operator keeps in the DataJob status.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from datajob_core.api.pod_policy import MAX_GRACE_SECONDS
from datajob_core.cluster import hardware
from datajob_core.cluster.hardware import Profile
from datajob_core.cluster.queueing import Admission
from datajob_core.data import plan_store
from datajob_core.data.planning import byte_quantity
from datajob_core.protocol import (
    REPORT_ANNOTATION,
    AssignmentMessage,
    LostInput,
    ReportMessage,
    ShardTask,
    other_report_annotation,
)
from datajob_core.shards import splitting
from datajob_core.shards.assignment import plan_assignments
from datajob_core.shards.failure_policy import (
    Action,
    ExitCodeRule,
    Verdict,
    disruption,
    judge_exit,
    rules_from_spec,
)
from datajob_core.shards.ledger import Ledger, ShardState
from datajob_core.shards.progress import Picture, Stall, input_bytes, stall_cause
from datajob_core.shards.rangeset import RangeSet
from datajob_core.shards.retry import backoff_seconds
from datajob_core.shards.speculation import SAMPLES, Running, SpeculationPolicy, stragglers
from datajob_core.shards.splitting import SplittingPolicy
from datajob_core.shards.stages import Layout

STATE_VERSION = 1
# A user's request to re-run the permanently failed shards (kubectl datajob retry --failed): any new value.
RETRY_ANNOTATION = "datajob.dev/retry-failed"


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
    startup_timeout: float = 300.0
    failure_rules: tuple[ExitCodeRule, ...] = ()
    progress_deadline: float = 0.0  # seconds without progress before the job is Stalled; 0: off
    fail_on_stall: bool = False
    retry_request: str = ""  # the RETRY_ANNOTATION's value
    max_bad_record_ratio: float | None = None  # spec.input.maxBadRecordRatio
    profiles: tuple[Profile, ...] = (Profile(hardware.SHORTHAND),)  # spec.hardware, in order of preference
    move_up_seconds: float = 0.0  # spec.hardwareMoveUpSeconds; 0: workers never move back up
    speculation: SpeculationPolicy = field(default_factory=SpeculationPolicy)  # spec.speculation
    active_deadline: float = 0.0  # spec.activeDeadlineSeconds; 0: none
    splitting: SplittingPolicy = field(default_factory=SplittingPolicy)  # spec.splitting, where it applies
    # spec.mode Continuous: a finished ledger is an idle job waiting for its next batch, not a finished one
    continuous: bool = False
    autoscaled: bool = False  # workers follow the backlog (spec.autoscaling), not spec.workers


def policy_from_spec(spec: dict[str, Any], annotations: dict[str, str] | None = None) -> Policy:
    """The policy of a spec as stored by the API server (camelCase, defaults applied), and of the job's
    annotations (a retry request)."""
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
        # Workers heartbeat every 5s from a thread of their own; three missed checkpoints (min 30s) is hung.
        heartbeat_timeout=max(30.0, 3 * min(interval, 30.0)),
        startup_timeout=float(spec.get("startupTimeoutSeconds", 300)),
        failure_rules=rules_from_spec(retry.get("podFailurePolicy")),
        progress_deadline=_deadline(float(spec.get("progressDeadlineSeconds", 600) or 0), interval),
        fail_on_stall=spec.get("progressDeadlineAction") == "Fail",
        retry_request=str((annotations or {}).get(RETRY_ANNOTATION) or ""),
        max_bad_record_ratio=(spec.get("input") or {}).get("maxBadRecordRatio"),
        profiles=hardware.profiles(spec),
        move_up_seconds=float(spec.get("hardwareMoveUpSeconds") or 0),
        speculation=speculation_from_spec(spec.get("speculation"), retry.get("shardTimeoutSeconds")),
        active_deadline=float(spec.get("activeDeadlineSeconds") or 0),
        splitting=splitting_from_spec(spec),
        continuous=spec.get("mode") == "Continuous",
    )


def splitting_from_spec(spec: dict[str, Any]) -> SplittingPolicy:
    """spec.splitting; off where the job's shards cannot be split (splitting.splittable says why)."""
    settings = spec.get("splitting") or {}
    try:  # admission checked it; an object stored before that check must not stop the reconcile
        least = byte_quantity(str(settings.get("minRemainder", splitting.DEFAULT_MIN_REMAINDER)))
    except ValueError:
        least = SplittingPolicy().min_remainder
    return SplittingPolicy(
        enabled=bool(settings.get("enabled", False)) and not splitting.splittable(spec), min_remainder=least
    )


def speculation_from_spec(spec: dict[str, Any] | None, time_limit: float | None = None) -> SpeculationPolicy:
    spec = spec or {}
    default = SpeculationPolicy()
    return SpeculationPolicy(
        enabled=bool(spec.get("enabled", False)),
        quantile=float(spec.get("quantile", default.quantile)),
        multiplier=float(spec.get("multiplier", default.multiplier)),
        min_runtime=float(spec.get("minRuntimeSeconds", default.min_runtime)),
        max_backups=int(spec.get("maxBackups", default.max_backups)),
        time_limit=float(time_limit or 0),
    )


def bad_records_exceeded(records: int, skipped: int, max_ratio: float | None) -> str:
    """Why the skipped (malformed) records are too many for a job to succeed on, or "" if they are not.

    Without spec.input.maxBadRecordRatio, only a job that skipped every record it read fails: an output
    made of nothing must not look like a success."""
    total = records + skipped
    if not skipped:
        return ""
    ratio = skipped / total
    limit = "" if max_ratio is None else f" (spec.input.maxBadRecordRatio {max_ratio:g})"
    if (max_ratio is None and records == 0) or (max_ratio is not None and ratio > max_ratio):
        return f"{skipped} of {total} records ({ratio:.1%}) were malformed and skipped{limit}"
    return ""


def _deadline(seconds: float, checkpoint_interval: float) -> float:
    """The stall deadline in effect: 0 (off), or at least two checkpoint intervals, so that a job whose
    checkpoints are rare (set before the deadline existed) is not called stalled between two of them."""
    return 0.0 if seconds <= 0 else max(seconds, 2 * checkpoint_interval)


@dataclass(frozen=True)
class ObservedWorker:
    """A worker pod (or local process) as seen now."""

    name: str
    slot: int
    phase: str  # Pending, Running, Succeeded, Failed
    deleting: bool = False
    started_at: float | None = None
    reason: str = (
        ""  # why it ended: e.g. "Error (exit code 1): <its last error>", "OOMKilled (exit code 137)"
    )
    unschedulable: str = ""  # the scheduler's message while it cannot be placed
    exit_code: int | None = None  # the worker container's, once terminated (128+N for signal N)
    disruption: str = ""  # set when it was taken away (evicted, preempted, node lost): not its fault
    waiting: str = ""  # "Reason: message" while its container cannot start (ImagePullBackOff, ...)
    waiting_reason: str = ""
    # set while it is about to be taken away (its node is drained, cordoned or reclaimed, or it has the
    # DisruptionTarget condition): it is moved first, so it checkpoints instead of being killed mid-shard
    evacuate: str = ""
    node: str = ""  # the node it was bound to


@dataclass(frozen=True)
class ObservedReport:
    slot: int
    report: ReportMessage | None
    renewed_at: float | None  # the worker's last heartbeat
    leaving: ReportMessage | None = None  # the final report of the slot's pod that is still terminating


@dataclass
class Slot:
    """Worker slot state that must survive an operator restart."""

    pod: str | None = None
    incarnation: int = 0
    restarts: int = 0  # failures counted against maxWorkerRestarts (disruptions are not)
    not_before: float = 0.0
    acked: int = 0
    created_at: float = 0.0
    draining: bool = False  # asked to stop by this job (scale-down, suspend, finish)
    disrupted: str = ""  # deleted by someone else; its shards go back free once it is gone
    blocked: str = ""  # why the API server refused its last pod, until a pod is created
    blocked_reason: str = ""
    blocked_count: int = 0
    unschedulable: bool = False  # an event was posted for the current pod
    last_failure: str = ""
    profile: str = ""  # the hardware profile of its current (or last) pod; "": the first
    records: int = 0  # records of the shards its current pod committed
    shards: int = 0  # map shards its current pod committed
    window: int = 0  # shards its current pod may hold (adaptive prefetch); 0: the policy's prefetch
    busy: float = 0.0  # seconds its current pod spent on those shards
    done_at: float = 0.0  # when its pod last committed a shard (busy time counts from there)
    # A deleted pod still terminating after its replacement was created: it keeps the shards it held until
    # it is gone or has said it stopped, and its final report (its last checkpoints) is folded first.
    leaving: str = ""
    leaving_acked: int = 0
    leaving_profile: str = ""  # its hardware profile (it still counts against the profile's cap)
    leaving_key: str = ""  # the Lease annotation it reports under ("": protocol.REPORT_ANNOTATION)
    leaving_since: float = 0.0
    report_key: str = ""  # the annotation the current pod reports under ("": protocol.REPORT_ANNOTATION)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "pod": self.pod,
            "inc": self.incarnation,
            "restarts": self.restarts,
            "notBefore": self.not_before,
            "acked": self.acked,
            "created": self.created_at,
            "draining": self.draining,
        }
        for key, value, default in (
            ("disrupted", self.disrupted, ""),
            ("blocked", self.blocked, ""),
            ("blockedReason", self.blocked_reason, ""),
            ("blockedCount", self.blocked_count, 0),
            ("unschedulable", self.unschedulable, False),
            ("lastFailure", self.last_failure, ""),
            ("profile", self.profile, ""),
            ("records", self.records, 0),
            ("shards", self.shards, 0),
            ("window", self.window, 0),
            ("busyMs", round(self.busy * 1000), 0),
            # milliseconds from its pod's creation: 10,000 slots must not cost an epoch float each
            ("doneMs", round((self.done_at - self.created_at) * 1000) if self.done_at else None, None),
            ("leaving", self.leaving, ""),
            ("leavingAcked", self.leaving_acked, 0),
            ("leavingProfile", self.leaving_profile, ""),
            ("leavingKey", self.leaving_key, ""),
            ("leavingSince", self.leaving_since, 0.0),
            ("reportKey", self.report_key, ""),
        ):
            if value != default:
                out[key] = value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Slot:
        return cls(
            pod=data.get("pod"),
            leaving=str(data.get("leaving", "")),
            leaving_acked=int(data.get("leavingAcked", 0)),
            leaving_profile=str(data.get("leavingProfile", "")),
            leaving_key=str(data.get("leavingKey", "")),
            leaving_since=float(data.get("leavingSince", 0.0)),
            report_key=str(data.get("reportKey", "")),
            incarnation=int(data.get("inc", 0)),
            restarts=int(data.get("restarts", 0)),
            not_before=float(data.get("notBefore", 0.0)),
            acked=int(data.get("acked", 0)),
            created_at=float(data.get("created", 0.0)),
            draining=bool(data.get("draining", False)),
            disrupted=str(data.get("disrupted", "")),
            blocked=str(data.get("blocked", "")),
            blocked_reason=str(data.get("blockedReason", "")),
            blocked_count=int(data.get("blockedCount", 0)),
            unschedulable=bool(data.get("unschedulable", False)),
            last_failure=str(data.get("lastFailure", "")),
            profile=str(data.get("profile", "")),
            records=int(data.get("records", 0)),
            shards=int(data.get("shards", 0)),
            window=int(data.get("window", 0)),
            busy=int(data.get("busyMs", 0)) / 1000 if "busyMs" in data else float(data.get("busy", 0.0)),
            done_at=_done_at(data),
        )


def _done_at(data: dict[str, Any]) -> float:
    """A slot's last commit time: milliseconds from its pod's creation (or, as first written, seconds, or
    an absolute time)."""
    created = float(data.get("created", 0.0))
    if data.get("doneMs") is not None:
        return created + int(data["doneMs"]) / 1000
    done = float(data.get("doneAt") or 0.0)
    return done if done > 1e9 else (created + done if done else 0.0)


def _given_up_at(data: dict[str, Any]) -> dict[str, float]:
    """Per profile; a single time (as first written) applies to every profile given up on."""
    stored = data.get("givenUpAt")
    if isinstance(stored, (int, float)):
        return {str(name): float(stored) for name in data.get("givenUp") or {}}
    return {str(k): float(v) for k, v in (stored or {}).items()}


@dataclass
class ProfileTotals:
    """What one hardware profile's workers committed over the run."""

    records: int = 0
    shards: int = 0
    busy: float = 0.0  # seconds its workers spent on those shards

    def to_dict(self) -> dict[str, Any]:
        return {"records": self.records, "shards": self.shards, "busy": round(self.busy, 3)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProfileTotals:
        return cls(int(data.get("records", 0)), int(data.get("shards", 0)), float(data.get("busy", 0.0)))


@dataclass
class JobState:
    ledger: Ledger
    slots: dict[int, Slot] = field(default_factory=dict)
    phase: Phase = Phase.PENDING
    restarts: int = 0  # worker pods replaced for any reason but this job's own scale-down
    disruptions: int = 0  # of which were disruptions (charged to nobody)
    message: str = ""
    reason: str = ""  # machine-readable reason of a Failed phase (BackoffLimitExceeded, ...)
    records: int = 0  # records in committed shards, counted once per shard
    bytes: int = 0
    skipped: int = 0  # malformed records dropped in committed shards
    workers: int = 0  # spec.workers as last acted on, to tell a rescale
    progressed_at: float = 0.0  # last time a shard completed or a checkpoint advanced (or the clock reset)
    stalled: str = ""  # the reason of the current stall, "" if progressing
    queue: str = ""  # under Kueue: "Queued" or "Admitted" as last acted on; "" when not queued
    retried: str = ""  # the last retry request acted on
    # hardware profiles given up on for new workers, with the scheduler's reason (hardware.choose)
    given_up: dict[str, str] = field(default_factory=dict)
    given_up_at: dict[str, float] = field(default_factory=dict)  # when each was given up on or tried again
    refused: set[str] = field(default_factory=set)  # given up because the API refused its devices: for good
    # per hardware profile: records and shards committed and busy seconds, for its records/s
    by_profile: dict[str, ProfileTotals] = field(default_factory=dict)
    # speculation: (busy ms, bytes) of recently committed first attempts, for the typical rate; backups
    # launched, won (committed first) and wasted (the original committed first); recent [shard, winner]
    samples: list[tuple[int, int]] = field(default_factory=list)
    backups: dict[str, int] = field(default_factory=dict)
    speculated: list[list[Any]] = field(default_factory=list)
    # activeDeadlineSeconds: seconds active (neither suspended, queued nor finished) before the current
    # active period, and when that period began (None: not active now). Both change only when the job
    # starts or stops being active, so a pass that changes nothing else writes no status.
    active: float = 0.0
    active_since: float | None = None
    # splitting: the running attempts asked to stop so that their rest is split off, as [shard, attempt];
    # and how many shards were split, into how many new ones
    split_requests: list[list[int]] = field(default_factory=list)
    splits: dict[str, int] = field(default_factory=dict)
    # an incremental or continuous job's batch (datajob_core.data.increments); None for other jobs
    batch: int | None = None

    def to_dict(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"givenUp": dict(self.given_up)} if self.given_up else {}
        if self.samples:
            extra["samples"] = [list(sample) for sample in self.samples]
        if self.backups:
            extra["backups"] = dict(self.backups)
        if self.speculated:
            extra["speculated"] = [list(item) for item in self.speculated]
        if self.split_requests:
            extra["splitRequests"] = [list(item) for item in self.split_requests]
        if self.splits:
            extra["splits"] = dict(self.splits)
        if self.active or self.active_since is not None:
            extra["active"], extra["activeSince"] = round(self.active, 3), self.active_since
        if self.given_up_at:
            extra["givenUpAt"] = {k: round(v, 1) for k, v in sorted(self.given_up_at.items())}
        if self.refused:
            extra["refusedProfiles"] = sorted(self.refused)
        if self.by_profile:
            extra["byProfile"] = {k: v.to_dict() for k, v in sorted(self.by_profile.items())}
        if self.batch is not None:
            extra["batch"] = self.batch
        return {
            **extra,
            "v": STATE_VERSION,
            "shards": self.ledger.to_dict(),
            "slots": {str(k): s.to_dict() for k, s in sorted(self.slots.items())},
            "phase": self.phase.value,
            "restarts": self.restarts,
            "disruptions": self.disruptions,
            "message": self.message,
            "reason": self.reason,
            "records": self.records,
            "bytes": self.bytes,
            "skipped": self.skipped,
            "workers": self.workers,
            "progressAt": self.progressed_at,
            "stalled": self.stalled,
            "queue": self.queue,
            "retried": self.retried,
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
            disruptions=int(data.get("disruptions", 0)),
            message=str(data.get("message", "")),
            reason=str(data.get("reason", "")),
            records=int(data.get("records", 0)),
            bytes=int(data.get("bytes", 0)),
            skipped=int(data.get("skipped", 0)),
            workers=int(data.get("workers", 0)),
            progressed_at=float(data.get("progressAt", 0.0)),
            stalled=str(data.get("stalled", "")),
            queue=str(data.get("queue", "")),
            retried=str(data.get("retried", "")),
            given_up={str(k): str(v) for k, v in (data.get("givenUp") or {}).items()},
            given_up_at=_given_up_at(data),
            refused={str(name) for name in data.get("refusedProfiles") or []},
            by_profile={str(k): ProfileTotals.from_dict(v) for k, v in (data.get("byProfile") or {}).items()},
            samples=[(int(ms), int(size)) for ms, size in data.get("samples") or []],
            backups={str(k): int(v) for k, v in (data.get("backups") or {}).items()},
            speculated=[list(item) for item in data.get("speculated") or []],
            split_requests=[[int(s), int(a)] for s, a in data.get("splitRequests") or []],
            splits={str(k): int(v) for k, v in (data.get("splits") or {}).items()},
            active=float(data.get("active", 0.0)),
            active_since=None if data.get("activeSince") is None else float(data["activeSince"]),
            batch=None if data.get("batch") is None else int(data["batch"]),
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
    blocked: tuple[str, str] | None = None  # (reason, message) while workers cannot be created or start
    stall: Stall | None = None  # set while no progress was made within spec.progressDeadlineSeconds
    shard_seconds: list[float] = field(default_factory=list)  # how long each attempt committed now took
    finished: bool = False


MAX_POD_NAME = 63


def pod_name(job: str, slot: int, incarnation: int) -> str:
    """``<job>-<slot>-<incarnation>``; a job name too long for that is cut and given a hash of the whole
    name, so two long names with a common prefix never share pod names."""
    suffix = f"-{slot}-{incarnation}"
    if len(job) + len(suffix) <= MAX_POD_NAME:
        return job + suffix
    digest = hashlib.sha256(job.encode()).hexdigest()[:8]
    keep = MAX_POD_NAME - len(suffix) - len(digest) - 1
    return f"{job[:keep].rstrip('-.')}-{digest}{suffix}"


@dataclass(frozen=True)
class _Pass:
    """What every step of one reconcile pass works on."""

    state: JobState
    policy: Policy
    now: float
    decision: Decision
    # pods per hardware profile as the pass began (hardware.next_after: a moving pod's own profile is
    # given up on, so counting it there changes nothing)
    taken: dict[str, int] = field(default_factory=dict)
    moves: dict[tuple[str, str], list[int]] = field(default_factory=dict)  # (from, to) -> slots, this pass


@dataclass(frozen=True)
class _Death:
    verdict: Verdict
    graceful: bool = False  # this job asked it to stop (or it exited cleanly): nothing to report


def reconcile(
    job: str,
    policy: Policy,
    *,
    state: JobState,
    workers: list[ObservedWorker],
    reports: dict[int, ObservedReport],
    plan: list[dict[str, Any]],
    now: float,
    create_failures: dict[str, tuple[str, str]] | None = None,
    queue: Admission | None = None,
) -> Decision:
    """Advances ``state`` (mutated in place) and says what to do. Safe to repeat: every step is idempotent.

    ``create_failures`` maps pods of the previous pass's ``create`` that could not be created to (reason,
    message): the API server refused them (quota, Pod Security, a webhook) or the job's worker account is
    taken. Those slots back off and report WorkersBlocked; their shards go back uncharged.
    """
    decision = Decision()
    ctx = _Pass(state, policy, now, decision, _taken(state, policy) if _placing(policy) else {})
    layout = Layout.of(state.ledger)
    by_name = {w.name: w for w in workers}
    ledger = state.ledger
    refused = create_failures or {}

    names = {p.name for p in policy.profiles}
    for gone in [name for name in state.given_up if name not in names]:  # spec.hardware was edited
        del state.given_up[gone]
        state.given_up_at.pop(gone, None)
        state.refused.discard(gone)
    if policy.retry_request and policy.retry_request != state.retried:
        _retry_failed(ctx)

    reports = _this_batch(reports, state.batch)
    # 1. Fold what workers reported into the ledger, before judging anything else: first what pods still
    # terminating after their replacement was made said last (their final checkpoints), then the others.
    for slot_number, slot in state.slots.items():
        observed = reports.get(slot_number)
        final = observed.leaving if observed else None
        if slot.leaving and final is not None and final.pod == slot.leaving:
            shadow = Slot(pod=slot.leaving, acked=slot.leaving_acked, profile=slot.leaving_profile)
            _fold(state, shadow, final, policy=policy, now=now, decision=decision, plan=plan)
            slot.leaving_acked = shadow.acked
        _let_go(ctx, slot, by_name.get(slot.leaving) if slot.leaving else None, final)
    for slot_number, slot in state.slots.items():
        observed = reports.get(slot_number)
        if slot.pod and observed and observed.report and observed.report.pod == slot.pod:
            started = (by_name[slot.pod].started_at if slot.pod in by_name else None) or 0.0
            _fold(
                state,
                slot,
                observed.report,
                policy=policy,
                now=now,
                decision=decision,
                started=started,
                plan=plan,
            )

    # 2. Judge each slot's current pod; release the shards of the dead ones.
    running = sum(1 for w in workers if w.phase == "Running" and not w.deleting)
    for slot_number, slot in sorted(state.slots.items()):
        if slot.pod is None:
            continue
        worker = by_name.get(slot.pod)
        if worker is None and slot.pod in refused and slot.leaving:
            # Refused while the pod it replaces still terminates (a ResourceQuota still counts that one):
            # try again shortly, without a warning or a backoff, as once it is gone nothing stands in the way.
            slot.pod, slot.not_before = None, now + 1.0
            continue
        if worker is None and slot.pod in refused:
            # Under Kueue the admitted flavor decides the profile: a refusal there backs off like any other.
            if queue is not None or not _devices_refused(ctx, slot_number, slot, *refused[slot.pod]):
                _blocked(ctx, slot_number, slot, *refused[slot.pod])
            continue
        if worker is not None:
            slot.blocked, slot.blocked_reason, slot.blocked_count = "", "", 0
            _watch_start(slot, slot_number, worker, decision)
            if (
                worker.deleting
                and not slot.draining
                and not slot.disrupted
                and queue is None
                and not slot.leaving
            ):
                # Deleted by someone else (eviction, drain, kubectl delete): its replacement starts now, as a
                # Job's podReplacementPolicy TerminatingOrFailed does. The old pod checkpoints on SIGTERM and
                # keeps its shards (charged nothing) until it is gone or says it stopped.
                _replace_while_terminating(ctx, slot_number, slot)
                continue
            if worker.deleting and not slot.draining and not slot.disrupted:
                # Under Kueue, a replacement would count against the quota while the old pod still does: it
                # is made once the old pod is gone. Give it nothing new, and charge nothing when it is gone.
                slot.disrupted = f"pod {worker.name} was deleted (eviction, drain or a user)"
                decision.events.append(Event("Normal", "WorkerDisrupted", slot.disrupted))
            elif _should_move(worker, slot):
                _move(ctx, slot_number, slot, worker)
            elif queue is None:  # under Kueue, the admitted flavor decides the hardware
                _fall_back(ctx, slot_number, slot, worker)
        report = reports.get(slot_number)
        death = _death(worker, slot, report, policy=policy, now=now, running=running)
        if death is None:
            continue
        _bury(ctx, slot_number, slot, worker=worker, report=report, death=death)

    for (source, target), moved in ctx.moves.items():  # one event per pass, not one per worker
        slots = ", ".join(map(str, moved[:20])) + (" ..." if len(moved) > 20 else "")
        decision.events.append(
            Event(
                "Normal",
                "WorkerMoved",
                f"{len(moved)} worker(s) move from profile {source} to {target} (slots {slots})",
            )
        )

    # 3. Decide the phase.
    finished = _finish(state, policy, decision, workers, now)
    crash_looping = [n for n, s in state.slots.items() if s.restarts > policy.max_worker_restarts]
    if not finished and crash_looping:
        slot = state.slots[crash_looping[0]]
        _fail(
            state,
            decision,
            "BackoffLimitExceeded",
            f"worker slot {crash_looping[0]} failed more than retryPolicy.maxWorkerRestarts "
            f"({policy.max_worker_restarts}) times; last failure: {slot.last_failure}",
        )
        finished = True
    admitted = _follow_queue(ctx, queue) if not finished else True
    finished = _check_deadline(ctx, admitted, finished)
    if not finished:
        finished = _check_progress(ctx, workers, admitted)
    decision.finished = finished

    # 4. Scale: which slots should have a live worker.
    allowed = policy.workers if queue is None else min(policy.workers, queue.workers)
    wanted = 0 if finished or policy.suspend or not admitted else allowed
    if not finished and state.workers and state.workers != policy.workers:
        decision.events.append(
            Event(
                "Normal", "Autoscaled", f"workers {state.workers} -> {policy.workers}, following the backlog"
            )
            if policy.autoscaled
            else Event("Normal", "Scaled", f"spec.workers changed from {state.workers} to {policy.workers}")
        )
    state.workers = policy.workers
    taken = _taken(state, policy) if _placing(policy) else {}
    for slot_number, slot in sorted(state.slots.items()):
        if slot.pod and slot_number >= wanted and not slot.draining:
            # Graceful: the worker checkpoints on SIGTERM; its shards are released once it is gone.
            slot.draining = True
            decision.delete.append((slot.pod, True))
    for slot_number in range(wanted):
        slot = state.slots.setdefault(slot_number, Slot())
        if slot.pod is None and now >= slot.not_before:
            profile = _place(ctx, taken, queue=queue)
            if profile is None:
                continue
            taken[profile.name] = taken.get(profile.name, 0) + 1
            slot.profile = profile.name
            slot.records, slot.shards, slot.busy = 0, 0, 0.0  # per-worker rates are the current pod's
            slot.window = 0
            slot.incarnation += 1
            slot.pod = pod_name(job, slot_number, slot.incarnation)
            # Beside a pod still terminating, under the key it does not use; else the default key.
            key = other_report_annotation(slot.leaving_key or REPORT_ANNOTATION) if slot.leaving else ""
            slot.report_key = "" if key == REPORT_ANNOTATION else key
            slot.created_at = now
            slot.acked = 0
            slot.unschedulable = False
            decision.create.append((slot_number, slot.pod))
    # Slots above `wanted` are kept (without a pod) so their incarnation numbers, and with them pod names,
    # are never reused: a new pod must not be mistaken for an old one in its Lease's report.
    blocked = [s for n, s in sorted(state.slots.items()) if s.blocked and n < wanted]
    if blocked:
        decision.blocked = (blocked[0].blocked_reason or "PodCreateRejected", blocked[0].blocked)

    if not finished and not policy.suspend and queue is None:
        _move_up(ctx, workers)

    # 5. Hand out shards to live workers and describe every slot's assignment.
    live = [s.pod for _, s in sorted(state.slots.items()) if s.pod and not s.draining and not s.disrupted]
    if not finished and not policy.suspend and admitted:
        pods = [p for p in live if p]
        plan_assignments(ledger, pods, policy.prefetch, now, limits=_prefetch(state))
        if policy.splitting.enabled:
            _request_splits(ctx, [p for p in live if p], by_name, reports, plan)
        if policy.speculation.enabled:
            _speculate(ctx, [p for p in live if p], by_name, reports, plan)
    requested = {(s, a) for s, a in state.split_requests}
    for slot_number, slot in state.slots.items():
        if slot.pod is None:
            continue
        tasks = []
        for shard, held in ledger.held_by(slot.pod):
            entry = _entry(ledger, layout, shard, plan)
            small = plan_store.inline(entry)
            cut = ledger.cuts.get(shard)
            tasks.append(
                ShardTask(
                    shard=shard,
                    attempt=held.attempt,
                    checkpoint=held.checkpoint,
                    # Too large to send: the worker reads the stored plan (and cuts the root's entry).
                    input=entry if small else ({"cut": cut.to_list()} if cut else {}),
                    planned=not small,
                    verify=bool(held.verify),
                    split=(shard, held.attempt) in requested and ledger.in_flight.get(shard) is held,
                    backup=ledger.backups.get(shard) is held,
                    batch=state.batch,
                )
            )
        decision.assignments[slot_number] = AssignmentMessage(
            pod=slot.pod, shards=tasks, ack=slot.acked, stop=slot.draining or bool(slot.disrupted) or finished
        )

    if not finished:
        previous = state.phase
        if policy.suspend:
            state.phase = Phase.SUSPENDED
        elif any(
            by_name.get(s.pod or "") and by_name[s.pod or ""].phase == "Running" for s in state.slots.values()
        ):
            state.phase = Phase.RUNNING
        elif state.phase is not Phase.RUNNING or not admitted:
            state.phase = Phase.PENDING  # not started yet, or queued again once its workers are gone
        if state.phase is Phase.RUNNING and previous is Phase.PENDING:
            decision.events.append(Event("Normal", "Started", "the first worker is running"))
        if state.phase is Phase.SUSPENDED and previous is not Phase.SUSPENDED:
            decision.events.append(
                Event("Normal", "Suspended", "spec.suspend is true: workers stopped, progress kept")
            )
        elif previous is Phase.SUSPENDED and state.phase is not Phase.SUSPENDED:
            decision.events.append(Event("Normal", "Resumed", "spec.suspend is false: workers start again"))
    return decision


# Adaptive prefetch, like a TCP window: a worker that ran dry (it reports shards done and nothing current:
# it waited for the operator) may hold twice as many shards; one whose shards take longer than
# PREFETCH_SECONDS each has no use for more than policy.prefetch. Between policy.prefetch and MAX_PREFETCH.
# The worker's measured rate cannot be the signal to grow, since the window itself limits it.
MAX_PREFETCH = 8  # 1,000 workers x 32 put a 200 KiB ledger in the status for 8 % more shards/s
PREFETCH_SECONDS = 1.0


def _adapt_window(slot: Slot, policy: Policy, completed: int, idle: bool) -> None:
    if not slot.pod:
        return
    window = max(slot.window, policy.prefetch)
    if completed and idle:
        window = min(MAX_PREFETCH, window * 2)
    elif slot.shards and slot.busy / slot.shards > PREFETCH_SECONDS:
        window = policy.prefetch
    slot.window = window if window > policy.prefetch else 0


def _prefetch(state: JobState) -> dict[str, int]:
    return {slot.pod: slot.window for slot in state.slots.values() if slot.pod and slot.window}


def _speculate(
    ctx: _Pass,
    live: list[str],
    by_name: dict[str, ObservedWorker],
    reports: dict[int, ObservedReport],
    plan: list[dict[str, Any]],
) -> None:
    """Backup attempts for straggling map shards, on running workers that hold nothing (speculation)."""
    state, policy, now = ctx.state, ctx.policy, ctx.now
    ledger = state.ledger
    idle = [
        pod
        for pod in live
        if not ledger.held_by(pod) and by_name.get(pod) and by_name[pod].phase == "Running"
    ]
    room = policy.speculation.max_backups - len(ledger.backups)
    if not idle or room <= 0:
        return
    layout = Layout.of(ledger)
    slots = {s.pod: (n, s) for n, s in state.slots.items() if s.pod}
    running: list[Running] = []
    for pod in live:
        if pod not in slots or pod not in by_name:
            continue
        number, slot = slots[pod]
        observed = reports.get(number)
        report = observed.report if observed and observed.report and observed.report.pod == pod else None
        current = report.current if report else None
        for shard, entry in ledger.held_by(pod):
            if (
                ledger.placed(shard) >= layout.map_shards
                or shard in ledger.backups
                or entry.worker != pod
                or entry.verify
                or [shard, entry.attempt] in state.split_requests
            ):
                continue
            read = 0
            began = entry.assigned_at  # a queued shard has waited since it was handed out
            if current is not None and (current.shard, current.attempt) == (shard, entry.attempt):
                began = max(entry.assigned_at, slot.done_at, by_name[pod].started_at or 0.0)
                progress = report.progress.get(str(shard)) if report else None
                if progress is not None and progress.attempt == entry.attempt:
                    read = max(0, progress.bytes - progress.resumed_bytes)
            size = _input_size(ledger, shard, plan)
            running.append(Running(shard, pod, max(0.0, now - began), read, size))
    counts = ledger.counts(0, layout.map_shards)
    finished = (counts.succeeded + counts.failed) / max(counts.total, 1)
    samples = [(ms / 1000, size) for ms, size in state.samples]
    for straggler in stragglers(running, samples, finished, policy.speculation)[: min(room, len(idle))]:
        target = idle.pop(0)
        backup = ledger.speculate(straggler.shard, target, now)
        if backup is None:
            continue
        state.backups["launched"] = state.backups.get("launched", 0) + 1
        ctx.decision.events.append(
            Event(
                "Normal",
                "Speculated",
                (
                    f"shard {straggler.shard} has used half of retryPolicy.shardTimeoutSeconds on "
                    f"{straggler.worker}"
                    if straggler.timed
                    else f"shard {straggler.shard} runs slow on {straggler.worker} "
                    f"({_per_second(straggler.rate)}, typical {_per_second(straggler.typical)})"
                )
                + f": backup attempt {backup.attempt} on {target}",
            )
        )


def _entry(ledger: Ledger, layout: Layout, shard: int, plan: list[dict[str, Any]]) -> dict[str, Any]:
    """What a task's worker is sent: its plan entry, or its cut of its root's; the job commit also gets the
    failed shards and the order of split shards."""
    cut = ledger.cuts.get(shard)
    if cut is not None:
        return splitting.entry(cut, splitting.pieces_of(layout.entry(cut.root, plan)))
    entry = layout.entry(shard, plan)
    if shard == layout.commit:
        entry = {**entry, "failed": failed_ranges(ledger, layout.map_shards)}
        if ledger.children:
            entry["segments"] = {str(r): parts for r, parts in splitting.segments(ledger.cuts).items()}
    return entry


def _input_size(ledger: Ledger, shard: int, plan: list[dict[str, Any]]) -> int:
    cut = ledger.cuts.get(shard)
    if cut is None:
        return input_bytes(plan[shard : shard + 1])
    return splitting.size(cut, splitting.pieces_of(plan[cut.root] if cut.root < len(plan) else {}))


def _split_off(
    state: JobState,
    decision: Decision,
    shard: int,
    end: list[int],
    *,
    plan: list[dict[str, Any]],
    now: float,
    least: int,
) -> None:
    """A shard committed only up to ``end`` (it was asked to stop): the rest becomes new shards, one for
    each worker that holds nothing (the one that stopped among them). Done whenever a committed record
    stops early, asked or not, so that its rest is never lost."""
    ledger = state.ledger
    state.split_requests = [item for item in state.split_requests if item[0] != shard]
    root = ledger.placed(shard)
    if root >= len(plan):
        return
    pieces = splitting.pieces_of(plan[root])
    busy = ledger.workers()
    idle = sum(
        1
        for slot in state.slots.values()
        if slot.pod and slot.pod not in busy and not slot.draining and not slot.disrupted
    )
    split = splitting.split_rest(
        root, ledger.cuts.get(shard), end, pieces, workers=idle, least=least, made=ledger.children
    )
    if split is None:
        return
    keep, rest = split
    made = ledger.split(shard, keep, rest, now)
    left = sum(splitting.size(cut, pieces) for cut in rest)
    state.splits["shards"] = state.splits.get("shards", 0) + 1
    state.splits["made"] = state.splits.get("made", 0) + len(made)
    decision.events.append(
        Event(
            "Normal",
            "ShardSplit",
            f"shard {shard} stopped at piece {keep.end[0]} byte {keep.end[1]}; its remaining {left:,} bytes "
            f"became shard(s) {', '.join(map(str, made))}",
        )
    )


def _request_splits(
    ctx: _Pass,
    live: list[str],
    by_name: dict[str, ObservedWorker],
    reports: dict[int, ObservedReport],
    plan: list[dict[str, Any]],
) -> None:
    """Asks the workers of the map shards with the most left to read to stop, so that their rest can be
    split among the running workers that hold nothing (nothing else is left to hand out: assignment ran)."""
    state, policy = ctx.state, ctx.policy
    ledger = state.ledger
    layout = Layout.of(ledger)
    # Requests whose attempt is over (committed, died, taken away) are forgotten.
    state.split_requests = [
        [s, a] for s, a in state.split_requests if (entry := ledger.in_flight.get(s)) and entry.attempt == a
    ]
    busy = ledger.workers()
    idle = [p for p in live if p not in busy and by_name.get(p) and by_name[p].phase == "Running"]
    room = len(idle) - len(state.split_requests) if ledger.children < splitting.MAX_CUTS else 0
    if room <= 0:
        return
    asked = {s for s, _ in state.split_requests}
    least = policy.splitting.min_remainder
    slots = {s.pod: n for n, s in state.slots.items() if s.pod}
    candidates: list[tuple[int, int, int]] = []  # (bytes left, shard, attempt)
    for shard, entry in ledger.in_flight.items():
        if (
            shard in asked
            or shard in ledger.backups
            or entry.verify
            or ledger.placed(shard) >= layout.map_shards
        ):
            continue
        observed = reports.get(slots.get(entry.worker, -1))
        report = (
            observed.report if observed and observed.report and observed.report.pod == entry.worker else None
        )
        if report is None or report.current is None or report.current.shard != shard:
            continue  # queued behind another shard, or not started: it can still go to an idle worker whole
        if report.current.attempt != entry.attempt:
            continue
        progress = report.progress.get(str(shard))
        if progress is None or progress.attempt != entry.attempt or not progress.bytes:
            continue  # not read from yet: how much is left is not known, and it may end as soon
        left = _input_size(ledger, shard, plan) - progress.bytes
        if left >= 2 * least:
            candidates.append((left, shard, entry.attempt))
    for left, shard, attempt in sorted(candidates, reverse=True)[:room]:
        state.split_requests.append([shard, attempt])
        ctx.decision.events.append(
            Event(
                "Normal",
                "SplitRequested",
                f"shard {shard} has about {left:,} bytes left and {len(idle)} worker(s) are idle: its "
                f"worker {ledger.in_flight[shard].worker} is asked to stop so that the rest can be split",
            )
        )


def _per_second(rate: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if rate >= size:
            return f"{rate / size:.1f} {unit}/s"
    return f"{rate:.0f} B/s"


MAX_SPECULATED = 20  # recent speculated shards named in the status


def _speculation_ended(state: JobState, decision: Decision, shard: int, outcome: str, worker: str) -> None:
    key = "won" if outcome == "won" else "wasted"
    state.backups[key] = state.backups.get(key, 0) + 1
    state.speculated = [*state.speculated, [shard, "backup" if outcome == "won" else "original"]][
        -MAX_SPECULATED:
    ]
    who = "the backup" if outcome == "won" else "the original attempt"
    decision.events.append(
        Event(
            "Normal", "SpeculationEnded", f"shard {shard}: {who} committed first ({worker}); the other stops"
        )
    )


# Container waiting reasons that will not fix themselves; ContainerCreating and PodInitializing are normal.
START_ERRORS = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
        "CrashLoopBackOff",
    }
)


def _watch_start(slot: Slot, slot_number: int, worker: ObservedWorker, decision: Decision) -> None:
    """Surfaces why a pod is not running yet: unschedulable, or a container that cannot start."""
    if worker.unschedulable:
        decision.unschedulable = worker.unschedulable
        if not slot.unschedulable:
            slot.unschedulable = True
            decision.events.append(
                Event("Warning", "WorkerUnschedulable", f"worker {worker.name}: {worker.unschedulable}")
            )
    if worker.waiting and decision.blocked is None:
        decision.blocked = (
            worker.waiting_reason or "ContainerCannotStart",
            f"worker {worker.name}: {worker.waiting}",
        )


def _should_move(worker: ObservedWorker, slot: Slot) -> bool:
    live = worker.phase in ("Pending", "Running") and not worker.deleting
    return bool(worker.evacuate) and live and not slot.draining and not slot.disrupted


def _move(ctx: _Pass, slot_number: int, slot: Slot, worker: ObservedWorker) -> None:
    """Its node is going away: stop it gracefully now (it checkpoints on SIGTERM and is told to stop), so
    the drain finds nothing to kill; once it is gone its shards go back uncharged and a replacement starts
    on another node (the scheduler keeps new pods off cordoned and tainted nodes)."""
    slot.disrupted = f"{worker.evacuate}; worker {worker.name} (slot {slot_number}) moved"
    ctx.decision.delete.append((worker.name, True))
    ctx.decision.events.append(Event("Normal", "WorkerDisrupted", slot.disrupted))


def _profile_of(policy: Policy, slot: Slot) -> Profile:
    return hardware.by_name(policy.profiles, slot.profile) or policy.profiles[0]


def _removed(policy: Policy, slot: Slot) -> bool:
    """The slot's pod was made for a profile spec.hardware no longer has."""
    return bool(slot.profile) and hardware.by_name(policy.profiles, slot.profile) is None


def _placing(policy: Policy) -> bool:
    """Whether placement needs the pods per profile: several profiles, or a cap on the one there is."""
    return len(policy.profiles) > 1 or policy.profiles[0].workers is not None


def _taken(state: JobState, policy: Policy) -> dict[str, int]:
    """Pods per profile (the cap counts pods, not running workers); pods of a removed profile count for
    none."""
    taken: dict[str, int] = {}
    for slot in state.slots.values():
        if slot.pod and not _removed(policy, slot):
            name = _profile_of(policy, slot).name
            taken[name] = taken.get(name, 0) + 1
        if slot.leaving and any(p.name == slot.leaving_profile for p in policy.profiles):
            # A pod replaced while it terminates still holds its share until it is gone.
            taken[slot.leaving_profile] = taken.get(slot.leaving_profile, 0) + 1
    return taken


def _place(ctx: _Pass, taken: dict[str, int], *, queue: Admission | None) -> Profile | None:
    """The profile of a new pod (hardware.choose; ``taken``: pods per profile, counted once per pass and
    kept up to date by the caller); under Kueue the first profile that agrees with the node labels of the
    flavor Kueue admitted the job with (hardware.follow_flavor)."""
    policy = ctx.policy
    if queue is not None:
        return hardware.follow_flavor(policy.profiles, queue.node_labels)
    return hardware.choose(policy.profiles, taken=taken, given_up=ctx.state.given_up)


def _give_up(ctx: _Pass, profile: str, why: str, *, target: str, worker: str, waited: float | None) -> None:
    """New workers skip ``profile`` from now on (until it is tried again: _move_up); says so once."""
    state = ctx.state
    if profile in state.given_up:
        return
    state.given_up[profile] = why
    state.given_up_at[profile] = ctx.now
    how = f"unschedulable for {waited:.0f}s" if waited is not None else "refused"
    ctx.decision.events.append(
        Event(
            "Warning",
            "HardwareFallback",
            f"hardware profile {profile}: worker {worker} {how} ({why}); new workers go to profile {target}",
        )
    )


def _fall_back(ctx: _Pass, slot_number: int, slot: Slot, worker: ObservedWorker) -> None:
    """A pod its profile's nodes cannot take: past the profile's waitSeconds (or at once, when the profile
    was already given up on, or is no longer in spec.hardware), it moves to the next profile, and the
    profile is given up on for new workers.

    Only pods the scheduler has not placed move, so no work is ever at stake. The move is the job's own
    stop (the slot drains: nothing is charged or counted as a restart), and it is repeated each pass until
    the deletion is seen, so an operator killed between persisting and deleting still moves it.
    """
    state, policy, now, decision = ctx.state, ctx.policy, ctx.now, ctx.decision
    if worker.phase != "Pending" or worker.deleting or worker.node:
        return
    if slot.draining:
        decision.delete.append((worker.name, True))  # asked before; ask again until it is seen going
        return
    if slot.disrupted:
        return
    if _removed(policy, slot):  # its profile was edited away: a new pod gets a profile the spec has
        ctx.moves.setdefault((slot.profile, "a profile in spec.hardware"), []).append(slot_number)
        slot.draining = True
        decision.delete.append((worker.name, True))
        return
    if not worker.unschedulable:
        return
    profile = _profile_of(policy, slot)
    if profile.name not in state.given_up and now - slot.created_at < profile.wait_seconds:
        return
    target = hardware.next_after(policy.profiles, profile.name, taken=ctx.taken, given_up=state.given_up)
    if target is None:
        return  # nowhere else to go: it keeps waiting, and WorkersUnschedulable says why
    waited = now - slot.created_at
    _give_up(ctx, profile.name, worker.unschedulable, target=target.name, worker=worker.name, waited=waited)
    ctx.moves.setdefault((profile.name, target.name), []).append(slot_number)
    slot.draining = True
    decision.delete.append((worker.name, True))


DEVICES_REJECTED = "DevicesRejected"  # the API server refused a profile's ResourceClaimTemplate


def _devices_refused(ctx: _Pass, slot_number: int, slot: Slot, reason: str, message: str) -> bool:
    """The profile's ResourceClaimTemplate was refused (no DRA API, no RBAC, an invalid selector): that
    will not fix itself, so the profile is given up on at once and the slot goes to the next profile
    (nothing charged). False when there is no next profile: the slot is blocked and says why."""
    if reason != DEVICES_REJECTED:
        return False
    profile = _profile_of(ctx.policy, slot)
    target = hardware.next_after(
        ctx.policy.profiles, profile.name, taken=ctx.taken, given_up=ctx.state.given_up
    )
    if target is None:
        return False
    assert slot.pod is not None
    _give_up(ctx, profile.name, message, target=target.name, worker=slot.pod, waited=None)
    ctx.state.refused.add(profile.name)
    ctx.state.ledger.release_worker(
        slot.pod, f"pod not created: {message}", ctx.now, max_attempts=ctx.policy.max_shard_attempts
    )
    ctx.moves.setdefault((profile.name, target.name), []).append(slot_number)
    slot.pod = None
    slot.acked = 0
    return True


def _move_up(ctx: _Pass, workers: list[ObservedWorker]) -> None:
    """spec.hardwareMoveUpSeconds after a profile was given up on, it is tried again: its mark is cleared
    (new workers try it first) and one running worker of a lower profile stops gracefully, so its
    replacement asks for the better hardware. It checkpoints on the way out and nothing is charged; if the
    profile is still full, the replacement falls back again after the profile's waitSeconds, and the
    profile waits another interval. Each profile keeps its own clock, so a middle profile that freed up is
    tried even while a better one stays full. Workers running a reduce task or the job commit (which do
    not checkpoint) are never stopped for this."""
    state, policy, now, decision = ctx.state, ctx.policy, ctx.now, ctx.decision
    if not policy.move_up_seconds or not state.given_up:
        return
    rank = {p.name: i for i, p in enumerate(policy.profiles)}
    due = [
        name
        for name in state.given_up
        if name not in state.refused and now - state.given_up_at.get(name, 0.0) >= policy.move_up_seconds
    ]
    if not due:
        return
    best = min(due, key=lambda name: rank.get(name, len(rank)))
    del state.given_up[best]
    state.given_up_at[best] = now
    map_shards = Layout.of(state.ledger).map_shards
    running = {w.name for w in workers if w.phase == "Running" and not w.deleting}
    lower = [
        (rank.get(_profile_of(policy, slot).name, 0), number, slot)
        for number, slot in state.slots.items()
        if slot.pod in running
        and not slot.draining
        and not slot.disrupted
        and not _removed(policy, slot)
        and rank.get(_profile_of(policy, slot).name, 0) > rank.get(best, 0)
        and all(state.ledger.placed(s) < map_shards for s in state.ledger.in_flight_for(slot.pod or ""))
    ]
    if not lower:
        decision.events.append(Event("Normal", "HardwareMoveUp", f"hardware profile {best} is tried again"))
        return
    _, number, slot = max(lower, key=lambda entry: (entry[0], entry[1]))
    assert slot.pod is not None
    slot.draining = True
    decision.delete.append((slot.pod, True))
    decision.events.append(
        Event(
            "Normal",
            "HardwareMoveUp",
            f"hardware profile {best} is tried again: worker {slot.pod} (slot {number}, profile "
            f"{_profile_of(policy, slot).name}) stops after checkpointing; its replacement asks for {best}",
        )
    )


def _blocked(ctx: _Pass, slot_number: int, slot: Slot, reason: str, message: str) -> None:
    """The API server refused the slot's pod: back off and say why; nothing is charged."""
    state, policy, now, decision = ctx.state, ctx.policy, ctx.now, ctx.decision
    assert slot.pod is not None
    state.ledger.release_worker(
        slot.pod, f"pod not created: {message}", now, max_attempts=policy.max_shard_attempts
    )
    if message != slot.blocked:
        decision.events.append(Event("Warning", "WorkersBlocked", f"worker slot {slot_number}: {message}"))
    slot.blocked, slot.blocked_reason = message, reason
    slot.blocked_count += 1
    slot.not_before = now + backoff_seconds(slot.blocked_count, policy.backoff_initial, policy.backoff_max)
    slot.pod = None
    slot.acked = 0


def _bury(
    ctx: _Pass,
    slot_number: int,
    slot: Slot,
    *,
    worker: ObservedWorker | None,
    report: ObservedReport | None,
    death: _Death,
) -> None:
    """Releases a dead pod's shards, charging only what the verdict says, and schedules its replacement."""
    state, policy, now, decision = ctx.state, ctx.policy, ctx.now, ctx.decision
    assert slot.pod is not None
    verdict = death.verdict
    current = report.report.current if report and report.report and report.report.pod == slot.pod else None
    charge = (current.shard, current.attempt) if current else None
    charges = verdict.action in (Action.COUNT, Action.FAIL_SHARD) and charge is not None
    outcomes = state.ledger.release_worker(
        slot.pod,
        verdict.cause,
        now,
        max_attempts=policy.max_shard_attempts,
        charge=charge if charges else None,
        permanent=verdict.action is Action.FAIL_SHARD,
        backoff_seconds=backoff_seconds(1, policy.backoff_initial, policy.backoff_max) if charges else 0.0,
    )
    if worker is not None:
        decision.delete.append((worker.name, False))
    if not death.graceful:
        state.restarts += 1
        if verdict.disruption or verdict.action is Action.IGNORE:
            state.disruptions += 1
            decision.events.append(
                Event(
                    "Normal",
                    "WorkerDisrupted",
                    f"worker {slot.pod} (slot {slot_number}) replaced: {verdict.cause}",
                )
            )
        else:
            slot.restarts += 1
            slot.last_failure = verdict.cause
            slot.not_before = now + backoff_seconds(slot.restarts, policy.backoff_initial, policy.backoff_max)
            charged = [o for o in outcomes if charges and charge and o.shard == charge[0]]
            task = Layout.of(state.ledger).name(charged[0].shard) if charged else ""
            blame = (
                f"; {task} charged ({charged[0].failures} failed attempt(s))"
                if charged
                else "; no shard charged"
            )
            decision.events.append(
                Event(
                    "Warning",
                    "WorkerFailed",
                    f"worker {slot.pod} (slot {slot_number}) failed: {verdict.cause}{blame}",
                )
            )
        for outcome in outcomes:
            if outcome.failed:
                decision.events.append(
                    Event(
                        "Warning",
                        "ShardFailed",
                        f"shard {outcome.shard} failed after {outcome.failures} attempt(s): {outcome.reason}",
                    )
                )
        if verdict.action is Action.FAIL_JOB and state.phase not in (Phase.SUCCEEDED, Phase.FAILED):
            _fail(
                state,
                decision,
                "PodFailurePolicy",
                f"worker {slot.pod} (slot {slot_number}): {verdict.cause}",
            )
    slot.pod = None
    slot.draining = False
    slot.disrupted = ""
    slot.acked = 0


def _replace_while_terminating(ctx: _Pass, slot_number: int, slot: Slot) -> None:
    """The slot's pod is being deleted by someone else: it becomes the slot's *leaving* pod and the slot is
    free for a replacement this very pass. A disruption: nothing is charged, no backoff."""
    state = ctx.state
    assert slot.pod is not None
    ctx.decision.events.append(
        Event(
            "Normal",
            "WorkerDisrupted",
            f"worker {slot.pod} (slot {slot_number}) was deleted (eviction, drain or a user): replaced "
            "while it terminates; its shards resume from its final checkpoint",
        )
    )
    state.restarts += 1
    state.disruptions += 1
    slot.leaving, slot.leaving_acked, slot.leaving_since = slot.pod, slot.acked, ctx.now
    slot.leaving_profile, slot.leaving_key = slot.profile, slot.report_key
    slot.pod = None
    slot.acked = 0


def _let_go(ctx: _Pass, slot: Slot, old: ObservedWorker | None, final: ReportMessage | None) -> None:
    """Releases a leaving pod's shards (uncharged) once it is gone or ended, or once its final report says
    it stopped (SIGTERM, nothing current): it will process nothing more, and its checkpoints are folded."""
    if not slot.leaving:
        return
    said = final is not None and final.pod == slot.leaving
    stopped = said and final is not None and (final.stopped or (final.terminated and final.current is None))
    # A pod that neither ends nor says so within the longest grace period and a heartbeat deadline (its node
    # is lost): its shards go on elsewhere; a late commit of it is a zombie's, which the commit record fences.
    overdue = ctx.now - slot.leaving_since > MAX_GRACE_SECONDS + ctx.policy.heartbeat_timeout
    if old is not None and old.phase not in ("Failed", "Succeeded") and not stopped and not overdue:
        return
    ctx.state.ledger.release_worker(
        slot.leaving, "its pod was deleted", ctx.now, max_attempts=ctx.policy.max_shard_attempts
    )
    slot.leaving, slot.leaving_acked, slot.leaving_since = "", 0, 0.0
    slot.leaving_profile = slot.leaving_key = ""


def _retry_failed(ctx: _Pass) -> None:
    """A user asked to re-run the permanently failed shards: they get a fresh attempt budget, and a job that
    failed runs again (its succeeded shards are kept). A succeeded job is left as it is, and so is a job
    whose reduce stage or job commit already ran without a failed map shard: their committed output would
    not include it (rerun that job with spec.output.overwrite instead)."""
    state, policy, decision = ctx.state, ctx.policy, ctx.decision
    state.retried = policy.retry_request
    ledger = state.ledger
    if state.phase is Phase.SUCCEEDED:
        decision.events.append(Event("Normal", "RetryIgnored", "the job has succeeded; nothing to retry"))
        return
    map_shards = Layout.of(ledger).map_shards
    failed_maps = [s for s in ledger.failed if ledger.placed(s) < map_shards]
    later_started = any(
        max(a, map_shards) < min(b, ledger.total) for a, b in ledger.succeeded.intervals()
    ) or any(ledger.placed(s) >= map_shards for s in (*ledger.in_flight, *ledger.retry, *ledger.failed))
    if failed_maps and later_started:
        decision.events.append(
            Event(
                "Warning",
                "RetryRefused",
                f"the reduce stage or the job commit already ran without failed map shard(s) "
                f"{', '.join(map(str, sorted(failed_maps)[:20]))}; their output cannot be added now: "
                "rerun the job with spec.output.overwrite",
            )
        )
        return
    shards = ledger.requeue_failed("retried on request", ctx.now)
    if state.phase is Phase.FAILED:
        state.phase, state.reason, state.message = Phase.PENDING, "", ""
        for slot in state.slots.values():  # a fresh crash-loop budget too
            slot.restarts, slot.last_failure, slot.not_before = 0, "", 0.0
        state.progressed_at = ctx.now
    names = ", ".join(str(s) for s in shards[:20]) + (" ..." if len(shards) > 20 else "")
    which = f": {names}" if shards else ""
    decision.events.append(Event("Normal", "Retrying", f"re-queued {len(shards)} failed shard(s){which}"))


def _follow_queue(ctx: _Pass, queue: Admission | None) -> bool:
    """Whether workers may run; tells the user when Kueue queues, admits or evicts the job."""
    state, decision = ctx.state, ctx.decision
    if queue is None:
        state.queue = ""
        return True
    now_state = "Admitted" if queue.admitted else "Queued"
    if now_state != state.queue:
        if queue.admitted:
            decision.events.append(Event("Normal", "Admitted", queue.message))
            state.progressed_at = ctx.now  # the stall clock starts with the admission
        elif state.queue == "Admitted" and queue.evicted:
            message = f"{queue.message}; workers checkpoint and stop, nothing is charged"
            decision.events.append(Event("Normal", "Evicted", message))
        else:
            decision.events.append(Event("Normal", "Queued", queue.message))
        state.queue = now_state
    return queue.admitted


def _check_progress(ctx: _Pass, workers: list[ObservedWorker], admitted: bool = True) -> bool:
    """Stall detection (spec.progressDeadlineSeconds, like a Deployment's): sets decision.stall, tells the
    user once per stall, and fails the job if progressDeadlineAction is Fail. True if it failed the job.

    The clock runs only while the job may run: it starts with the job and restarts on resume.
    """
    state, policy, now, decision = ctx.state, ctx.policy, ctx.now, ctx.decision
    if policy.suspend or not admitted:  # waiting for the user or for Kueue is not a stall
        state.stalled = ""
        return False
    if not state.progressed_at or state.phase is Phase.SUSPENDED or idle(state, policy):
        state.progressed_at = now  # a continuous job waiting for input is not stalled
    map_shards = Layout.of(state.ledger).map_shards
    if any(state.ledger.placed(shard) >= map_shards for shard in state.ledger.in_flight):
        # Reduce tasks and the job commit do not checkpoint; their workers' heartbeats show they are alive
        # (a silent one is replaced at the heartbeat deadline). Their completion is progress.
        return False
    if not policy.progress_deadline or now - state.progressed_at <= policy.progress_deadline:
        if state.stalled:
            state.stalled = ""
            decision.events.append(Event("Normal", "Progressing", "the job is making progress again"))
        return False
    live = [w for w in workers if not w.deleting and w.phase in ("Pending", "Running")]
    running = sum(1 for w in live if w.phase == "Running")
    failing = [s.last_failure for s in state.slots.values() if s.restarts and s.last_failure]
    blocked = [s.blocked for s in state.slots.values() if s.blocked]
    picture = Picture(
        running=running,
        pending=len(live) - running,
        unschedulable=decision.unschedulable,
        blocked=blocked[0] if blocked else (decision.blocked[1] if decision.blocked else ""),
        crash_looping=failing[0] if failing else "",
        in_flight=len(state.ledger.in_flight),
        waiting_retry=len(state.ledger.retry),
    )
    decision.stall = stall_cause(picture, policy.progress_deadline, state.progressed_at)
    if state.stalled != decision.stall.reason:
        state.stalled = decision.stall.reason
        decision.events.append(Event("Warning", "Stalled", decision.stall.message))
    if policy.fail_on_stall:
        _fail(state, decision, "ProgressDeadlineExceeded", decision.stall.message)
        return True
    return False


def _check_deadline(ctx: _Pass, admitted: bool, finished: bool) -> bool:
    """spec.activeDeadlineSeconds over the time the job was active (not suspended, not queued, not
    finished: a retried job goes on from the time it had used); True if the job is finished now."""
    state, policy, now = ctx.state, ctx.policy, ctx.now
    if not policy.active_deadline and state.active_since is None:
        return finished  # no deadline: nothing to count (a deadline added later counts from then)
    counting = admitted and not policy.suspend and not finished
    if counting and state.active_since is None:
        state.active_since = now
    elif not counting and state.active_since is not None:
        state.active += max(0.0, now - state.active_since)
        state.active_since = None
    active = state.active + (0.0 if state.active_since is None else max(0.0, now - state.active_since))
    if finished or not policy.active_deadline or active < policy.active_deadline:
        return finished
    commit = Layout.of(state.ledger).commit
    if commit is not None and commit in state.ledger.in_flight:
        return False  # the job commit is publishing: failing now would leave a _SUCCESS on a Failed job
    state.active, state.active_since = active, None  # the job is over: a retry goes on from here
    _fail(
        state,
        ctx.decision,
        "DeadlineExceeded",
        f"the job was active for {active:.0f}s, more than spec.activeDeadlineSeconds "
        f"({policy.active_deadline:.0f}; time suspended or queued is not counted); committed output is kept",
    )
    return True


def idle(state: JobState, policy: Policy) -> bool:
    """A continuous job between batches: its last batch committed, no new input planned yet."""
    finished = state.phase in (Phase.SUCCEEDED, Phase.FAILED)
    return policy.continuous and not finished and state.ledger.is_finished()


def _this_batch(reports: dict[int, ObservedReport], batch: int | None) -> dict[int, ObservedReport]:
    """Reports without what they say about another batch's shards: an incremental job's shard numbers
    start again each batch, so a late word about batch N's shard 3 is not about batch N+1's."""
    if batch is None:
        return reports
    return {
        slot: replace(
            observed, report=_fenced(observed.report, batch), leaving=_fenced(observed.leaving, batch)
        )
        for slot, observed in reports.items()
    }


def _fenced(report: ReportMessage | None, batch: int) -> ReportMessage | None:
    if report is None:
        return None
    # Untagged words (a worker image from before batches were tagged) are taken as the current batch's;
    # continuous.quiescent holds the next batch back while any remain.
    ours = (batch, None)
    current = report.current if report.current is not None and report.current.batch in ours else None
    return report.model_copy(
        update={
            "progress": {k: p for k, p in report.progress.items() if p.batch in ours},
            "done": [o for o in report.done if o.batch in ours],
            "failed": [o for o in report.failed if o.batch in ours],
            "current": current,
        }
    )


def deadline_at(state: JobState, policy: Policy) -> float | None:
    """When spec.activeDeadlineSeconds runs out if the job stays active; None if it is not counting."""
    if not policy.active_deadline or state.active_since is None:
        return None
    return state.active_since + max(0.0, policy.active_deadline - state.active)


def _fail(state: JobState, decision: Decision, reason: str, message: str) -> None:
    state.phase = Phase.FAILED
    state.reason = reason
    state.message = message
    decision.events.append(Event("Warning", reason, message))


def _fold(
    state: JobState,
    slot: Slot,
    report: ReportMessage,
    *,
    policy: Policy,
    now: float,
    decision: Decision,
    started: float = 0.0,
    plan: list[dict[str, Any]] | None = None,
) -> None:
    """Applies a worker's report; outcomes up to ``slot.acked`` were applied before and are skipped.
    ``started``: when its pod started running (busy time never counts the pod's start-up)."""
    ledger = state.ledger
    worker = report.pod
    layout = Layout.of(ledger)
    for outcome in report.done:
        if outcome.seq <= slot.acked:
            continue
        attempt = ledger.attempt_of(outcome.shard, worker, outcome.attempt)
        completion = ledger.complete(outcome.shard, worker, outcome.attempt, now)
        if completion.accepted:
            busy = 0.0
            if attempt is not None:
                decision.shard_seconds.append(max(0.0, now - attempt.assigned_at))
                # Prefetched shards wait behind the one before: busy time starts at the later of the two.
                busy = max(0.0, now - max(attempt.assigned_at, slot.done_at, started))
                if attempt.attempt == 1 and outcome.shard < layout.map_shards and busy > 0:
                    state.samples = [*state.samples, (round(busy * 1000), outcome.bytes)][-SAMPLES:]
            if completion.speculation:
                _speculation_ended(state, decision, completion.shard, completion.speculation, worker)
            if outcome.end is not None and ledger.placed(outcome.shard) < layout.map_shards:
                least = policy.splitting.min_remainder
                _split_off(state, decision, outcome.shard, outcome.end, plan=plan or [], now=now, least=least)
            slot.done_at = now
            if ledger.placed(outcome.shard) < layout.map_shards:  # input shards; reduce and commit aside
                totals = state.by_profile.setdefault(slot.profile or policy.profiles[0].name, ProfileTotals())
                totals.records += outcome.records
                totals.shards += 1
                totals.busy += busy
                slot.busy += busy
                slot.records += outcome.records
                slot.shards += 1
            state.progressed_at = now
            if outcome.shard == layout.commit:
                decision.events.append(
                    Event("Normal", "Committed", "the job commit published the output's result and manifest")
                )
            state.records += outcome.records
            state.bytes += outcome.bytes
            state.skipped += outcome.skipped
    for outcome in report.failed:
        if outcome.seq > slot.acked:
            lost = outcome.lost
            delay = 0.0 if lost else backoff_seconds(1, policy.backoff_initial, policy.backoff_max)
            result = ledger.fail_attempt(
                outcome.shard,
                worker,
                outcome.attempt,
                outcome.reason or "worker reported failure",
                now,
                max_attempts=policy.max_shard_attempts,
                backoff_seconds=delay,
                permanent=outcome.permanent,
                # Not the task's fault when a map shard's output is gone and can run again; otherwise it is
                # charged, so a task that keeps finding the same problem fails instead of looping.
                counted=_lost_for_good(ledger, layout, lost),
            )
            reopened = (
                lost is not None
                and result.retrying
                and _reopenable(ledger, layout, lost)
                and ledger.reopen(lost.shard, lost.attempt, f"its output was lost: {outcome.reason}", now)
            )
            if reopened and lost is not None:
                decision.events.append(
                    Event(
                        "Warning",
                        "MapOutputLost",
                        f"{layout.name(outcome.shard)}: {outcome.reason}; shard {lost.shard} runs again",
                    )
                )
            if result.failed:
                decision.events.append(
                    Event(
                        "Warning",
                        "ShardFailed",
                        f"{layout.name(outcome.shard)} failed after {result.failures} attempt(s): "
                        f"{outcome.reason}",
                    )
                )
    for notice in report.notices:
        if notice.seq > slot.acked:
            decision.events.append(Event("Warning", notice.reason, f"worker {worker}: {notice.message}"))
    for shard, progress in report.progress.items():
        # Oversized or malformed checkpoints are refused by the ledger; the previous one stands.
        if progress.checkpoint is not None and shard.isdigit():
            entry = ledger.attempt_of(int(shard), worker, progress.attempt)
            before = entry.checkpoint if entry else None
            accepted = ledger.record_checkpoint(
                int(shard), worker, progress.attempt, progress.checkpoint, now
            )
            after = ledger.attempt_of(int(shard), worker, progress.attempt)
            if accepted and after is not None and after.checkpoint != before:
                state.progressed_at = now
    if report.seq > slot.acked:
        completed = sum(1 for outcome in report.done if outcome.seq > slot.acked)
        _adapt_window(slot, policy, completed, idle=report.current is None)
    slot.acked = max(slot.acked, report.seq)


def _reopenable(ledger: Ledger, layout: Layout, lost: LostInput | None) -> bool:
    """Whether a lost map output can be made again: a succeeded map shard (or one split off one)."""
    return (
        lost is not None
        and 0 <= lost.shard < ledger.total + ledger.children
        and ledger.placed(lost.shard) < layout.map_shards
        and ledger.state_of(lost.shard) is ShardState.SUCCEEDED
    )


def _lost_for_good(ledger: Ledger, layout: Layout, lost: LostInput | None) -> bool:
    """Whether a task's failure is charged: always, unless it lost a map output that runs (or will run)
    again, e.g. one another reducer already sent back. A failed or unknown one cannot: its task fails for
    good in the end instead of retrying uncharged for ever."""
    if lost is None:
        return True
    if not 0 <= lost.shard < ledger.total + ledger.children or ledger.placed(lost.shard) >= layout.map_shards:
        return True
    return ledger.state_of(lost.shard) is ShardState.FAILED


MAX_FAILED_RANGES = 2000  # of the commit task's failed list, to keep the assignment small


def failed_ranges(ledger: Ledger, map_shards: int) -> list[int] | None:
    """The map shards (and shards split off them) that failed for good, as RangeSet's flat list, for the
    job commit: any other missing commit record is then an error (deleted by a concurrent cleanup, or
    lost), never a silent gap. None (every gap taken as a failure, as before) when they are too scattered
    to send in an assignment."""
    failed = RangeSet()
    for shard in ledger.failed:
        if ledger.placed(shard) < map_shards:
            failed.add(shard)
    return failed.to_list() if failed.interval_count <= MAX_FAILED_RANGES else None


UNASKED_SIGTERM = "stopped on a SIGTERM that neither this job nor a deletion sent"
UNASKED_EXIT = "exited with code 0 without being asked to stop (sys.exit() or os._exit() in user code?)"


def _death(
    worker: ObservedWorker | None,
    slot: Slot,
    report: ObservedReport | None,
    *,
    policy: Policy,
    now: float,
    running: int,
) -> _Death | None:
    """Why the slot's current pod no longer counts as a live worker, or None if it does."""
    graceful = slot.draining
    if worker is None:
        return _Death(
            disruption(slot.disrupted or "pod disappeared (deleted, evicted or its node is gone)"), graceful
        )
    if worker.phase == "Failed":
        if graceful:
            return _Death(disruption(worker.reason or "pod stopped"), graceful=True)
        if worker.disruption or slot.disrupted:
            return _Death(disruption(worker.disruption or slot.disrupted))
        return _Death(judge_exit(worker.exit_code, worker.reason or "pod failed", policy.failure_rules))
    if worker.phase == "Succeeded":
        if graceful or slot.disrupted or worker.disruption or worker.deleting:
            # Told to stop, or SIGTERM from a deletion; either way it checkpointed first.
            cause = slot.disrupted or worker.disruption or "worker exited"
            return _Death(disruption(cause), graceful=graceful or not slot.disrupted)
        if report is not None and report.report is not None and report.report.terminated:
            # A SIGTERM no part of the job sent (kill -TERM, or user code signalling its own process): it
            # checkpointed, so nothing is charged, but the restart counts, so a loop of them ends.
            return _Death(Verdict(Action.RESTART, UNASKED_SIGTERM))
        # Nobody asked it to stop (the ledger says so durably): user code ended the process, e.g.
        # sys.exit(0) or os._exit(0). Its shard is charged and the restart counted, or it loops forever.
        return _Death(Verdict(Action.COUNT, UNASKED_EXIT))
    if worker.deleting:
        return None  # wait until it is gone, so its final report is folded
    if worker.phase == "Running":
        last = max(
            (report.renewed_at if report and report.renewed_at else 0.0),
            worker.started_at or 0.0,
            slot.created_at,
        )
        if now - last > policy.heartbeat_timeout:
            return _Death(Verdict(Action.RESTART, f"no heartbeat for {now - last:.0f}s"))
    elif worker.waiting and now - slot.created_at > policy.startup_timeout and running > 0:
        # Other workers run, so the job is healthy: replace this one; it counts as a failed start.
        return _Death(
            Verdict(Action.RESTART, f"did not start within {policy.startup_timeout:.0f}s: {worker.waiting}")
        )
    return None


def _finish(
    state: JobState, policy: Policy, decision: Decision, workers: list[ObservedWorker], now: float
) -> bool:
    ledger = state.ledger
    if state.phase in (Phase.SUCCEEDED, Phase.FAILED):
        return True
    layout = Layout.of(ledger)
    # A reduce task or the job commit out of attempts fails the job (maxFailedShards is for map shards).
    after_map = sorted(shard for shard in ledger.failed if ledger.placed(shard) >= layout.map_shards)
    if after_map:
        shard, entry = after_map[0], ledger.failed[after_map[0]]
        reason = "JobCommitFailed" if shard == layout.commit else "ReduceFailed"
        message = f"{layout.name(shard)} failed {entry.attempts} time(s): {entry.reason}"
        _fail(state, decision, reason, message)
        return True
    failed = ledger.failed_count(0, layout.map_shards)
    if failed > policy.max_failed_shards:
        first = min((s for s in ledger.failed if ledger.placed(s) < layout.map_shards), default=None)
        named = f"shard {first}: {ledger.failed[first].reason}" if first is not None else "unknown"
        _fail(
            state,
            decision,
            "ShardsFailed",
            f"{failed} shard(s) failed permanently, more than retryPolicy.maxFailedShards "
            f"({policy.max_failed_shards}); first: {named}",
        )
        return True
    map_counts = ledger.counts(0, layout.map_shards)
    too_many = bad_records_exceeded(state.records, state.skipped, policy.max_bad_record_ratio)
    if map_counts.succeeded + map_counts.failed == map_counts.total and too_many:
        _fail(state, decision, "TooManyBadRecords", too_many)
        return True
    stuck = [
        w
        for w in workers
        if w.waiting
        and not w.deleting
        and now - (state.slots.get(w.slot) or Slot()).created_at > policy.startup_timeout
    ]
    if stuck and not any(w.phase == "Running" and not w.deleting for w in workers):
        # No worker runs and one has been unable to start for the whole start-up deadline.
        worker = stuck[0]
        _fail(
            state,
            decision,
            worker.waiting_reason or "WorkerStartupFailed",
            f"worker {worker.name} did not start within startupTimeoutSeconds "
            f"({policy.startup_timeout:.0f}): {worker.waiting}",
        )
        return True
    if ledger.is_finished() and policy.continuous:
        return False  # idle: the batch is committed, the next one is planned when input arrives
    if ledger.is_finished():
        state.phase = Phase.SUCCEEDED
        counts = ledger.counts(0, layout.map_shards)
        committed = ", output committed" if layout.commit is not None else ""
        done = f"{counts.succeeded} succeeded, {counts.failed} failed"
        state.message = f"all {counts.total} shards done ({done}){committed}"
        decision.events.append(Event("Normal", "Completed", state.message))
        return True
    return False
