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


def removal_taint(node: Mapping[str, Any]) -> tuple[str, str] | None:
    """(taint key, why) if ``node`` (a Node as the API server returns it) is going away, else None."""
    name = (node.get("metadata") or {}).get("name", "?")
    spec = node.get("spec") or {}
    for taint in spec.get("taints") or []:
        key = taint.get("key", "")
        if key in REMOVAL_TAINTS and taint.get("effect") in BLOCKING_EFFECTS:
            return key, f"node {name} is {REMOVAL_TAINTS[key]} (taint {key})"
    if spec.get("unschedulable"):
        # The taint above follows a cordon within a moment; the field itself is the first sign.
        key = "node.kubernetes.io/unschedulable"
        return key, f"node {name} is {REMOVAL_TAINTS[key]}"
    return None


def draining_reason(node: Mapping[str, Any]) -> str:
    """Why new work should not stay on ``node``, or "" if it may."""
    found = removal_taint(node)
    return found[1] if found else ""


def draining_nodes(nodes: Iterable[Mapping[str, Any]]) -> dict[str, tuple[str, str]]:
    """The nodes that are going away, by name, with the taint key and why."""
    out = {}
    for node in nodes:
        found = removal_taint(node)
        if found:
            out[node["metadata"]["name"]] = found
    return out


def tolerates(tolerations: Iterable[Mapping[str, Any]], key: str) -> bool:
    """Whether a pod with ``tolerations`` may stay (and be scheduled again) despite taint ``key``: then
    moving it would only bring its replacement back to the same node."""
    for toleration in tolerations:
        operator = toleration.get("operator", "Equal")
        if toleration.get("effect") not in (None, "", "NoSchedule", "NoExecute"):
            continue
        if (not toleration.get("key") and operator == "Exists") or toleration.get("key") == key:
            return True
    return False
