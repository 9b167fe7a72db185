"""The word count as a user runs it: the chart's operator image and the worker image, built here, in real
containers, with a worker pod deleted, a worker process killed inside its container, and the operator's
own pod restarted mid-job. The output must equal local mode's. Run on two clusters: a real kubelet node
joined to the test control plane, and kind brought up by the README's make targets."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from datajob_testenv.datajobs import Jobs
from datajob_testenv.kube import CHART, Kubectl, helm
from datajob_testenv.processes import wait_for
from datajob_testenv.realnode import REAL_NODE_LABEL, REAL_NODE_TAINT, ContainerCluster, pod_processes
from datajob_testenv.tools import REPO_ROOT
from datajob_worker.cli import main as datajob

OPERATOR_NAMESPACE = "datajob-system"
KIND_HOST_DATA = Path("/tmp/datajob")  # hack/kind/config.yaml mounts it into the nodes at /data
JOB_NAMESPACE = "wordcount"
ON_REAL_NODE: dict[str, Any] = {
    "nodeSelector": {REAL_NODE_LABEL: "true"},
    "tolerations": [{"key": REAL_NODE_TAINT["key"], "operator": "Exists", "effect": "NoSchedule"}],
}


@dataclass
class Target:
    """A cluster with real containers, and how the test's files reach its pods."""

    kubeconfig: str
    host_data: Path  # a directory on this machine ...
    node_data: str  # ... as the nodes see it; mounted into the pods at /data
    subdirectory: str  # the test's files, below /data in the pods
    placement: dict[str, Any] = field(default_factory=dict)  # nodeSelector/tolerations for the pods
    operator_installed: bool = False  # by `make deploy` (the operator mounts the nodes' /data itself)


def shared_data_volume(kubectl: Kubectl, namespace: str, path: str) -> None:
    """A PersistentVolume over ``path`` on the node, bound to the claim ``data`` in ``namespace``: what a
    user's shared file system (NFS, CephFS, a CSI driver) is, and a volume kind restricted Pod Security
    allows (hostPath is not, and the operator's pod policy refuses it too)."""
    volume = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": f"data-{namespace}"},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteMany"],
            "storageClassName": "",
            "persistentVolumeReclaimPolicy": "Retain",
            "hostPath": {"path": path, "type": "Directory"},
            "claimRef": {"namespace": namespace, "name": "data"},
        },
    }
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "namespace": namespace},
        "spec": {
            "accessModes": ["ReadWriteMany"],
            "storageClassName": "",
            "volumeName": f"data-{namespace}",
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }
    kubectl("apply", "-f", "-", input=yaml.safe_dump_all([volume, claim]))


def wordcount_job(workers: int, subdirectory: str, placement: dict[str, Any]) -> dict[str, Any]:
    data = f"/data/{subdirectory}".rstrip("/")
    return {
        "apiVersion": "datajob.dev/v1alpha1",
        "kind": "DataJob",
        "metadata": {"name": "wordcount", "namespace": JOB_NAMESPACE},
        "spec": {
            "image": "datajob-worker:dev",
            "imagePullPolicy": "Never",
            "input": {
                "uris": [f"{data}/corpus/*.txt"],
                "partitioning": {"mode": "size", "targetShardSize": "256Ki"},
            },
            "output": {"uri": f"{data}/out/wordcount"},
            # Slow enough that the failures below land while shards are being processed.
            "processor": {"builtin": "wordcount", "options": {"delayPerRecord": "0.0004"}},
            "workers": workers,
            "resources": {"cpu": "100m", "memory": "192Mi"},
            "checkpoint": {"intervalSeconds": 2, "intervalRecords": 2000},
            "retryPolicy": {"maxShardAttempts": 6, "backoff": {"initialSeconds": 1, "maxSeconds": 4}},
            "podTemplate": {
                "spec": {
                    **placement,
                    "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
                    "containers": [
                        {"name": "worker", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}
                    ],
                }
            },
        },
    }


def running_workers(core: client.CoreV1Api) -> list[Any]:
    pods = core.list_namespaced_pod(JOB_NAMESPACE, label_selector="datajob.dev/job=wordcount").items
    return [p for p in pods if p.status.phase == "Running" and p.metadata.deletion_timestamp is None]


def shards_done(status: dict[str, Any]) -> int:
    return int((status.get("shards") or {}).get("succeeded", 0))


def word_count_through_failures(target: Target, tmp_path: Path) -> float:
    """The scenario; returns its wall time (install to Succeeded)."""
    kubectl = Kubectl(target.kubeconfig)
    api = config.new_client_from_config(target.kubeconfig)
    core = client.CoreV1Api(api)
    jobs = Jobs(api, JOB_NAMESPACE)

    # Input on a directory the node shares with the pods; uid 65532 (the images' user) writes the output.
    data = target.host_data / target.subdirectory
    subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "examples" / "wordcount" / "generate.py"),
            "--files",
            "8",
            "--mb-per-file",
            "0.25",
            "--out",
            str(data / "corpus"),
        ],
        check=True,
        capture_output=True,
    )
    for directory in (target.host_data, data):
        os.chmod(directory, 0o777)

    if not target.operator_installed:
        kubectl("create", "namespace", OPERATOR_NAMESPACE)
    # Workers run where restricted Pod Security is enforced: the pods the operator makes must pass it.
    kubectl("create", "namespace", JOB_NAMESPACE)
    kubectl(
        "label",
        "namespace",
        JOB_NAMESPACE,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/warn=restricted",
    )
    for namespace in (JOB_NAMESPACE,) if target.operator_installed else (OPERATOR_NAMESPACE, JOB_NAMESPACE):
        shared_data_volume(kubectl, namespace, target.node_data)

    started = time.monotonic()
    if not target.operator_installed:
        install_operator(target)
    operator_pod = kubectl("get", "pods", "-n", OPERATOR_NAMESPACE, "-o", "name").stdout.split()[0]

    manifest = wordcount_job(3, target.subdirectory, target.placement)
    kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest))
    wait_for(lambda: len(running_workers(core)) == 3, 120, "three worker pods Running in containers")
    jobs.wait("wordcount", lambda s: shards_done(s) >= 1, 120, "a shard done")

    # A worker's `kubectl logs` (through the API server and the kubelet) is its structured JSON log.
    logged = kubectl("logs", "-n", JOB_NAMESPACE, running_workers(core)[0].metadata.name).stdout
    events = [json.loads(line) for line in logged.splitlines() if line.startswith("{")]
    assert events and all("event" in e and "timestamp" in e for e in events), logged[:2000]

    # 1. A worker pod deleted (a disruption: its shards are released, nothing charged).
    deleted = running_workers(core)[0].metadata.name
    kubectl("delete", "pod", "-n", JOB_NAMESPACE, deleted, "--wait=false")
    # 2. A worker's process killed inside its container, as the OOM killer would (a failure).
    victim = next(p for p in running_workers(core) if p.metadata.name != deleted)
    pids = pod_processes(victim.metadata.uid)
    assert pids, f"no container process found for {victim.metadata.name}"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    # 3. The operator's own pod restarted mid-job; the Deployment brings up another, which carries on.
    kubectl("delete", "-n", OPERATOR_NAMESPACE, operator_pod, "--wait=false")

    status = jobs.wait(
        "wordcount", lambda s: s.get("phase") in ("Succeeded", "Failed"), 600, "the job finished"
    )
    elapsed = time.monotonic() - started
    assert status["phase"] == "Succeeded", json.dumps(status, indent=1)[:3000]
    assert status["shards"]["failed"] == 0
    # The kill was seen as a worker failure, the deletion as a disruption (not charged).
    assert int(status.get("restarts", 0)) >= 1, status
    assert int(status.get("disruptions", 0)) >= 1, status
    new_operator = kubectl("get", "pods", "-n", OPERATOR_NAMESPACE, "-o", "name").stdout.split()
    assert operator_pod not in new_operator and new_operator

    # The same job in local mode over the same input gives the same result.
    local = json.loads(json.dumps(manifest))
    local["spec"]["input"]["uris"] = [str(data / "corpus" / "*.txt")]
    local["spec"]["output"] = {"uri": str(tmp_path / "local-out")}
    local["spec"]["processor"]["options"] = {}
    local["spec"].pop("podTemplate")
    (tmp_path / "local.yaml").write_text(yaml.safe_dump(local))
    assert datajob(["run", str(tmp_path / "local.yaml")]) == 0
    cluster_result = (data / "out" / "wordcount" / "result").read_bytes()
    assert cluster_result == (tmp_path / "local-out" / "result").read_bytes()
    assert len(cluster_result) > 1000

    return elapsed


def install_operator(target: Target) -> None:
    """The chart with the images built here; the operator lists the input to plan shards, so it mounts
    the same shared volume at the same path."""
    helm(
        target.kubeconfig,
        "install",
        "datajob-operator",
        str(CHART),
        "--namespace",
        OPERATOR_NAMESPACE,
        "--wait",
        "--timeout",
        "3m",
        "--set",
        "image.repository=datajob-operator",
        "--set",
        "image.tag=dev",
        "--set",
        "image.pullPolicy=Never",
        "--set-json",
        f"nodeSelector={json.dumps(target.placement.get('nodeSelector', {}))}",
        "--set-json",
        f"tolerations={json.dumps(target.placement.get('tolerations', []))}",
        "--set-json",
        'extraVolumes=[{"name":"data","persistentVolumeClaim":{"claimName":"data"}}]',
        "--set-json",
        'extraVolumeMounts=[{"name":"data","mountPath":"/data"}]',
        "--set-json",
        'storage.roots=["/data"]',  # the operator may act on the shared volume with its own identity
        timeout=240,
    )


# Includes the session's image builds and cluster bring-up (fixtures), minutes on a cold machine.
@pytest.mark.timeout(1800)
def test_word_count_in_real_containers_survives_pod_deletion_process_kill_and_operator_restart(
    container_cluster: ContainerCluster, tmp_path: Path
) -> None:
    target = Target(
        kubeconfig=container_cluster.kubeconfig,
        host_data=tmp_path / "data",
        node_data=str(tmp_path / "data"),  # the real node shares this machine's file system
        subdirectory="",
        placement=ON_REAL_NODE,
    )
    target.host_data.mkdir()
    elapsed = word_count_through_failures(target, tmp_path)
    print(f"\nreal node: word count through 3 failures in {elapsed:.0f}s")


@pytest.mark.timeout(1800)
def test_word_count_on_kind_survives_pod_deletion_process_kill_and_operator_restart(
    kind_cluster: str, tmp_path: Path
) -> None:
    """On the cluster `make kind-up kind-load deploy e2e-kind` made (kind_cluster), whose nodes see the
    host's /tmp/datajob as /data (hack/kind/config.yaml) and whose operator `make deploy` installed."""
    # Unique, and removed afterwards: /tmp/datajob outlives the session, and a second run writing to the
    # same output would (rightly) fail with OutputInUse.
    target = Target(
        kubeconfig=kind_cluster,
        host_data=KIND_HOST_DATA,
        node_data="/data",
        subdirectory=f"test-{uuid.uuid4().hex[:8]}",
        operator_installed=True,
    )
    try:
        elapsed = word_count_through_failures(target, tmp_path)
    finally:
        shutil.rmtree(KIND_HOST_DATA / target.subdirectory, ignore_errors=True)
    print(f"\nkind: word count through 3 failures in {elapsed:.0f}s")
