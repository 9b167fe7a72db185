"""Small helpers tests use to talk to the test cluster: kubectl, manifests, waiting on objects."""

from __future__ import annotations

import os
import subprocess
from collections import Counter
from typing import Any

from kubernetes import client

from .processes import wait_for
from .tools import REPO_ROOT, tool

CHART = REPO_ROOT / "charts" / "datajob-operator"


def helm(
    kubeconfig: str, *args: str, check: bool = True, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": kubeconfig, "HELM_CACHE_HOME": "/tmp/helm-cache"}
    result = subprocess.run(
        [tool("helm"), *args], env=env, text=True, capture_output=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result


class Kubectl:
    def __init__(self, kubeconfig: str) -> None:
        self.kubeconfig = kubeconfig
        self.binary = tool("kubectl")

    def __call__(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "KUBECONFIG": self.kubeconfig}
        result = subprocess.run(
            [self.binary, *args],
            input=input,
            env=env,
            text=True,
            capture_output=True,
            timeout=120,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr}")
        return result

    def wait_established(self, crd: str, timeout: float = 60) -> None:
        """Waits for a CRD's Established condition by polling. (``kubectl wait --for=condition=Established``
        fails at once, instead of waiting, while a just-created CRD has no conditions yet.)"""
        path = '{.status.conditions[?(@.type=="Established")].status}'

        def established() -> bool:
            return self("get", f"crd/{crd}", "-o", f"jsonpath={path}", check=False).stdout.strip() == "True"

        wait_for(established, timeout, f"CRD {crd} Established")


def pod_manifest(name: str, command: list[str], **spec: Any) -> dict[str, Any]:
    container = {"name": "main", "image": "busybox", "command": command}
    container.update(spec.pop("container", {}))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"restartPolicy": "Never", "containers": [container], **spec},
    }


def request_counts(api: client.ApiClient) -> Counter[tuple[str, str]]:
    """apiserver_request_total summed by (verb, resource[/subresource])."""
    response = api.call_api("/metrics", "GET", _preload_content=False, auth_settings=["BearerToken"])
    counts: Counter[tuple[str, str]] = Counter()
    for line in response.data.decode().splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels_text, value = line[len("apiserver_request_total{") :].rsplit("} ", 1)
        labels = dict(part.split("=", 1) for part in labels_text.split('",') if "=" in part)
        labels = {k: v.strip('"') for k, v in labels.items()}
        resource = labels.get("resource", "")
        if labels.get("subresource"):
            resource += "/" + labels["subresource"]
        counts[(labels.get("verb", ""), resource)] += int(float(value))
    return counts
