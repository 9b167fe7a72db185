"""Pure sizing (pod and RBAC manifests from a DataJob) and planning (input files to shards)."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest

from datajob_core.cluster import sizing
from datajob_core.data.planning import InputFile, PlanError, plan_shards


def job(**spec: Any) -> dict[str, Any]:
    body = {"image": "worker:1", "input": {"uris": ["/d/*"]}, "output": {"uri": "/out"}, **spec}
    return {
        "apiVersion": "datajob.dev/v1alpha1",
        "kind": "DataJob",
        "metadata": {"name": "wc", "namespace": "team", "uid": "u-1"},
        "spec": body,
    }


def test_gpu_job_gets_limits_toleration_product_selector_and_restricted_security() -> None:
    gpu = {"count": 2, "product": "NVIDIA-A100-SXM4-80GB"}
    pod = sizing.worker_pod(job(resources={"cpu": "4", "memory": "8Gi", "gpu": gpu}), 3, "wc-3-1", "wc-w3")
    spec = pod["spec"]
    (container,) = spec["containers"]
    assert container["resources"] == {
        "requests": {"cpu": "4", "memory": "8Gi", "nvidia.com/gpu": "2"},
        "limits": {"memory": "8Gi", "nvidia.com/gpu": "2"},  # no CPU limit: throttling only hurts
    }
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    assert spec["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert spec["serviceAccountName"] == "wc-worker"
    env = {e["name"]: e for e in container["env"]}
    assert env["DATAJOB_LEASE"]["value"] == "wc-w3"
    assert env["DATAJOB_POD"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}


def test_cpu_job_has_no_gpu_toleration_and_pod_template_labels_cannot_override_the_operators() -> None:
    template = {"metadata": {"labels": {"team": "x", sizing.SLOT_LABEL: "99"}}}
    pod = sizing.worker_pod(job(resources={"cpu": "1"}, podTemplate=template), 0, "wc-0-1", "wc-w0")
    assert all(t["key"] != "nvidia.com/gpu" for t in pod["spec"]["tolerations"])
    assert pod["metadata"]["labels"]["team"] == "x"
    assert pod["metadata"]["labels"][sizing.SLOT_LABEL] == "0"


def test_worker_role_names_only_the_jobs_leases_and_the_template_cannot_widen_it() -> None:
    template = {
        "metadata": {"annotations": {"eks.amazonaws.com/role-arn": "arn:r"}, "labels": {"cost": "a"}},
        "imagePullSecrets": [{"name": "regcred"}],
    }
    account, role, binding = sizing.worker_rbac(job(), ["wc-w1", "wc-w0"], account_template=template)
    assert account["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": "arn:r"}
    assert account["metadata"]["labels"]["cost"] == "a"
    assert account["imagePullSecrets"] == [{"name": "regcred"}]
    (rule,) = role["rules"]
    assert rule == {
        "apiGroups": ["coordination.k8s.io"],
        "resources": ["leases"],
        "resourceNames": ["wc-w0", "wc-w1"],
        "verbs": ["get", "list", "watch", "patch", "update"],
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "wc-worker", "namespace": "team"}]


def covered(plan: list[dict[str, Any]]) -> dict[str, list[tuple[int, int]]]:
    ranges: dict[str, list[tuple[int, int]]] = {}
    for shard in plan:
        for piece in shard["pieces"]:
            ranges.setdefault(piece["path"], []).append((piece["start"], piece["end"]))
    return {path: sorted(r) for path, r in ranges.items()}


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize(
    "partitioning", [{"mode": "size", "targetShardSize": "1Ki"}, {"mode": "count", "shards": 7}]
)
def test_every_byte_of_every_file_is_in_exactly_one_piece(seed: int, partitioning: dict[str, Any]) -> None:
    rng = random.Random(seed)
    files = [InputFile(f"/d/{n}", rng.choice([0, 1, 500, 1024, 5000])) for n in range(rng.randint(1, 5))]
    plan = plan_shards(files, partitioning)
    for f in files:
        if f.size == 0:
            continue
        ranges = covered(plan)[f.path]
        assert ranges[0][0] == 0 and ranges[-1][1] == f.size
        assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges)), ranges
    if partitioning["mode"] == "count":
        assert len(plan) == 7
    else:
        assert all(p["end"] - p["start"] <= 1024 for s in plan for p in s["pieces"])


def test_per_file_is_one_shard_per_file_and_no_files_is_a_clear_error() -> None:
    files = [InputFile("/d/a", 10), InputFile("/d/b", 20)]
    assert plan_shards(files, {"mode": "perFile"}) == [
        {"pieces": [{"path": "/d/a", "start": 0, "end": 10}]},
        {"pieces": [{"path": "/d/b", "start": 0, "end": 20}]},
    ]
    with pytest.raises(PlanError, match=r"no input files matched spec\.input\.uris"):
        plan_shards([], {"mode": "perFile"})
