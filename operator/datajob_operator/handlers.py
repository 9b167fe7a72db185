"""kopf wiring: one event-driven reconcile loop (an async kopf daemon) per DataJob, woken by shared
informers (pods, Leases) and DataJob events. No decisions are made here."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import kopf
import structlog
import yaml
from kubernetes import client, config

from datajob_core.api.models import OPERATOR_MANAGER
from datajob_core.cluster.node_drain import draining_reason
from datajob_core.cluster.queueing import MULTIKUEUE
from datajob_core.cluster.reconciler import RETRY_ANNOTATION
from datajob_core.data.storage_access import StorageAccessPolicy
from datajob_core.protocol import REPORT_ANNOTATIONS

from . import informer, metrics
from .controller import JobController, PassTimings
from .informer import Informers
from .job_runtime import JobRuntime
from .kube import GROUP, PLURAL, VERSION, JobClient, NodeDirectory
from .lineage import LineageEmitter
from .pacing import Pacer

log = structlog.get_logger("datajob.operator")

ERROR_BACKOFF_SECONDS = 5.0


@dataclass
class OperatorOptions:
    """Process-wide settings from the command line (see __main__)."""

    peering_lifetime: int = 30
    worker_account: dict[str, Any] = field(default_factory=dict)
    namespaces: list[str] = field(default_factory=list)  # empty: cluster-wide
    reconcile_threads: int = 4
    storage_access: StorageAccessPolicy = field(default_factory=StorageAccessPolicy)
    lineage: LineageEmitter | None = None  # --openlineage-url


OPTIONS = OperatorOptions()


def load_account_template(path: str) -> dict[str, Any]:
    """The chart's worker ServiceAccount template: only metadata labels/annotations and imagePullSecrets."""
    with open(path) as handle:
        template = yaml.safe_load(handle) or {}
    allowed = {"metadata", "imagePullSecrets", "automountServiceAccountToken"}
    unknown = set(template) - allowed
    if unknown:
        raise SystemExit(f"{path}: unsupported keys {sorted(unknown)}; allowed: {sorted(allowed)}")
    return dict(template)


_api: client.ApiClient | None = None
_api_lock = threading.RLock()


API_CONNECTIONS = 32  # reconcile threads x concurrent writes of a pass, and the informers' watches


def api_client() -> client.ApiClient:
    global _api  # noqa: PLW0603 - one connection pool for all job threads
    with _api_lock:
        if _api is None:
            try:
                config.load_incluster_config()
            except config.ConfigException:
                config.load_kube_config()
            configuration = client.Configuration.get_default_copy()
            configuration.connection_pool_maxsize = API_CONNECTIONS
            _api = client.ApiClient(configuration)
        return _api


_nodes: NodeDirectory | None = None


def node_directory() -> NodeDirectory:
    global _nodes  # noqa: PLW0603 - one node listing shared by all job threads
    with _api_lock:
        if _nodes is None:
            watched = _informers.node_objects if _informers is not None else None
            _nodes = NodeDirectory(_api or api_client(), watched=watched)
        return _nodes


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    prefix = "datajob.dev"
    settings.persistence.finalizer = f"{prefix}/operator"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=prefix)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=prefix, key="last-handled-configuration"
    )
    settings.watching.server_timeout = 120
    settings.peering.lifetime = OPTIONS.peering_lifetime
    settings.posting.level = 30  # kopf's own events: warnings and errors only; the controller posts the rest


class JobSignal:
    """One job's wake-up: the informer threads and kopf's DataJob events mark news on it, its loop waits
    on it. All methods run on the event loop (threads go through ``call_soon_threadsafe``)."""

    def __init__(self) -> None:
        self.pacer = Pacer()
        self.event = asyncio.Event()
        self.generation: int | None = None
        self.retry: str | None = None  # the retry-failed annotation as last seen

    def news(self, urgent: bool) -> None:
        self.pacer.news(urgent=urgent)
        self.event.set()

    def terminating(self) -> None:
        self.pacer.terminating(time.monotonic())
        self.event.set()

    async def wait(self, stopped: kopf.DaemonStopped) -> None:
        """Until the pacer says the next pass is due (or the daemon is stopped)."""
        while not stopped:
            delay = self.pacer.due(time.monotonic()) - time.monotonic()
            if delay <= 0:
                return
            self.event.clear()
            # Capped, so that a stop request is noticed within a second.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.event.wait(), min(delay, 1.0))


_signals: dict[tuple[str, str], JobSignal] = {}
_loop: asyncio.AbstractEventLoop | None = None


def _from_informer(kind: str) -> informer.OnChange:
    """A change seen by a pod or Lease informer (in its thread): wakes that job's loop.

    Pod changes are urgent (a worker failed or was deleted), except a pod that is terminating, which is news
    soon (see pacing); a Lease change counts only if a worker's
    report changed (not a bare heartbeat, nor the operator's own assignment), and is coalesced.
    """

    def on_change(
        namespace: str, job: str, event: str, obj: dict[str, Any], old: dict[str, Any] | None
    ) -> None:
        if kind == "leases" and event == "MODIFIED" and old is not None and not _worker_wrote(old, obj):
            return
        loop = _loop
        signal = _signals.get((namespace, job))
        if loop is None or signal is None:
            return
        if kind == "pods" and event == "MODIFIED" and obj.get("metadata", {}).get("deletionTimestamp"):
            loop.call_soon_threadsafe(signal.terminating)
        else:
            loop.call_soon_threadsafe(signal.news, kind in ("pods", "workloads"))

    return on_change


def _node_changed(
    namespace: str, job: str, event: str, obj: dict[str, Any], old: dict[str, Any] | None
) -> None:
    """A node was deleted, or started (or stopped) being drained: the jobs with a worker on it look now.

    A deleted node's pods are lost, though the pod objects stay until the pod garbage collector removes
    them about a minute later; a draining node's workers are moved before the drain kills them.
    """
    gone = event == "DELETED"
    if not gone and draining_reason(obj) == draining_reason(old or {}):
        return
    if _informers is None or _loop is None:
        return
    for key in _informers.jobs_on_node(obj["metadata"]["name"]):
        signal = _signals.get(key)
        if signal is not None:
            _loop.call_soon_threadsafe(signal.news, True)


def _worker_wrote(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether the worker's report changed. A heartbeat alone (a new renewTime, the same report) is not
    news: the cache keeps it for the next pass, and the heartbeat deadline is a timer of its own."""

    def report(lease: dict[str, Any]) -> Any:
        annotations = (lease.get("metadata") or {}).get("annotations") or {}
        return [annotations.get(key) for key in REPORT_ANNOTATIONS]

    return bool(report(old) != report(new))


_informers: Informers | None = None
_pool: concurrent.futures.ThreadPoolExecutor | None = None


@kopf.on.startup()
def start_informers(**_: Any) -> None:
    """One watch per kind for all jobs (see informer); reconcile passes run on a bounded thread pool."""
    global _informers, _pool  # noqa: PLW0603 - process-wide, like the API client
    api = api_client()
    _informers = Informers(
        informer.pod_informers(api, OPTIONS.namespaces, _from_informer("pods")),
        informer.lease_informers(api, OPTIONS.namespaces, _from_informer("leases")),
        informer.node_informer(api, _node_changed),
        informer.workload_informers(api, OPTIONS.namespaces, _from_informer("workloads")),
    )
    _informers.start()
    _pool = concurrent.futures.ThreadPoolExecutor(OPTIONS.reconcile_threads, thread_name_prefix="reconcile")


@kopf.on.cleanup()
def stop_informers(**_: Any) -> None:
    if _informers is not None:
        _informers.stop()
    if _pool is not None:
        _pool.shutdown(wait=False, cancel_futures=True)


class _QuietEventHandler(logging.Filter):
    """kopf logs every run of an event handler at info level; job_changed runs on every status write."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "'job_changed' succeeded" not in record.getMessage()


logging.getLogger("kopf.objects").addFilter(_QuietEventHandler())


def managed_here(spec: kopf.Spec, **_: Any) -> bool:
    """spec.managedBy unset or this operator's, or MultiKueue's (whose manager-cluster copy gets only its
    Workload from this operator: JobController, KueueFollowUp.follow_dispatched). A DataJob another
    controller manages gets nothing, not even a status write. The field is immutable, so a job never
    moves between controllers while it runs."""
    return spec.get("managedBy") in (None, "", OPERATOR_MANAGER, MULTIKUEUE)


@kopf.on.event(GROUP, VERSION, PLURAL, when=managed_here)
def job_changed(name: str, namespace: str | None, body: kopf.Body, **_: Any) -> None:
    """A new generation of the spec (scale, suspend, ...) or a deletion is urgent; the operator's own
    status writes are not news."""
    signal = _signals.get((namespace or "", name))
    if signal is None:
        return
    meta = body.get("metadata", {})
    generation = meta.get("generation")
    retry = (meta.get("annotations") or {}).get(RETRY_ANNOTATION)
    if generation != signal.generation or retry != signal.retry or meta.get("deletionTimestamp"):
        signal.generation, signal.retry = generation, retry
        signal.news(urgent=True)


# cancellation_backoff: the loop sees `stopped` within a second and leaves on its own; kopf cancels it
# only if it has not after that.
@kopf.daemon(GROUP, VERSION, PLURAL, when=managed_here, cancellation_backoff=2.0, cancellation_timeout=10.0)
async def run_job(*, name: str, namespace: str | None, stopped: kopf.DaemonStopped, **_: Any) -> None:
    """Reconciles the job whenever there is news for it (see pacing), until it is deleted or the
    operator stops. A coroutine, not a thread: 1,000 jobs are 1,000 cheap waits, and passes share a
    bounded pool of threads.

    Level-triggered: each pass observes everything afresh, so a missed event or an operator restart costs
    at most one pass.
    """
    global _loop  # noqa: PLW0603 - the informer threads wake jobs through it
    assert namespace is not None  # DataJob is namespaced
    _loop = asyncio.get_running_loop()
    key = (namespace, name)
    signal = _signals[key] = JobSignal()
    controller = JobController(
        JobClient(api_client(), namespace, name),
        JobRuntime(),
        node_directory(),
        worker_account=OPTIONS.worker_account,
        observed=_informers,
        access=OPTIONS.storage_access,
        lineage=OPTIONS.lineage,
    )
    try:
        while not stopped:
            await signal.wait(stopped)
            if stopped:
                break
            started = time.monotonic()
            signal.pacer.taken()
            next_in = await _loop.run_in_executor(_pool, _pass, controller, namespace, name)
            signal.pacer.passed(started, next_in=next_in, workers=_workers(controller))
    finally:
        if _signals.get(key) is signal:
            del _signals[key]
        if stopped.reason and stopped.reason & kopf.DaemonStoppingReason.RESOURCE_DELETED:
            metrics.forget(namespace, name)


def _pass(controller: JobController, namespace: str, name: str) -> float | None:
    started = time.monotonic()
    try:
        next_in = controller.reconcile_once()
        metrics.PASSES.labels("ok").inc()
    except Exception as error:  # one job's trouble must not stop its loop or the others
        log.exception("reconcile failed; retrying", namespace=namespace, job=name, error=str(error))
        metrics.PASSES.labels("error").inc()
        next_in = ERROR_BACKOFF_SECONDS
        try:
            controller.record_error(error)
        except Exception as report_error:  # noqa: BLE001 - the API may be what is failing
            log.warning("cannot record the error in the status", error=str(report_error))
    metrics.PASS_SECONDS.observe(time.monotonic() - started)
    if controller.last_status is not None:
        metrics.observe(namespace, name, controller.last_status)
    timings, controller.timings = controller.timings, PassTimings()
    metrics.observe_timings(timings.shard, timings.replacement, timings.queue_wait)
    return next_in


def _workers(controller: JobController) -> int:
    status = controller.last_status or {}
    return int((status.get("workers") or {}).get("desired") or 1)
