"""Queueing under Kueue (https://kueue.sigs.k8s.io): what a DataJob's Workload says, as pure functions.

A DataJob labelled ``kueue.x-k8s.io/queue-name`` is represented to Kueue by a ``Workload`` it owns, with one
pod set, ``workers``, of ``spec.workers`` pods shaped like its worker pods (``spec.minWorkers`` allows a
partial admission). This is the route Kueue's own job integrations take (jobframework) and that works with
an unmodified Kueue: Kueue's scheduler, quota and preemption act on the Workload and never look at its
owner's kind. The operator then does what an integration does: creates workers only once the Workload is
admitted (with the admitted flavor's node labels and tolerations), stops them gracefully when it is evicted
(preemption, a stopped queue) and then clears the admission so Kueue can queue it again, and marks it
Finished when the job ends, which frees the quota.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from datajob_core.api.conditions import set_condition
from datajob_core.api.models import MULTIKUEUE_MANAGER

QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
# MultiKueue (docs/operations.md, "Multiple clusters"): the manager cluster's copy of a DataJob is managed by
# Kueue; the copy Kueue makes in a worker cluster names the Workload it already made and admitted there.
MULTIKUEUE = MULTIKUEUE_MANAGER
PREBUILT_LABEL = "kueue.x-k8s.io/prebuilt-workload-name"
JOB_UID_LABEL = "kueue.x-k8s.io/job-uid"
PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"  # a Kueue WorkloadPriorityClass
GROUP, VERSION, PLURAL = "kueue.x-k8s.io", "v1beta2", "workloads"
POD_SET = "workers"
MAX_NAME = 253


def queue_name(job: Mapping[str, Any]) -> str | None:
    """The LocalQueue the job was submitted to, or None if it is not queued."""
    return ((job.get("metadata") or {}).get("labels") or {}).get(QUEUE_LABEL) or None


def dispatched_by_multikueue(job: Mapping[str, Any]) -> bool:
    """The manager cluster's copy of a DataJob that MultiKueue runs in a worker cluster."""
    return (job.get("spec") or {}).get("managedBy") == MULTIKUEUE


def workload_name_of(job: Mapping[str, Any]) -> str:
    """The job's Workload: the one MultiKueue made for its copy in this worker cluster, else its own."""
    meta = job.get("metadata") or {}
    return str((meta.get("labels") or {}).get(PREBUILT_LABEL) or workload_name(meta["name"]))


def adoption(workload: Mapping[str, Any], owner: Mapping[str, Any]) -> dict[str, Any] | None:
    """The metadata patch that makes a Workload MultiKueue made (no owner) this DataJob's, as Kueue's own
    integrations adopt a prebuilt Workload: a controller reference (deleting the job deletes it) and the
    job-uid label; None if it is already."""
    meta = workload.get("metadata") or {}
    if any(ref.get("uid") == owner["uid"] for ref in meta.get("ownerReferences") or []):
        return None
    if any(ref.get("controller") for ref in meta.get("ownerReferences") or []):
        return None  # someone else's: never taken over
    return {"metadata": {"ownerReferences": [dict(owner)], "labels": {JOB_UID_LABEL: str(owner["uid"])}}}


def deactivated_on_dispatch(workload: Mapping[str, Any], within: float = 5.0) -> bool:
    """A worker cluster's MultiKueue Workload deactivated "because it was evicted on the manager" within
    ``within`` seconds of its admission here. Kueue v0.17.0 does this to the copy it has just dispatched when
    the manager's eviction (a lost cluster) and the new reservation come in quick succession: released,
    the copy stays inactive and the manager's admission check Pending for good (seen in
    tests/cluster/test_multikueue.py). A real eviction on the manager (preemption, suspend) comes later."""
    evicted, reserved = _condition(workload, "Evicted"), _condition(workload, "QuotaReserved")
    if evicted.get("status") != "True" or evicted.get("reason") != "DeactivatedDueToEvictedOnManagerCluster":
        return False
    if reserved.get("status") != "True":
        return False
    try:
        gap = _epoch(evicted["lastTransitionTime"]) - _epoch(reserved["lastTransitionTime"])
    except (KeyError, ValueError):
        return False
    return gap <= within


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def eviction_reason(workload: Mapping[str, Any]) -> str:
    return str(_condition(workload, "Evicted").get("reason") or "")


def workload_name(job_name: str) -> str:
    """``datajob-<job>``, cut with a hash if too long for an object name."""
    name = f"datajob-{job_name}"
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(job_name.encode()).hexdigest()[:8]
    return f"{name[: MAX_NAME - 9]}-{digest}"


@dataclass(frozen=True)
class PriorityRef:
    group: str  # scheduling.k8s.io (a PriorityClass) or kueue.x-k8s.io (a WorkloadPriorityClass)
    kind: str
    name: str
    value: int


def workload_manifest(
    job: Mapping[str, Any],
    pod: Mapping[str, Any],
    *,
    labels: Mapping[str, str],
    owner: Mapping[str, Any],
    priority: PriorityRef | None,
) -> dict[str, Any]:
    """The Workload for ``job``; ``pod`` is one of its worker pods as it would be created (its shape)."""
    template_spec = copy.deepcopy(dict(pod.get("spec") or {}))
    template_spec.pop("nodeName", None)
    pod_set: dict[str, Any] = {
        "name": POD_SET,
        **_counts(job),
        "template": {"metadata": {"labels": dict(labels)}, "spec": template_spec},
    }
    workload_spec: dict[str, Any] = {"queueName": queue_name(job), "podSets": [pod_set]}
    if priority is not None:
        workload_spec["priority"] = priority.value
        workload_spec["priorityClassRef"] = {
            "group": priority.group,
            "kind": priority.kind,
            "name": priority.name,
        }
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Workload",
        "metadata": {
            "name": workload_name_of(job),
            "labels": dict(labels),
            "ownerReferences": [dict(owner)],
        },
        "spec": workload_spec,
    }


def _counts(job: Mapping[str, Any]) -> dict[str, int]:
    """The pod set's count (spec.workers) and, for a partial admission, minCount (spec.minWorkers)."""
    spec = job["spec"]
    workers = int(spec.get("workers", 1))
    counts = {"count": workers}
    minimum = spec.get("minWorkers")
    if minimum is not None and 0 < int(minimum) < workers:
        counts["minCount"] = int(minimum)
    return counts


def needs_new_workload(
    workload: Mapping[str, Any], job: Mapping[str, Any], pod: Mapping[str, Any] | None = None
) -> bool:
    """Whether the existing Workload no longer describes the job (its size, its queue, or, given ``pod``
    (a worker as it would be created now), what each worker asks for). Kueue keeps pod sets immutable while
    quota is reserved, so the Workload is replaced and the job queued again: an edit of spec.hardware or
    the pod template can never make workers ask for more than Kueue admitted."""
    have = workload.get("spec") or {}
    pod_sets = have.get("podSets") or []
    counts = [{k: p[k] for k in ("count", "minCount") if k in p} for p in pod_sets]
    if counts != [_counts(job)] or have.get("queueName") != queue_name(job):
        return True
    if pod is None or not pod_sets:
        return False
    return _amounts((pod_sets[0].get("template") or {}).get("spec") or {}) != _amounts(pod.get("spec") or {})


def _amounts(pod_spec: Mapping[str, Any]) -> list[Any]:
    """What a pod asks the cluster for: each container's resources and the pod's resource claims."""
    containers = [*(pod_spec.get("initContainers") or []), *(pod_spec.get("containers") or [])]
    return [
        [(c.get("name"), c.get("resources") or {}) for c in containers],
        pod_spec.get("resourceClaims") or [],
    ]


def _condition(workload: Mapping[str, Any], kind: str) -> dict[str, Any]:
    for condition in (workload.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return dict(condition)
    return {}


def _true(workload: Mapping[str, Any], kind: str) -> bool:
    return _condition(workload, kind).get("status") == "True"


@dataclass(frozen=True)
class Admission:
    """What Kueue decided about the job's Workload, for the reconciler and the user."""

    admitted: bool  # workers may run
    workers: int  # how many (fewer than spec.workers after a partial admission)
    evicted: bool = False  # Kueue wants the workers gone (preempted, queue stopped, ...)
    reason: str = ""  # machine-readable, for the Queued condition
    message: str = ""
    cluster_queue: str = ""
    flavors: tuple[str, ...] = ()
    finished: bool = False
    admission: Mapping[str, Any] = field(default_factory=dict)
    node_labels: Mapping[str, str] = field(default_factory=dict)  # of the admitted flavors (the operator's)


def admission_of(workload: Mapping[str, Any] | None, workers: int) -> Admission:
    """Reads the Workload's conditions and admission the way Kueue's job integrations do."""
    if workload is None:
        return Admission(False, 0, reason="WorkloadCreating", message="creating the Workload for Kueue")
    status = workload.get("status") or {}
    admission = status.get("admission") or {}
    if _true(workload, "Finished"):
        # Its run is over (quota freed); a job that runs again (a retry) needs a new Workload.
        return Admission(
            False,
            _admitted_count(admission, workers),
            reason="Finished",
            message="the Workload of this job's run has finished",
            cluster_queue=str(admission.get("clusterQueue") or ""),
            finished=True,
            admission=admission,
        )
    evicted = _condition(workload, "Evicted")
    if evicted.get("status") == "True":
        return Admission(
            False,
            0,
            evicted=True,
            reason="Evicted",
            message=f"evicted by Kueue ({evicted.get('reason')}): {evicted.get('message') or ''}".rstrip(
                ": "
            ),
            cluster_queue=str(admission.get("clusterQueue") or ""),
            admission=admission,
        )
    if _true(workload, "Admitted") and admission:
        count = _admitted_count(admission, workers)
        flavors = tuple(sorted(set((_assignment(admission).get("flavors") or {}).values())))
        return Admission(
            True,
            count,
            reason="Admitted",
            message=f"admitted by ClusterQueue {admission.get('clusterQueue')} with {count} worker(s)"
            + (f", flavor(s) {', '.join(flavors)}" if flavors else ""),
            cluster_queue=str(admission.get("clusterQueue") or ""),
            flavors=flavors,
            admission=admission,
        )
    reserved = _condition(workload, "QuotaReserved")
    message = reserved.get("message") or "waiting for Kueue to admit the Workload"
    return Admission(False, 0, reason=str(reserved.get("reason") or "Pending"), message=str(message))


def _assignment(admission: Mapping[str, Any]) -> Mapping[str, Any]:
    found: Mapping[str, Any] = next(
        (a for a in admission.get("podSetAssignments") or [] if a.get("name") == POD_SET), {}
    )
    return found


def _admitted_count(admission: Mapping[str, Any], workers: int) -> int:
    return int(_assignment(admission).get("count") or workers) if admission else 0


def flavor_placement(flavors: Iterable[Mapping[str, Any]]) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """The node selector and tolerations the admitted ResourceFlavors add to worker pods."""
    selector: dict[str, str] = {}
    tolerations: list[dict[str, Any]] = []
    for flavor in flavors:
        spec = flavor.get("spec") or {}
        selector.update(spec.get("nodeLabels") or {})
        for toleration in spec.get("tolerations") or []:
            if toleration not in tolerations:
                tolerations.append(dict(toleration))
    return selector, tolerations


def released_status(workload: Mapping[str, Any], now: str) -> dict[str, Any]:
    """The Workload status once an evicted job's workers are gone: quota released, admission cleared, and
    (for a preemption or node failure) Requeued, as Kueue's job integrations write it."""
    status = copy.deepcopy(dict(workload.get("status") or {}))
    generation = int((workload.get("metadata") or {}).get("generation") or 0)
    evicted = _condition(workload, "Evicted")
    conditions = list(status.get("conditions") or [])
    requeue = evicted.get("reason") in ("Preempted", "NodeFailures")
    message = str(evicted.get("message") or "")
    for kind, value, reason, text in (
        ("Requeued", "True" if requeue else "False", str(evicted.get("reason") or "Evicted"), message),
        ("QuotaReserved", "False", "Pending", message),
        ("Admitted", "False", "NoReservation", "The workload has no reservation"),
    ):
        conditions = set_condition(conditions, kind, value, reason, text, now=now, generation=generation)
    status["conditions"] = conditions
    status.pop("admission", None)
    return status


def finished_status(workload: Mapping[str, Any], succeeded: bool, message: str, now: str) -> dict[str, Any]:
    """The Workload status once the job has ended: Finished, which frees its quota."""
    status = copy.deepcopy(dict(workload.get("status") or {}))
    generation = int((workload.get("metadata") or {}).get("generation") or 0)
    status["conditions"] = set_condition(
        list(status.get("conditions") or []),
        "Finished",
        "True",
        "Succeeded" if succeeded else "Failed",
        message or ("the job succeeded" if succeeded else "the job failed"),
        now=now,
        generation=generation,
    )
    return status


def queue_position(
    workload: Mapping[str, Any], queued: Iterable[Mapping[str, Any]]
) -> tuple[int, int] | None:
    """(position, of how many) among the not-yet-admitted Workloads of the same LocalQueue, in the order a
    StrictFIFO ClusterQueue admits them (priority, then age); None if this one is not waiting."""
    if _true(workload, "QuotaReserved") or _true(workload, "Finished"):
        return None
    name = (workload.get("spec") or {}).get("queueName")
    waiting = [
        w
        for w in queued
        if (w.get("spec") or {}).get("queueName") == name
        and not _true(w, "QuotaReserved")
        and not _true(w, "Finished")
    ]

    def order(w: Mapping[str, Any]) -> tuple[int, str, str]:
        meta = w.get("metadata") or {}
        return (
            -int((w.get("spec") or {}).get("priority") or 0),
            meta.get("creationTimestamp", ""),
            meta["name"],
        )

    ranked = sorted(waiting, key=order)
    names = [w["metadata"]["name"] for w in ranked]
    me = workload["metadata"]["name"]
    return (names.index(me) + 1, len(names)) if me in names else None
