"""Kubernetes-style status conditions: set one, keeping its lastTransitionTime while its status holds
(used for DataJob conditions and for the Kueue Workload conditions the operator writes)."""

from __future__ import annotations

from typing import Any

MAX_MESSAGE = 32768  # metav1.Condition's limit


def set_condition(
    conditions: list[dict[str, Any]],
    kind: str,
    status: str,
    reason: str,
    message: str,
    *,
    now: str,
    generation: int | None = None,
) -> list[dict[str, Any]]:
    """A new list with condition ``kind`` set; sorted by type, so equal sets compare equal."""
    out = [c for c in conditions if c.get("type") != kind]
    previous = next((c for c in conditions if c.get("type") == kind), None)
    since = previous["lastTransitionTime"] if previous and previous.get("status") == status else now
    condition: dict[str, Any] = {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message[:MAX_MESSAGE],
        "lastTransitionTime": since,
    }
    if generation is not None:
        condition["observedGeneration"] = generation
    out.append(condition)
    return sorted(out, key=lambda c: str(c["type"]))
