"""What ``kubectl get`` and ``describe`` show of a DataJob: its status rendered from one pass's state."""

from __future__ import annotations

import time
from typing import Any

from datajob_core.api.conditions import set_condition
from datajob_core.cluster import state_codec
from datajob_core.cluster.fleet import fleet_status
from datajob_core.cluster.queueing import Admission
from datajob_core.cluster.reconciler import Decision, JobState, ObservedWorker, Phase, Policy
from datajob_core.shards import progress, splitting
from datajob_core.shards.ledger import Counts, ShardState
from datajob_core.shards.stages import Layout
from datajob_core.storage import committer

from .job_runtime import JobRuntime
from .timestamps import now_iso


def render_status(
    job: dict[str, Any],
    state: JobState,
    policy: Policy,
    pods: list[ObservedWorker],
    decision: Decision,
    *,
    runtime: JobRuntime,
    selector: str,
    queue: Admission | None = None,
    unavailable: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The DataJob status for this pass: counts, workers, progress, output, conditions and the ledger.

    Not pure: it adds this pass's position to the job's rate window (``runtime.rates``), so call it once a
    pass."""
    old = job.get("status") or {}
    layout = Layout.of(state.ledger)
    counts = state.ledger.counts(0, layout.map_shards)
    live = [p for p in pods if not p.deleting and p.phase in ("Pending", "Running")]
    ready = [p for p in live if p.phase == "Running"]
    desired = 0 if state.phase in (Phase.SUCCEEDED, Phase.FAILED) or policy.suspend else policy.workers
    if queue is not None:  # under Kueue: what it admitted, none while queued
        desired = min(desired, queue.workers) if queue.admitted else 0
    now = now_iso()
    status: dict[str, Any] = {
        "observedGeneration": job["metadata"].get("generation"),
        "phase": state.phase.value,
        "message": state.message,
        "shards": _counts_status(counts),
        "workers": {
            "desired": desired,
            "active": len(live),
            "ready": len(ready),
            "summary": f"{len(ready)}/{desired}",
            "selector": selector,
        },
        "restarts": state.restarts,
        "disruptions": state.disruptions,
        "processed": {"records": state.records, "bytes": state.bytes, "skippedRecords": state.skipped},
        "hardware": fleet_status(policy, state, pods, runtime.devices),
        "startTime": old.get("startTime") or now,
        "ledger": state_codec.encode(state),
    }
    position = progress.position(
        state.ledger,
        layout.map_shards,
        committed_records=state.records,
        committed_bytes=state.bytes,
        total_bytes=_input_bytes(runtime),
    )
    runtime.rates.add(time.time(), position)
    status["progress"] = progress.progress_status(
        position,
        runtime.rates.rates(),
        finished=state.phase is Phase.SUCCEEDED,
        stalled=decision.stall is not None,
        running=state.phase is Phase.RUNNING,
    )
    if policy.speculation.enabled or state.backups:
        status["speculation"] = {
            "launched": state.backups.get("launched", 0),
            "won": state.backups.get("won", 0),
            "wasted": state.backups.get("wasted", 0),
            "running": len(state.ledger.backups),
            "shards": [{"shard": shard, "winner": winner} for shard, winner in state.speculated],
        }
    wanted = bool((job["spec"].get("splitting") or {}).get("enabled"))
    if wanted or state.splits:
        status["splitting"] = {
            "shards": state.splits.get("shards", 0),
            "made": state.splits.get("made", 0),
            "requested": len(state.split_requests),
        }
        if wanted and not policy.splitting.enabled:
            status["splitting"]["off"] = splitting.splittable(job["spec"])
    if layout.partitions:
        reduce = state.ledger.counts(layout.map_shards, layout.map_shards + layout.partitions)
        status["reduce"] = _counts_status(reduce)
    if layout.commit is not None:
        commit = state.ledger.state_of(layout.commit)
        status["output"] = _output_status(job["spec"]["output"]["uri"], commit)
    if state.phase in (Phase.SUCCEEDED, Phase.FAILED):
        status["completionTime"] = old.get("completionTime") or now
    conditions = _conditions(old.get("conditions") or [], state, decision, now)
    if queue is not None:
        status["queue"] = runtime.queue_status
        waiting = not queue.admitted and state.phase not in (Phase.SUCCEEDED, Phase.FAILED)
        conditions = set_condition(
            conditions,
            "Queued",
            "True" if waiting else "False",
            queue.reason or ("Admitted" if queue.admitted else "Pending"),
            queue.message,
            now=now,
        )
    if unavailable and state.phase not in (Phase.SUCCEEDED, Phase.FAILED):
        message = "; ".join(f"profile {name}: {why}" for name, why in unavailable.items())
        conditions = set_condition(
            conditions, "HardwareUnavailable", "True", "NoMatchingNode", message, now=now
        )
    elif any(c.get("type") == "HardwareUnavailable" for c in conditions):
        conditions = set_condition(conditions, "HardwareUnavailable", "False", "ProfilesFit", "", now=now)
    status["conditions"] = conditions
    return status


def _input_bytes(runtime: JobRuntime) -> int:
    """The plan's input size, summed once per plan (a plan can have 100,000 shards)."""
    if runtime.input_bytes is None:
        runtime.input_bytes = progress.input_bytes(runtime.plan or [])
    return runtime.input_bytes


def _conditions(
    old: list[dict[str, Any]], state: JobState, decision: Decision, now: str
) -> list[dict[str, Any]]:
    phase = state.phase
    stall = decision.stall
    if stall is not None and phase in (Phase.PENDING, Phase.RUNNING):
        c = set_condition(old, "Progressing", "False", "ProgressDeadlineExceeded", stall.message, now=now)
        c = set_condition(c, "Stalled", "True", stall.reason, stall.message, now=now)
    else:
        c = set_condition(
            old,
            "Progressing",
            "True" if phase in (Phase.PENDING, Phase.RUNNING) else "False",
            phase.value,
            state.message or f"job is {phase.value.lower()}",
            now=now,
        )
        c = set_condition(
            c, "Stalled", "False", "Progressing" if phase is not Phase.FAILED else phase.value, "", now=now
        )
    c = set_condition(
        c, "Succeeded", "True" if phase is Phase.SUCCEEDED else "False", phase.value, state.message, now=now
    )
    failed = phase is Phase.FAILED
    c = set_condition(
        c,
        "Failed",
        "True" if failed else "False",
        (state.reason or phase.value) if failed else phase.value,
        state.message if failed else "",
        now=now,
    )
    c = set_condition(
        c,
        "Suspended",
        "True" if phase is Phase.SUSPENDED else "False",
        "SuspendedByUser" if phase is Phase.SUSPENDED else "NotSuspended",
        "spec.suspend is true; progress is kept" if phase is Phase.SUSPENDED else "",
        now=now,
    )
    if decision.unschedulable:
        c = set_condition(c, "WorkersUnschedulable", "True", "Unschedulable", decision.unschedulable, now=now)
    else:
        c = set_condition(c, "WorkersUnschedulable", "False", "Scheduled", "", now=now)
    if state.given_up:
        # The scheduler's own words, per profile given up on: why the job runs on its fallback hardware.
        message = "; ".join(f"profile {name}: {why}" for name, why in sorted(state.given_up.items()))
        c = set_condition(c, "HardwareFallback", "True", "ProfileUnschedulable", message[:32768], now=now)
    elif any(x.get("type") == "HardwareFallback" for x in c):
        c = set_condition(c, "HardwareFallback", "False", "NoProfileGivenUp", "", now=now)
    c = set_condition(c, "ReconcileFailing", "False", "Reconciled", "", now=now)
    if decision.blocked and phase not in (Phase.SUCCEEDED, Phase.FAILED):
        c = set_condition(c, "WorkersBlocked", "True", decision.blocked[0], decision.blocked[1], now=now)
    else:
        c = set_condition(c, "WorkersBlocked", "False", "WorkersCreated", "", now=now)
    if state.skipped:  # a result built without some of the input says so where people look
        read = state.records + state.skipped
        message = (
            f"{state.skipped} of {read} records read were malformed and skipped (spec.input.badRecordPolicy)"
        )
        c = set_condition(c, "RecordsSkipped", "True", "MalformedRecords", message, now=now)
    return c


def _counts_status(counts: Counts) -> dict[str, Any]:
    """status.shards / status.reduce: tasks by state, and done/total for kubectl get."""
    return {
        "total": counts.total,
        "pending": counts.pending,
        "running": counts.running,
        "succeeded": counts.succeeded,
        "failed": counts.failed,
        "summary": f"{counts.succeeded + counts.failed}/{counts.total}",
    }


COMMIT_STATES = {
    ShardState.PENDING: "Pending",
    ShardState.ASSIGNED: "Running",
    ShardState.SUCCEEDED: "Succeeded",
    ShardState.FAILED: "Failed",
}


def _output_status(uri: str, commit: ShardState) -> dict[str, Any]:
    """status.output: the job commit's state and, once it is done, the result and manifest it wrote."""
    output: dict[str, Any] = {"uri": uri, "commit": COMMIT_STATES[commit]}
    if commit is ShardState.SUCCEEDED:
        base = uri.rstrip("/")
        output.update(result=f"{base}/{committer.RESULT}", manifest=f"{base}/{committer.SUCCESS}")
    return output
