"""Sample DataJob specs shared by the unit tests (pydantic) and the admission tests (the API server)."""

from __future__ import annotations

import copy
from typing import Any

VALID_SPEC: dict[str, Any] = {
    "image": "ghcr.io/example/datajob-worker:0.1",
    "input": {"uris": ["/data/in/*.txt"]},
    "output": {"uri": "/data/out"},
}


def spec_with(**changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(VALID_SPEC)
    spec.update(changes)
    return spec


# (name, spec, substring that both pydantic's and the API server's error must contain)
BAD_SPECS: list[tuple[str, dict[str, Any], str]] = [
    ("missing image", {k: v for k, v in VALID_SPEC.items() if k != "image"}, "spec.image"),
    ("no input uris", spec_with(input={"uris": []}), "spec.input.uris"),
    ("bad format", spec_with(input={"uris": ["a"], "format": "xml"}), "spec.input.format"),
    (
        "count without shards",
        spec_with(input={"uris": ["a"], "partitioning": {"mode": "count"}}),
        "spec.input.partitioning.shards is required when mode is count",
    ),
    (
        "shards without count",
        spec_with(input={"uris": ["a"], "partitioning": {"mode": "perFile", "shards": 4}}),
        "spec.input.partitioning.shards is only allowed when mode is count",
    ),
    (
        "size without target",
        spec_with(input={"uris": ["a"], "partitioning": {"mode": "size"}}),
        "spec.input.partitioning.targetShardSize is required when mode is size",
    ),
    ("activeDeadlineSeconds zero", spec_with(activeDeadlineSeconds=0), "spec.activeDeadlineSeconds"),
    (
        "combineFiles outside size mode",
        spec_with(input={"uris": ["a"], "partitioning": {"mode": "perFile", "combineFiles": True}}),
        "spec.input.partitioning.combineFiles and fileOpenCost are only allowed when mode is size",
    ),
    (
        "fileOpenCost too large",
        spec_with(
            input={
                "uris": ["a"],
                "partitioning": {"mode": "size", "targetShardSize": "1Mi", "fileOpenCost": "2Gi"},
            }
        ),
        "spec.input.partitioning.fileOpenCost must be",
    ),
    (
        "more workers than shards",
        spec_with(workers=8, input={"uris": ["a"], "partitioning": {"mode": "count", "shards": 4}}),
        "spec.workers must not exceed spec.input.partitioning.shards",
    ),
    ("zero workers", spec_with(workers=0), "spec.workers"),
    (
        "hardware profiles and spec.resources",
        spec_with(hardware=[{"name": "a"}], resources={"cpu": "2"}),
        "spec.resources must not be set with spec.hardware",
    ),
    (
        "every hardware profile capped below spec.workers",
        spec_with(workers=5, hardware=[{"name": "a", "workers": 2}, {"name": "b", "workers": 2}]),
        "leave the last profile uncapped",
    ),
    (
        "devices with both forms",
        spec_with(
            hardware=[
                {
                    "name": "a",
                    "devices": {
                        "deviceClassName": "x.example.com",
                        "firstAvailable": [{"deviceClassName": "y"}],
                    },
                }
            ]
        ),
        "exactly one of deviceClassName and firstAvailable",
    ),
    (
        "hardware profile name not a DNS label",
        spec_with(hardware=[{"name": "H100_big"}]),
        "spec.hardware[0].name",
    ),
    (
        "hardware profile with zero cpu",
        spec_with(hardware=[{"name": "a", "resources": {"cpu": "0"}}]),
        "a hardware profile's resources.cpu must be greater than 0",
    ),
    (
        "move-up interval too short",
        spec_with(hardware=[{"name": "a"}], hardwareMoveUpSeconds=1),
        "spec.hardwareMoveUpSeconds",
    ),
    (
        "gpu type without count",
        spec_with(resources={"gpu": {"product": "NVIDIA-A100-SXM4-80GB"}}),
        "spec.resources.gpu.count",
    ),
    ("too many gpus", spec_with(resources={"gpu": {"count": 64}}), "spec.resources.gpu.count"),
    ("zero cpu", spec_with(resources={"cpu": "0"}), "spec.resources.cpu must be greater than 0"),
    ("memory not a quantity", spec_with(resources={"memory": "lots"}), "spec.resources.memory"),
    (
        "backoff inverted",
        spec_with(retryPolicy={"backoff": {"initialSeconds": 600, "maxSeconds": 60}}),
        "spec.retryPolicy.backoff.initialSeconds must not exceed maxSeconds",
    ),
    (
        "zero shard attempts",
        spec_with(retryPolicy={"maxShardAttempts": 0}),
        "spec.retryPolicy.maxShardAttempts",
    ),
    (
        "two processors",
        spec_with(processor={"builtin": "wordcount", "function": "mymod:run"}),
        "spec.processor: set exactly one of builtin, function, sql or exec",
    ),
    ("bad function", spec_with(processor={"function": "not a function"}), "spec.processor.function"),
    (
        "batchSize for a builtin",
        spec_with(processor={"builtin": "wordcount", "batchSize": 64}),
        "spec.processor.batchSize and batchFormat need spec.processor.function",
    ),
    (
        "batchSize zero",
        spec_with(processor={"function": "mymod:Model", "batchSize": 0}),
        "spec.processor.batchSize",
    ),
    (
        "unknown batchFormat",
        spec_with(processor={"function": "mymod:Model", "batchFormat": "pandas"}),
        "spec.processor.batchFormat",
    ),
    (
        "aggregate without groupBy",
        spec_with(processor={"builtin": "aggregate", "options": {"value": "amount"}}),
        "spec.processor.options.groupBy is required for builtin aggregate",
    ),
    (
        "grep without pattern",
        spec_with(processor={"builtin": "grep"}),
        "spec.processor.options.pattern is required for builtin grep",
    ),
    (
        "output store without a committer",
        spec_with(output={"uri": "hdfs://namenode/out"}),
        "spec.output.uri must be a filesystem path",
    ),
    (
        "storage endpoint without a scheme",
        spec_with(storage={"endpoint": "minio:9000"}),
        "spec.storage.endpoint",
    ),
    (
        "storage secret that is not a name",
        spec_with(storage={"credentialsSecret": "Not_A_Secret"}),
        "spec.storage.credentialsSecret",
    ),
    ("negative ttl", spec_with(ttlSecondsAfterFinished=-1), "spec.ttlSecondsAfterFinished"),
    (
        "bad toleration effect",
        spec_with(tolerations=[{"key": "k", "effect": "Sometimes"}]),
        "spec.tolerations[0].effect",
    ),
    *[
        (
            f"targetShardSize {size}",
            spec_with(input={"uris": ["a"], "partitioning": {"mode": "size", "targetShardSize": size}}),
            "spec.input.partitioning.targetShardSize",
        )
        for size in ("100m", "1e400", "0")
    ],
    # Integers beyond what the API server stores exactly, keys that are not label keys, NUL bytes.
    (
        "ttl beyond int64",
        spec_with(ttlSecondsAfterFinished=9223372036854775808),
        "spec.ttlSecondsAfterFinished",
    ),
    (
        "maxFailedShards 1e20",
        spec_with(retryPolicy={"maxFailedShards": 100000000000000000000}),
        "spec.retryPolicy.maxFailedShards",
    ),
    (
        "toleration key not a label key",
        spec_with(tolerations=[{"key": "not a key!", "operator": "Exists"}]),
        "spec.tolerations[0].key",
    ),
    ("NUL byte in env", spec_with(env=[{"name": "A", "value": "x\x00y"}]), "spec.env[0].value"),
    (
        "utf-16 input",
        spec_with(input={"uris": ["a"], "encoding": "utf-16"}),
        "spec.input.encoding",
    ),
    # A DataJob author must not get more than a DataJob: identity and privilege belong to the operator.
    *[
        (f"podTemplate {field}", spec_with(podTemplate={"spec": template}), expected)
        for field, template, expected in [
            (
                "serviceAccountName",
                {"serviceAccountName": "other-job-worker"},
                "spec.podTemplate.spec.serviceAccountName",
            ),
            (
                "automountServiceAccountToken",
                {"automountServiceAccountToken": True},
                "spec.podTemplate.spec.automountServiceAccountToken",
            ),
            ("hostPID", {"hostPID": True}, "spec.podTemplate.spec.hostPID"),
            ("hostNetwork", {"hostNetwork": True}, "spec.podTemplate.spec.hostNetwork"),
            ("nodeName", {"nodeName": "node-1"}, "spec.podTemplate.spec.nodeName"),
            (
                "root pod",
                {"securityContext": {"runAsUser": 0}},
                "spec.podTemplate.spec.securityContext.runAsUser",
            ),
            (
                "hostPath volume",
                {"volumes": [{"name": "root", "hostPath": {"path": "/"}}]},
                "spec.podTemplate.spec.volumes[0].hostPath",
            ),
            (
                "privileged sidecar",
                {"containers": [{"name": "side", "image": "x", "securityContext": {"privileged": True}}]},
                "spec.podTemplate.spec.containers[0].securityContext.privileged",
            ),
            (
                "capability",
                {
                    "initContainers": [
                        {
                            "name": "i",
                            "image": "x",
                            "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}},
                        }
                    ]
                },
                "spec.podTemplate.spec.initContainers[0].securityContext.capabilities.add",
            ),
            (
                "worker as root",
                {"containers": [{"name": "worker", "securityContext": {"runAsNonRoot": False}}]},
                "spec.podTemplate.spec.containers[0].securityContext.runAsNonRoot",
            ),
            (
                "host port",
                {
                    "containers": [
                        {"name": "side", "image": "x", "ports": [{"containerPort": 80, "hostPort": 80}]}
                    ]
                },
                "spec.podTemplate.spec.containers[0].ports[0].hostPort",
            ),
            # Pod mechanics the operator owns.
            ("restartPolicy Always", {"restartPolicy": "Always"}, "spec.podTemplate.spec.restartPolicy"),
            (
                "a day of grace",
                {"terminationGracePeriodSeconds": 86400},
                "spec.podTemplate.spec.terminationGracePeriodSeconds",
            ),
            (
                "worker termination message path",
                {"containers": [{"name": "worker", "terminationMessagePath": "/tmp/x"}]},
                "spec.podTemplate.spec.containers[0].terminationMessagePath",
            ),
            (
                "container restartPolicy",
                {"containers": [{"name": "side", "image": "x", "restartPolicy": "Always"}]},
                "spec.podTemplate.spec.containers[0].restartPolicy",
            ),
            (
                "init container restartPolicy OnFailure",
                {"initContainers": [{"name": "i", "image": "x", "restartPolicy": "OnFailure"}]},
                "spec.podTemplate.spec.initContainers[0].restartPolicy",
            ),
            (
                "unconfined AppArmor on the pod",
                {"securityContext": {"appArmorProfile": {"type": "Unconfined"}}},
                "spec.podTemplate.spec.securityContext.appArmorProfile.type",
            ),
            (
                "unconfined AppArmor on a sidecar",
                {
                    "containers": [
                        {
                            "name": "s",
                            "image": "x",
                            "securityContext": {"appArmorProfile": {"type": "Unconfined"}},
                        }
                    ]
                },
                "spec.podTemplate.spec.containers[0].securityContext.appArmorProfile.type",
            ),
        ]
    ],
    (
        "unconfined AppArmor annotation",
        spec_with(
            podTemplate={
                "metadata": {
                    "annotations": {"container.apparmor.security.beta.kubernetes.io/worker": "unconfined"}
                }
            }
        ),
        "spec.podTemplate.metadata.annotations",
    ),
    ("unknown mode", spec_with(mode="Streaming"), "spec.mode"),
    (
        "continuous options without continuous mode",
        spec_with(continuous={"pollSeconds": 5}),
        "spec.continuous and spec.autoscaling need spec.mode Continuous",
    ),
    (
        "autoscaling minimum above maximum",
        spec_with(mode="Continuous", autoscaling={"minWorkers": 3, "maxWorkers": 2}),
        "spec.autoscaling.minWorkers must not exceed spec.autoscaling.maxWorkers",
    ),
    (
        "overwrite with incremental input",
        spec_with(
            input={"uris": ["/data/in/*.txt"], "incremental": True},
            output={"uri": "/data/out", "overwrite": True},
        ),
        "spec.output.overwrite cannot be set with spec.input.incremental",
    ),
    (
        "a deadline on a continuous job",
        spec_with(mode="Continuous", activeDeadlineSeconds=60),
        "spec.activeDeadlineSeconds cannot be set with spec.mode Continuous",
    ),
    (
        "partial admission with autoscaling",
        spec_with(mode="Continuous", autoscaling={"maxWorkers": 2}, minWorkers=1),
        "spec.minWorkers (Kueue's partial admission) cannot be set with spec.autoscaling",
    ),
    (
        "resume with overwrite",
        spec_with(output={"uri": "/data/out", "resume": True, "overwrite": True}),
        "spec.output.resume is for Batch jobs without spec.output.overwrite",
    ),
    (
        "resume with splitting",
        spec_with(output={"uri": "/data/out", "resume": True}, splitting={"enabled": True}),
        "spec.output.resume is for Batch jobs without spec.output.overwrite",
    ),
    (
        "resume of an incremental job",
        spec_with(
            input={"uris": ["/data/in/*.txt"], "incremental": True},
            output={"uri": "/data/out", "resume": True},
        ),
        "spec.output.resume is for Batch jobs without spec.output.overwrite",
    ),
    ("managedBy not a domain path", spec_with(managedBy="multikueue"), "spec.managedBy"),
    (
        "MultiKueue without resume",
        spec_with(managedBy="kueue.x-k8s.io/multikueue"),
        "spec.managedBy kueue.x-k8s.io/multikueue needs spec.output.resume",
    ),
]

# What users legitimately put in a pod template: all of it must stay possible.
SAFE_POD_TEMPLATE: dict[str, Any] = {
    "metadata": {
        "labels": {"team": "data"},
        "annotations": {
            "example.com/cost-center": "42",
            "container.apparmor.security.beta.kubernetes.io/worker": "runtime/default",
        },
    },
    "spec": {
        "volumes": [
            {"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}},
            {"name": "settings", "configMap": {"name": "job-settings"}},
            {"name": "creds", "secret": {"secretName": "s3-credentials"}},
            {"name": "data", "persistentVolumeClaim": {"claimName": "shared-data"}},
        ],
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
        "envFrom": [{"secretRef": {"name": "s3-credentials"}}],
        "initContainers": [
            {
                "name": "fetch",
                "image": "busybox",
                "command": ["true"],
                "securityContext": {"runAsUser": 1000},
            },
            {"name": "proxy", "image": "envoy", "restartPolicy": "Always"},  # a native sidecar
        ],
        "containers": [
            {
                "name": "metrics",
                "image": "exporter",
                "securityContext": {"capabilities": {"add": ["NET_BIND_SERVICE"]}},
            }
        ],
        "securityContext": {"runAsUser": 1000, "fsGroup": 2000, "seccompProfile": {"type": "RuntimeDefault"}},
        "hostUsers": False,
        "terminationGracePeriodSeconds": 120,
        "dnsPolicy": "ClusterFirst",
        "imagePullSecrets": [{"name": "registry"}],
    },
}
