"""The worker's only API access: GET, WATCH and merge-PATCH of its own Lease, with the pod's service account.

A worker learns of a new assignment from a watch on its own Lease (a list with the field selector
``metadata.name=<lease>``, which RBAC allows by resource name), so it never polls. A watch lasts at most
``timeout`` seconds and starts from the resourceVersion the worker last read, so nothing written in between
is missed; without watch rights (a Role made by an older operator) the worker reads its Lease once a second.

Plain HTTPS keeps the worker image free of kopf and of the Kubernetes client library.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from datajob_core.data import plan_store
from datajob_core.protocol import ASSIGNMENT_ANNOTATION, REPORT_ANNOTATION, AssignmentMessage, ReportMessage

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
POLL_SECONDS = 1.0  # without watch rights


def _service_account_dir() -> Path:
    # The test node agent rebases volume mounts under NODE_AGENT_ROOT (docs/testing.md).
    root = os.environ.get("NODE_AGENT_ROOT", "")
    return Path(root + SERVICE_ACCOUNT_DIR) if root else Path(SERVICE_ACCOUNT_DIR)


class LeaseError(RuntimeError):
    pass


class LeaseClient:
    def __init__(
        self, namespace: str, name: str, *, job: str = "", timeout: float = 10.0, report_key: str = ""
    ) -> None:
        self.report_key = report_key or REPORT_ANNOTATION  # the operator's choice (ENV_REPORT_ANNOTATION)
        host = os.environ["KUBERNETES_SERVICE_HOST"]
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if ":" in host:
            host = f"[{host}]"
        self.server = f"https://{host}:{port}"
        self.namespace = namespace
        self.job = job
        self.name = name
        self.url = f"{self.server}/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}"
        self.resource_version: str | None = None  # of the Lease as last seen
        self.seen: str | None = None  # the assignment annotation as last returned
        self.fresh: dict[str, Any] | None = None  # a newer Lease a watch delivered, not yet returned
        self.can_watch = True
        sa_dir = _service_account_dir()
        self._token_path = sa_dir / "token"
        self._ssl = ssl.create_default_context(cafile=str(sa_dir / "ca.crt"))
        self.timeout = timeout

    def _headers(self) -> dict[str, str]:
        # Re-read the token each time: kubelet rotates projected tokens.
        return {
            "Authorization": f"Bearer {self._token_path.read_text().strip()}",
            "Accept": "application/json",
        }

    def _request(
        self, method: str, body: dict[str, Any] | None = None, *, url: str | None = None
    ) -> dict[str, Any]:
        headers = self._headers()
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/merge-patch+json"
        url = url or self.url
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, context=self._ssl, timeout=self.timeout) as response:
                result: dict[str, Any] = json.load(response)
                return result
        except urllib.error.HTTPError as error:
            raise LeaseError(
                f"{method} {url}: {error.code} {error.read().decode(errors='replace')}"
            ) from error
        except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
            raise LeaseError(f"{method} {url}: {error}") from error

    def assignment(self) -> AssignmentMessage | None:
        lease, self.fresh = self.fresh or self._request("GET"), None
        self.resource_version = lease.get("metadata", {}).get("resourceVersion")
        raw = (lease.get("metadata", {}).get("annotations") or {}).get(ASSIGNMENT_ANNOTATION)
        self.seen = raw
        return AssignmentMessage.model_validate_json(raw) if raw else None

    def wait(self, timeout: float) -> None:
        """Returns as soon as the operator changes the assignment, or after ``timeout`` seconds."""
        if not self.can_watch or self.resource_version is None:
            time.sleep(min(timeout, POLL_SECONDS))
            return
        try:
            for lease in self._watch(timeout):
                annotations = lease.get("metadata", {}).get("annotations") or {}
                self.resource_version = lease["metadata"].get("resourceVersion", self.resource_version)
                if annotations.get(ASSIGNMENT_ANNOTATION) != self.seen:
                    self.fresh = lease  # our own report patches change the Lease too: those we skip
                    return
        except LeaseError as error:
            if " 403 " in str(error):
                self.can_watch = False  # an older Role: get only
            time.sleep(min(timeout, POLL_SECONDS))  # the API is away; the caller reads again
        except (OSError, ValueError, KeyError):
            time.sleep(min(timeout, POLL_SECONDS))

    def _watch(self, timeout: float) -> Iterator[dict[str, Any]]:
        query = urllib.parse.urlencode(
            {
                "fieldSelector": f"metadata.name={self.name}",
                "watch": "1",
                "resourceVersion": self.resource_version or "",
                "allowWatchBookmarks": "false",
                "timeoutSeconds": str(max(1, int(timeout))),
            }
        )
        url = f"{self.url.rsplit('/', 1)[0]}?{query}"
        request = urllib.request.Request(url, headers=self._headers())
        try:
            with urllib.request.urlopen(request, context=self._ssl, timeout=timeout + self.timeout) as stream:
                for line in stream:
                    event = json.loads(line)
                    if event.get("type") == "ERROR":  # e.g. 410 Gone: too old; read afresh
                        self.resource_version = None
                        return
                    if event.get("type") in ("ADDED", "MODIFIED"):
                        yield event["object"]
        except urllib.error.HTTPError as error:
            raise LeaseError(f"WATCH {url}: {error.code} {error.read().decode(errors='replace')}") from error
        except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
            raise LeaseError(f"WATCH {url}: {error}") from error

    def report(self, message: ReportMessage) -> None:
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        self._request(
            "PATCH",
            {
                "metadata": {"annotations": {self.report_key: message.model_dump_json()}},
                "spec": {"renewTime": now},
            },
        )

    def plan(self) -> bytes:
        """The job's stored shard plan (datajob_core.data.plan_store), from its ConfigMaps."""
        base = f"{self.server}/api/v1/namespaces/{self.namespace}/configmaps/"
        index = self._request("GET", url=base + plan_store.chunk_names(self.job, 1)[0])
        count = int((index.get("data") or {}).get(plan_store.CHUNKS_KEY, "1"))
        parts = [index]
        for name in plan_store.chunk_names(self.job, count)[1:]:
            parts.append(self._request("GET", url=base + name))
        return b"".join(base64.b64decode(part["binaryData"][plan_store.PLAN_KEY]) for part in parts)
