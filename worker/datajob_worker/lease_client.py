"""The worker's only API access: GET, WATCH and merge-PATCH of its own Lease, with the pod's service account.

A worker learns of a new assignment from a watch on its own Lease (a list with the field selector
``metadata.name=<lease>``, which RBAC allows by resource name), so it never polls. A watch lasts at most
``timeout`` seconds and starts from the resourceVersion the worker last read, so nothing written in between
is missed; without watch rights (a Role made by an older operator) the worker reads its Lease once a second.

pykube-ng (requests underneath) is the client: light enough for the worker image, which carries neither kopf
nor the official Kubernetes client. Two things are done around it, on purpose:
- the bearer token is re-read from the projected file before every request, because kubelet rotates it and
  pykube-ng's in-cluster config reads it once;
- a watch gets its own HTTP read timeout (the watch's length plus a margin), because pykube-ng applies one
  client-wide timeout to every request, and a short one would cut an idle watch.
"""

from __future__ import annotations

import base64
import datetime
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pykube
import requests
from pykube.exceptions import HTTPError, ObjectDoesNotExist, PyKubeError

from datajob_core.data import plan_store
from datajob_core.protocol import ASSIGNMENT_ANNOTATION, REPORT_ANNOTATION, AssignmentMessage, ReportMessage

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
POLL_SECONDS = 1.0  # without watch rights


def _service_account_dir() -> Path:
    # The test node agent rebases volume mounts under NODE_AGENT_ROOT (docs/testing.md).
    root = os.environ.get("NODE_AGENT_ROOT", "")
    return Path(root + SERVICE_ACCOUNT_DIR) if root else Path(SERVICE_ACCOUNT_DIR)


class LeaseError(RuntimeError):
    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code  # the HTTP status, when the API server answered


class Lease(pykube.objects.NamespacedAPIObject):  # type: ignore[misc]  # pykube-ng ships no type hints
    version = "coordination.k8s.io/v1"
    endpoint = "leases"
    kind = "Lease"


class TokenAuth(requests.auth.AuthBase):
    """The pod's service-account token, read afresh for every request: kubelet rotates projected tokens,
    and pykube-ng's in-cluster config reads it once. Set as the session's auth, it also keeps requests
    from looking for credentials in ~/.netrc."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.path.read_text().strip()}"
        return request


def in_cluster_api(service_account_dir: Path, timeout: float) -> pykube.HTTPClient:
    """A pykube-ng client for the API server named by the pod's environment, trusting the pod's CA bundle.

    Only the pod's own settings count: requests' reading of the environment (proxies, netrc, CA bundles)
    is off, and a plain HTTPAdapter replaces pykube-ng's, which reads PYKUBE_* variables per request."""
    host = os.environ["KUBERNETES_SERVICE_HOST"]
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    server = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
    config = pykube.KubeConfig(
        {
            "clusters": [
                {
                    "name": "in-cluster",
                    "cluster": {
                        "server": server,
                        "certificate-authority": str(service_account_dir / "ca.crt"),
                    },
                }
            ],
            # No token here: TokenAuth sets it per request from the (rotating) file.
            "users": [{"name": "service-account", "user": {}}],
            "contexts": [{"name": "pod", "context": {"cluster": "in-cluster", "user": "service-account"}}],
            "current-context": "pod",
        }
    )
    api = pykube.HTTPClient(config, timeout=timeout, http_adapter=requests.adapters.HTTPAdapter())
    api.session.trust_env = False
    api.session.verify = str(service_account_dir / "ca.crt")
    api.session.auth = TokenAuth(service_account_dir / "token")
    return api


def _failure(action: str, error: Exception) -> LeaseError:
    if isinstance(error, HTTPError):
        return LeaseError(f"{action}: {error.code} {error}", error.code)
    if isinstance(error, ObjectDoesNotExist):
        return LeaseError(f"{action}: 404 {error}", 404)
    if isinstance(error, requests.HTTPError) and error.response is not None:
        return LeaseError(f"{action}: {error.response.status_code} {error}", error.response.status_code)
    return LeaseError(f"{action}: {error}")


# What a request to an API server can raise: its answer (pykube's or requests' HTTPError), the network, or
# an answer pykube-ng cannot read (it looks up headers and keys of an error reply: KeyError, TypeError), or
# the token file (OSError). Every one becomes a LeaseError, which the worker retries and never charges.
_API_ERRORS = (PyKubeError, requests.RequestException, ValueError, KeyError, TypeError, OSError)


class LeaseClient:
    def __init__(
        self, namespace: str, name: str, *, job: str = "", timeout: float = 10.0, report_key: str = ""
    ) -> None:
        self.report_key = report_key or REPORT_ANNOTATION  # the operator's choice (ENV_REPORT_ANNOTATION)
        self.namespace = namespace
        self.job = job
        self.name = name
        self.resource_version: str | None = None  # of the Lease as last seen
        self.seen: str | None = None  # the assignment annotation as last returned
        self.fresh: dict[str, Any] | None = None  # a newer Lease a watch delivered, not yet returned
        self.can_watch = True
        sa_dir = _service_account_dir()
        self.timeout = timeout
        self.api = in_cluster_api(sa_dir, timeout)
        self._watch_api = in_cluster_api(sa_dir, timeout)  # its timeout is set per watch

    def _lease(self) -> Lease:
        return Lease(self.api, {"metadata": {"name": self.name, "namespace": self.namespace}})

    def assignment(self) -> AssignmentMessage | None:
        if self.fresh is None:
            try:
                lease = self._lease()
                lease.reload()
            except _API_ERRORS as error:
                raise _failure(f"GET lease {self.namespace}/{self.name}", error) from error
            self.fresh = lease.obj
        lease_obj, self.fresh = self.fresh or {}, None
        self.resource_version = lease_obj.get("metadata", {}).get("resourceVersion")
        raw = (lease_obj.get("metadata", {}).get("annotations") or {}).get(ASSIGNMENT_ANNOTATION)
        self.seen = raw
        return AssignmentMessage.model_validate_json(raw) if raw else None

    def wait(self, timeout: float) -> None:
        """Returns as soon as the operator changes the assignment, or after ``timeout`` seconds."""
        if not self.can_watch or self.resource_version is None:
            _sleep(min(timeout, POLL_SECONDS))
            return
        try:
            for lease in self._watch(timeout):
                annotations = lease.get("metadata", {}).get("annotations") or {}
                self.resource_version = lease["metadata"].get("resourceVersion", self.resource_version)
                if annotations.get(ASSIGNMENT_ANNOTATION) != self.seen:
                    self.fresh = lease  # our own report patches change the Lease too: those we skip
                    return
        except LeaseError as error:
            if error.code == 403:
                self.can_watch = False  # an older Role: get only
            _sleep(min(timeout, POLL_SECONDS))  # the API is away; the caller reads again
        except (OSError, ValueError, KeyError):
            _sleep(min(timeout, POLL_SECONDS))

    def _watch(self, timeout: float) -> Iterator[dict[str, Any]]:
        seconds = max(1, int(timeout))
        api = self._watch_api
        api.timeout = seconds + self.timeout  # the server ends the watch first
        query = (
            Lease.objects(api, namespace=self.namespace)
            .filter(field_selector={"metadata.name": self.name})
            .watch(
                since=self.resource_version,
                params={"allowWatchBookmarks": "false", "timeoutSeconds": str(seconds)},
            )
        )
        try:
            for event in query:
                if event.type == "ERROR":  # e.g. 410 Gone: too old; read afresh
                    self.resource_version = None
                    return
                if event.type in ("ADDED", "MODIFIED"):
                    yield event.object.obj
        except _API_ERRORS as error:
            raise _failure(f"WATCH lease {self.namespace}/{self.name}", error) from error
        finally:
            if query.response is not None:
                query.response.close()

    def report(self, message: ReportMessage) -> None:
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        patch = {
            "metadata": {"annotations": {self.report_key: message.model_dump_json()}},
            "spec": {"renewTime": now},
        }
        try:
            self._lease().patch(patch)  # a JSON merge patch: only our report key and the renew time
        except _API_ERRORS as error:
            raise _failure(f"PATCH lease {self.namespace}/{self.name}", error) from error

    def plan(self) -> bytes:
        """The job's stored shard plan (datajob_core.data.plan_store), from its ConfigMaps."""
        api = self.api
        try:
            configmaps = pykube.ConfigMap.objects(api, namespace=self.namespace)
            index = configmaps.get_by_name(plan_store.chunk_names(self.job, 1)[0]).obj
            count = int((index.get("data") or {}).get(plan_store.CHUNKS_KEY, "1"))
            rest = plan_store.chunk_names(self.job, count)[1:]
            parts = [index] + [configmaps.get_by_name(name).obj for name in rest]
        except _API_ERRORS as error:
            raise _failure(f"GET plan of {self.namespace}/{self.job}", error) from error
        return b"".join(base64.b64decode(part["binaryData"][plan_store.PLAN_KEY]) for part in parts)


def _sleep(seconds: float) -> None:
    time.sleep(seconds)
