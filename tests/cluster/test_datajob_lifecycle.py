"""Provisioning, scheduling feedback, suspend/resume, rescale, deletion and operator restarts."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from datajob_testenv.datajobs import Jobs, committed, condition, job_manifest, write_inputs
from datajob_testenv.kube import Kubectl
from datajob_testenv.nodes import GPU_RESOURCE, NodeShape
from datajob_testenv.operator_process import OperatorProcess
from datajob_testenv.processes import wait_for

RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted"}


def gpu_job(name: str, tmp_path: Path, product: str, count: int = 2) -> dict[str, Any]:
    write_inputs(tmp_path / "in", files=4, lines=5)
    manifest = job_manifest(name, tmp_path / "in", tmp_path / "out", workers=2)
    spec = manifest["spec"]
    del spec["nodeSelector"]  # GPU pods run on kwok's fake GPU nodes
    spec["resources"] = {"cpu": "4", "memory": "8Gi", "gpu": {"count": count, "product": product}}
    return manifest


@pytest.mark.parametrize("namespace", [RESTRICTED], indirect=True)
def test_gpu_workers_are_sized_admitted_under_restricted_and_land_on_gpu_nodes(
    jobs: Jobs, tmp_path: Path
) -> None:
    jobs.create(gpu_job("gpu", tmp_path, "NVIDIA-A100-SXM4-80GB"))
    wait_for(
        lambda: len([p for p in jobs.pods("gpu") if p.spec.node_name]) == 2, 60, "2 GPU workers scheduled"
    )
    for pod in jobs.pods("gpu"):
        assert pod.spec.node_name == "gpu-a100-0"
        container = pod.spec.containers[0]
        assert container.resources.requests == {"cpu": "4", "memory": "8Gi", GPU_RESOURCE: "2"}
        assert container.resources.limits == {"memory": "8Gi", GPU_RESOURCE: "2"}
        assert pod.spec.node_selector == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
        assert any(t.key == GPU_RESOURCE and t.operator == "Exists" for t in pod.spec.tolerations)
        assert pod.spec.security_context.run_as_non_root is True
        assert container.security_context.capabilities.drop == ["ALL"]
        owner = pod.metadata.owner_references[0]
        assert (owner.kind, owner.name, owner.controller) == ("DataJob", "gpu", True)
    status = jobs.wait(
        "gpu", lambda s: (s.get("workers") or {}).get("ready") == 2, 60, "workers ready in status"
    )
    assert status["workers"]["summary"] == "2/2"
    assert condition(status, "WorkersUnschedulable")["status"] == "False"


def test_impossible_hardware_request_is_surfaced_as_acondition(jobs: Jobs, tmp_path: Path) -> None:
    jobs.create(gpu_job("nogpu", tmp_path, "NVIDIA-H100-80GB"))
    status = jobs.wait(
        "nogpu",
        lambda s: condition(s, "WorkersUnschedulable").get("status") == "True",
        60,
        "WorkersUnschedulable=True",
    )
    unschedulable = condition(status, "WorkersUnschedulable")
    assert unschedulable["reason"] == "Unschedulable"
    assert "node(s) didn't match Pod's node affinity/selector" in unschedulable["message"]
    assert status["phase"] == "Pending"


def test_input_matching_nothing_fails_the_job_with_a_clearcondition(jobs: Jobs, tmp_path: Path) -> None:
    jobs.create(job_manifest("empty", tmp_path / "nothing-here", tmp_path / "out"))
    status = jobs.wait_phase("empty", "Failed", timeout=60)
    failed = condition(status, "Failed")
    assert failed["status"] == "True"
    assert failed["reason"] == "InputNotFound"
    assert "spec.input.uris" in failed["message"]
    jobs.events("empty", wait_for_reason="InputNotFound")


def test_deleting_the_job_removes_its_pods_and_coordination_objects(jobs: Jobs, tmp_path: Path) -> None:
    jobs.create(gpu_job("gone", tmp_path, "NVIDIA-A100-SXM4-80GB", count=1))
    wait_for(lambda: len(jobs.pods("gone")) == 2, 60, "workers created")
    jobs.custom.delete_namespaced_custom_object("datajob.dev", "v1alpha1", jobs.namespace, "datajobs", "gone")
    wait_for(lambda: not jobs.pods("gone"), 60, "pods garbage-collected")
    leases = client.CoordinationV1Api(jobs.core.api_client)
    selector = "datajob.dev/job=gone"
    wait_for(
        lambda: not leases.list_namespaced_lease(jobs.namespace, label_selector=selector).items, 60, "leases"
    )
    wait_for(
        lambda: not jobs.core.list_namespaced_config_map(jobs.namespace, label_selector=selector).items,
        60,
        "plan",
    )


def test_live_rescale_adds_and_removes_workers(jobs: Jobs, tmp_path: Path) -> None:
    manifest = gpu_job("scale", tmp_path, "NVIDIA-A100-SXM4-80GB", count=1)
    manifest["spec"]["workers"] = 1
    jobs.create(manifest)

    def live() -> int:
        return len([p for p in jobs.pods("scale") if not p.metadata.deletion_timestamp])

    wait_for(lambda: live() == 1, 60, "1 worker")
    jobs.patch("scale", {"workers": 3})
    wait_for(lambda: live() == 3, 60, "3 workers after scale-up")
    jobs.patch("scale", {"workers": 1})
    wait_for(lambda: live() == 1, 60, "1 worker after scale-down")
    status = jobs.wait("scale", lambda s: s["workers"]["desired"] == 1, 30, "desired=1")
    assert status["restarts"] == 0  # scale-down is not a failure
    scaled = [e.message for e in jobs.events("scale", wait_for_reason="Scaled") if e.reason == "Scaled"]
    assert any("from 1 to 3" in m for m in scaled) and any("from 3 to 1" in m for m in scaled)


def test_suspend_stops_workers_and_resume_finishes_without_losing_progress(
    jobs: Jobs, tmp_path: Path
) -> None:
    total_lines = write_inputs(tmp_path / "in", files=6, lines=600)
    manifest = job_manifest(
        "pause",
        tmp_path / "in",
        tmp_path / "out",
        workers=2,
        processor={"builtin": "wordcount", "options": {"delayPerRecord": "0.002"}},
    )
    jobs.create(manifest)
    jobs.wait("pause", lambda s: (s.get("shards") or {}).get("succeeded", 0) >= 1, 90, "some progress")
    jobs.patch("pause", {"suspend": True})
    status = jobs.wait_phase("pause", "Suspended", timeout=60)
    wait_for(lambda: not jobs.pods("pause"), 60, "workers stopped")
    # Completions reported as the workers stopped are folded once the operator sees them gone.
    jobs.wait("pause", lambda s: s["shards"]["running"] == 0, 30, "in-flight shards released")
    done_at_suspend = jobs.status("pause")["shards"]["succeeded"]
    assert condition(status, "Suspended")["status"] == "True"
    time.sleep(2)
    assert jobs.status("pause")["shards"]["succeeded"] == done_at_suspend  # nothing runs while suspended
    jobs.patch("pause", {"suspend": False})
    status = jobs.wait_phase("pause", "Succeeded", timeout=180)
    assert status["shards"]["succeeded"] == 6
    story = [e.reason for e in jobs.events("pause", wait_for_reason="Completed")]
    assert {"WorkerCreated", "Suspended", "Resumed", "Completed"} <= set(story), story
    assert status["restarts"] == 0
    results = committed(tmp_path / "out")
    assert sum(r["records"] for r in results.values()) == total_lines


def test_operator_restart_mid_job_loses_and_repeats_nothing(
    jobs: Jobs, tmp_path: Path, operator: OperatorProcess
) -> None:
    total_lines = write_inputs(tmp_path / "in", files=8, lines=500)
    manifest = job_manifest(
        "crash",
        tmp_path / "in",
        tmp_path / "out",
        workers=2,
        processor={"builtin": "wordcount", "options": {"delayPerRecord": "0.002"}},
    )
    jobs.create(manifest)
    jobs.wait("crash", lambda s: (s.get("shards") or {}).get("succeeded", 0) >= 1, 90, "some progress")
    operator.kill()
    before = jobs.status("crash")["shards"]["succeeded"]
    # Workers keep going on their prefetched shards while no operator runs.
    wait_for(lambda: len(committed(tmp_path / "out")) > before, 60, "output committed while operator is down")
    operator.start()
    status = jobs.wait_phase("crash", "Succeeded", timeout=180)
    assert status["shards"]["succeeded"] == 8
    assert status["restarts"] == 0
    results = committed(tmp_path / "out")
    assert sorted(results) == list(range(8))
    assert sum(r["records"] for r in results.values()) == total_lines
    # No shard was handed out twice: every committed result came from its first attempt.
    assert {r["attempt"] for r in results.values()} == {1}


def test_worker_on_a_vanished_node_is_replaced_elsewhere(
    jobs: Jobs, tmp_path: Path, core_v1: client.CoreV1Api
) -> None:
    write_inputs(tmp_path / "in", files=2, lines=5)
    manifest = job_manifest("nodeloss", tmp_path / "in", tmp_path / "out", workers=1)
    # A throwaway kwok node only this job can use, so deleting it disturbs no other test.
    node = NodeShape("doomed-0", cpu="2", memory="4Gi", labels={"datajob.dev/test-pool": "nodeloss"})
    core_v1.create_node(node.manifest(fake=True))
    spare = NodeShape("spare-0", cpu="2", memory="4Gi", labels={"datajob.dev/test-pool": "nodeloss"})
    manifest["spec"]["nodeSelector"] = {
        "datajob.dev/test-pool": "nodeloss",
        "kubernetes.io/hostname": "doomed-0",
    }
    # Long checkpoint interval: the fake pod never reports, and the heartbeat timeout must not fire first.
    manifest["spec"]["checkpoint"] = {"intervalSeconds": 30}
    jobs.create(manifest)
    wait_for(lambda: any(p.status.phase == "Running" for p in jobs.pods("nodeloss")), 60, "worker running")
    first = jobs.pods("nodeloss")[0].metadata.name
    # A merge patch: null removes the key, leaving only the pool selector for the replacement.
    jobs.patch("nodeloss", {"nodeSelector": {"kubernetes.io/hostname": None}})
    core_v1.create_node(spare.manifest(fake=True))
    started = time.monotonic()
    core_v1.delete_node("doomed-0")
    try:
        wait_for(
            lambda: any(
                p.metadata.name != first and p.spec.node_name == "spare-0" for p in jobs.pods("nodeloss")
            ),
            30,
            "replacement scheduled on the spare node",
        )
        print(f"replacement scheduled {time.monotonic() - started:.0f}s after its node was deleted")
        # Node loss is a disruption: replaced, nothing charged, no crash-loop budget used.
        events = jobs.events("nodeloss", wait_for_reason="WorkerDisrupted")
        assert any(e.reason == "WorkerDisrupted" and first in e.message for e in events)
        assert not any(e.reason == "WorkerFailed" for e in events)
        status = jobs.status("nodeloss")
        assert status["restarts"] == 1 and status["disruptions"] == 1
    finally:
        core_v1.delete_node("spare-0")


def test_workers_get_least_privilege(jobs: Jobs, tmp_path: Path, kubectl: Kubectl) -> None:
    jobs.create(gpu_job("rbac", tmp_path, "NVIDIA-A100-SXM4-80GB", count=1))
    wait_for(lambda: len(jobs.pods("rbac")) == 2, 60, "workers created")
    worker = f"system:serviceaccount:{jobs.namespace}:rbac-worker"

    def can(*args: str) -> bool:
        result = kubectl("auth", "can-i", "-n", jobs.namespace, "--as", worker, *args, check=False)
        return result.stdout.strip() == "yes"

    assert jobs.pods("rbac")[0].spec.service_account_name == "rbac-worker"
    assert can("get", "leases/rbac-w0")
    assert can("patch", "leases/rbac-w1")
    assert not can("get", "leases/other-w0")
    assert not can("list", "leases")
    # Its own Lease only, by name: what a watch with a metadata.name field selector needs.
    assert can("watch", "leases/rbac-w0")
    assert not can("watch", "leases")
    assert not can("delete", "leases/rbac-w0")
    assert not can("get", "pods")
    assert not can("get", "secrets")
    assert not can("get", "datajobs")
    assert not can("get", "leases/rbac-w0", "--namespace", "default")


def test_starting_many_workers_creates_each_worker_pod_once(jobs: Jobs, tmp_path: Path) -> None:
    """The operator reads pods from its informer's cache; a pod it has just created and the cache has not
    shown yet must not look "disappeared" and be replaced (informer expectations)."""
    workers = 200
    write_inputs(tmp_path / "in", files=workers, lines=2)
    manifest = job_manifest("many-pods", tmp_path / "in", tmp_path / "out", workers=workers)
    spec = manifest["spec"]
    spec["nodeSelector"] = {"type": "kwok"}  # kwok pods: Running at once, and cheap
    spec["resources"] = {"cpu": "10m", "memory": "16Mi"}
    jobs.create(manifest)
    jobs.wait("many-pods", lambda s: (s.get("workers") or {}).get("ready") == workers, 120, "all Running")
    time.sleep(2)  # a few more passes, as events keep arriving
    created = [e for e in jobs.events("many-pods") if e.reason == "WorkerCreated"]
    assert len(created) == workers, f"{len(created)} pods created for {workers} workers"
    assert jobs.status("many-pods")["restarts"] == 0
    assert sorted(p.metadata.name for p in jobs.pods("many-pods")) == sorted(
        f"many-pods-{slot}-1" for slot in range(workers)
    )
