"""The real Kueue (https://kueue.sigs.k8s.io) on the test control plane: its controller manager built from
the Go module (hack/build-tools.sh), its CRDs from the module's config/, and its own webhooks for Kueue's
types served on loopback and registered by URL (there is no Service to point at here).

Only Kueue's own webhooks (Workloads, ClusterQueues, ResourceFlavors, Cohorts) are registered: the job
framework webhooks (batch Jobs, pods, ...) would intercept every pod of every test. DataJobs integrate by a
Workload the operator owns (docs/operations.md, "Queueing with Kueue"), which needs none of them.
"""

from __future__ import annotations

import os
import shutil
import ssl
import time
import urllib.request
from functools import partial
from pathlib import Path
from typing import Any

import structlog
import yaml
from kubernetes import client, utils
from kubernetes.client.rest import ApiException

from .controlplane import ControlPlane
from .processes import free_port, wait_for
from .tools import tool

log = structlog.get_logger(__name__)

KUEUE_NAMESPACE = "kueue-system"
GROUP, VERSION = "kueue.x-k8s.io", "v1beta2"
PROBE = {"name": "datajob-webhook-probe"}


def config_dir() -> Path:
    """Kueue's CRDs and webhook manifests, copied from its module by hack/build-tools.sh."""
    return Path(tool("kueue")).parent / "kueue-config"


class Kueue:
    """Kueue's controller manager as a component of the test cluster."""

    def __init__(
        self,
        control_plane: ControlPlane,
        directory: Path,
        *,
        extra_config: dict[str, Any] | None = None,
        feature_gates: tuple[str, ...] = (),
    ) -> None:
        self.control_plane = control_plane
        self.directory = directory
        self.api = control_plane.api_client()
        self.extra_config = extra_config or {}  # more of Kueue's Configuration (multiKueue on a manager)
        self.feature_gates = feature_gates  # turned on (on the command line: Kueue takes them in one place)

    def start(self) -> None:
        started = time.monotonic()
        self.directory.mkdir(parents=True, exist_ok=True)
        self._install_crds()
        core = client.CoreV1Api(self.api)
        try:
            core.create_namespace({"metadata": {"name": KUEUE_NAMESPACE}})
        except ApiException as error:
            if error.status != 409:
                raise
        webhook_port, health_port = free_port(), free_port()
        certs = self.directory / "webhook-certs"
        certs.mkdir(exist_ok=True)
        pair = self.control_plane.serving_cert("kueue-webhook", ("127.0.0.1",))
        shutil.copyfile(pair.cert, certs / "tls.crt")
        shutil.copyfile(pair.key, certs / "tls.key")
        configuration = {
            "apiVersion": "config.kueue.x-k8s.io/v1beta2",
            "kind": "Configuration",
            "namespace": KUEUE_NAMESPACE,
            "health": {"healthProbeBindAddress": f"127.0.0.1:{health_port}"},
            "metrics": {"bindAddress": "0"},
            "webhook": {"port": webhook_port, "host": "127.0.0.1", "certDir": str(certs)},
            "leaderElection": {"leaderElect": False},
            "internalCertManagement": {"enable": False},
            "clientConnection": {"qps": 50, "burst": 100},
            "integrations": {"frameworks": ["batch/job"]},
            **self.extra_config,
        }
        config_file = self.directory / "kueue-config.yaml"
        config_file.write_text(yaml.safe_dump(configuration))
        kubeconfig = self.control_plane.client_kubeconfig("kueue", "kueue-controller", ("system:masters",))
        kueue = [
            tool("kueue"),
            f"--config={config_file}",
            f"--kubeconfig={kubeconfig}",
            "--feature-gates="
            + ",".join(["VisibilityOnDemand=false", *(f"{g}=true" for g in self.feature_gates)]),
            "--zap-log-level=2",
        ]
        self.control_plane.spawn_component("kueue", self._with_metrics_certs(kueue, certs))
        wait_for(lambda: _healthy(f"http://127.0.0.1:{health_port}/readyz"), 120, "kueue ready")
        self._register_webhooks(webhook_port)
        log.info("kueue ready", seconds=round(time.monotonic() - started, 1))

    def _with_metrics_certs(self, argv: list[str], certs: Path) -> list[str]:
        """Kueue without its internal certificate management reads the metrics server's certificate from a
        fixed path, /etc/kueue/metrics/certs. Rather than write to the host's /etc, it runs in a mount
        namespace of its own where an overlay on /etc holds that directory (root, or an unprivileged user
        namespace)."""
        upper, work = self.directory / "etc-upper", self.directory / "etc-work"
        (upper / "kueue" / "metrics").mkdir(parents=True, exist_ok=True)
        work.mkdir(exist_ok=True)
        target = upper / "kueue" / "metrics" / "certs"
        if not target.exists():
            shutil.copytree(certs, target)
        script = (
            f'mount -t overlay overlay -o lowerdir=/etc,upperdir={upper},workdir={work} /etc && exec "$@"'
        )
        namespace = ["unshare", "--mount", "--propagation", "private"]
        if os.geteuid() != 0:
            namespace.append("--map-root-user")
        return [*namespace, "sh", "-c", script, "kueue", *argv]

    def _install_crds(self) -> None:
        extensions = client.ApiextensionsV1Api(self.api)
        for path in sorted((config_dir() / "crd").glob("*.yaml")):
            document = yaml.safe_load(path.read_text())
            try:
                extensions.create_custom_resource_definition(document)
            except ApiException as error:
                if error.status != 409:
                    raise
        for path in sorted((config_dir() / "crd").glob("*.yaml")):
            name = str(yaml.safe_load(path.read_text())["metadata"]["name"])
            wait_for(partial(_established, extensions, name), 60, f"CRD {name} established")

    def _register_webhooks(self, port: int) -> None:
        """Kueue's webhooks for its own types, pointed at its loopback server by URL."""
        ca_bundle = self.control_plane.ca_bundle()
        documents = list(yaml.safe_load_all((config_dir() / "webhooks.yaml").read_text()))
        for document in documents:
            hooks = []
            for hook in document.get("webhooks") or []:
                path = hook["clientConfig"]["service"]["path"]
                if "kueue-x-k8s-io" not in path:
                    continue
                hook["clientConfig"] = {"url": f"https://127.0.0.1:{port}{path}", "caBundle": ca_bundle}
                hooks.append(hook)
            document["webhooks"] = hooks
            document["metadata"] = {"name": f"kueue-{document['metadata']['name']}"}
            try:
                utils.create_from_dict(self.api, document)
            except utils.FailToCreateError as error:
                if not all(isinstance(e, ApiException) and e.status == 409 for e in error.api_exceptions):
                    raise
        # A webhook configuration takes effect a moment after it is created: wait until Kueue's defaulting
        # answers (a ResourceFlavor dry run comes back defaulted).
        custom = client.CustomObjectsApi(self.api)

        def defaulting_works() -> bool:
            try:
                custom.create_cluster_custom_object(
                    GROUP,
                    VERSION,
                    "resourceflavors",
                    {
                        "apiVersion": f"{GROUP}/{VERSION}",
                        "kind": "ResourceFlavor",
                        "metadata": {"name": "probe"},
                    },
                    dry_run="All",
                )
            except ApiException:
                return False
            return True

        wait_for(defaulting_works, 60, "kueue webhooks answering")


def create_object(
    custom: client.CustomObjectsApi, plural: str, body: dict[str, Any], namespace: str = ""
) -> None:
    """A Kueue object (ResourceFlavor, ClusterQueue, LocalQueue, ...), unless it exists already."""
    body = {"apiVersion": f"{GROUP}/{VERSION}", **body}
    try:
        if namespace:
            custom.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, body)
        else:
            custom.create_cluster_custom_object(GROUP, VERSION, plural, body)
    except ApiException as error:
        if error.status != 409:
            raise


def _established(extensions: client.ApiextensionsV1Api, name: str) -> bool:
    crd: Any = extensions.read_custom_resource_definition(name)
    return any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or [])


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=ssl.create_default_context()) as response:
            return bool(response.status == 200)
    except OSError:
        return False
