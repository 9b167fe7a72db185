"""Whether a node is going away: cordoned, drained, reclaimed (spot/preemptible) or marked for removal.

A worker on such a node is moved before it is killed: it is told to stop, checkpoints on SIGTERM, and its
shards go back uncharged to be resumed elsewhere (docs/operations.md, "Disruptions"). The signals are the
ones the components that remove nodes set, read from the Node object alone (pure; no API calls).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

# Taint keys that announce a node's removal, and who sets them.
REMOVAL_TAINTS: Mapping[str, str] = {
    "node.kubernetes.io/unschedulable": "cordoned (kubectl cordon/drain)",
    "ToBeDeletedByClusterAutoscaler": "to be deleted by the cluster autoscaler",
    "karpenter.sh/disrupted": "being disrupted by Karpenter",
    "karpenter.sh/disruption": "being disrupted by Karpenter",
    "cloud.google.com/impending-node-termination": "a spot/preemptible VM about to be reclaimed (GKE)",
    "aws-node-termination-handler/spot-itn": "a spot instance about to be reclaimed (AWS)",
    "aws-node-termination-handler/rebalance-recommendation": "a spot rebalance recommendation (AWS)",
    "aws-node-termination-handler/scheduled-maintenance": "scheduled for maintenance (AWS)",
    "kubernetes.azure.com/scalesetpriority-evicted": "a spot VM being evicted (Azure)",
    "node.kubernetes.io/out-of-service": "out of service",
}
# Effects that keep new pods off: a NoSchedule taint of these keys means "going away", PreferNoSchedule not
# (Karpenter's and the autoscaler's candidate taints are PreferNoSchedule until they act).
BLOCKING_EFFECTS = frozenset({"NoSchedule", "NoExecute"})


def draining_reason(node: Mapping[str, Any]) -> str:
    """Why new work should not stay on ``node`` (a Node as the API server returns it), or "" if it may."""
    name = (node.get("metadata") or {}).get("name", "?")
    spec = node.get("spec") or {}
    for taint in spec.get("taints") or []:
        key = taint.get("key", "")
        if key in REMOVAL_TAINTS and taint.get("effect") in BLOCKING_EFFECTS:
            return f"node {name} is {REMOVAL_TAINTS[key]} (taint {key})"
    if spec.get("unschedulable"):
        # The taint above follows a cordon within a moment; the field itself is the first sign.
        return f"node {name} is {REMOVAL_TAINTS['node.kubernetes.io/unschedulable']}"
    return ""


def draining_nodes(nodes: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """The nodes that are going away, by name, with why."""
    out = {}
    for node in nodes:
        reason = draining_reason(node)
        if reason:
            out[node["metadata"]["name"]] = reason
    return out
