"""One reconcile pass for one DataJob: observe, decide (pure), persist, act.

Order matters for durability: the new state (ledger) is written to the DataJob status *before* any
assignment or acknowledgement reaches a worker, so a crash at any point repeats work but never loses it,
and never lets two live workers hold the same shard.
"""

from __future__ import annotations

import base64
import concurrent.futures
import datetime
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import structlog
from kubernetes.client.rest import ApiException
from pydantic import ValidationError

from datajob_core import (
    committer,
    node_drain,
    output_identity,
    plan_store,
    pod_policy,
    progress,
    queueing,
    sizing,
    state_codec,
    storage_access,
)
from datajob_core.api import DataJobSpec, format_validation_error
from datajob_core.checkpoint_store import CheckpointCollector, CheckpointStore
from datajob_core.conditions import set_condition
from datajob_core.failure_policy import DISRUPTION_POD_REASONS
from datajob_core.inputs import list_inputs
from datajob_core.ledger import Counts, ShardState
from datajob_core.output_identity import OutputInUseError
from datajob_core.planning import PlanError, plan_shards
from datajob_core.protocol import ASSIGNMENT_ANNOTATION, ReportMessage, lease_name
from datajob_core.queueing import Admission
from datajob_core.reconciler import (
    RETRY_ANNOTATION,
    START_ERRORS,
    Decision,
    JobState,
    ObservedReport,
    ObservedWorker,
    Phase,
    Policy,
    policy_from_spec,
    reconcile,
)
from datajob_core.stages import Layout
from datajob_core.storage import ACCESS_KEY, CREDENTIAL_KEYS, SECRET_KEY, StorageConfig, Store, is_remote
from datajob_core.storage_access import StorageAccessError, StorageAccessPolicy

from .informer import Informers
from .kube import (
    AccountConflictError,
    ConflictError,
    JobClient,
    LeaseView,
    NodeDirectory,
    RejectedError,
    api_message,
)
from .kueue_client import KueueClient

log = structlog.get_logger("datajob.operator")

MAX_LAST_WORDS = 300  # of a worker's termination message, in reasons and events
EXPECTATION_SECONDS = 30.0  # after this long, a created pod the cache never showed is not waited for


def _now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _epoch(iso: str | None) -> float | None:
    if not iso:
        return None
    return datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


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
            reason = f"{terminated.get('reason') or 'Error'} (exit code {exit_code})"
            last_words = (terminated.get("message") or "").strip()
            if last_words:
                reason = f"{reason}: {last_words[-MAX_LAST_WORDS:]}"
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
        started_at=_epoch(status.get("startTime")),
        reason=reason,
        unschedulable=unschedulable,
        exit_code=exit_code,
        disruption=disruption.rstrip(": "),
        waiting=waiting,
        waiting_reason=waiting_reason,
        evacuate=evacuate,
    )


@dataclass
class JobRuntime:
    """Per-job memory of one operator process; everything here can be rebuilt from the API server."""

    plan: list[dict[str, Any]] | None = None
    plan_chunks: int = 1
    rbac_leases: frozenset[str] = frozenset()
    leases_created: set[str] = field(default_factory=set)
    last_assignment: dict[str, str] = field(default_factory=dict)
    # Pods the API server refused in the last pass, with its message: the next pass backs those slots off.
    create_failures: dict[str, tuple[str, str]] = field(default_factory=dict)
    collector: CheckpointCollector | None = None
    # Pods created by this process that the informer cache has not shown yet, with when (see _pods).
    expected_pods: dict[str, float] = field(default_factory=dict)
    rates: progress.RateWindow = field(default_factory=progress.RateWindow)  # rebuilt after a restart
    input_bytes: int | None = None  # the plan's input size
    # Under Kueue: the admitted flavors' node selector and tolerations, added to new worker pods.
    placement: tuple[dict[str, str], list[dict[str, Any]]] = ({}, [])
    queue_status: dict[str, Any] = field(default_factory=dict)  # status.queue as of this pass
    replacing: dict[int, float] = field(default_factory=dict)  # slot -> when its worker's death was seen


@dataclass
class PassTimings:
    """Durations one pass measured, for the metrics histograms (see JobController._time)."""

    shard: list[float] = field(default_factory=list)  # committed shard attempts
    replacement: list[float] = field(default_factory=list)  # replacement pod created to running
    queue_wait: list[float] = field(default_factory=list)  # queued to admitted by Kueue


class StorageCredentialsError(Exception):
    """spec.storage.credentialsSecret cannot be used (yet); the pass is retried."""


class JobController:
    def __init__(
        self,
        jobs: JobClient,
        runtime: JobRuntime,
        nodes: NodeDirectory | None = None,
        *,
        worker_account: dict[str, Any] | None = None,
        observed: Informers | None = None,
        access: StorageAccessPolicy | None = None,
    ) -> None:
        self.jobs = jobs
        self.access = access or StorageAccessPolicy()
        self.observed = observed
        self.worker_account = worker_account or {}
        self.nodes = nodes
        self.runtime = runtime
        self.log = log.bind(namespace=jobs.namespace, job=jobs.name)
        self.last_status: dict[str, Any] | None = None  # the last status written, for metrics
        self.status_writes = 0
        self.kueue = KueueClient(jobs.custom.api_client, jobs.namespace)
        # Durations measured by the last pass, for metrics: shard attempts, worker replacements, queue waits.
        self.timings = PassTimings()

    def _pods(self) -> list[dict[str, Any]]:
        """The job's pods: from the shared informer's cache, or listed when there is none (yet).

        Expectations, as client-go controllers keep them: a pod this operator created but the cache has
        not shown yet would look "disappeared" to the reconciler, which would replace it. Until the cache
        has caught up with our own creations (or they are EXPECTATION_SECONDS old), the pass lists.
        """
        cached = self.observed.pods_of(self.jobs.namespace, self.jobs.name) if self.observed else None
        expected = self.runtime.expected_pods
        if cached is not None and expected:
            seen = {p["metadata"]["name"] for p in cached}
            now = time.monotonic()
            for name in [n for n, at in expected.items() if n in seen or now - at > EXPECTATION_SECONDS]:
                del expected[name]
            if expected:
                cached = None
        return self.jobs.list_pods() if cached is None else cached

    def _leases(self) -> list[dict[str, Any]]:
        cached = self.observed.leases_of(self.jobs.namespace, self.jobs.name) if self.observed else None
        return self.jobs.list_leases() if cached is None else cached

    # -- plan ----------------------------------------------------------------------------------------
    def load_plan(self, job: dict[str, Any]) -> list[dict[str, Any]]:
        """The job's shard plan: made once, stored in ConfigMaps (plan_store), read back after a restart."""
        if self.runtime.plan is not None:
            return self.runtime.plan
        names = plan_store.chunk_names(self.jobs.name, 1)
        index = self.jobs.read_config_map(names[0])
        if index is None:
            spec_input = job["spec"]["input"]
            config, credentials = self.storage(job)
            for number, uri in enumerate(spec_input["uris"]):
                # Where a pattern can reach, symlinks resolved, before anything is listed.
                prefix = storage_access.static_prefix(uri.removeprefix("file://")) or "/"
                self._confine(prefix, f"spec.input.uris[{number}]", shown=uri)
            files = list_inputs(spec_input["uris"], config, credentials)
            for found in files:  # a link met below the prefix; its name and target are not told
                self._confine(found.path, "spec.input.uris", shown=None)
            plan = plan_shards(files, spec_input.get("partitioning") or {})
            chunks = plan_store.split(plan_store.encode(plan))
            names = plan_store.chunk_names(self.jobs.name, len(chunks))
            # The index (chunk 0, with the count) goes last: once it exists, every chunk does.
            for name, chunk in reversed(list(zip(names, chunks, strict=True))):
                manifest: dict[str, Any] = {
                    "metadata": {
                        "name": name,
                        "labels": sizing.worker_labels(self.jobs.name),
                        "ownerReferences": [sizing.owner_reference(job)],
                    },
                    "binaryData": {plan_store.PLAN_KEY: base64.b64encode(chunk).decode()},
                }
                if name == names[0]:
                    manifest["data"] = {plan_store.CHUNKS_KEY: str(len(chunks))}
                self.jobs.create_config_map(manifest)
            self.runtime.plan_chunks = len(chunks)
            self.runtime.plan = plan
            return plan
        count = int(index["data"].get(plan_store.CHUNKS_KEY, "1"))
        parts = [base64.b64decode(index["binaryData"][plan_store.PLAN_KEY])]
        for name in plan_store.chunk_names(self.jobs.name, count)[1:]:
            stored = self.jobs.read_config_map(name)
            if stored is None:
                raise RuntimeError(f"plan chunk {name} is missing")
            parts.append(base64.b64decode(stored["binaryData"][plan_store.PLAN_KEY]))
        self.runtime.plan_chunks = count
        self.runtime.plan = plan_store.decode(b"".join(parts))
        return self.runtime.plan

    # -- one pass ------------------------------------------------------------------------------------
    def reconcile_once(self) -> float | None:
        """Runs one pass; returns the seconds until a time-based decision is due (None: none is), after
        which the next pass must run even if nothing happens (see pacing)."""
        self.timings = PassTimings()
        job = self.jobs.read_job()
        if job is None or job["metadata"].get("deletionTimestamp"):
            return 5.0
        status = job.get("status") or {}
        spec = job["spec"]
        if status.get("phase") in (Phase.SUCCEEDED, Phase.FAILED) and "ledger" not in status:
            return self._after_finish(job)

        refused = self._refuse(job)
        if refused is not None:
            return self._fail_before_start(job, *refused)
        try:
            plan = self.load_plan(job)
        except StorageAccessError as error:
            return self._fail_before_start(job, "StorageAccessDenied", str(error))
        except PlanError as error:
            return self._fail_before_start(job, error.reason, str(error))
        except (ValueError, OverflowError, MemoryError) as error:
            # Anything else planning trips over is still this job's problem, not a reason to retry forever.
            return self._fail_before_start(job, "PlanningFailed", f"the input cannot be planned: {error}")
        if not status.get("ledger"):
            try:
                self._claim_output(job)
            except OutputInUseError as error:
                return self._fail_before_start(job, "OutputInUse", str(error))
            except StorageAccessError as error:
                return self._fail_before_start(job, "StorageAccessDenied", str(error))

        state = (
            state_codec.decode(status["ledger"])
            if status.get("ledger")
            else JobState(Layout.for_spec(len(plan), spec).ledger())
        )
        policy = policy_from_spec(spec, job["metadata"].get("annotations"))
        now = time.time()
        nodes = self.nodes.names() if self.nodes else None
        draining = self.nodes.draining() if self.nodes else None
        pods = [w for w in (observe_pod(p, nodes, draining) for p in self._pods()) if w is not None]
        leases = {view.name: view for view in map(LeaseView.of, self._leases())}
        reports: dict[int, ObservedReport] = {}
        for slot in state.slots:
            view = leases.get(lease_name(self.jobs.name, slot))
            if view is None:
                continue
            report = None
            if view.report:
                try:
                    report = ReportMessage.model_validate_json(view.report)
                except ValueError:
                    self.log.warning("ignoring malformed worker report", lease=view.name)
            reports[slot] = ObservedReport(slot, report, _epoch(view.renew_time))

        queue = self._follow_kueue(job, state)
        decision = reconcile(
            self.jobs.name,
            policy,
            state=state,
            workers=pods,
            reports=reports,
            plan=plan,
            now=now,
            create_failures=self.runtime.create_failures,
            queue=queue,
        )
        self._time(status, state, pods, decision, now)
        new_status = self._status(job, state, policy, pods, decision, queue=queue)
        if new_status != status:  # a pass that changed nothing writes nothing
            try:
                self.jobs.replace_status(job, new_status)
            except ConflictError:
                self.timings = PassTimings()  # the next pass measures them again
                return 0.0  # someone else changed the job; observe again
            self.status_writes += 1
        self.last_status = new_status
        self.runtime.create_failures = {}
        self._collect(job, state)
        self._act(job, state, decision)
        if queue is not None:
            self._settle_workload(
                job, state, queue, gone=not pods and not any(s.pod for s in state.slots.values())
            )
        if decision.finished and not pods:
            return self._after_finish(job)
        return next_timer(state, policy, reports, now)

    def _time(
        self, old: dict[str, Any], state: JobState, pods: list[ObservedWorker], decision: Decision, now: float
    ) -> None:
        """Durations for metrics: committed shard attempts, worker replacements (replacement pod created to
        running), and the wait for Kueue's admission."""
        replacing = self.runtime.replacing
        self.timings = PassTimings(shard=list(decision.shard_seconds))
        running = {w.slot for w in pods if w.phase == "Running" and not w.deleting}
        for slot in [s for s in replacing if s in running]:
            self.timings.replacement.append(time.monotonic() - replacing.pop(slot))
        for slot, _ in decision.create:
            if state.slots[slot].incarnation > 1:
                replacing.setdefault(slot, time.monotonic())
        for slot in [s for s in replacing if not state.slots[s].pod]:  # stopped (suspend, queue): not a wait
            del replacing[slot]
        if any(e.reason == "Admitted" for e in decision.events):
            queued = next((c for c in old.get("conditions") or [] if c.get("type") == "Queued"), None)
            since = (
                _epoch(queued.get("lastTransitionTime"))
                if queued and queued.get("status") == "True"
                else None
            )
            if since is not None:
                self.timings.queue_wait.append(max(0.0, now - since))

    # -- acting ----------------------------------------------------------------------------------------
    def _act(self, job: dict[str, Any], state: JobState, decision: Decision) -> None:
        name = self.jobs.name
        leases = sorted(lease_name(name, slot) for slot in state.slots)
        if leases and frozenset(leases) - self.runtime.rbac_leases:
            try:
                self.jobs.apply_worker_rbac(
                    *sizing.worker_rbac(
                        job,
                        sorted(self.runtime.rbac_leases | set(leases)),
                        account_template=self.worker_account,
                        plan=plan_store.chunk_names(name, self.runtime.plan_chunks),
                    )
                )
            except AccountConflictError as error:
                # No pod may run without its own account: the slots back off with a WorkersBlocked condition.
                for _, pod in decision.create:
                    self.runtime.create_failures[pod] = ("WorkerAccountConflict", str(error))
                self.log.warning("worker account conflict", error=str(error))
                decision = replace(decision, create=[])
            else:
                self.runtime.rbac_leases |= frozenset(leases)
        writes = []
        for slot, message in decision.assignments.items():
            lease = lease_name(name, slot)
            encoded = message.model_dump_json()
            if self.runtime.last_assignment.get(lease) != encoded:
                writes.append(partial(self._assign, job, slot, lease, encoded, message.pod))
        in_parallel(writes)
        in_parallel(
            [partial(self.jobs.delete_pod, pod, None if graceful else 0) for pod, graceful in decision.delete]
        )
        grace = 30
        problems = pod_policy.violations((job["spec"].get("podTemplate") or {}).get("spec"))
        if problems and decision.create:
            for _, pod in decision.create:
                self.runtime.create_failures[pod] = ("PodTemplateRejected", "; ".join(problems))
            decision = replace(decision, create=[])
        in_parallel([partial(self._create_pod, job, slot, pod, grace) for slot, pod in decision.create])
        for event in decision.events:
            self.jobs.post_event(job, event.type, event.reason, event.message)

    def _assign(self, job: dict[str, Any], slot: int, lease: str, encoded: str, pod: str) -> None:
        created = False
        if lease not in self.runtime.leases_created:
            # A new Lease is created with its first assignment: one request, not two.
            manifest = sizing.slot_lease(job, slot)
            manifest["metadata"]["annotations"] = {ASSIGNMENT_ANNOTATION: encoded}
            manifest["spec"]["holderIdentity"] = pod
            created = self.jobs.create_lease(manifest)
            self.runtime.leases_created.add(lease)
        if not created:
            self.jobs.write_assignment(lease, encoded, pod)
        self.runtime.last_assignment[lease] = encoded

    def _create_pod(self, job: dict[str, Any], slot: int, pod: str, grace: int) -> None:
        manifest = sizing.worker_pod(job, slot, pod, lease_name(self.jobs.name, slot), grace_seconds=grace)
        selector, tolerations = self.runtime.placement
        if selector or tolerations:  # the flavor Kueue admitted the job with
            spec = manifest["spec"]
            spec["nodeSelector"] = {**(spec.get("nodeSelector") or {}), **selector}
            spec["tolerations"] = [*(spec.get("tolerations") or []), *tolerations]
        try:
            self.jobs.create_pod(manifest)
        except RejectedError as error:
            # Quota, Pod Security, a webhook, a LimitRange: the next pass backs off and tells the user.
            self.runtime.create_failures[pod] = ("PodCreateRejected", str(error))
            self.log.warning("worker pod rejected by the API server", pod=pod, error=str(error))
            return
        self.runtime.expected_pods[pod] = time.monotonic()
        self.log.info("created worker", pod=pod, slot=slot)
        self.jobs.post_event(job, "Normal", "WorkerCreated", f"created worker pod {pod} (slot {slot})")

    # -- queueing under Kueue (datajob_core.queueing) --------------------------------------------------
    def _workload(self) -> dict[str, Any] | None:
        name = queueing.workload_name(self.jobs.name)
        cached = self.observed.workloads_of(self.jobs.namespace, self.jobs.name) if self.observed else None
        if cached is not None:
            found = [w for w in cached if w["metadata"]["name"] == name]
            if found:
                return found[0]
        return self.kueue.read_workload(name)

    def _new_workload(self, job: dict[str, Any]) -> dict[str, Any]:
        name = self.jobs.name
        shape = sizing.worker_pod(job, 0, f"{name}-template", lease_name(name, 0))
        return queueing.workload_manifest(
            job,
            shape,
            labels=sizing.worker_labels(name),
            owner=sizing.owner_reference(job),
            priority=self._priority(job),
        )

    def _priority(self, job: dict[str, Any]) -> queueing.PriorityRef | None:
        """Resolved once, when the Workload is made; a class that does not exist means no priority (as for
        a pod), said in the log rather than failing every pass."""
        try:
            return self.kueue.priority(job)
        except ApiException as error:
            if error.status != 404:
                raise
            self.log.warning("priority class not found; the Workload gets none", error=str(error.reason))
            return None

    def _follow_kueue(self, job: dict[str, Any], state: JobState) -> Admission | None:
        """For a job in a Kueue queue: makes sure its Workload exists and says what Kueue decided."""
        queue = queueing.queue_name(job)
        if queue is None:
            self._drop_stray_workload()
            return None
        workers = int(job["spec"].get("workers", 1))
        workload = self._workload()
        name = queueing.workload_name(self.jobs.name)
        self.runtime.queue_status = {"name": queue, "workload": name}
        if state.phase in (Phase.SUCCEEDED, Phase.FAILED) and not _retry_pending(job, state):
            return self._note_admission(queueing.admission_of(workload, workers))
        if workload is None:
            self.kueue.create_workload(self._new_workload(job))
            self.log.info("created workload", workload=name, queue=queue)
            return queueing.admission_of(None, workers)
        admission = self._note_admission(queueing.admission_of(workload, workers))
        if queueing.needs_new_workload(workload, job) or admission.finished:
            # Kueue keeps an admitted Workload's pod sets fixed, and a finished one is over: stop the
            # workers, then queue a new Workload (see _settle_workload).
            why = (
                "the job runs again (a retry) after its Workload finished"
                if admission.finished
                else "spec.workers or the queue changed"
            )
            return Admission(
                False, 0, evicted=True, reason="Requeued", message=f"{why}: the job is queued again"
            )
        self._set_active(workload, not job["spec"].get("suspend", False))
        if admission.admitted:
            self.runtime.placement = queueing.flavor_placement(self.kueue.flavors(admission.flavors))
            return admission
        position = None if admission.evicted else queueing.queue_position(workload, self.kueue.workloads())
        if position is not None:
            self.runtime.queue_status["position"] = position[0]
            message = f"{admission.message} (position {position[0]} of {position[1]} in LocalQueue {queue})"
            return replace(admission, message=message)
        return admission

    def _set_active(self, workload: dict[str, Any], active: bool) -> None:
        """spec.suspend deactivates the Workload, as for Kueue's own jobs: Kueue evicts it (the workers stop
        and the quota is released) and does not queue it until it is active again."""
        if bool((workload.get("spec") or {}).get("active", True)) != active:
            self.kueue.set_active(workload["metadata"]["name"], active)

    def _drop_stray_workload(self) -> None:
        """The queue label was removed: the job runs unqueued, and its Workload must not hold quota."""
        cached = self.observed.workloads_of(self.jobs.namespace, self.jobs.name) if self.observed else None
        for workload in cached or []:
            self.kueue.delete_workload(workload["metadata"]["name"])
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

    def _settle_workload(self, job: dict[str, Any], state: JobState, queue: Admission, *, gone: bool) -> None:
        """What an integration tells Kueue: the job finished (quota freed), or its evicted workers are gone
        (admission cleared, so Kueue queues it again)."""
        workload = self._workload()
        if workload is None:
            return
        now = _now_iso()
        try:
            if state.phase in (Phase.SUCCEEDED, Phase.FAILED):
                if not queueing.admission_of(workload, 0).finished:
                    succeeded = state.phase is Phase.SUCCEEDED
                    self.kueue.replace_workload_status(
                        workload, queueing.finished_status(workload, succeeded, state.message, now)
                    )
            elif queue.reason == "Requeued" and gone:
                self.kueue.delete_workload(workload["metadata"]["name"])
            elif queue.evicted and gone and _holds_evicted_admission(workload):
                self.kueue.replace_workload_status(workload, queueing.released_status(workload, now))
                self.log.info("released evicted workload", workload=workload["metadata"]["name"])
        except ConflictError:
            return  # Kueue changed it meanwhile; the change wakes the next pass

    def storage(self, job: dict[str, Any]) -> tuple[StorageConfig, dict[str, str] | None]:
        """spec.storage and the job's credentials from its Secret (None: the operator's own identity), once
        every location the job names is one the operator may act on for it (storage_access); raises
        StorageAccessError otherwise, before any request is sent."""
        storage = job["spec"].get("storage") or {}
        config = StorageConfig.from_spec(storage)
        credentials, why = self._credentials(storage.get("credentialsSecret"))
        storage_access.check_job(
            self.access,
            self.jobs.namespace,
            job["spec"],
            has_credentials=credentials is not None,
            why_no_credentials=why,
        )
        return config, credentials

    def _credentials(self, secret: str | None) -> tuple[dict[str, str] | None, str]:
        """The job's Secret's AWS keys, or None and why there are none."""
        if not secret:
            return None, "spec.storage.credentialsSecret is not set"
        try:
            credentials = self.jobs.read_secret(secret, CREDENTIAL_KEYS)
        except ApiException as error:
            if error.status != 403:
                raise
            # Installed without access to Secrets (storage.operatorReadsSecrets=false): only the
            # administrator's storage roots are reachable, with the operator's own identity.
            return None, "this operator may not read Secrets (storage.operatorReadsSecrets=false)"
        # Raised, not failed: the Secret may come after the job (as for a pod); ReconcileFailing says so.
        if credentials is None:
            raise StorageCredentialsError(
                f"spec.storage.credentialsSecret: Secret {self.jobs.namespace}/{secret} does not exist"
            )
        missing = [k for k in (ACCESS_KEY, SECRET_KEY) if not credentials.get(k)]
        if missing:
            raise StorageCredentialsError(
                f"spec.storage.credentialsSecret: Secret {self.jobs.namespace}/{secret} has no "
                f"{' or '.join(missing)}"
            )
        return credentials, ""

    def _confine(self, path: str, field: str, shown: str | None = "") -> None:
        """A local path the operator touches must stay under a storage root once symlinks are resolved:
        a link inside the job's root must not lead it into another namespace's directory. ``shown``: what
        the refusal may name ("": the path and where it leads; None: neither, for a listed file)."""
        if is_remote(path):
            return
        real = os.path.realpath(path.removeprefix("file://"))
        roots = [os.path.realpath(r) for r in self.access.roots_for(self.jobs.namespace) if not is_remote(r)]
        if any(storage_access.inside(real, root) for root in roots):
            return
        if shown is None:
            raise StorageAccessError(
                field, "a file it matches is, through a symbolic link, outside this namespace's storage roots"
            )
        raise StorageAccessError(
            field, f"{shown or path} resolves to {real}, outside this namespace's storage roots"
        )

    def _output_store(self, job: dict[str, Any]) -> Store | None:
        """The job's output as the operator may reach it: an object store (with the job's credentials or,
        under a storage root, its own identity), or a directory mounted into the operator as into the
        workers; None if it cannot see it. Raises StorageAccessError where it may not act."""
        output = (job["spec"].get("output") or {}).get("uri", "")
        if is_remote(output):
            return Store(output, *self.storage(job))
        # A path: no Secret is involved (nor read), only the administrator's roots.
        storage_access.check_location(self.access, self.jobs.namespace, "spec.output.uri", output)
        if not Path(output.removeprefix("file://")).parent.is_dir():
            return None
        self._confine(output, "spec.output.uri")
        return Store(output)

    def _claim_output(self, job: dict[str, Any]) -> None:
        """Marks the output as this job's (its UID), or raises OutputInUseError saying whose it is.

        Only where the operator sees the output; workers check every commit record's owner in any case.
        """
        store = self._output_store(job)
        if store is None:
            return
        meta = job["metadata"]
        owner = {"job": meta["name"], "namespace": meta.get("namespace"), "id": meta["uid"]}
        output_identity.claim(store, owner, overwrite=bool(job["spec"]["output"].get("overwrite")))

    def _collect(self, job: dict[str, Any], state: JobState) -> None:
        """Deletes checkpoint files the just-persisted ledger made redundant (fencing: docs/design.md).

        Best effort: checkpoints left behind are removed by the job commit, so no failure here may keep
        the pass from acting (a Secret gone, a store down, roots changed)."""
        try:
            if self.runtime.collector is None:
                store = self._output_store(job)
                if store is None or not store.exists(""):
                    return  # not reachable from the operator (or nothing written yet): files stay until then
                self.runtime.collector = CheckpointCollector(CheckpointStore(store))
            output = job["spec"]["output"]["uri"]
            # Again each pass before deleting: a worker may have made its output a symbolic link since.
            self._confine(output, "spec.output.uri")
            problem = self.runtime.collector.after_persist(state.ledger)
            if state.phase is Phase.SUCCEEDED:
                self.runtime.collector.store.remove_all()
        except Exception as error:  # noqa: BLE001 - see the docstring
            self.log.warning("not collecting checkpoints", error=str(error))
            return
        if problem:
            self.log.warning(problem)

    def _status(
        self,
        job: dict[str, Any],
        state: JobState,
        policy: Policy,
        pods: list[ObservedWorker],
        decision: Decision,
        *,
        queue: Admission | None = None,
    ) -> dict[str, Any]:
        old = job.get("status") or {}
        layout = Layout.of(state.ledger)
        counts = state.ledger.counts(0, layout.map_shards)
        live = [p for p in pods if not p.deleting and p.phase in ("Pending", "Running")]
        ready = [p for p in live if p.phase == "Running"]
        desired = 0 if state.phase in (Phase.SUCCEEDED, Phase.FAILED) or policy.suspend else policy.workers
        if queue is not None:  # under Kueue: what it admitted, none while queued
            desired = min(desired, queue.workers) if queue.admitted else 0
        now = _now_iso()
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
                "selector": self.jobs.selector,
            },
            "restarts": state.restarts,
            "disruptions": state.disruptions,
            "processed": {"records": state.records, "bytes": state.bytes, "skippedRecords": state.skipped},
            "startTime": old.get("startTime") or now,
            "ledger": state_codec.encode(state),
        }
        position = progress.position(
            state.ledger,
            layout.map_shards,
            committed_records=state.records,
            committed_bytes=state.bytes,
            total_bytes=self._input_bytes(),
        )
        self.runtime.rates.add(time.time(), position)
        status["progress"] = progress.progress_status(
            position,
            self.runtime.rates.rates(),
            finished=state.phase is Phase.SUCCEEDED,
            stalled=decision.stall is not None,
            running=state.phase is Phase.RUNNING,
        )
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
            status["queue"] = self.runtime.queue_status
            waiting = not queue.admitted and state.phase not in (Phase.SUCCEEDED, Phase.FAILED)
            conditions = set_condition(
                conditions,
                "Queued",
                "True" if waiting else "False",
                queue.reason or ("Admitted" if queue.admitted else "Pending"),
                queue.message,
                now=now,
            )
        status["conditions"] = conditions
        return status

    def _input_bytes(self) -> int:
        """The plan's input size, summed once per plan (a plan can have 100,000 shards)."""
        if self.runtime.input_bytes is None:
            self.runtime.input_bytes = progress.input_bytes(self.runtime.plan or [])
        return self.runtime.input_bytes

    def _refuse(self, job: dict[str, Any]) -> tuple[str, str] | None:
        """A spec the admission rules should have stopped (an old CRD, rules bypassed): (reason, message).

        Checked again here because the operator, not the CRD, is what stands between a DataJob author and
        a privileged pod.
        """
        if (job.get("status") or {}).get("ledger"):
            return None  # started: a template changed since is refused pod by pod (see _act), ledger kept
        spec = job["spec"]
        problems = pod_policy.violations((spec.get("podTemplate") or {}).get("spec"))
        if problems:
            return "PodTemplateRejected", "; ".join(problems)
        inside = output_identity.output_inside_input(spec["input"]["uris"], spec["output"]["uri"])
        if inside is not None:  # CEL cannot match globs, so this check is the operator's
            return "OutputInsideInput", (
                f"spec.output.uri {spec['output']['uri']} is inside the input set ({inside}): the job would "
                "read its own output"
            )
        try:
            # The same rules local mode applies, including those CEL cannot express (a grep regex).
            DataJobSpec.model_validate(spec)
        except ValidationError as error:
            return "InvalidSpec", format_validation_error(error)
        return None

    def record_error(self, error: Exception) -> None:
        """A pass failed: say so in a condition (with the API server's own words), never retry silently."""
        message = (
            api_message(error) if isinstance(error, ApiException) else f"{type(error).__name__}: {error}"
        )
        job = self.jobs.read_job()
        if job is None:
            return
        status = dict(job.get("status") or {})
        status["conditions"] = set_condition(
            status.get("conditions") or [],
            "ReconcileFailing",
            "True",
            "Error",
            message[:1024],
            now=_now_iso(),
        )
        if status != (job.get("status") or {}):
            try:
                self.jobs.replace_status(job, status)
            except ConflictError:
                return

    def _fail_before_start(self, job: dict[str, Any], reason: str, message: str) -> float:
        """The job cannot start at all: Failed with a condition and an event naming why; no retrying."""
        status = job.get("status") or {}
        if status.get("phase") == Phase.FAILED and status.get("message") == message:
            return 30.0
        self.log.warning("job cannot start", reason=reason, error=message)
        now = _now_iso()
        conditions = set_condition(status.get("conditions") or [], "Failed", "True", reason, message, now=now)
        conditions = set_condition(conditions, "Progressing", "False", reason, message, now=now)
        try:
            self.jobs.replace_status(
                job,
                {
                    "observedGeneration": job["metadata"].get("generation"),
                    "phase": Phase.FAILED.value,
                    "message": message,
                    "conditions": conditions,
                    "completionTime": now,
                },
            )
        except ConflictError:
            return 0.2
        self.jobs.post_event(job, "Warning", reason, message)
        return 30.0

    def _after_finish(self, job: dict[str, Any]) -> float:
        ttl = job["spec"].get("ttlSecondsAfterFinished")
        finished = _epoch((job.get("status") or {}).get("completionTime"))
        if ttl is None or finished is None:
            return 30.0
        remaining = finished + int(ttl) - time.time()
        if remaining <= 0:
            self.log.info("deleting finished job after ttlSecondsAfterFinished", ttl=ttl)
            self.jobs.delete_job()
            return 30.0
        return min(remaining, 30.0)


# The writes of one pass (assignments, pod creations) go out side by side: a pass that replaces or
# tops up hundreds of workers must not take hundreds of round trips end to end.
_WRITES = concurrent.futures.ThreadPoolExecutor(16, thread_name_prefix="api-write")


def _holds_evicted_admission(workload: dict[str, Any]) -> bool:
    """Judged on the snapshot about to be written (with its resourceVersion): the pass's earlier read may
    predate a readmission, whose fresh admission must not be cleared."""
    admitted = bool((workload.get("status") or {}).get("admission"))
    return admitted and queueing.admission_of(workload, 0).evicted


def _retry_pending(job: dict[str, Any], state: JobState) -> bool:
    request = (job["metadata"].get("annotations") or {}).get(RETRY_ANNOTATION)
    return bool(request) and request != state.retried


def in_parallel(calls: Sequence[Callable[[], object]]) -> None:
    """Runs the calls concurrently and waits for all; then raises the first error, if any (the pass
    fails and is retried, like a sequential pass that stopped at that call)."""
    if len(calls) <= 1:
        for call in calls:
            call()
        return
    futures = [_WRITES.submit(call) for call in calls]
    errors = [f.exception() for f in futures]
    first = next((e for e in errors if e is not None), None)
    if first is not None:
        raise first


def next_timer(
    state: JobState, policy: Policy, reports: dict[int, ObservedReport], now: float
) -> float | None:
    """Seconds until the earliest decision that depends on time alone (no event will announce it): a
    retry backoff or a crash-loop backoff ending, a heartbeat or start-up deadline. None if there is none."""
    times = [state.ledger.next_retry_time() or 0.0]
    for slot in state.slots.values():
        times.append(slot.not_before)
        if slot.pod and slot.created_at:
            times.append(slot.created_at + policy.startup_timeout)
    times += [r.renewed_at + policy.heartbeat_timeout for r in reports.values() if r.renewed_at]
    if policy.progress_deadline and state.progressed_at and not state.stalled and not policy.suspend:
        times.append(state.progressed_at + policy.progress_deadline)
    future = [t for t in times if t > now]
    return min(future) - now + 0.01 if future else None


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
