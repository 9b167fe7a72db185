"""Shared informers: one list-and-watch per resource kind for all DataJobs, and a cache of what it saw.

The operator's passes read worker pods and Leases from here instead of listing them per job per pass:
with 1,000 workers that list would be megabytes a second. One watch per kind (per watched namespace),
with a server-side label selector, feeds every job; each change is handed to ``on_change`` (which wakes
that job's loop). Like client-go's reflector: list, then watch from the list's resourceVersion; on
``410 Gone`` or any error, list again and replace the cache wholesale (so a deletion missed while
disconnected is not kept). Objects are kept as the API server's JSON (camelCase), not as client models.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import structlog
from kubernetes import client
from kubernetes.client.rest import ApiException

from datajob_core.cluster import queueing

from .kube import JOB_LABEL

log = structlog.get_logger("datajob.operator")

WATCH_SECONDS = 300  # server-side timeout of one watch request; it is then resumed from where it was
ERROR_BACKOFF = (0.2, 0.5, 1.0, 2.0, 5.0)
NOT_SERVED_RETRY = 10.0

Key = tuple[str, str]  # (namespace, job)
# namespace, job, event type, the object, and the object as it was before (None if it was not cached)
OnChange = Callable[[str, str, str, dict[str, Any], dict[str, Any] | None], None]


class Informer:
    """A cache of one kind's objects labelled with a job, by job; thread-safe."""

    def __init__(
        self,
        kind: str,
        list_call: Callable[..., Any],
        on_change: OnChange | None = None,
        namespace: str | None = None,
        *,
        selector: str | None = JOB_LABEL,
        key: Callable[[dict[str, Any]], Key | None] | None = None,
    ) -> None:
        self.kind = kind
        self.namespace = namespace  # None: all namespaces
        self.selector = selector
        self.key = key or _key
        self.list_call = list_call  # a kubernetes client list function (all namespaces, or bound to one)
        self.on_change = on_change
        self.lock = threading.Lock()
        self.by_job: dict[Key, dict[str, dict[str, Any]]] = {}
        self.synced = threading.Event()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"informer-{kind}", daemon=True)
        self.events = 0

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()

    def objects(self, namespace: str, job: str) -> list[dict[str, Any]] | None:
        """The job's objects as last seen; None until the first list has completed."""
        if not self.synced.is_set():
            return None
        with self.lock:
            return list(self.by_job.get((namespace, job), {}).values())

    # -- the reflector loop -----------------------------------------------------------------------
    def _run(self) -> None:
        failures = 0
        while not self.stopping.is_set():
            try:
                version = self._list()
                failures = 0
                while not self.stopping.is_set() and version:
                    version = self._watch(version)
            except ApiException as error:
                if error.status == 403:  # not granted (e.g. nodes): the callers fall back to listing
                    log.warning("informer not allowed to list; off", kind=self.kind, error=str(error.reason))
                    return
                if error.status == 404:  # a CRD not installed (Kueue's Workloads): empty, look again later
                    with self.lock:
                        self.by_job = {}
                    self.synced.set()
                    if failures == 0:
                        log.info("kind not served; looking again every 10 s", kind=self.kind)
                    failures = 1
                    self.stopping.wait(NOT_SERVED_RETRY)
                    continue
                failures += 1
                log.warning("informer list/watch failed; retrying", kind=self.kind, error=str(error))
                self.stopping.wait(ERROR_BACKOFF[min(failures - 1, len(ERROR_BACKOFF) - 1)])
            except Exception as error:  # noqa: BLE001 - an API outage: list again after a pause
                delay = ERROR_BACKOFF[min(failures, len(ERROR_BACKOFF) - 1)]
                failures += 1
                log.warning("informer list/watch failed; retrying", kind=self.kind, error=str(error))
                self.stopping.wait(delay)

    def _list(self) -> str:
        response = self.list_call(**self._selector(), _preload_content=False)
        listing = json.loads(response.data)
        fresh: dict[Key, dict[str, dict[str, Any]]] = {}
        for item in listing.get("items") or []:
            key = self.key(item)
            if key is not None:
                fresh.setdefault(key, {})[item["metadata"]["name"]] = item
        with self.lock:
            changed = set(fresh) | set(self.by_job)
            self.by_job = fresh
        self.synced.set()
        for namespace, job in changed:  # whatever happened while disconnected, those jobs look again
            self._notify(namespace, job, "RESYNC", {}, None)
        return str(listing["metadata"].get("resourceVersion") or "")

    def _watch(self, version: str) -> str:
        """Follows changes from ``version``; returns the version to resume from, or "" to list again."""
        response = self.list_call(
            **self._selector(),
            watch=True,
            resource_version=version,
            allow_watch_bookmarks=True,
            timeout_seconds=WATCH_SECONDS,
            _preload_content=False,
        )
        try:
            for line in response:
                if self.stopping.is_set():
                    return ""
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        return ""  # too old: list again
                    raise ApiException(status=obj.get("code"), reason=obj.get("message"))
                version = obj.get("metadata", {}).get("resourceVersion") or version
                if kind == "BOOKMARK":
                    continue
                self._apply(kind, obj)
        finally:
            response.release_conn()
        return version

    def _selector(self) -> dict[str, str]:
        return {"label_selector": self.selector} if self.selector else {}

    def _apply(self, kind: str, obj: dict[str, Any]) -> None:
        key = self.key(obj)
        if key is None:
            return
        name = obj["metadata"]["name"]
        with self.lock:
            objects = self.by_job.setdefault(key, {})
            old = objects.get(name)
            if kind == "DELETED":
                objects.pop(name, None)
                if not objects:
                    del self.by_job[key]
            else:
                objects[name] = obj
            self.events += 1
        self._notify(*key, kind, obj, old)

    def _notify(
        self, namespace: str, job: str, kind: str, obj: dict[str, Any], old: dict[str, Any] | None
    ) -> None:
        if self.on_change is not None:
            try:
                self.on_change(namespace, job, kind, obj, old)
            except Exception as error:  # noqa: BLE001 - a listener's trouble must not stop the watch
                log.warning("informer listener failed", kind=self.kind, error=str(error))


def _key(obj: dict[str, Any]) -> Key | None:
    meta = obj.get("metadata") or {}
    job = (meta.get("labels") or {}).get(JOB_LABEL)
    return (meta.get("namespace") or "", job) if job else None


def pod_informers(api: client.ApiClient, namespaces: list[str], on_change: OnChange) -> list[Informer]:
    core = client.CoreV1Api(api)
    if not namespaces:
        return [Informer("pods", core.list_pod_for_all_namespaces, on_change)]
    return [
        Informer("pods", _bound(core.list_namespaced_pod, ns), on_change, ns) for ns in sorted(namespaces)
    ]


def lease_informers(api: client.ApiClient, namespaces: list[str], on_change: OnChange) -> list[Informer]:
    leases = client.CoordinationV1Api(api)
    if not namespaces:
        return [Informer("leases", leases.list_lease_for_all_namespaces, on_change)]
    return [
        Informer("leases", _bound(leases.list_namespaced_lease, ns), on_change, ns)
        for ns in sorted(namespaces)
    ]


def workload_informers(api: client.ApiClient, namespaces: list[str], on_change: OnChange) -> list[Informer]:
    """Kueue Workloads of DataJobs (queueing): Kueue admitting or evicting a job wakes it at once."""
    custom = client.CustomObjectsApi(api)
    group, version, plural = queueing.GROUP, queueing.VERSION, queueing.PLURAL
    if not namespaces:
        return [
            Informer(
                "workloads", partial(custom.list_cluster_custom_object, group, version, plural), on_change
            )
        ]
    return [
        Informer(
            "workloads",
            partial(custom.list_namespaced_custom_object, group, version, ns, plural),
            on_change,
            ns,
        )
        for ns in sorted(namespaces)
    ]


def _bound(call: Callable[..., Any], namespace: str) -> Callable[..., Any]:
    def bound(**kwargs: Any) -> Any:
        return call(namespace, **kwargs)

    return bound


ALL_NODES: Key = ("", "")


def node_informer(api: client.ApiClient, on_change: OnChange) -> Informer:
    """Every node, in one bucket: which nodes exist (a worker on a deleted node is replaced at once) and
    which are going away (node_drain: its workers are moved first)."""
    return Informer(
        "nodes", client.CoreV1Api(api).list_node, on_change, selector=None, key=lambda _: ALL_NODES
    )


class Informers:
    """The operator's informers together; one lookup for a job's observed objects."""

    def __init__(
        self,
        pods: list[Informer],
        leases: list[Informer],
        nodes: Informer | None = None,
        workloads: list[Informer] | None = None,
    ) -> None:
        self.pods, self.leases, self.nodes = pods, leases, nodes
        self.workloads = workloads or []

    def all(self) -> list[Informer]:
        return [*self.pods, *self.leases, *([self.nodes] if self.nodes else []), *self.workloads]

    def start(self) -> None:
        for informer in self.all():
            informer.start()

    def stop(self) -> None:
        for informer in self.all():
            informer.stop()

    def wait_synced(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        return all(i.synced.wait(max(0.0, deadline - time.monotonic())) for i in self.all())

    def node_objects(self) -> list[dict[str, Any]] | None:
        """The nodes that exist; None when nodes cannot be watched (no RBAC) or are not listed yet."""
        if self.nodes is None:
            return None
        return self.nodes.objects(*ALL_NODES)

    def jobs_on_node(self, node: str) -> list[Key]:
        """The jobs with a pod on ``node`` (from the pod cache)."""
        jobs = []
        for informer in self.pods:
            with informer.lock:
                for key, pods in informer.by_job.items():
                    if any((p.get("spec") or {}).get("nodeName") == node for p in pods.values()):
                        jobs.append(key)
        return jobs

    def pods_of(self, namespace: str, job: str) -> list[dict[str, Any]] | None:
        return _first(self.pods, namespace, job)

    def leases_of(self, namespace: str, job: str) -> list[dict[str, Any]] | None:
        return _first(self.leases, namespace, job)

    def workloads_of(self, namespace: str, job: str) -> list[dict[str, Any]] | None:
        return _first(self.workloads, namespace, job)


def _first(informers: list[Informer], namespace: str, job: str) -> list[dict[str, Any]] | None:
    for informer in informers:
        if informer.namespace in (None, namespace):
            return informer.objects(namespace, job)
    return None
