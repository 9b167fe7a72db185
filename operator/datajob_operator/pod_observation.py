"""A worker pod as the reconciler sees it: its slot, phase, exit, and why it is going away, if it is."""

from __future__ import annotations

from typing import Any

from datajob_core.cluster import node_drain, sizing
from datajob_core.cluster.reconciler import START_ERRORS, ObservedWorker
from datajob_core.cluster.worker_exit import describe_exit
from datajob_core.shards.failure_policy import DISRUPTION_POD_REASONS

from .timestamps import epoch


def observe_pod(
    pod: dict[str, Any],
    nodes: frozenset[str] | None = None,
    draining: dict[str, tuple[str, str]] | None = None,
) -> ObservedWorker | None:
    """What the reconciler needs of a worker pod; ``nodes``, if known, are the nodes that still exist, and
    ``draining`` those going away (node_drain), with why."""
    meta, status = pod["metadata"], pod.get("status") or {}
    slot = (meta.get("labels") or {}).get(sizing.SLOT_LABEL)
    if slot is None or not slot.isdigit():
        return None
    reason = status.get("reason") or ""
    exit_code: int | None = None
    waiting = waiting_reason = ""
    for container in status.get("containerStatuses") or []:
        if container.get("name") != sizing.WORKER_CONTAINER:
            continue
        state = container.get("state") or {}
        terminated = state.get("terminated")
        if terminated:
            exit_code = terminated.get("exitCode")
            reason = describe_exit(exit_code, terminated.get("reason") or "", terminated.get("message") or "")
        waiting_state = state.get("waiting") or {}
        if waiting_state.get("reason") in START_ERRORS:
            waiting_reason = waiting_state["reason"]
            waiting = f"{waiting_reason}: {waiting_state.get('message') or ''}".rstrip(": ")
    if status.get("message"):
        reason = f"{reason}: {status['message']}" if reason else status["message"]
    unschedulable = ""
    disruption = evacuate = ""
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("reason") == "Unschedulable":
            unschedulable = condition.get("message") or "unschedulable"
        if condition.get("type") == "DisruptionTarget" and condition.get("status") == "True":
            disruption = f"{condition.get('reason') or 'DisruptionTarget'}: {condition.get('message') or ''}"
            evacuate = disruption.rstrip(": ")
    if status.get("reason") in DISRUPTION_POD_REASONS:
        disruption = disruption or reason
    phase = status.get("phase") or "Pending"
    node = (pod.get("spec") or {}).get("nodeName")
    if node and nodes is not None and node not in nodes and phase not in ("Succeeded", "Failed"):
        phase, reason = "Failed", f"NodeLost: node {node} no longer exists"
        disruption = reason
    elif node and draining and node in draining:
        key, why = draining[node]
        if not node_drain.tolerates((pod.get("spec") or {}).get("tolerations") or [], key):
            evacuate = why
    return ObservedWorker(
        name=meta["name"],
        slot=int(slot),
        phase=phase,
        deleting=bool(meta.get("deletionTimestamp")),
        started_at=epoch(status.get("startTime")),
        reason=reason,
        unschedulable=unschedulable,
        exit_code=exit_code,
        disruption=disruption.rstrip(": "),
        waiting=waiting,
        waiting_reason=waiting_reason,
        evacuate=evacuate,
        node=node or "",
    )
