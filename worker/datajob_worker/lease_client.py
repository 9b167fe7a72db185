"""The worker's only API access: GET and merge-PATCH of its own Lease, with the pod's service account.

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
import urllib.request
from pathlib import Path
from typing import Any

from datajob_core import plan_store
from datajob_core.protocol import ASSIGNMENT_ANNOTATION, REPORT_ANNOTATION, AssignmentMessage, ReportMessage

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def _service_account_dir() -> Path:
    # The test node agent rebases volume mounts under NODE_AGENT_ROOT (docs/testing.md).
    root = os.environ.get("NODE_AGENT_ROOT", "")
    return Path(root + SERVICE_ACCOUNT_DIR) if root else Path(SERVICE_ACCOUNT_DIR)


class LeaseError(RuntimeError):
    pass


class LeaseClient:
    def __init__(self, namespace: str, name: str, *, job: str = "", timeout: float = 10.0) -> None:
        host = os.environ["KUBERNETES_SERVICE_HOST"]
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if ":" in host:
            host = f"[{host}]"
        self.server = f"https://{host}:{port}"
        self.namespace = namespace
        self.job = job
        self.url = f"{self.server}/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}"
        sa_dir = _service_account_dir()
        self._token_path = sa_dir / "token"
        self._ssl = ssl.create_default_context(cafile=str(sa_dir / "ca.crt"))
        self.timeout = timeout

    def _request(
        self, method: str, body: dict[str, Any] | None = None, *, url: str | None = None
    ) -> dict[str, Any]:
        # Re-read the token each time: kubelet rotates projected tokens.
        headers = {
            "Authorization": f"Bearer {self._token_path.read_text().strip()}",
            "Accept": "application/json",
        }
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
        lease = self._request("GET")
        raw = (lease.get("metadata", {}).get("annotations") or {}).get(ASSIGNMENT_ANNOTATION)
        return AssignmentMessage.model_validate_json(raw) if raw else None

    def report(self, message: ReportMessage) -> None:
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        self._request(
            "PATCH",
            {
                "metadata": {"annotations": {REPORT_ANNOTATION: message.model_dump_json()}},
                "spec": {"renewTime": now},
            },
        )

    def wait(self, timeout: float) -> None:
        time.sleep(timeout)

    def plan(self) -> bytes:
        """The job's stored shard plan (datajob_core.plan_store), from its ConfigMaps."""
        base = f"{self.server}/api/v1/namespaces/{self.namespace}/configmaps/"
        index = self._request("GET", url=base + plan_store.chunk_names(self.job, 1)[0])
        count = int((index.get("data") or {}).get(plan_store.CHUNKS_KEY, "1"))
        parts = [index]
        for name in plan_store.chunk_names(self.job, count)[1:]:
            parts.append(self._request("GET", url=base + name))
        return b"".join(base64.b64decode(part["binaryData"][plan_store.PLAN_KEY]) for part in parts)
