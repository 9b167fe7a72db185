"""Worker pod manifests sized to the hardware a DataJob asks for. Pure: spec in, manifest out.

Works on the spec as the API server stores it (camelCase, defaults applied by the CRD schema).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from datajob_core import protocol
from datajob_core.api import pod_policy
from datajob_core.api.identity import output_owner
from datajob_core.cluster import hardware
from datajob_core.cluster.hardware import Profile
from datajob_core.data import increments
from datajob_core.data.locations import CREDENTIAL_KEYS, SESSION_TOKEN

JOB_LABEL = "datajob.dev/job"
SLOT_LABEL = "datajob.dev/slot"
WORKER_CONTAINER = pod_policy.WORKER
DEFAULT_GPU_RESOURCE = hardware.DEFAULT_GPU_RESOURCE
DEFAULT_GPU_PRODUCT_LABEL = hardware.DEFAULT_GPU_PRODUCT_LABEL
# Short tolerations for node failure so lost pods are evicted, and their shards resumed, within a minute
# rather than the cluster default of five.
NODE_FAILURE_TOLERATION_SECONDS = 30
DEFAULT_COMMAND = ["python", "-m", "datajob_worker"]
TERMINATION_MESSAGE_PATH = "/dev/termination-log"


def worker_labels(job: str, slot: int | None = None) -> dict[str, str]:
    labels = {
        "app.kubernetes.io/name": "datajob-worker",
        "app.kubernetes.io/component": "worker",
        "app.kubernetes.io/managed-by": "datajob-operator",
        JOB_LABEL: job,
    }
    if slot is not None:
        labels[SLOT_LABEL] = str(slot)
    return labels


def owner_reference(job: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": job["apiVersion"],
        "kind": job["kind"],
        "name": job["metadata"]["name"],
        "uid": job["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def service_account_name(job: str) -> str:
    return f"{job}-worker"[:253]


def resources(shape: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """Requests from the hardware spec; limits where overcommit hurts (memory, GPUs, ephemeral storage).

    CPU gets no limit: CFS throttling slows data jobs without protecting anyone that requests don't.
    """
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if shape.get("cpu"):
        requests["cpu"] = str(shape["cpu"])
    if shape.get("memory"):
        requests["memory"] = limits["memory"] = str(shape["memory"])
    if shape.get("ephemeralStorage"):
        requests["ephemeral-storage"] = limits["ephemeral-storage"] = str(shape["ephemeralStorage"])
    gpu = shape.get("gpu")
    if gpu and gpu.get("count"):
        name = gpu.get("resourceName") or DEFAULT_GPU_RESOURCE
        # Extended resources must have requests == limits.
        requests[name] = limits[name] = str(gpu["count"])
    out: dict[str, dict[str, str]] = {"requests": requests}
    if limits:
        out["limits"] = limits
    return out


def _tolerations(spec: dict[str, Any], profile: Profile) -> list[dict[str, Any]]:
    tolerations = [dict(t) for t in spec.get("tolerations") or []]
    tolerations += [dict(t) for t in profile.tolerations]
    gpu = profile.gpu
    if gpu:
        name = gpu.get("resourceName") or DEFAULT_GPU_RESOURCE
        # GPU node pools are tainted with the GPU resource name (GKE, AKS, the NVIDIA operator's docs); a
        # MIG slice (nvidia.com/mig-1g.10gb) or a time-sliced GPU (nvidia.com/gpu.shared) is on a node
        # tainted for nvidia.com/gpu all the same.
        keys = [name] + (
            [DEFAULT_GPU_RESOURCE] if name.startswith("nvidia.com/") and name != DEFAULT_GPU_RESOURCE else []
        )
        for key in keys:
            tolerations.append({"key": key, "operator": "Exists", "effect": "NoSchedule"})
    for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
        tolerations.append(
            {
                "key": key,
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": NODE_FAILURE_TOLERATION_SECONDS,
            }
        )
    return tolerations


def node_selector(spec: Mapping[str, Any], profile: Profile) -> dict[str, str]:
    """spec.nodeSelector and the profile's own (its GPU model, architecture, capacity type): the profile's
    win where both name a label."""
    return {**(spec.get("nodeSelector") or {}), **profile.node_selector}


def storage_env(storage: dict[str, Any]) -> list[dict[str, Any]]:
    """spec.storage for the worker: the endpoint as a value, the credentials as references to the Secret
    (only its AWS_* keys, so the Secret's other keys never reach the pod; the session token is optional)."""
    config = {k: storage[k] for k in ("endpoint", "region") if storage.get(k)}
    env: list[dict[str, Any]] = [{"name": protocol.ENV_STORAGE, "value": json.dumps(config, sort_keys=True)}]
    secret = storage.get("credentialsSecret")
    if secret:
        for key in CREDENTIAL_KEYS:
            reference = {"name": secret, "key": key, "optional": key == SESSION_TOKEN}
            env.append({"name": key, "valueFrom": {"secretKeyRef": reference}})
    return env


def time_limits(spec: dict[str, Any]) -> str:
    """spec.retryPolicy's time limits on user code, for the worker's watchdog (datajob_worker.watchdog)."""
    policy = spec.get("retryPolicy") or {}
    return json.dumps(
        {
            "shardSeconds": policy.get("shardTimeoutSeconds"),
            "recordSeconds": policy.get("recordTimeoutSeconds"),
        }
    )


def _output_env(job: dict[str, Any]) -> list[dict[str, str]]:
    spec = job["spec"]
    root = (spec.get("output") or {}).get("uri", "")
    env = [
        {"name": protocol.ENV_OUTPUT, "value": root},
        {"name": protocol.ENV_OUTPUT_OWNER, "value": output_owner(job)},
    ]
    if increments.is_incremental(spec):
        # Batches share the output (its batch log); each task says which batch's prefix it writes.
        env.append({"name": protocol.ENV_BATCH_LOG, "value": root})
    return env


def worker_pod(
    job: dict[str, Any],
    slot: int,
    pod_name: str,
    lease: str,
    *,
    grace_seconds: int = 30,
    profile: Profile | None = None,
    report_key: str = "",
) -> dict[str, Any]:
    """The manifest of the worker pod for ``slot`` on ``profile`` (default: the job's first); ``job`` is the
    DataJob as stored by the API server."""
    meta, spec = job["metadata"], job["spec"]
    profile = profile or hardware.profiles(spec)[0]
    name = meta["name"]
    checkpoint = spec.get("checkpoint") or {}
    processor = spec.get("processor") or {}
    env = [
        {"name": protocol.ENV_JOB, "value": name},
        {"name": protocol.ENV_LEASE, "value": lease},
        {"name": protocol.ENV_POD, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": protocol.ENV_NAMESPACE, "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        *_output_env(job),
        {"name": protocol.ENV_CHECKPOINT_SECONDS, "value": str(checkpoint.get("intervalSeconds", 30))},
        {"name": protocol.ENV_PROCESSOR, "value": json.dumps(processor, sort_keys=True)},
        {"name": protocol.ENV_FORMAT, "value": (spec.get("input") or {}).get("format", "text")},
        {"name": protocol.ENV_ENCODING, "value": (spec.get("input") or {}).get("encoding", "utf-8")},
        {"name": protocol.ENV_BAD_RECORDS, "value": (spec.get("input") or {}).get("badRecordPolicy", "Fail")},
        {"name": protocol.ENV_TERMINATION_LOG, "value": TERMINATION_MESSAGE_PATH},
        {"name": protocol.ENV_TIME_LIMITS, "value": time_limits(spec)},
        {"name": protocol.ENV_PROFILE, "value": profile.name},
        {"name": protocol.ENV_NODE, "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
    ]
    if profile.gpu:
        env.append({"name": protocol.ENV_GPUS, "value": str(profile.gpu["count"])})
    if report_key:  # beside a pod still terminating: report under the key it does not use
        env.append({"name": protocol.ENV_REPORT_ANNOTATION, "value": report_key})
    if (spec.get("output") or {}).get("format"):
        env.append({"name": protocol.ENV_OUTPUT_FORMAT, "value": spec["output"]["format"]})
    if (spec.get("input") or {}).get("multiLine"):
        env.append({"name": protocol.ENV_MULTI_LINE, "value": "true"})
    if checkpoint.get("intervalRecords"):
        env.append({"name": protocol.ENV_CHECKPOINT_RECORDS, "value": str(checkpoint["intervalRecords"])})
    env += storage_env(spec.get("storage") or {})
    if spec.get("reduce"):
        reduce = spec["reduce"]
        if reduce.get("partitions"):
            env.append({"name": protocol.ENV_REDUCE_PARTITIONS, "value": str(reduce["partitions"])})
        if reduce.get("function"):
            env.append({"name": protocol.ENV_REDUCER, "value": reduce["function"]})
        if reduce.get("sql"):
            env.append({"name": protocol.ENV_REDUCE_SQL, "value": reduce["sql"]})
    env += [{"name": e["name"], "value": e.get("value", "")} for e in spec.get("env") or []]
    container: dict[str, Any] = {
        "name": WORKER_CONTAINER,
        "image": spec["image"],
        "command": list(spec.get("command") or DEFAULT_COMMAND),
        "env": env,
        "resources": resources(profile.resources),
        "securityContext": copy.deepcopy(pod_policy.RESTRICTED_CONTAINER),
        # The worker writes its last error there; if it could not (a crash before Python ran), kubelet
        # takes the tail of the log. Either way the reason outlives the pod, in the DataJob's events.
        "terminationMessagePath": TERMINATION_MESSAGE_PATH,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if spec.get("args"):
        container["args"] = list(spec["args"])
    if spec.get("imagePullPolicy"):
        container["imagePullPolicy"] = spec["imagePullPolicy"]
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "serviceAccountName": service_account_name(name),
        "terminationGracePeriodSeconds": grace_seconds,
        "securityContext": copy.deepcopy(pod_policy.RESTRICTED_POD),
        "containers": [container],
        "tolerations": _tolerations(spec, profile),
    }
    if profile.devices:
        # Each worker gets a claim of its own from the profile's template; the scheduler allocates it.
        template_name = hardware.claim_template_name(job, profile)
        pod_spec["resourceClaims"] = [
            {"name": hardware.CLAIM_NAME, "resourceClaimTemplateName": template_name}
        ]
        container["resources"]["claims"] = [{"name": hardware.CLAIM_NAME}]
    selector = node_selector(spec, profile)
    if selector:
        pod_spec["nodeSelector"] = selector
    if spec.get("affinity"):
        pod_spec["affinity"] = copy.deepcopy(spec["affinity"])
    if spec.get("priorityClassName"):
        pod_spec["priorityClassName"] = spec["priorityClassName"]
    labels = worker_labels(name, slot)
    annotations: dict[str, str] = {}
    template = spec.get("podTemplate") or {}
    labels.update((template.get("metadata") or {}).get("labels") or {})
    annotations.update((template.get("metadata") or {}).get("annotations") or {})
    _merge_template(pod_spec, container, template.get("spec") or {})
    # spec.nodeSelector, then the template's, then the profile's own labels (its GPU model, architecture,
    # capacity type), which nothing undoes.
    selector = {
        **(spec.get("nodeSelector") or {}),
        **((template.get("spec") or {}).get("nodeSelector") or {}),
        **profile.node_selector,
    }
    if selector:
        pod_spec["nodeSelector"] = selector
    labels.update(worker_labels(name, slot))  # the operator's own labels always win
    labels[hardware.PROFILE_LABEL] = profile.name
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [owner_reference(job)],
        },
        "spec": pod_spec,
    }
    return pod_policy.enforce(
        pod,
        service_account=service_account_name(name),
        grace_seconds=grace_seconds,
        termination_path=TERMINATION_MESSAGE_PATH,
    )


def _merge_template(pod_spec: dict[str, Any], container: dict[str, Any], override: dict[str, Any]) -> None:
    """Merges the user's pod template: volumes, sidecars and other pod fields (pod_policy.enforce then sets
    the fields the operator owns again).

    ``volumeMounts`` and ``envFrom`` in the template apply to the worker container; ``containers`` are added
    as sidecars (a container named ``worker`` is merged into the worker container instead). The worker's
    ``resources`` replace the job's (as they always have; with spec.hardware they are refused at admission),
    keeping the profile's device claim; ``resourceClaims`` are added to the profile's; ``nodeSelector``
    replaces spec.nodeSelector's labels but never the profile's own (worker_pod).
    """
    for key, value in override.items():
        if key == "containers":
            for extra in value:
                if extra.get("name") == WORKER_CONTAINER:
                    for field_name, field_value in extra.items():
                        if field_name in ("env", "volumeMounts", "envFrom"):
                            container.setdefault(field_name, []).extend(copy.deepcopy(field_value))
                        elif field_name == "resources":
                            container["resources"] = _with_device_claim(field_value, container["resources"])
                        elif field_name != "name":
                            container[field_name] = copy.deepcopy(field_value)
                else:
                    pod_spec["containers"].append(copy.deepcopy(extra))
        elif key in ("volumeMounts", "envFrom"):
            container.setdefault(key, []).extend(copy.deepcopy(value))
        elif key == "tolerations":
            pod_spec["tolerations"].extend(copy.deepcopy(value))
        elif key == "securityContext":
            pod_spec["securityContext"].update(copy.deepcopy(value))
        elif key == "resourceClaims":
            pod_spec["resourceClaims"] = [*(pod_spec.get("resourceClaims") or []), *copy.deepcopy(value)]
        else:
            pod_spec[key] = copy.deepcopy(value)


def _with_device_claim(template: dict[str, Any], profile: dict[str, Any]) -> dict[str, Any]:
    """A template's worker resources, with the profile's device claim kept (claims of its own added)."""
    out = copy.deepcopy(template or {})
    claims = [*(profile.get("claims") or []), *(out.get("claims") or [])]
    if claims:
        out["claims"] = claims
    return out


def worker_rbac(
    job: dict[str, Any],
    lease_names: list[str],
    *,
    account_template: dict[str, Any] | None = None,
    plan: list[str] | None = None,
) -> tuple[dict[str, Any], ...]:
    """ServiceAccount, Role and RoleBinding giving workers access to exactly their job's Leases (get,
    patch) and plan ConfigMaps (get: shards too large to send inline are read from there).

    ``account_template`` (from the Helm chart's ``workers.serviceAccount`` values) adds annotations (e.g. a
    cloud IAM role for reading s3:// or gs:// input), labels and imagePullSecrets to the ServiceAccount;
    it can never widen the Role.
    """
    name = job["metadata"]["name"]
    account = service_account_name(name)
    owner = [owner_reference(job)]
    labels = worker_labels(name)
    metadata = {"name": account, "labels": labels, "ownerReferences": owner}
    template = account_template or {}
    extra = template.get("metadata") or {}
    service_account: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {
            **metadata,
            "labels": {**(extra.get("labels") or {}), **labels},
            **({"annotations": dict(extra["annotations"])} if extra.get("annotations") else {}),
        },
    }
    for key in ("imagePullSecrets", "automountServiceAccountToken"):
        if key in template:
            service_account[key] = template[key]
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": dict(metadata),
        "rules": [
            {
                "apiGroups": ["coordination.k8s.io"],
                "resources": ["leases"],
                "resourceNames": sorted(lease_names),
                "verbs": ["get", "list", "watch", "patch", "update"],
            },
            *(
                [
                    {
                        "apiGroups": [""],
                        "resources": ["configmaps"],
                        "resourceNames": sorted(plan),
                        "verbs": ["get"],
                    }
                ]
                if plan
                else []
            ),
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": dict(metadata),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": job["metadata"]["namespace"]}],
    }
    return service_account, role, binding


def slot_lease(job: dict[str, Any], slot: int) -> dict[str, Any]:
    name = job["metadata"]["name"]
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": protocol.lease_name(name, slot),
            "labels": worker_labels(name, slot),
            "ownerReferences": [owner_reference(job)],
        },
        "spec": {"leaseDurationSeconds": 60},
    }
