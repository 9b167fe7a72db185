"""What ran on which hardware: ``status.hardware`` from the slots, their pods and their devices. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from datajob_core.cluster.reconciler import JobState, ObservedWorker, Policy

MAX_WORKER_ROWS = 64  # status.hardware.workers lists at most this many live workers (status stays small)


def _rate(records: int, busy: float) -> int | None:
    return round(records / busy) if busy > 0 else None


def fleet_status(
    policy: Policy,
    state: JobState,
    pods: list[ObservedWorker],
    devices: Mapping[str, list[str]] | None = None,
) -> dict[str, Any]:
    """Per profile: workers now (active, ready), what its workers committed and their records/s while busy,
    and why it was given up on; per live worker (the first MAX_WORKER_ROWS): its profile, node, devices and
    records/s; and a one-line summary (``h100:4 a100:2``) for ``kubectl get -o wide``."""
    first = policy.profiles[0].name
    live = {p.name: p for p in pods if not p.deleting and p.phase in ("Pending", "Running")}
    rows: list[dict[str, Any]] = []
    active: dict[str, int] = {}
    ready: dict[str, int] = {}
    for number, slot in sorted(state.slots.items()):
        pod = live.get(slot.pod or "")
        if pod is None:
            continue
        name = slot.profile or first
        active[name] = active.get(name, 0) + 1
        if pod.phase == "Running":
            ready[name] = ready.get(name, 0) + 1
        if len(rows) < MAX_WORKER_ROWS:
            row: dict[str, Any] = {"slot": number, "pod": pod.name, "profile": name, "records": slot.records}
            if pod.node:
                row["node"] = pod.node
            if (devices or {}).get(pod.name):
                row["devices"] = list((devices or {})[pod.name])
            rate = _rate(slot.records, slot.busy)
            if rate is not None:
                row["recordsPerSecond"] = rate
            rows.append(row)
    profiles = []
    for profile in policy.profiles:
        totals = state.by_profile.get(profile.name)
        entry: dict[str, Any] = {
            "name": profile.name,
            "active": active.get(profile.name, 0),
            "ready": ready.get(profile.name, 0),
            "records": totals.records if totals else 0,
            "shards": totals.shards if totals else 0,
        }
        rate = _rate(totals.records, totals.busy) if totals else None
        if rate is not None:
            entry["recordsPerSecond"] = rate
        if profile.name in state.given_up:
            entry["givenUp"] = state.given_up[profile.name]
        profiles.append(entry)
    summary = " ".join(f"{p['name']}:{p['active']}" for p in profiles if p["active"])
    return {"profiles": profiles, "workers": rows, "summary": summary or "-"}
