"""Several clusters dispatching DataJobs through Kueue's MultiKueue (docs/operations.md, "Multiple
clusters"), for the multi-cluster tests and ``make cluster-up MULTI=1``.

- a **manager**: a control plane (no nodes: nothing runs there), the DataJob CRD, the operator (which only
  makes each dispatched job's Workload) and Kueue with MultiKueue and the generic adapter for DataJob
  (``multiKueue.externalFrameworks``; the MultiKueue and MultiKueueAdaptersForCustomJobs feature gates are
  on by default in Kueue v0.17 and are named here anyway, so the test says what it relies on);
- **workers**: each a control plane with a node agent (a node that runs real worker processes), Kueue, the
  DataJob CRD and its own operator.

Only the object store (MinIO, the caller's) is shared. Every cluster has its own CA; the manager reaches each
worker with a kubeconfig held in a Secret, its certificates inline (Kueue refuses file references).
"""

from __future__ import annotations

import base64
import contextlib
import time
from functools import partial
from pathlib import Path
from typing import Any

import structlog
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from .cluster import TestCluster
from .controlplane import ControlPlane
from .kube import Kubectl
from .kueue import GROUP, KUEUE_NAMESPACE, VERSION, Kueue, create_object
from .nodes import AGENT_NODE
from .operator_process import OperatorProcess, storage_access
from .processes import wait_for
from .tools import REPO_ROOT

log = structlog.get_logger(__name__)

WORKERS = ("worker-1", "worker-2")
QUEUE = "datajobs"  # the LocalQueue, by the same name in every cluster (MultiKueue requires it)
CHECK = "datajob-multikueue"  # the AdmissionCheck and MultiKueueConfig
FLAVOR = "default"
FEATURE_GATES = ("MultiKueue", "MultiKueueAdaptersForCustomJobs")
DATAJOB_FRAMEWORK = "DataJob.v1alpha1.datajob.dev"  # Kind.version.group, as Kueue parses it


def multikueue_config(worker_lost_seconds: int) -> dict[str, Any]:
    """The manager's Kueue Configuration additions."""
    return {
        "multiKueue": {
            "gcInterval": "30s",
            "origin": "multikueue",
            "workerLostTimeout": f"{worker_lost_seconds}s",
            "externalFrameworks": [{"name": DATAJOB_FRAMEWORK}],
        },
    }


def inline_kubeconfig(path: Path) -> str:
    """The kubeconfig with its CA, certificate and key inline, as Kueue wants a MultiKueueCluster's."""
    config = yaml.safe_load(path.read_text())
    for entry in config["clusters"]:
        cluster = entry["cluster"]
        cluster["certificate-authority-data"] = _b64(cluster.pop("certificate-authority"))
    for entry in config["users"]:
        user = entry["user"]
        user["client-certificate-data"] = _b64(user.pop("client-certificate"))
        user["client-key-data"] = _b64(user.pop("client-key"))
    return str(yaml.safe_dump(config))


def _b64(path: str) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode()


class MultiKueueClusters:
    """A manager and worker clusters, started by ``start`` and stopped by ``stop`` (nothing left behind)."""

    def __init__(
        self,
        directory: Path,
        storage_root: Path,
        *,
        workers: tuple[str, ...] = WORKERS,
        worker_lost_seconds: int = 20,
        die_with_parent: bool = True,
    ) -> None:
        self.directory = directory.resolve()
        self.storage_root = storage_root
        self.worker_lost_seconds = worker_lost_seconds
        self.die_with_parent = die_with_parent
        self.manager = ControlPlane(self.directory / "manager", die_with_parent=die_with_parent)
        self.workers = {
            name: TestCluster(self.directory / name, die_with_parent=die_with_parent) for name in workers
        }
        self.operators: dict[str, OperatorProcess] = {}
        self.lost: set[str] = set()

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        started = time.monotonic()
        try:
            self._start_manager()
            for name, cluster in self.workers.items():
                self._start_worker(name, cluster)
            self._connect()
        except BaseException:
            self.stop()
            raise
        log.info("multikueue clusters ready", seconds=round(time.monotonic() - started, 1))

    def pids(self) -> dict[str, int]:
        """The operators' processes (each cluster's own components are in its directory's state)."""
        return {f"operator-{n}": o.process.pid for n, o in self.operators.items() if o.process is not None}

    def stop(self) -> None:
        for operator in self.operators.values():
            operator.stop()
        for cluster in self.workers.values():
            cluster.stop()
        self.manager.stop()

    def lose(self, worker: str) -> None:
        """The worker cluster goes away whole: its API server, Kueue, operator and node (whose worker
        processes are SIGKILLed), as in a lost region."""
        self.lost.add(worker)
        # The node first: its worker processes die mid-record (SIGKILL), before anything else of the cluster
        # stops (an operator stopping first would let them drain their shards, which a lost region does not).
        self.workers[worker].control_plane.stop_component("node-agent")
        self.operators[worker].stop()
        self.workers[worker].stop()

    # -- access ----------------------------------------------------------------------------------
    def api(self, name: str) -> client.ApiClient:
        if name == "manager":
            return self.manager.api_client()
        return self.workers[name].api_client()

    def kubeconfig(self, name: str) -> str:
        if name == "manager":
            assert self.manager.state is not None
            return self.manager.state.kubeconfig
        return self.workers[name].kubeconfig

    def names(self) -> list[str]:
        return ["manager", *self.workers]

    # -- queues ----------------------------------------------------------------------------------
    def make_namespace(self, namespace: str, secrets: dict[str, dict[str, str]] | None = None) -> None:
        """The namespace, its LocalQueue and ``secrets`` in every cluster (MultiKueue copies DataJobs
        to the same namespace; a worker cluster's copy reads its Secrets there)."""
        for name in self.names():
            if name in self.lost:
                continue
            core = client.CoreV1Api(self.api(name))
            with contextlib.suppress(ApiException):
                core.create_namespace({"metadata": {"name": namespace}})
            for secret, data in (secrets or {}).items():
                with contextlib.suppress(ApiException):
                    core.create_namespaced_secret(
                        namespace, {"metadata": {"name": secret}, "type": "Opaque", "stringData": data}
                    )
            create_object(
                client.CustomObjectsApi(self.api(name)),
                "localqueues",
                {"kind": "LocalQueue", "metadata": {"name": QUEUE}, "spec": {"clusterQueue": QUEUE}},
                namespace,
            )

    def set_capacity(self, worker: str, cpu: str) -> None:
        """The worker cluster's ClusterQueue quota: how many 1-CPU workers it admits at once."""
        custom = client.CustomObjectsApi(self.api(worker))
        queue = custom.get_cluster_custom_object(GROUP, VERSION, "clusterqueues", QUEUE)
        queue["spec"]["resourceGroups"][0]["flavors"][0]["resources"][0]["nominalQuota"] = cpu
        custom.replace_cluster_custom_object(GROUP, VERSION, "clusterqueues", QUEUE, queue)

    # -- start-up --------------------------------------------------------------------------------
    def _start_manager(self) -> None:
        self.manager.start()
        self._install_crd(self.manager.state.kubeconfig if self.manager.state else "")
        Kueue(
            self.manager,
            self.directory / "manager" / "kueue",
            extra_config=multikueue_config(self.worker_lost_seconds),
            feature_gates=FEATURE_GATES,
        ).start()
        self._start_operator("manager", self.manager.state.kubeconfig if self.manager.state else "")
        custom = client.CustomObjectsApi(self.manager.api_client())
        create_object(custom, "resourceflavors", {"kind": "ResourceFlavor", "metadata": {"name": FLAVOR}})
        create_object(custom, "clusterqueues", _cluster_queue(cpu="64", check=CHECK))

    def _start_worker(self, name: str, cluster: TestCluster) -> None:
        # No kwok nodes: the node agent is the worker cluster's one node, and it runs real processes.
        cluster.control_plane.start()
        cluster.start_node_agent(AGENT_NODE)
        self._install_crd(cluster.kubeconfig)
        Kueue(cluster.control_plane, cluster.directory / "kueue").start()
        self._start_operator(name, cluster.kubeconfig)
        custom = client.CustomObjectsApi(cluster.api_client())
        create_object(custom, "resourceflavors", {"kind": "ResourceFlavor", "metadata": {"name": FLAVOR}})
        create_object(custom, "clusterqueues", _cluster_queue(cpu="8"))

    def _install_crd(self, kubeconfig: str) -> None:
        kubectl = Kubectl(kubeconfig)
        kubectl("apply", "--server-side", "-f", str(REPO_ROOT / "crds" / "datajob.dev_datajobs.yaml"))
        kubectl.wait_established("datajobs.datajob.dev")

    def _start_operator(self, name: str, kubeconfig: str) -> None:
        operator = OperatorProcess(
            kubeconfig,
            self.directory / name / "logs",
            *storage_access(self.storage_root),
            die_with_parent=self.die_with_parent,
        )
        operator.start()
        self.operators[name] = operator

    def _connect(self) -> None:
        """The manager's MultiKueueClusters (kubeconfig Secrets), MultiKueueConfig and AdmissionCheck; waits
        until Kueue reports every worker connected and the check active."""
        core = client.CoreV1Api(self.manager.api_client())
        custom = client.CustomObjectsApi(self.manager.api_client())
        for name, cluster in self.workers.items():
            # The identity MultiKueue acts with in the worker cluster (docs: the RBAC it needs there).
            path = cluster.control_plane.client_kubeconfig("multikueue", "multikueue", ("system:masters",))
            secret = f"{name}-kubeconfig"
            with contextlib.suppress(ApiException):
                core.create_namespaced_secret(
                    KUEUE_NAMESPACE,
                    {"metadata": {"name": secret}, "stringData": {"kubeconfig": inline_kubeconfig(path)}},
                )
            create_object(
                custom,
                "multikueueclusters",
                {
                    "kind": "MultiKueueCluster",
                    "metadata": {"name": name},
                    "spec": {"clusterSource": {"kubeConfig": {"locationType": "Secret", "location": secret}}},
                },
            )
        create_object(
            custom,
            "multikueueconfigs",
            {
                "kind": "MultiKueueConfig",
                "metadata": {"name": CHECK},
                "spec": {"clusters": list(self.workers)},
            },
        )
        create_object(
            custom,
            "admissionchecks",
            {
                "kind": "AdmissionCheck",
                "metadata": {"name": CHECK},
                "spec": {
                    "controllerName": "kueue.x-k8s.io/multikueue",
                    "parameters": {"apiGroup": GROUP, "kind": "MultiKueueConfig", "name": CHECK},
                },
            },
        )
        for name in self.workers:
            wait_for(partial(self.worker_active, name), 120, f"MultiKueueCluster {name} Active")
        wait_for(
            lambda: _active(custom.get_cluster_custom_object(GROUP, VERSION, "admissionchecks", CHECK)),
            60,
            f"AdmissionCheck {CHECK} Active",
        )

    def worker_active(self, name: str) -> bool:
        custom = client.CustomObjectsApi(self.manager.api_client())
        return _active(custom.get_cluster_custom_object(GROUP, VERSION, "multikueueclusters", name))


def _cluster_queue(cpu: str, check: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "namespaceSelector": {},
        "resourceGroups": [
            {
                "coveredResources": ["cpu", "memory"],
                "flavors": [
                    {
                        "name": FLAVOR,
                        "resources": [
                            {"name": "cpu", "nominalQuota": cpu},
                            {"name": "memory", "nominalQuota": "256Gi"},
                        ],
                    }
                ],
            }
        ],
    }
    if check:
        spec["admissionChecksStrategy"] = {"admissionChecks": [{"name": check}]}
    return {"kind": "ClusterQueue", "metadata": {"name": QUEUE}, "spec": spec}


def _active(obj: dict[str, Any]) -> bool:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Active" and c.get("status") == "True" for c in conditions)
