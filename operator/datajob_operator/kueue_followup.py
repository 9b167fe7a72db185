"""A DataJob in a Kueue queue: its Workload made, followed and settled (the decisions: cluster.queueing).

The job's pass asks ``follow`` what Kueue decided before reconciling, and tells Kueue the outcome with
``settle`` after acting: finished (quota freed) or evicted workers gone (admission cleared).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from kubernetes.client.rest import ApiException

from datajob_core.cluster import hardware, queueing, sizing
from datajob_core.cluster.queueing import Admission
from datajob_core.cluster.reconciler import RETRY_ANNOTATION, JobState, Phase
from datajob_core.protocol import lease_name

from .informer import Informers
from .job_runtime import JobRuntime
from .kube import ConflictError, JobClient
from .kueue_client import KueueClient
from .timestamps import now_iso


def retry_pending(job: dict[str, Any], state: JobState) -> bool:
    """A retry was asked for (the annotation) that this job has not made yet."""
    request = (job["metadata"].get("annotations") or {}).get(RETRY_ANNOTATION)
    return bool(request) and request != state.retried


class KueueFollowUp:
    """The Kueue side of one job's pass; the Workload is read from the informer cache where it can be."""

    def __init__(
        self,
        jobs: JobClient,
        runtime: JobRuntime,
        observed: Informers | None,
        log: Any,
    ) -> None:
        self.jobs, self.runtime, self.observed, self.log = jobs, runtime, observed, log
        self.client = KueueClient(jobs.custom.api_client, jobs.namespace)

    def _workload(self, job: dict[str, Any]) -> dict[str, Any] | None:
        name = queueing.workload_name_of(job)
        cached = self.observed.workloads_of(self.jobs.namespace, self.jobs.name) if self.observed else None
        if cached is not None:
            found = [w for w in cached if w["metadata"]["name"] == name]
            if found:
                return found[0]
        return self.client.read_workload(name)

    def _shape(self, job: dict[str, Any]) -> dict[str, Any]:
        """A worker as Kueue sees it: the first hardware profile, without the node labels the profiles
        disagree on (Kueue picks the flavor; the workers take the profile that agrees with it)."""
        name = self.jobs.name
        profile = hardware.for_workload(hardware.profiles(job["spec"]))
        return sizing.worker_pod(job, 0, f"{name}-template", lease_name(name, 0), profile=profile)

    def _new_workload(self, job: dict[str, Any]) -> dict[str, Any]:
        shape = self._shape(job)
        return queueing.workload_manifest(
            job,
            shape,
            labels=sizing.worker_labels(self.jobs.name),
            owner=sizing.owner_reference(job),
            priority=self._priority(job),
        )

    def _priority(self, job: dict[str, Any]) -> queueing.PriorityRef | None:
        """Resolved once, when the Workload is made; a class that does not exist means no priority (as for
        a pod), said in the log rather than failing every pass."""
        try:
            return self.client.priority(job)
        except ApiException as error:
            if error.status != 404:
                raise
            self.log.warning("priority class not found; the Workload gets none", error=str(error.reason))
            return None

    def follow(self, job: dict[str, Any], state: JobState) -> Admission | None:
        """For a job in a Kueue queue: makes sure its Workload exists and says what Kueue decided."""
        queue = queueing.queue_name(job)
        if queue is None:
            self._drop_stray_workload()
            return None
        workers = int(job["spec"].get("workers", 1))
        workload = self._workload(job)
        name = queueing.workload_name_of(job)
        self.runtime.queue_status = {"name": queue, "workload": name}
        if workload is not None:
            self._adopt(job, workload)
        if state.phase in (Phase.SUCCEEDED, Phase.FAILED) and not retry_pending(job, state):
            return self._note_admission(queueing.admission_of(workload, workers))
        prebuilt = _prebuilt(job)
        if workload is None:
            if prebuilt:  # MultiKueue's, made before this copy; gone only as the copy is deleted too
                return replace(
                    queueing.admission_of(None, workers), message="waiting for MultiKueue's Workload"
                )
            self.client.create_workload(self._new_workload(job))
            self.log.info("created workload", workload=name, queue=queue)
            return queueing.admission_of(None, workers)
        admission = self._note_admission(queueing.admission_of(workload, workers))
        # MultiKueue's Workload is never replaced or deactivated here: the manager's is the one Kueue queues
        # (and suspends), and a copy runs what it was admitted with.
        if not prebuilt and (
            queueing.needs_new_workload(workload, job, self._shape(job)) or admission.finished
        ):
            # Kueue keeps an admitted Workload's pod sets fixed, and a finished one is over: stop the
            # workers, then queue a new Workload (see settle).
            why = (
                "the job runs again (a retry) after its Workload finished"
                if admission.finished
                else "spec.workers, the queue or what a worker asks for changed"
            )
            return Admission(
                False, 0, evicted=True, reason="Requeued", message=f"{why}: the job is queued again"
            )
        if not prebuilt:
            self._set_active(workload, not job["spec"].get("suspend", False))
        if admission.admitted:
            self.runtime.placement = queueing.flavor_placement(self.client.flavors(admission.flavors))
            return replace(admission, node_labels=dict(self.runtime.placement[0]))
        position = None if admission.evicted else queueing.queue_position(workload, self.client.workloads())
        if position is not None:
            self.runtime.queue_status["position"] = position[0]
            message = f"{admission.message} (position {position[0]} of {position[1]} in LocalQueue {queue})"
            return replace(admission, message=message)
        return admission

    def follow_dispatched(self, job: dict[str, Any]) -> float:
        """A DataJob MultiKueue dispatches from this (manager) cluster: Kueue needs the job's controller to
        make its Workload and, after an eviction (a worker cluster lost), to release it so that it is queued
        again and dispatched elsewhere; spec.suspend deactivates it. Nothing else: no pods here, and the
        status is the worker cluster's copy's, mirrored by Kueue. Returns when to look again."""
        if queueing.queue_name(job) is None:
            if not self.runtime.told_unqueued:
                self.runtime.told_unqueued = True
                self.jobs.post_event(
                    job,
                    "Warning",
                    "NotQueued",
                    f"spec.managedBy is {queueing.MULTIKUEUE} but the DataJob has no {queueing.QUEUE_LABEL} "
                    "label: MultiKueue dispatches only queued jobs, so nothing runs it",
                )
            return 30.0
        workload = self._workload(job)
        if workload is None:
            self.client.create_workload(self._new_workload(job))
            self.log.info("created workload for MultiKueue", workload=queueing.workload_name_of(job))
            return 5.0
        # spec.suspend deactivates the Workload: Kueue evicts it, removing the worker cluster's copy; resuming
        # queues it again, and the next copy continues from the output (spec.output.resume).
        self._set_active(workload, not job["spec"].get("suspend", False))
        # Released once the copy's workers are gone (its mirrored status says so), as Kueue's integrations
        # wait for their job to stop; at once when the admission check evicted it (the worker cluster was
        # lost: its last mirrored status never changes again).
        active = int(((job.get("status") or {}).get("workers") or {}).get("active") or 0)
        lost = queueing.eviction_reason(workload) == "AdmissionCheck"
        if _holds_evicted_admission(workload) and (lost or active == 0):
            try:
                self.client.replace_workload_status(workload, queueing.released_status(workload, now_iso()))
                self.log.info("released evicted workload", workload=workload["metadata"]["name"])
            except ConflictError:
                return 1.0
        return 10.0

    def finish_failed(self, job: dict[str, Any], message: str) -> None:
        """A job that failed before it started: its Workload, if any, is Finished (quota freed)."""
        if queueing.queue_name(job) is None:
            return
        workload = self._workload(job)
        if workload is None or queueing.admission_of(workload, 0).finished:
            return
        try:
            self.client.replace_workload_status(
                workload, queueing.finished_status(workload, False, message, now_iso())
            )
        except ConflictError:
            return  # changed meanwhile; the next pass (30 s) finishes it

    def _adopt(self, job: dict[str, Any], workload: dict[str, Any]) -> None:
        patch = queueing.adoption(workload, sizing.owner_reference(job))
        if patch is not None and _prebuilt(job):
            self.client.patch_workload(workload["metadata"]["name"], patch)
            self.log.info("adopted the Workload MultiKueue made", workload=workload["metadata"]["name"])

    def _set_active(self, workload: dict[str, Any], active: bool) -> None:
        """spec.suspend deactivates the Workload, as for Kueue's own jobs: Kueue evicts it (the workers stop
        and the quota is released) and does not queue it until it is active again."""
        if bool((workload.get("spec") or {}).get("active", True)) != active:
            self.client.set_active(workload["metadata"]["name"], active)

    def _drop_stray_workload(self) -> None:
        """The queue label was removed: the job runs unqueued, and its Workload must not hold quota."""
        cached = self.observed.workloads_of(self.jobs.namespace, self.jobs.name) if self.observed else None
        for workload in cached or []:
            self.client.delete_workload(workload["metadata"]["name"])
            self.log.info(
                "deleted the workload of a job no longer queued", workload=workload["metadata"]["name"]
            )

    def _note_admission(self, admission: Admission) -> Admission:
        """status.queue's clusterQueue and admittedWorkers, from Kueue's admission."""
        if admission.cluster_queue:
            self.runtime.queue_status["clusterQueue"] = admission.cluster_queue
        if admission.admitted or admission.finished:
            self.runtime.queue_status["admittedWorkers"] = admission.workers
        return admission

    def settle(self, job: dict[str, Any], state: JobState, queue: Admission, *, gone: bool) -> None:
        """What an integration tells Kueue: the job finished (quota freed), or its evicted workers are gone
        (admission cleared, so Kueue queues it again)."""
        workload = self._workload(job)
        if workload is None:
            return
        now = now_iso()
        try:
            if state.phase in (Phase.SUCCEEDED, Phase.FAILED):
                if not queueing.admission_of(workload, 0).finished:
                    succeeded = state.phase is Phase.SUCCEEDED
                    self.client.replace_workload_status(
                        workload, queueing.finished_status(workload, succeeded, state.message, now)
                    )
            elif queue.reason == "Requeued" and gone:
                self.client.delete_workload(workload["metadata"]["name"])
            elif queue.evicted and gone and _prebuilt(job) and queueing.deactivated_on_dispatch(workload):
                # Released, it would stay inactive; deleted, MultiKueue makes it again if the manager still
                # dispatches the job here (the job, its status and its ledger stay), or deletes the job.
                self.client.delete_workload(workload["metadata"]["name"])
                self.log.info("deleted the Workload the MultiKueue manager deactivated")
            elif queue.evicted and gone and _holds_evicted_admission(workload):
                self.client.replace_workload_status(workload, queueing.released_status(workload, now))
                self.log.info("released evicted workload", workload=workload["metadata"]["name"])
        except ConflictError:
            return  # Kueue changed it meanwhile; the change wakes the next pass


def _prebuilt(job: dict[str, Any]) -> bool:
    return queueing.PREBUILT_LABEL in (job["metadata"].get("labels") or {})


def _holds_evicted_admission(workload: dict[str, Any]) -> bool:
    """Judged on the snapshot about to be written (with its resourceVersion): the pass's earlier read may
    predate a readmission, whose fresh admission must not be cleared."""
    admitted = bool((workload.get("status") or {}).get("admission"))
    return admitted and queueing.admission_of(workload, 0).evicted
