"""The shapes of the test cluster's nodes: fake kwok nodes with real capacity, and the agent node."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

KWOK_ANNOTATION = "kwok.x-k8s.io/node"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
# GPU node pools are commonly tainted so only pods that ask for GPUs (and tolerate it) land there.
GPU_TAINT = {"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}
AGENT_NODE = "agent-0"
AGENT_NODE_LABEL = "datajob.dev/node-agent"


@dataclass(frozen=True)
class NodeShape:
    name: str
    cpu: str
    memory: str
    gpus: int = 0
    gpu_product: str | None = None
    labels: dict[str, str] = field(default_factory=dict)

    def capacity(self) -> dict[str, str]:
        capacity = {"cpu": self.cpu, "memory": self.memory, "pods": "110", "ephemeral-storage": "100Gi"}
        if self.gpus:
            capacity[GPU_RESOURCE] = str(self.gpus)
        return capacity

    def manifest(self, *, fake: bool) -> dict[str, Any]:
        labels = {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "type": "kwok" if fake else "node-agent",
            **self.labels,
        }
        if self.gpu_product:
            labels[GPU_PRODUCT_LABEL] = self.gpu_product
        if not fake:
            labels[AGENT_NODE_LABEL] = "true"
        metadata: dict[str, Any] = {"name": self.name, "labels": labels}
        spec: dict[str, Any] = {}
        if fake:
            metadata["annotations"] = {KWOK_ANNOTATION: "fake"}
        if self.gpus:
            spec["taints"] = [GPU_TAINT]
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": metadata,
            "spec": spec,
            "status": {"capacity": self.capacity(), "allocatable": self.capacity()},
        }


FAKE_NODES: tuple[NodeShape, ...] = (
    NodeShape("cpu-small-0", cpu="4", memory="16Gi"),
    NodeShape("cpu-small-1", cpu="4", memory="16Gi"),
    NodeShape("cpu-large-0", cpu="32", memory="128Gi"),
    NodeShape("gpu-a100-0", cpu="32", memory="256Gi", gpus=8, gpu_product="NVIDIA-A100-SXM4-80GB"),
    NodeShape("gpu-t4-0", cpu="8", memory="32Gi", gpus=1, gpu_product="Tesla-T4"),
)
AGENT_SHAPE = NodeShape(AGENT_NODE, cpu="8", memory="16Gi")
