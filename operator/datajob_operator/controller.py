"""One reconcile pass for one DataJob: observe, decide (pure), persist, act.

Order matters for durability: the new state (ledger) is written to the DataJob status *before* any
assignment or acknowledgement reaches a worker, so a crash at any point repeats work but never loses it,
and never lets two live workers hold the same shard.

The pass loop is here; what it leans on sits beside it: ``pod_observation`` (a pod as the reconciler sees
it), ``plan_loader`` (the shard plan), ``job_storage`` (credentials, storage roots, claiming the output,
collecting checkpoints), ``kueue_followup`` (the job's Workload) and ``status_render`` (the status).
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import structlog
from kubernetes.client.rest import ApiException
from pydantic import ValidationError

from datajob_core.api import pod_policy
from datajob_core.api.conditions import set_condition
from datajob_core.api.identity import output_owner
from datajob_core.api.models import DataJobSpec, format_validation_error
from datajob_core.cluster import hardware, queueing, sizing, state_codec
from datajob_core.cluster.reconciler import (
    DEVICES_REJECTED,
    Decision,
    JobState,
    ObservedReport,
    ObservedWorker,
    Phase,
    Policy,
    deadline_at,
    policy_from_spec,
    reconcile,
)
from datajob_core.data import plan_store
from datajob_core.data.locations import output_inside_input
from datajob_core.data.planning import PlanError
from datajob_core.data.storage_access import StorageAccessError, StorageAccessPolicy
from datajob_core.protocol import ASSIGNMENT_ANNOTATION, ReportMessage, lease_name
from datajob_core.shards.recovery import ResumeMismatchError
from datajob_core.shards.stages import Layout
from datajob_core.storage.batch_log import BatchLogError
from datajob_core.storage.output_identity import OutputInUseError
from datajob_core.storage.stores import StorageError

from . import batch_planner, ledger_recovery, lineage
from .batch_planner import NothingNewError
from .continuous_batches import ContinuousBatches
from .informer import Informers
from .job_runtime import JobRuntime
from .job_storage import JobStorage, StorageCredentialsError
from .kube import (
    AccountConflictError,
    ConflictError,
    JobClient,
    LeaseView,
    NodeDirectory,
    RejectedError,
    api_message,
)
from .kueue_followup import KueueFollowUp
from .lineage import LineageEmitter
from .plan_loader import list_job_inputs, load_plan
from .pod_observation import observe_pod
from .status_render import render_status
from .timestamps import epoch, now_iso

log = structlog.get_logger("datajob.operator")

CLAIM_TEMPLATE_SECONDS = 60.0  # how often a profile's ResourceClaimTemplate is made sure of
UNAVAILABLE_SECONDS = 5.0  # how often profiles are checked against the nodes (HardwareUnavailable)
LINEAGE_GRACE = 600.0  # how long past its TTL a finished job waits for its OpenLineage events
EXPECTATION_SECONDS = 30.0  # after this long, a created pod the cache never showed is not waited for


@dataclass
class PassTimings:
    """Durations one pass measured, for the metrics histograms (see JobController._time)."""

    shard: list[float] = field(default_factory=list)  # committed shard attempts
    replacement: list[float] = field(default_factory=list)  # replacement pod created to running
    queue_wait: list[float] = field(default_factory=list)  # queued to admitted by Kueue


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
        lineage: LineageEmitter | None = None,
    ) -> None:
        self.jobs = jobs
        self.lineage = lineage
        self.observed = observed
        self.worker_account = worker_account or {}
        self.nodes = nodes
        self.runtime = runtime
        self.log = log.bind(namespace=jobs.namespace, job=jobs.name)
        self.last_status: dict[str, Any] | None = None  # the last status written, for metrics
        self.status_writes = 0
        self.kueue = KueueFollowUp(jobs, runtime, observed, self.log)
        self.storage = JobStorage(jobs, runtime, access or StorageAccessPolicy(), self.log)
        self.continuous = ContinuousBatches(jobs, runtime, self.storage, self.log)
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

    # -- one pass ------------------------------------------------------------------------------------
    def reconcile_once(self) -> float | None:
        """Runs one pass; returns the seconds until a time-based decision is due (None: none is), after
        which the next pass must run even if nothing happens (see pacing)."""
        self.timings = PassTimings()
        job = self.jobs.read_job()
        if job is None or job["metadata"].get("deletionTimestamp"):
            return 5.0
        if queueing.dispatched_by_multikueue(job):
            return self.kueue.follow_dispatched(job)
        status = job.get("status") or {}
        spec = job["spec"]
        if status.get("phase") in (Phase.SUCCEEDED, Phase.FAILED) and "ledger" not in status:
            if status.get("phase") == Phase.FAILED:
                # It failed before it started: a Workload made for it must not hold quota.
                self.kueue.finish_failed(job, str(status.get("message") or ""))
            self._lineage(job)
            return self._after_finish(job)

        refused = self._refuse(job)
        if refused is not None:
            return self._fail_before_start(job, *refused)
        try:
            plan = load_plan(job, self.jobs, self.runtime, self.storage)
        except StorageAccessError as error:
            return self._fail_before_start(job, "StorageAccessDenied", str(error))
        except PlanError as error:
            return self._fail_before_start(job, error.reason, str(error))
        except NothingNewError as error:
            if spec.get("mode") == "Continuous":
                return self._waiting_for_input(job)
            return self._nothing_new(job, error)
        except (OutputInUseError, BatchLogError) as error:
            return self._fail_before_start(job, "OutputInUse", str(error))
        except (ValueError, OverflowError, MemoryError) as error:
            # Anything else planning trips over is still this job's problem, not a reason to retry forever.
            return self._fail_before_start(job, "PlanningFailed", f"the input cannot be planned: {error}")
        if not status.get("ledger"):
            try:
                self.storage.claim_output(job)
            except OutputInUseError as error:
                return self._fail_before_start(job, "OutputInUse", str(error))
            except StorageAccessError as error:
                return self._fail_before_start(job, "StorageAccessDenied", str(error))

        if status.get("ledger"):
            state = state_codec.decode(status["ledger"])
        else:
            try:
                state = self._new_state(job, plan)
            except ResumeMismatchError as error:
                return self._fail_before_start(job, "ResumeMismatch", str(error))
            except ledger_recovery.OutputNotVisibleError as error:
                return self._fail_before_start(job, "ResumeNeedsOutput", str(error))
        policy = policy_from_spec(spec, job["metadata"].get("annotations"))
        continuous_job = policy.continuous
        now = time.time()
        nodes = self.nodes.names() if self.nodes else None
        draining = self.nodes.draining() if self.nodes else None
        raw_pods = self._pods()
        pods = [w for w in (observe_pod(p, nodes, draining) for p in raw_pods) if w is not None]
        self._read_devices(raw_pods)
        leases = {view.name: view for view in map(LeaseView.of, self._leases())}
        reports: dict[int, ObservedReport] = {}
        for slot, held in state.slots.items():
            view = leases.get(lease_name(self.jobs.name, slot))
            if view is None:
                continue
            found: list[ReportMessage] = []
            for raw in (view.report, view.report_even):
                if raw:
                    try:
                        found.append(ReportMessage.model_validate_json(raw))
                    except ValueError:
                        self.log.warning("ignoring malformed worker report", lease=view.name)
            # The slot's pod's own report, and the final one of the pod it replaces while that terminates.
            report = next((r for r in found if r.pod == held.pod), found[0] if found else None)
            leaving = next((r for r in found if held.leaving and r.pod == held.leaving), None)
            reports[slot] = ObservedReport(slot, report, epoch(view.renew_time), leaving=leaving)

        if continuous_job:
            self._follow_input(job, state, policy, reports, now)
            plan = self.runtime.plan or plan  # the new batch's, if one began
            policy = self.continuous.size(spec, state, policy)
        queue = self.kueue.follow(job, state)
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
        unavailable = self._unavailable(spec, policy)
        new_status = render_status(
            job,
            state,
            policy,
            pods,
            decision,
            runtime=self.runtime,
            selector=self.jobs.selector,
            queue=queue,
            unavailable=unavailable,
        )
        if continuous_job:
            new_status["batches"] = self.continuous.status(state, now)
            new_status["output"] = self.continuous.output(job) or new_status.get("output")
        elif state.batch is not None:
            batch_planner.show_batch(new_status, spec, state.batch)
        self._tell_unavailable(job, status, unavailable)
        if new_status != status:  # a pass that changed nothing writes nothing
            try:
                self.jobs.replace_status(job, new_status)
            except ConflictError:
                self.timings = PassTimings()  # the next pass measures them again
                return 0.0  # someone else changed the job; observe again
            self.status_writes += 1
        self.last_status = new_status
        self._lineage({**job, "status": new_status})
        self.runtime.create_failures = {}
        self.storage.collect(job, state)
        self._act(job, state, decision, queued=queue is not None)
        if queue is not None:
            self.kueue.settle(
                job, state, queue, gone=not pods and not any(s.pod for s in state.slots.values())
            )
        if decision.finished and not pods:
            return self._after_finish(job)
        due = next_timer(state, policy, reports, now)
        if continuous_job:  # the next listing of the input
            poll = self.continuous.next_poll_in(spec, time.time())
            due = poll if due is None else min(due, poll)
        return due

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
                epoch(queued.get("lastTransitionTime")) if queued and queued.get("status") == "True" else None
            )
            if since is not None:
                self.timings.queue_wait.append(max(0.0, now - since))

    # -- acting ----------------------------------------------------------------------------------------
    def _act(self, job: dict[str, Any], state: JobState, decision: Decision, *, queued: bool = False) -> None:
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
        for slot, decided in decision.assignments.items():
            lease = lease_name(name, slot)
            devices = self.runtime.devices.get(decided.pod)
            message = decided.model_copy(update={"devices": devices}) if devices else decided
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
        every = hardware.profiles(job["spec"])
        profiles = {}
        for slot, _ in decision.create:
            profile = hardware.by_name(every, state.slots[slot].profile)
            # Queued: the shape Kueue admitted (the first profile's), with this profile's placement.
            profiles[slot] = hardware.queued_shape(every, profile) if queued and profile else profile
        refused = self._claim_templates(job, [p for p in profiles.values() if p is not None])
        for slot, pod in decision.create:
            profile = profiles[slot]
            if profile is not None and profile.name in refused:
                self.runtime.create_failures[pod] = (DEVICES_REJECTED, refused[profile.name])
        creates = [(slot, pod) for slot, pod in decision.create if pod not in self.runtime.create_failures]
        in_parallel(
            [
                partial(self._create_pod, job, slot, pod, grace, profiles[slot], state.slots[slot].report_key)
                for slot, pod in creates
            ]
        )
        for event in decision.events:
            self.jobs.post_event(job, event.type, event.reason, event.message)

    def _unavailable(self, spec: dict[str, Any], policy: Policy) -> dict[str, str]:
        """Profiles no node could run a worker of (hardware.unavailable), judged while the job runs, at most
        every UNAVAILABLE_SECONDS (a pass of a 1,000-worker job must not walk every node each time)."""
        if self.nodes is None:
            return {}
        runtime, now = self.runtime, time.monotonic()
        if runtime.unavailable_at and now - runtime.unavailable_at < UNAVAILABLE_SECONDS:
            return runtime.unavailable
        with_devices = any(p.devices for p in policy.profiles)
        classes = self.nodes.device_classes() if with_devices else None
        runtime.unavailable = hardware.unavailable(
            policy.profiles, spec.get("nodeSelector"), self.nodes.nodes(), classes
        )
        runtime.unavailable_at = now
        return runtime.unavailable

    def _tell_unavailable(
        self, job: dict[str, Any], old: dict[str, Any], unavailable: dict[str, str]
    ) -> None:
        if old.get("phase") in (Phase.SUCCEEDED, Phase.FAILED):
            return
        conditions: list[dict[str, Any]] = old.get("conditions") or []
        before = next((c for c in conditions if c.get("type") == "HardwareUnavailable"), {})
        message = "; ".join(f"profile {name}: {why}" for name, why in unavailable.items())
        if unavailable and (before.get("status") != "True" or before.get("message") != message):
            self.jobs.post_event(job, "Warning", "HardwareUnavailable", message)

    def _read_devices(self, pods: list[dict[str, Any]]) -> None:
        """Which devices each worker's claim was allocated: read once per pod, once it is bound to a node
        (the scheduler allocates before it binds); an unreadable claim is not asked again."""
        known = self.runtime.devices
        names = {p["metadata"]["name"] for p in pods}
        for gone in [name for name in known if name not in names]:
            del known[gone]
        for pod in pods:
            name = pod["metadata"]["name"]
            if name in known or not (pod.get("spec") or {}).get("nodeName"):
                continue
            for entry in (pod.get("status") or {}).get("resourceClaimStatuses") or []:
                if entry.get("name") == hardware.CLAIM_NAME and entry.get("resourceClaimName"):
                    claim = self.jobs.read_claim(entry["resourceClaimName"])
                    known[name] = hardware.allocated_devices(claim or {})

    def _claim_templates(self, job: dict[str, Any], profiles: list[hardware.Profile]) -> dict[str, str]:
        """Creates the ResourceClaimTemplates of the profiles with devices; the profiles refused, with why.

        A template of that name that exists already is used only if it is exactly this job's (its owner and
        its request): its name holds the job's UID and the request's hash, so only someone else in the
        namespace could have made a different one. Checked again at most every CLAIM_TEMPLATE_SECONDS, so
        one deleted while the job runs is made again."""
        refused = {}
        owner = job["metadata"]["uid"]
        now = time.monotonic()
        for profile in {p.name: p for p in profiles if p.devices}.values():
            name = hardware.claim_template_name(job, profile)
            if now - self.runtime.claim_templates.get(name, -CLAIM_TEMPLATE_SECONDS) < CLAIM_TEMPLATE_SECONDS:
                continue
            wanted = hardware.claim_template(job, profile, sizing.owner_reference(job))
            try:
                if not self.jobs.create_claim_template(wanted):
                    try:
                        existing = self.jobs.read_claim_template(name) or {}
                    except ApiException as error:  # e.g. no RBAC to get it: cannot be told apart
                        raise RejectedError(api_message(error)) from error
                    owners = (existing.get("metadata") or {}).get("ownerReferences") or []
                    ours = any(o.get("uid") == owner and o.get("controller") for o in owners)
                    same = hardware.device_request(existing.get("spec") or {}) == hardware.device_request(
                        wanted["spec"]
                    )
                    if not ours or not same:
                        raise RejectedError("one of that name exists and is not this job's request")
            except RejectedError as error:
                refused[profile.name] = f"ResourceClaimTemplate {name} of profile {profile.name}: {error}"
                continue
            self.runtime.claim_templates[name] = now
        return refused

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

    def _create_pod(  # noqa: PLR0917 - one partial per pod
        self,
        job: dict[str, Any],
        slot: int,
        pod: str,
        grace: int,
        profile: hardware.Profile | None = None,
        report_key: str = "",
    ) -> None:
        manifest = sizing.worker_pod(
            job,
            slot,
            pod,
            lease_name(self.jobs.name, slot),
            grace_seconds=grace,
            profile=profile,
            report_key=report_key,
        )
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
        inside = output_inside_input(spec["input"]["uris"], spec["output"]["uri"])
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
        if spec.get("autoscaling") and queueing.queue_name(job):
            return "InvalidSpec", (
                "spec.autoscaling cannot be used with a Kueue queue (kueue.x-k8s.io/queue-name): Kueue "
                "admits spec.workers and holds that quota; scale with spec.workers instead"
            )
        mismatch = hardware.queue_mismatch(hardware.profiles(spec)) if queueing.queue_name(job) else ""
        if mismatch:  # Kueue would account one shape while workers asked for another
            return "HardwareNotQueueable", mismatch
        return None

    def record_error(self, error: Exception) -> None:
        """A pass failed: say so in a condition (with the API server's own words), never retry silently."""
        message = (
            api_message(error) if isinstance(error, ApiException) else f"{type(error).__name__}: {error}"
        )
        job = self.jobs.read_job()
        if job is None or queueing.dispatched_by_multikueue(job):
            return  # (a manager cluster's copy: its status is the worker copy's, never this operator's)
        status = dict(job.get("status") or {})
        status["conditions"] = set_condition(
            status.get("conditions") or [],
            "ReconcileFailing",
            "True",
            "Error",
            message[:1024],
            now=now_iso(),
        )
        if status != (job.get("status") or {}):
            try:
                self.jobs.replace_status(job, status)
            except ConflictError:
                return

    def _new_state(self, job: dict[str, Any], plan: list[dict[str, Any]]) -> JobState:
        """A new ledger for the plan; with spec.output.resume, the one the work in the output continues
        (ledger_recovery). Storage errors propagate: the pass is retried, never started afresh instead."""
        spec = job["spec"]
        layout = Layout.for_spec(len(plan), spec)
        if not spec["output"].get("resume"):
            return JobState(layout.ledger(), batch=self.runtime.batch)
        if self.runtime.resumed is not None:  # rebuilt by an earlier pass whose status write did not land
            return state_codec.decode(self.runtime.resumed)
        store = self.storage.output_store(job)
        if store is None:
            # Unchecked, a changed input would meet old commit records shard by shard: refused instead.
            raise ledger_recovery.OutputNotVisibleError(
                f"spec.output.resume: the operator cannot see {spec['output']['uri']} to rebuild the ledger "
                "from it; mount that volume into the operator (under a storage root) or use an s3:// output"
            )
        # The objects' versions (a rewritten object is another input), from the listing the plan was made of.
        inputs, self.runtime.listed = self.runtime.listed, None
        if inputs is None:  # the plan was read back after a restart, or an earlier pass used that listing
            inputs = list_job_inputs(job, self.storage)
        rebuilt = ledger_recovery.resume(store, output_owner(job), layout, plan, inputs)
        if rebuilt.found_work and not self.runtime.told_resumed:
            self.runtime.told_resumed = True
            self.jobs.post_event(job, "Normal", "ResumedFromStorage", rebuilt.summary())
        state = JobState(rebuilt.ledger, batch=self.runtime.batch)
        state.records, state.bytes, state.skipped = rebuilt.records, rebuilt.bytes, rebuilt.skipped
        self.runtime.resumed = state_codec.encode(state)
        return state

    def _fail_before_start(self, job: dict[str, Any], reason: str, message: str) -> float:
        """The job cannot start at all: Failed with a condition and an event naming why; no retrying."""
        status = job.get("status") or {}
        if status.get("phase") == Phase.FAILED and status.get("message") == message:
            return 30.0
        self.log.warning("job cannot start", reason=reason, error=message)
        now = now_iso()
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
        self._lineage({**job, "status": {"phase": Phase.FAILED.value, "message": message}})
        # A Workload made for it already (a MultiKueue worker cluster's prebuilt one is admitted before the
        # first pass) must not hold its quota for the life of a failed job.
        self.kueue.finish_failed(job, message)
        return 30.0

    def _follow_input(
        self,
        job: dict[str, Any],
        state: JobState,
        policy: Policy,
        reports: dict[int, ObservedReport],
        now: float,
    ) -> None:
        """A continuous job's next batch and backlog. A failure here (the store down, an unreadable log
        entry, a link out of the storage roots) is told once as an event and the pass goes on: the running
        batch's workers still need it; listing is tried again at the next poll."""
        try:
            for event in self.continuous.advance(job, state, policy, reports, now):
                self.jobs.post_event(job, event.type, event.reason, event.message)
            self.continuous.observe(job, now)  # the backlog, at most every pollSeconds
        except (
            BatchLogError,
            OutputInUseError,
            PlanError,
            StorageAccessError,
            StorageCredentialsError,
            StorageError,
            OSError,
        ) as error:
            message = f"the input or the batch log cannot be read: {error}"
            self.log.warning("continuous job cannot plan its next batch", error=str(error))
            if self.runtime.input_problem != message:
                self.runtime.input_problem = message
                self.jobs.post_event(job, "Warning", "BatchPlanningFailed", message[:1024])
            return
        self.runtime.input_problem = ""

    def _waiting_for_input(self, job: dict[str, Any]) -> float:
        """A continuous job before its first batch: no input yet (or none no batch took); no pod runs."""
        now = time.time()
        self.continuous.observe(job, now, force=True)
        status = job.get("status") or {}
        message = "waiting for new input"
        new_status = {
            **status,
            "observedGeneration": job["metadata"].get("generation"),
            "phase": Phase.PENDING.value,
            "message": message,
            "batches": self.continuous.status(None, now),
            "startTime": status.get("startTime") or now_iso(),
        }
        output = self.continuous.output(job)
        if output is not None:
            new_status["output"] = output
        if not any(c.get("reason") == "WaitingForInput" for c in status.get("conditions") or []):
            new_status["conditions"] = set_condition(
                status.get("conditions") or [],
                "Progressing",
                "True",
                "WaitingForInput",
                message,
                now=now_iso(),
            )
        if {k: v for k, v in new_status.items() if k != "startTime"} != {
            k: v for k, v in status.items() if k != "startTime"
        }:
            try:
                self.jobs.replace_status(job, new_status)
            except ConflictError:
                return 0.2
        return self.continuous.poll_seconds(job["spec"])

    def _nothing_new(self, job: dict[str, Any], error: NothingNewError) -> float:
        """An incremental run with no new input: Succeeded at once, its output the log's newest result."""
        status = job.get("status") or {}
        if status.get("phase") == Phase.SUCCEEDED:
            return 30.0
        message = str(error)
        now = now_iso()
        conditions = set_condition(
            status.get("conditions") or [], "Succeeded", "True", "NothingNew", message, now=now
        )
        conditions = set_condition(conditions, "Progressing", "False", "NothingNew", message, now=now)
        try:
            self.jobs.replace_status(
                job,
                {
                    "observedGeneration": job["metadata"].get("generation"),
                    "phase": Phase.SUCCEEDED.value,
                    "message": message,
                    "conditions": conditions,
                    "output": batch_planner.result_status(job["spec"]["output"]["uri"], error.last),
                    "startTime": status.get("startTime") or now,
                    "completionTime": now,
                },
            )
        except ConflictError:
            return 0.2
        self.jobs.post_event(job, "Normal", "NothingNew", message)
        return 30.0

    def _lineage(self, job: dict[str, Any]) -> None:
        """OpenLineage events the job owes, sent in the background (lineage.py); never fails the pass."""
        if self.lineage is not None:
            self.lineage.follow(job, lambda value: self.jobs.annotate(lineage.ANNOTATION, value))

    def _after_finish(self, job: dict[str, Any]) -> float:
        ttl = job["spec"].get("ttlSecondsAfterFinished")
        finished = epoch((job.get("status") or {}).get("completionTime"))
        if ttl is None or finished is None:
            return 30.0
        remaining = finished + int(ttl) - time.time()
        if (
            remaining <= 0
            and self.lineage is not None
            and self.lineage.owes(job)
            and remaining > -LINEAGE_GRACE
        ):
            return 5.0  # its COMPLETE or FAIL is not sent yet (the endpoint may be down): a while longer
        if remaining <= 0:
            self.log.info("deleting finished job after ttlSecondsAfterFinished", ttl=ttl)
            self.jobs.delete_job()
            return 30.0
        return min(remaining, 30.0)


# The writes of one pass (assignments, pod creations) go out side by side: a pass that replaces or
# tops up hundreds of workers must not take hundreds of round trips end to end.
_WRITES = concurrent.futures.ThreadPoolExecutor(16, thread_name_prefix="api-write")


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
            # an unschedulable pod moves to the next hardware profile past its profile's wait
            profile = hardware.by_name(policy.profiles, slot.profile) or policy.profiles[0]
            if len(policy.profiles) > 1:
                times.append(slot.created_at + profile.wait_seconds)
    times += [r.renewed_at + policy.heartbeat_timeout for r in reports.values() if r.renewed_at]
    if policy.move_up_seconds:
        times += [state.given_up_at.get(name, 0.0) + policy.move_up_seconds for name in state.given_up]
    if policy.progress_deadline and state.progressed_at and not state.stalled and not policy.suspend:
        times.append(state.progressed_at + policy.progress_deadline)
    deadline = deadline_at(state, policy)
    if deadline is not None and state.phase not in (Phase.SUCCEEDED, Phase.FAILED):
        times.append(deadline)
    future = [t for t in times if t > now]
    return min(future) - now + 0.01 if future else None
