"""Hardware profiles on the test control plane: first choice, fallback with the scheduler's reason, a mixed
fleet that finishes with the right workers per profile, and what each worker ran on.

Real processes run on node agents labelled as GPU nodes (one H100 node with 2 GPUs, one A100 node with 4);
profiles that no node matches stay unschedulable in the real scheduler.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from datajob_testenv.cluster import TestCluster
from datajob_testenv.datajobs import Jobs, condition, job_manifest, local_result, write_inputs
from datajob_testenv.kube import Kubectl
from datajob_testenv.kueue import GROUP as KUEUE_GROUP
from datajob_testenv.kueue import VERSION as KUEUE_VERSION
from datajob_testenv.kueue import Kueue
from datajob_testenv.nodes import AGENT_NODE_LABEL, GPU_PRODUCT_LABEL, GPU_TAINT, NodeShape
from datajob_testenv.processes import wait_for

H100_NODE, A100_NODE = "agent-h100", "agent-a100"
H100, A100, L40S = "NVIDIA-H100-80GB-HBM3", "NVIDIA-A100-SXM4-80GB", "NVIDIA-L40S"
MIG = "nvidia.com/mig-1g.10gb"


@pytest.fixture(scope="module")
def gpu_agents(cluster: TestCluster) -> Iterator[None]:
    """Two node agents that run real worker processes, labelled and sized as GPU nodes."""
    cluster.start_node_agent(
        H100_NODE, gpus=2, gpu_product=H100, labels={"karpenter.sh/capacity-type": "on-demand"}
    )
    cluster.start_node_agent(
        A100_NODE, gpus=4, gpu_product=A100, labels={"karpenter.sh/capacity-type": "spot"}
    )
    try:
        yield
    finally:
        cluster.stop_node_agent(H100_NODE)
        cluster.stop_node_agent(A100_NODE)


def profile(name: str, product: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "resources": {"cpu": "100m", "memory": "64Mi", "gpu": {"count": 1, "product": product}},
        **extra,
    }


def hardware_job(name: str, tmp_path: Path, hardware: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    manifest = job_manifest(name, tmp_path / "in", tmp_path / "out", hardware=hardware, **spec)
    del manifest["spec"]["resources"]
    # Real processes: only on node-agent nodes (agent-0 has no GPU, so GPU profiles land on the GPU agents).
    manifest["spec"]["nodeSelector"] = {AGENT_NODE_LABEL: "true"}
    return manifest


def manifest_entries(output: Path) -> list[dict[str, Any]]:
    """The _SUCCESS manifest's shard entries, each with ``hardware``: the manifest's entry (pod, profile,
    node, devices) its ``ranOn`` index names (each worker is listed once)."""
    manifest = json.loads((output / "_SUCCESS").read_text())
    entries: list[dict[str, Any]] = manifest["shards"]
    for entry in entries:
        entry["hardware"] = manifest["hardware"][entry["ranOn"]]
    return entries


def test_a_mixed_fleet_falls_back_past_an_unschedulable_profile_and_finishes_with_its_workers_per_profile(
    jobs: Jobs, tmp_path: Path, gpu_agents: None
) -> None:
    write_inputs(tmp_path / "in", files=12, lines=400)
    hardware = [
        profile("h100", H100, workers=2, waitSeconds=5),
        profile("l40s", L40S, waitSeconds=3),  # no node has it: its workers move on after 3 s
        profile("a100", A100),
    ]
    spec = {
        "workers": 4,
        "processor": {"builtin": "wordcount", "options": {"delayPerRecord": "0.004"}},
        "checkpoint": {"intervalSeconds": 1, "intervalRecords": 50},
    }
    manifest = hardware_job("fleet", tmp_path, hardware, **spec)
    jobs.create(manifest)

    # The first choice takes what it can, the unschedulable profile is given up on with the scheduler's
    # own reason, and its workers go to the next profile.
    status = jobs.wait(
        "fleet",
        lambda s: condition(s, "HardwareFallback").get("status") == "True",
        60,
        "the l40s profile given up on",
    )
    fallback = condition(status, "HardwareFallback")["message"]
    assert fallback.startswith("profile l40s: ") and "nodes are available" in fallback
    assert any(
        e.reason == "HardwareFallback" for e in jobs.events("fleet", wait_for_reason="HardwareFallback")
    )
    status = jobs.wait(
        "fleet",
        lambda s: (
            {p["name"]: p["ready"] for p in s["hardware"]["profiles"]} == {"h100": 2, "l40s": 0, "a100": 2}
        ),
        60,
        "2 workers on h100, 2 on a100",
    )
    assert status["hardware"]["summary"] == "h100:2 a100:2"
    nodes = {w["profile"]: w["node"] for w in status["hardware"]["workers"]}
    assert nodes == {"h100": H100_NODE, "a100": A100_NODE}

    # A worker killed mid-shard is replaced on its own profile (its place under the cap is free again),
    # and its shard resumes from the checkpoint.
    victim = jobs.kill_a_worker_mid_shard("fleet")
    victim_profile = next(p for p in jobs.pods("fleet") if p.metadata.name == victim).metadata.labels[
        "datajob.dev/profile"
    ]

    final = jobs.wait_phase("fleet", "Succeeded", 240)
    counts = {p["name"]: p for p in final["hardware"]["profiles"]}
    assert counts["h100"]["shards"] + counts["a100"]["shards"] == 12 and counts["l40s"]["shards"] == 0
    assert counts["h100"]["recordsPerSecond"] > 0 and counts["a100"]["recordsPerSecond"] > 0
    assert final["restarts"] == 1  # the kill; the moves off l40s were the job's own, not restarts
    # The manifest says which shard ran on what hardware.
    entries = manifest_entries(tmp_path / "out")
    where = {(e["hardware"]["profile"], e["hardware"]["node"]) for e in entries}
    assert where <= {("h100", H100_NODE), ("a100", A100_NODE)} and len(where) == 2
    assert victim_profile in {"h100", "a100"}
    assert any(e.get("resumedFrom") for e in entries), "the killed worker's shard resumed from its checkpoint"
    assert (tmp_path / "out" / "result").read_bytes() == local_result(manifest, tmp_path)


def test_the_first_profile_is_used_while_it_has_room(jobs: Jobs, tmp_path: Path, gpu_agents: None) -> None:
    write_inputs(tmp_path / "in", files=4, lines=20)
    manifest = hardware_job(
        "first", tmp_path, [profile("a100", A100, waitSeconds=1), profile("h100", H100)], workers=3
    )
    jobs.create(manifest)
    final = jobs.wait_phase("first", "Succeeded", 120)
    assert {e["hardware"]["profile"] for e in manifest_entries(tmp_path / "out")} == {"a100"}
    assert condition(final, "HardwareFallback") == {}


def test_a_cpu_job_falls_back_from_arm64_spot_to_amd64_on_demand(
    jobs: Jobs, tmp_path: Path, gpu_agents: None
) -> None:
    write_inputs(tmp_path / "in", files=4, lines=20)
    cpu = {"cpu": "100m", "memory": "64Mi"}
    hardware: list[dict[str, Any]] = [
        {
            "name": "arm-spot",
            "resources": cpu,
            "architecture": "arm64",
            "capacityType": "spot",
            "waitSeconds": 2,
        },
        {
            "name": "x86",
            "resources": cpu,
            "architecture": "amd64",
            "capacityType": "on-demand",
            # The only on-demand node here is a GPU node, tainted for GPU pods: this profile tolerates it.
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        },
    ]
    jobs.create(hardware_job("cpu", tmp_path, hardware, workers=1))
    final = jobs.wait_phase("cpu", "Succeeded", 120)
    assert "profile arm-spot: " in condition(final, "HardwareFallback")["message"]
    unavailable = condition(final, "HardwareUnavailable")
    assert unavailable == {} or unavailable["status"] == "False"  # judged only while the job runs
    assert {
        (e["hardware"]["profile"], e["hardware"]["node"]) for e in manifest_entries(tmp_path / "out")
    } == {("x86", H100_NODE)}


def test_a_profile_no_node_can_match_gets_a_condition_naming_it(
    jobs: Jobs, tmp_path: Path, gpu_agents: None
) -> None:
    write_inputs(tmp_path / "in", files=2, lines=5)
    hardware = [profile("sixteen", A100, resources={"gpu": {"count": 16, "product": A100}}, waitSeconds=600)]
    jobs.create(hardware_job("huge", tmp_path, hardware, workers=1))
    status = jobs.wait(
        "huge",
        lambda s: condition(s, "HardwareUnavailable").get("status") == "True",
        60,
        "HardwareUnavailable",
    )
    message = condition(status, "HardwareUnavailable")["message"]
    assert message.startswith("profile sixteen: no node with its labels can fit one worker")
    assert "nvidia.com/gpu 16" in message
    wait_for(lambda: bool(jobs.events("huge", wait_for_reason="HardwareUnavailable")), 30, "an event")


def _kueue_object(custom: Any, plural: str, body: dict[str, Any], namespace: str = "") -> None:
    body = {"apiVersion": f"{KUEUE_GROUP}/{KUEUE_VERSION}", **body}
    if namespace:
        custom.create_namespaced_custom_object(KUEUE_GROUP, KUEUE_VERSION, namespace, plural, body)
    else:
        custom.create_cluster_custom_object(KUEUE_GROUP, KUEUE_VERSION, plural, body)


def test_under_kueue_the_job_takes_the_profile_of_the_flavor_kueue_admitted(
    jobs: Jobs, tmp_path: Path, gpu_agents: None, kueue: Kueue
) -> None:
    """The ClusterQueue's H100 flavor has quota for one GPU, the job wants two workers of one GPU: Kueue's
    flavor fungibility admits it on the A100 flavor, and the workers run as the job's a100 profile."""
    custom = jobs.custom
    suffix = jobs.namespace[-5:]
    flavors = {f"h100-{suffix}": H100, f"a100-{suffix}": A100}
    for name, product in flavors.items():
        _kueue_object(
            custom,
            "resourceflavors",
            {
                "kind": "ResourceFlavor",
                "metadata": {"name": name},
                "spec": {"nodeLabels": {GPU_PRODUCT_LABEL: product}},
            },
        )
    quota = {f"h100-{suffix}": "1", f"a100-{suffix}": "4"}
    cluster_queue = f"cq-{jobs.namespace}"[:63]
    spec = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": jobs.namespace}},
        "resourceGroups": [
            {
                "coveredResources": ["cpu", "memory", "nvidia.com/gpu"],
                "flavors": [
                    {
                        "name": name,
                        "resources": [
                            {"name": "cpu", "nominalQuota": "4"},
                            {"name": "memory", "nominalQuota": "8Gi"},
                            {"name": "nvidia.com/gpu", "nominalQuota": quota[name]},
                        ],
                    }
                    for name in flavors
                ],
            }
        ],
    }
    _kueue_object(
        custom, "clusterqueues", {"kind": "ClusterQueue", "metadata": {"name": cluster_queue}, "spec": spec}
    )
    _kueue_object(
        custom,
        "localqueues",
        {"kind": "LocalQueue", "metadata": {"name": "lq"}, "spec": {"clusterQueue": cluster_queue}},
        jobs.namespace,
    )
    try:
        write_inputs(tmp_path / "in", files=4, lines=20)
        manifest = hardware_job("queued", tmp_path, [profile("h100", H100), profile("a100", A100)], workers=2)
        manifest["metadata"]["labels"] = {"kueue.x-k8s.io/queue-name": "lq"}
        jobs.create(manifest)
        final = jobs.wait_phase("queued", "Succeeded", 180)
        assert {p["name"]: p["shards"] for p in final["hardware"]["profiles"]} == {"h100": 0, "a100": 4}
        admitted = next(
            e.message for e in jobs.events("queued", wait_for_reason="Admitted") if e.reason == "Admitted"
        )
        assert f"a100-{suffix}" in admitted, admitted
        where = {
            (e["hardware"]["profile"], e["hardware"]["node"]) for e in manifest_entries(tmp_path / "out")
        }
        assert where == {("a100", A100_NODE)}
    finally:
        jobs.custom.delete_namespaced_custom_object(
            "datajob.dev", "v1alpha1", jobs.namespace, "datajobs", "queued"
        )
        custom.delete_cluster_custom_object(KUEUE_GROUP, KUEUE_VERSION, "clusterqueues", cluster_queue)


@pytest.fixture
def mig_node(cluster: TestCluster) -> Iterator[str]:
    """A kwok A100 node partitioned with MIG (the NVIDIA GPU operator's mixed strategy): seven 1g.10gb
    slices, advertised as their own extended resource, and tainted like any GPU node."""
    shape = NodeShape(
        "gpu-a100-mig-0",
        cpu="32",
        memory="256Gi",
        gpu_product=A100,
        labels={"nvidia.com/mig.strategy": "mixed"},
    )
    manifest = shape.manifest(fake=True)
    for key in ("capacity", "allocatable"):
        manifest["status"][key][MIG] = "7"
    manifest["spec"]["taints"] = [GPU_TAINT]
    api = client.CoreV1Api(cluster.api_client())
    api.create_node(manifest)
    try:
        yield shape.name
    finally:
        api.delete_node(shape.name)


def test_mig_slices_are_requested_by_their_resource_and_land_on_the_partitioned_node(
    jobs: Jobs, tmp_path: Path, mig_node: str
) -> None:
    write_inputs(tmp_path / "in", files=4, lines=5)
    sliced = {
        "name": "mig",
        "resources": {"cpu": "1", "memory": "1Gi", "gpu": {"count": 1, "resourceName": MIG, "product": A100}},
    }
    manifest = hardware_job("mig", tmp_path, [sliced], workers=3)
    del manifest["spec"]["nodeSelector"]  # kwok nodes: the pods only pretend to run
    jobs.create(manifest)
    wait_for(
        lambda: len([p for p in jobs.pods("mig") if p.spec.node_name]) == 3, 60, "3 MIG workers scheduled"
    )
    for pod in jobs.pods("mig"):
        assert pod.spec.node_name == mig_node  # the whole-GPU A100 node has no MIG slices
        assert pod.spec.containers[0].resources.limits[MIG] == "1"
    status = jobs.wait("mig", lambda s: (s.get("hardware") or {}).get("summary") == "mig:3", 60, "3 on mig")
    assert condition(status, "HardwareUnavailable") == {}


def test_workers_move_back_up_when_the_better_hardware_frees_losing_nothing(
    jobs: Jobs, tmp_path: Path, gpu_agents: None
) -> None:
    # Something else holds both H100s, so the job starts on its A100 fallback.
    blocker = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "holds-the-h100s"},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": H100_NODE},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "containers": [
                {
                    "name": "sleep",
                    "image": "busybox",
                    "command": ["sleep", "600"],
                    "resources": {"limits": {"nvidia.com/gpu": "2"}},
                }
            ],
        },
    }
    jobs.core.create_namespaced_pod(jobs.namespace, blocker)
    wait_for(
        lambda: jobs.core.read_namespaced_pod("holds-the-h100s", jobs.namespace).status.phase == "Running",
        60,
        "the blocker running",
    )
    write_inputs(tmp_path / "in", files=6, lines=300)
    spec = {
        "workers": 1,
        "hardwareMoveUpSeconds": 10,
        "processor": {"builtin": "wordcount", "options": {"delayPerRecord": "0.01"}},
        "checkpoint": {"intervalSeconds": 1, "intervalRecords": 50},
    }
    manifest = hardware_job(
        "up", tmp_path, [profile("h100", H100, waitSeconds=3), profile("a100", A100)], **spec
    )
    jobs.create(manifest)
    jobs.wait(
        "up",
        lambda s: any(
            w["profile"] == "a100" and w.get("node") for w in (s.get("hardware") or {}).get("workers") or []
        ),
        60,
        "the worker on the a100 fallback",
    )
    jobs.core.delete_namespaced_pod("holds-the-h100s", jobs.namespace, grace_period_seconds=0)

    final = jobs.wait_phase("up", "Succeeded", 180)
    moved = [
        e.message for e in jobs.events("up", wait_for_reason="HardwareMoveUp") if e.reason == "HardwareMoveUp"
    ]
    assert any("profile a100) stops after checkpointing" in m for m in moved), moved
    profiles = {e["hardware"]["profile"] for e in manifest_entries(tmp_path / "out")}
    assert profiles == {"a100", "h100"}, "shards ran on the fallback, then on the better hardware"
    assert final["restarts"] == 0 and final["shards"]["failed"] == 0
    assert (tmp_path / "out" / "result").read_bytes() == local_result(manifest, tmp_path)


def test_the_hardware_examples_are_admitted_by_the_api_server(kubectl: Kubectl, namespace: str) -> None:
    examples = Path(__file__).resolve().parents[2] / "examples" / "hardware"
    result = kubectl("apply", "--dry-run=server", "-n", namespace, "-f", str(examples))
    assert result.stdout.count("created (server dry run)") == len(list(examples.glob("*.yaml")))


def test_a_queued_job_whose_profiles_ask_for_different_amounts_is_refused_naming_the_profile(
    jobs: Jobs, tmp_path: Path
) -> None:
    write_inputs(tmp_path / "in", files=2, lines=5)
    big = {
        "name": "big",
        "resources": {"cpu": "100m", "memory": "64Mi", "gpu": {"count": 8, "product": A100}},
    }
    manifest = hardware_job("unfair", tmp_path, [profile("small", H100), big])
    manifest["metadata"]["labels"] = {"kueue.x-k8s.io/queue-name": "lq"}
    jobs.create(manifest)
    final = jobs.wait_phase("unfair", "Failed", 60)
    failed = condition(final, "Failed")
    assert (
        failed["reason"] == "HardwareNotQueueable" and "profile big differs from small" in failed["message"]
    )
    assert not jobs.pods("unfair")
