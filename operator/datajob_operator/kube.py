"""Kubernetes I/O for one DataJob: the only module of the operator that talks to the API server.

Every call here is a thin, idempotent wrapper (create-or-ignore-conflict, delete-or-ignore-missing) so the
reconcile loop can be re-run from any point after a crash.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from datajob_core.cluster.node_drain import draining_nodes
from datajob_core.protocol import ASSIGNMENT_ANNOTATION, REPORT_ANNOTATION, REPORT_ANNOTATION_EVEN

from .timestamps import now_iso

GROUP = "datajob.dev"
VERSION = "v1alpha1"
PLURAL = "datajobs"
JOB_LABEL = "datajob.dev/job"
SLOT_LABEL = "datajob.dev/slot"
COMPONENT_LABEL = "app.kubernetes.io/component"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "datajob-operator"


class NodeDirectory:
    """The cluster's nodes, listed at most every ``ttl`` seconds and shared by all jobs.

    Lets the operator replace a worker whose node was deleted at once, instead of waiting about a minute
    for the pod garbage collector, and move workers off nodes that are being drained or reclaimed
    (node_drain). Without RBAC to list nodes it answers None and those shortcuts are off.
    """

    def __init__(
        self,
        api: client.ApiClient,
        ttl: float = 5.0,
        watched: Callable[[], list[dict[str, Any]] | None] | None = None,
    ) -> None:
        self.core = client.CoreV1Api(api)
        self.ttl = ttl
        self.watched = watched  # the node informer's answer, when there is one (no listing then)
        self._lock = threading.Lock()
        self._nodes: list[dict[str, Any]] | None = None
        self._listed_at = -ttl
        self._classes: frozenset[str] | None = None
        self._classes_at = -ttl

    def nodes(self) -> list[dict[str, Any]] | None:
        if self.watched is not None:
            nodes = self.watched()
            if nodes is not None:
                return nodes
        with self._lock:
            if time.monotonic() - self._listed_at >= self.ttl:
                self._listed_at = time.monotonic()
                try:
                    listing = self.core.list_node(_preload_content=False)
                    self._nodes = json.loads(listing.data)["items"]
                except ApiException as error:
                    if error.status != 403:
                        raise
                    self._nodes = None
            return self._nodes

    def names(self) -> frozenset[str] | None:
        nodes = self.nodes()
        return None if nodes is None else frozenset(n["metadata"]["name"] for n in nodes)

    def device_classes(self) -> frozenset[str] | None:
        """The cluster's DRA DeviceClasses (None: no DRA API, or no RBAC to list them), listed every ttl."""
        with self._lock:
            if time.monotonic() - self._classes_at >= self.ttl:
                self._classes_at = time.monotonic()
                try:
                    listing = client.CustomObjectsApi(self.core.api_client).list_cluster_custom_object(
                        "resource.k8s.io", "v1", "deviceclasses"
                    )
                    self._classes = frozenset(c["metadata"]["name"] for c in listing.get("items") or [])
                except ApiException as error:
                    if error.status not in (403, 404):
                        raise
                    # 404: no DRA API at all, so no class exists; 403: not known
                    self._classes = frozenset() if error.status == 404 else None
            return self._classes

    def draining(self) -> dict[str, tuple[str, str]]:
        """Nodes being drained, cordoned or reclaimed, with the taint key and why (node_drain)."""
        return draining_nodes(self.nodes() or [])


class ConflictError(Exception):
    """The object changed since it was read; the caller re-reads and tries again."""


class AccountConflictError(Exception):
    """The job's worker ServiceAccount, Role or RoleBinding name is taken by an object it does not own."""


class RejectedError(Exception):
    """The API server refused to create an object (quota, Pod Security, a webhook, validation)."""


def api_message(error: ApiException) -> str:
    """The API server's own explanation (the Status object's message), else the HTTP reason."""
    try:
        message = json.loads(error.body or "{}").get("message")
    except (TypeError, ValueError, AttributeError):
        message = None
    return str(message or f"{error.status} {error.reason}")


@dataclass(frozen=True)
class LeaseView:
    name: str
    assignment: str | None
    report: str | None
    renew_time: str | None
    report_even: str | None = None  # what a pod of an even incarnation reports (protocol.report_annotation)

    @classmethod
    def of(cls, lease: dict[str, Any]) -> LeaseView:
        """From the API server's JSON of a worker Lease."""
        meta = lease.get("metadata") or {}
        annotations = meta.get("annotations") or {}
        return cls(
            meta.get("name", ""),
            annotations.get(ASSIGNMENT_ANNOTATION),
            annotations.get(REPORT_ANNOTATION),
            (lease.get("spec") or {}).get("renewTime"),
            annotations.get(REPORT_ANNOTATION_EVEN),
        )


class JobClient:
    """API access scoped to one DataJob."""

    def __init__(self, api: client.ApiClient, namespace: str, name: str) -> None:
        self.namespace = namespace
        self.name = name
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.coordination = client.CoordinationV1Api(api)
        self.rbac = client.RbacAuthorizationV1Api(api)
        self.events = client.EventsV1Api(api)

    @property
    def selector(self) -> str:
        return f"{JOB_LABEL}={self.name}"

    # -- the DataJob ---------------------------------------------------------------------------------
    def read_job(self) -> dict[str, Any] | None:
        try:
            job: dict[str, Any] = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, self.name
            )
            return job
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def replace_status(self, job: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
        """Replaces the whole status, only if the job is unchanged since ``job`` was read.

        A replace rather than a merge patch: a merge patch would keep map keys the new status dropped
        (a shard that left the in-flight map would linger there).
        """
        body = {**job, "status": status}
        try:
            result: dict[str, Any] = self.custom.replace_namespaced_custom_object_status(
                GROUP, VERSION, self.namespace, PLURAL, self.name, body
            )
            return result
        except ApiException as error:
            if error.status == 409:
                raise ConflictError(str(error.reason)) from error
            raise

    def annotate(self, key: str, value: str) -> None:
        """Sets one annotation of the DataJob (a merge patch: nothing else is touched)."""
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, self.name, {"metadata": {"annotations": {key: value}}}
        )

    def delete_job(self) -> None:
        self._ignore_missing(
            lambda: self.custom.delete_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, self.name, propagation_policy="Background"
            )
        )

    # -- pods -------------------------------------------------------------------------------------------
    def list_pods(self) -> list[dict[str, Any]]:
        """The job's pods as the API server's JSON (what the informer cache holds, too)."""
        response = self.core.list_namespaced_pod(
            self.namespace, label_selector=self.selector, _preload_content=False
        )
        items: list[dict[str, Any]] = json.loads(response.data).get("items") or []
        return items

    def create_pod(self, manifest: dict[str, Any]) -> None:
        """Creates the pod (one that exists is fine); RejectedError with the API server's message."""
        try:
            self.core.create_namespaced_pod(self.namespace, manifest)
        except ApiException as error:
            if error.status == 409:
                return
            if error.status in (400, 403, 422):
                raise RejectedError(api_message(error)) from error
            raise

    def delete_pod(self, name: str, grace_seconds: int | None = None) -> None:
        self._ignore_missing(
            lambda: self.core.delete_namespaced_pod(name, self.namespace, grace_period_seconds=grace_seconds)
        )

    def pod_events(self, pod: str) -> list[Any]:
        return list(
            self.core.list_namespaced_event(self.namespace, field_selector=f"involvedObject.name={pod}").items
        )

    # -- leases -----------------------------------------------------------------------------------------
    def list_leases(self) -> list[dict[str, Any]]:
        response = self.coordination.list_namespaced_lease(
            self.namespace, label_selector=self.selector, _preload_content=False
        )
        items: list[dict[str, Any]] = json.loads(response.data).get("items") or []
        return items

    def create_lease(self, manifest: dict[str, Any]) -> bool:
        """Creates the Lease; False if it exists already (untouched)."""
        try:
            self.coordination.create_namespaced_lease(self.namespace, manifest)
        except ApiException as error:
            if error.status != 409:
                raise
            return False
        return True

    def write_assignment(self, lease: str, message_json: str, holder: str) -> None:
        body = {
            "metadata": {"annotations": {ASSIGNMENT_ANNOTATION: message_json}},
            "spec": {"holderIdentity": holder},
        }
        self.coordination.patch_namespaced_lease(lease, self.namespace, body)

    def delete_lease(self, name: str) -> None:
        self._ignore_missing(lambda: self.coordination.delete_namespaced_lease(name, self.namespace))

    # -- plan ------------------------------------------------------------------------------------------
    def read_config_map(self, name: str) -> dict[str, Any] | None:
        """``{"data", "binaryData", "owners"}`` (owners: (apiVersion/kind, name, uid)); None if none."""
        try:
            found = self.core.read_namespaced_config_map(name, self.namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        owners = [(f"{r.api_version}/{r.kind}", r.name, r.uid) for r in found.metadata.owner_references or []]
        return {"data": dict(found.data or {}), "binaryData": dict(found.binary_data or {}), "owners": owners}

    def delete_config_map(self, name: str) -> None:
        try:
            self.core.delete_namespaced_config_map(name, self.namespace)
        except ApiException as error:
            if error.status != 404:
                raise

    def create_config_map(self, manifest: dict[str, Any]) -> None:
        self._ignore_exists(lambda: self.core.create_namespaced_config_map(self.namespace, manifest))

    # -- storage credentials ---------------------------------------------------------------------------
    def read_secret(self, name: str, keys: tuple[str, ...]) -> dict[str, str] | None:
        """Only ``keys`` of the Secret, decoded; None if it does not exist. Never logged."""
        try:
            found = self.core.read_namespaced_secret(name, self.namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        data = found.data or {}
        return {k: base64.b64decode(data[k]).decode() for k in keys if k in data}

    # -- worker RBAC -----------------------------------------------------------------------------------
    def apply_worker_rbac(
        self, service_account: dict[str, Any], role: dict[str, Any], binding: dict[str, Any]
    ) -> None:
        """Creates or updates the job's worker ServiceAccount, Role and RoleBinding.

        Raises AccountConflictError, touching nothing, if one of them exists without being owned by this
        job: a DataJob must never take over (or widen) an account someone else made, and must never run
        its workers as another job's account.
        """
        owner = service_account["metadata"]["ownerReferences"][0]["uid"]
        name = service_account["metadata"]["name"]
        existing = {
            "ServiceAccount": self._read(
                lambda: self.core.read_namespaced_service_account(name, self.namespace)
            ),
            "Role": self._read(lambda: self.rbac.read_namespaced_role(name, self.namespace)),
            "RoleBinding": self._read(lambda: self.rbac.read_namespaced_role_binding(name, self.namespace)),
        }
        for kind, obj in existing.items():
            if obj is not None and owner not in {ref.uid for ref in obj.metadata.owner_references or []}:
                raise AccountConflictError(
                    f"{kind} {self.namespace}/{name} already exists and is not owned by this DataJob; "
                    "the job's workers need that name for their own account (delete or rename it)"
                )
        if existing["ServiceAccount"] is None:
            self._ignore_exists(
                lambda: self.core.create_namespaced_service_account(self.namespace, service_account)
            )
        if existing["Role"] is None:
            self._ignore_exists(lambda: self.rbac.create_namespaced_role(self.namespace, role))
        else:
            self.rbac.replace_namespaced_role(name, self.namespace, role)
        if existing["RoleBinding"] is None:
            self._ignore_exists(lambda: self.rbac.create_namespaced_role_binding(self.namespace, binding))

    @staticmethod
    def _read(call: Any) -> Any:
        try:
            return call()
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    # -- events ------------------------------------------------------------------------------------------
    def post_event(self, job: dict[str, Any], kind: str, reason: str, message: str) -> None:
        """A core/v1 Event on the DataJob, shown by ``kubectl describe datajob``."""
        now = now_iso()
        meta = job["metadata"]
        body = {
            "metadata": {"generateName": f"{self.name}.", "namespace": self.namespace},
            "involvedObject": {
                "apiVersion": job["apiVersion"],
                "kind": job["kind"],
                "name": meta["name"],
                "namespace": self.namespace,
                "uid": meta["uid"],
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": kind,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": MANAGED_BY},
            "reportingComponent": MANAGED_BY,
            "reportingInstance": MANAGED_BY,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self.core.create_namespaced_event(self.namespace, body)
        except ApiException as error:  # events are best effort; never fail a reconcile over one
            if error.status >= 500 or error.status in (403, 404, 409, 422):
                return
            raise

    # -- Dynamic Resource Allocation (hardware profiles with devices) ------------------------------------
    def create_claim_template(self, manifest: dict[str, Any]) -> bool:
        """Creates a profile's ResourceClaimTemplate: True, or False if one of that name exists;
        RejectedError if refused (no DRA API on this cluster, no RBAC for it, an invalid selector)."""
        try:
            self.custom.create_namespaced_custom_object(
                "resource.k8s.io", "v1", self.namespace, "resourceclaimtemplates", manifest
            )
        except ApiException as error:
            if error.status == 409:
                return False
            if error.status in (400, 403, 404, 422):
                raise RejectedError(api_message(error)) from error
            raise
        return True

    def read_claim_template(self, name: str) -> dict[str, Any] | None:
        """A ResourceClaimTemplate, None if there is none (a 403 is raised: the caller must know)."""
        return self._read_dra("resourceclaimtemplates", name, (404,))

    def read_claim(self, name: str) -> dict[str, Any] | None:
        """A worker's ResourceClaim (what devices it was allocated), None if gone or not readable."""
        return self._read_dra("resourceclaims", name, (403, 404))

    def _read_dra(self, plural: str, name: str, absent: tuple[int, ...]) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self.custom.get_namespaced_custom_object(
                "resource.k8s.io", "v1", self.namespace, plural, name
            )
            return found
        except ApiException as error:
            if error.status in absent:
                return None
            raise

    # -- helpers ---------------------------------------------------------------------------------------
    @staticmethod
    def _ignore_exists(call: Any) -> None:
        try:
            call()
        except ApiException as error:
            if error.status != 409:
                raise

    @staticmethod
    def _ignore_missing(call: Any) -> None:
        try:
            call()
        except ApiException as error:
            if error.status != 404:
                raise
