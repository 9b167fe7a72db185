"""Which nodes are going away, from the signals the components that remove nodes leave on them."""

from __future__ import annotations

from typing import Any

from datajob_core.cluster.node_drain import draining_nodes, draining_reason, removal_taint, tolerates


def node(name: str, *taints: tuple[str, str], unschedulable: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {"taints": [{"key": k, "effect": e} for k, e in taints]}
    if unschedulable:
        spec["unschedulable"] = True
    return {"metadata": {"name": name}, "spec": spec}


def test_cordoned_autoscaler_karpenter_and_spot_nodes_are_going_away() -> None:
    assert "cordoned" in draining_reason(node("a", unschedulable=True))
    assert "cordoned" in draining_reason(node("a", ("node.kubernetes.io/unschedulable", "NoSchedule")))
    assert "autoscaler" in draining_reason(node("a", ("ToBeDeletedByClusterAutoscaler", "NoSchedule")))
    assert "Karpenter" in draining_reason(node("a", ("karpenter.sh/disrupted", "NoSchedule")))
    spot = draining_reason(node("a", ("cloud.google.com/impending-node-termination", "NoSchedule")))
    assert "spot" in spot and "node a" in spot


def test_ordinary_taints_and_soft_hints_do_not_move_workers() -> None:
    assert draining_reason(node("gpu", ("nvidia.com/gpu", "NoSchedule"))) == ""
    # Candidate taints are PreferNoSchedule until the autoscaler acts.
    assert draining_reason(node("a", ("ToBeDeletedByClusterAutoscaler", "PreferNoSchedule"))) == ""
    assert draining_reason({"metadata": {"name": "bare"}}) == ""
    nodes = [node("a", unschedulable=True), node("b")]
    assert list(draining_nodes(nodes)) == ["a"]


def test_a_worker_that_tolerates_the_taint_is_not_moved_back_and_forth() -> None:
    found = removal_taint(node("a", ("karpenter.sh/disrupted", "NoSchedule")))
    assert found is not None and found[0] == "karpenter.sh/disrupted"
    assert tolerates([{"operator": "Exists"}], found[0])  # tolerates everything
    assert tolerates(
        [{"key": "karpenter.sh/disrupted", "operator": "Exists", "effect": "NoSchedule"}], found[0]
    )
    assert not tolerates([{"key": "nvidia.com/gpu", "operator": "Exists"}], found[0])
    assert not tolerates([{"operator": "Exists", "effect": "PreferNoSchedule"}], found[0])
