"""Hardware profiles: which shape each worker runs on, as pure functions of the spec and what was observed.

A job lists profiles in order of preference (``spec.hardware``; ``spec.resources`` is the one-profile
shorthand). A new worker goes to the first profile that has room under its ``workers`` cap and has not been
given up on; a profile is given up on (for new workers, for the rest of the run) once one of its workers
stays unschedulable past the profile's ``waitSeconds``, and its unscheduled workers move to the next one.
Running workers never move, so no checkpoint is ever at stake. See docs/operations.md, "Hardware profiles".
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from datajob_core.api import pod_policy
from datajob_core.api.models import quantity_value

PROFILE_LABEL = "datajob.dev/profile"
ARCH_LABEL = "kubernetes.io/arch"
DEFAULT_GPU_RESOURCE = "nvidia.com/gpu"
DEFAULT_GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
SHORTHAND = "default"  # the profile spec.resources stands for
CLAIM_NAME = pod_policy.DEVICE_CLAIM  # the pod's resourceClaims entry and the container's claim


@dataclass(frozen=True)
class Profile:
    """One hardware profile, as the pod builder and placement need it (camelCase spec values)."""

    name: str
    resources: Mapping[str, Any] = field(default_factory=dict)
    node_selector: Mapping[str, str] = field(default_factory=dict)  # the profile's own, GPU model included
    tolerations: tuple[Mapping[str, Any], ...] = ()
    devices: Mapping[str, Any] | None = None  # DRA (spec.hardware[].devices)
    workers: int | None = None  # at most this many workers at once
    wait_seconds: float = 300.0

    @property
    def gpu(self) -> Mapping[str, Any] | None:
        gpu = self.resources.get("gpu")
        return gpu if gpu and gpu.get("count") else None


def profiles(spec: Mapping[str, Any]) -> tuple[Profile, ...]:
    """The job's profiles in order of preference; the shorthand ``spec.resources`` is one, ``default``."""
    listed = spec.get("hardware")
    if not listed:
        return (Profile(SHORTHAND, dict(spec.get("resources") or {}), _gpu_selector(spec.get("resources"))),)
    out = []
    for entry in listed:
        selector = dict(entry.get("nodeSelector") or {})
        if entry.get("architecture"):
            selector[ARCH_LABEL] = str(entry["architecture"])
        if entry.get("capacityType"):
            selector[str(entry.get("capacityTypeLabel") or "karpenter.sh/capacity-type")] = str(
                entry["capacityType"]
            )
        selector.update(_gpu_selector(entry.get("resources")))
        out.append(
            Profile(
                name=str(entry["name"]),
                resources=dict(entry.get("resources") or {"cpu": "1", "memory": "1Gi"}),
                node_selector=selector,
                tolerations=tuple(dict(t) for t in entry.get("tolerations") or []),
                devices=entry.get("devices"),
                workers=entry.get("workers"),
                wait_seconds=float(entry.get("waitSeconds", 300)),
            )
        )
    return tuple(out)


def _gpu_selector(resources: Mapping[str, Any] | None) -> dict[str, str]:
    gpu = (resources or {}).get("gpu")
    if gpu and gpu.get("product"):
        return {str(gpu.get("productLabel") or DEFAULT_GPU_PRODUCT_LABEL): str(gpu["product"])}
    return {}


def by_name(all_profiles: Iterable[Profile], name: str) -> Profile | None:
    return next((p for p in all_profiles if p.name == name), None)


def choose(
    all_profiles: tuple[Profile, ...], *, taken: Mapping[str, int], given_up: Iterable[str]
) -> Profile | None:
    """The profile for a new worker: the first with room (``taken``: live workers per profile) that was
    not given up on; if every profile with room was given up on, the last of them (its workers wait for the
    scheduler, and the condition says so). None when every profile is at its ``workers`` cap."""
    skipped = set(given_up)
    room = [p for p in all_profiles if p.workers is None or taken.get(p.name, 0) < p.workers]
    usable = [p for p in room if p.name not in skipped]
    if usable:
        return usable[0]
    return room[-1] if room else None


def next_after(
    all_profiles: tuple[Profile, ...], current: str, *, taken: Mapping[str, int], given_up: Iterable[str]
) -> Profile | None:
    """Where a worker of ``current`` goes when ``current`` is given up on: the profile :func:`choose` picks
    with ``current`` given up too, if that is another profile (None: nowhere else to go, it keeps waiting)."""
    target = choose(all_profiles, taken=taken, given_up={*given_up, current})
    if target is None or target.name == current or target.name in set(given_up):
        return None
    return target


def for_workload(all_profiles: tuple[Profile, ...]) -> Profile:
    """The shape a Kueue Workload carries: the first profile, with only the node labels every profile asks
    for alike, so Kueue may admit the job on any flavor one of the profiles can use."""
    first = all_profiles[0]
    shared = {
        key: value
        for key, value in first.node_selector.items()
        if all(p.node_selector.get(key) == value for p in all_profiles)
    }
    return replace(first, node_selector=shared)


def follow_flavor(all_profiles: tuple[Profile, ...], flavor_labels: Mapping[str, str]) -> Profile:
    """Under Kueue: the first profile whose node labels do not contradict the admitted flavor's (the flavor
    Kueue chose decides the hardware; its labels are added to the pod); the first if every one does."""
    for profile in all_profiles:
        if all(flavor_labels.get(k, v) == v for k, v in profile.node_selector.items()):
            return profile
    return all_profiles[0]


def queued_shape(all_profiles: tuple[Profile, ...], profile: Profile) -> Profile:
    """What a queued worker of ``profile`` asks for: the first profile's resources and devices, exactly what
    the Workload told Kueue (for_workload), whatever the profile says; only its placement is its own. So
    no profile can make a queued job use more than Kueue admitted."""
    first = all_profiles[0]
    return replace(profile, resources=first.resources, devices=first.devices)


def queue_mismatch(all_profiles: tuple[Profile, ...]) -> str:
    """Why profiles cannot be queued under Kueue as they are ("" if they can): Kueue accounts one shape, so
    their requests (cpu, memory, storage, GPUs by resource) and devices must be equal; GPU models, node
    labels and tolerations may differ (they are placement)."""
    first = all_profiles[0]
    for profile in all_profiles[1:]:
        if _requests(profile) != _requests(first) or profile.devices != first.devices:
            return (
                f"spec.hardware: under Kueue every profile must ask for the same resources and devices "
                f"(Kueue admits the job with one shape, the first profile's); profile {profile.name} differs "
                f"from {first.name}: give them the same resources, and let Kueue's flavors tell them apart"
            )
    return ""


def claim_template_name(job: Mapping[str, Any], profile: Profile) -> str:
    """The ResourceClaimTemplate of a job's profile with devices: ``<job>-<profile>-<hash>``, the hash of
    the job's UID, the profile's name and its device request, so no two jobs (nor a job deleted and made
    again) ever share one, and an edited request gets a new one (templates are immutable). At most
    63 + 20 + 10 characters."""
    meta = job["metadata"]
    identity = json.dumps([meta.get("uid"), profile.name, profile.devices], sort_keys=True)
    digest = hashlib.sha256(identity.encode()).hexdigest()[:8]
    return f"{meta['name']}-{profile.name}-{digest}"


def claim_template(job: Mapping[str, Any], profile: Profile, owner: Mapping[str, Any]) -> dict[str, Any]:
    """The ResourceClaimTemplate (resource.k8s.io/v1) of ``profile``'s devices: one request, either one
    device class or a prioritized list (``firstAvailable``), so each worker gets a claim of its own."""
    devices = profile.devices or {}
    request: dict[str, Any] = {"name": CLAIM_NAME}
    if devices.get("firstAvailable"):
        request["firstAvailable"] = [
            {"name": f"option-{i}", **_exactly(option)} for i, option in enumerate(devices["firstAvailable"])
        ]
    else:
        request["exactly"] = _exactly(devices)
    name = job["metadata"]["name"]
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaimTemplate",
        "metadata": {
            "name": claim_template_name(job, profile),
            "labels": {"datajob.dev/job": name, PROFILE_LABEL: profile.name},
            "ownerReferences": [dict(owner)],
        },
        "spec": {"spec": {"devices": {"requests": [request]}}},
    }


def _exactly(option: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "deviceClassName": option["deviceClassName"],
        "allocationMode": "ExactCount",
        "count": int(option.get("count", 1)),
    }
    if option.get("selectors"):
        out["selectors"] = [{"cel": {"expression": str(e)}} for e in option["selectors"]]
    return out


def device_request(template_spec: Mapping[str, Any]) -> list[Any]:
    """What a ResourceClaimTemplate's spec asks for, in the fields this operator writes (the API server may
    add defaults around them): to tell this job's template from another one of the same name."""

    def option(entry: Mapping[str, Any]) -> tuple[Any, ...]:
        selectors = [((x.get("cel") or {}).get("expression")) for x in entry.get("selectors") or []]
        return (entry.get("name"), entry.get("deviceClassName"), int(entry.get("count") or 1), selectors)

    requests = (((template_spec.get("spec") or {}).get("devices") or {}).get("requests")) or []
    return [
        (r.get("name"), option(r.get("exactly") or {}), [option(o) for o in r.get("firstAvailable") or []])
        for r in requests
    ]


def allocated_devices(claim: Mapping[str, Any]) -> list[str]:
    """What a ResourceClaim was allocated, one ``driver/pool/device`` per device, with the alternative
    (``firstAvailable`` option's device class) it came from, e.g. ``gpu.example.com/node-1/gpu-0``."""
    results = (((claim.get("status") or {}).get("allocation") or {}).get("devices") or {}).get("results")
    return [f"{r.get('driver')}/{r.get('pool')}/{r.get('device')}" for r in results or []]


def chosen_option(claim: Mapping[str, Any]) -> str:
    """The device class a prioritized-list claim was satisfied from ("" if not allocated or not a list)."""
    results = (((claim.get("status") or {}).get("allocation") or {}).get("devices") or {}).get("results")
    requests = (((claim.get("spec") or {}).get("devices") or {}).get("requests")) or []
    for result in results or []:
        _, _, sub = str(result.get("request") or "").partition("/")
        for request in requests:
            for option in request.get("firstAvailable") or []:
                if option.get("name") == sub:
                    return str(option.get("deviceClassName") or "")
    return ""


def device_classes_named(profile: Profile) -> list[str]:
    devices = profile.devices or {}
    if devices.get("firstAvailable"):
        return [str(o["deviceClassName"]) for o in devices["firstAvailable"]]
    return [str(devices["deviceClassName"])] if devices.get("deviceClassName") else []


def unavailable(
    all_profiles: tuple[Profile, ...],
    common_selector: Mapping[str, str] | None,
    nodes: Sequence[Mapping[str, Any]] | None,
    device_classes: frozenset[str] | None,
) -> dict[str, str]:
    """The profiles no worker could ever run on as the cluster is now, with why: a DeviceClass that does not
    exist, no node with the profile's labels, or none of those with the resources one worker asks for
    (allocatable, ignoring what other pods use). ``nodes`` / ``device_classes`` None: not known, not judged.

    Said in a condition rather than acted on: a cluster autoscaler adds nodes only for pending pods."""
    out: dict[str, str] = {}
    for profile in all_profiles:
        missing = [
            c for c in device_classes_named(profile) if device_classes is not None and c not in device_classes
        ]
        if missing:
            out[profile.name] = f"DeviceClass {', '.join(missing)} does not exist"
            continue
        if nodes is None:
            continue
        why = _no_node(profile, {**(common_selector or {}), **profile.node_selector}, nodes)
        if why:
            out[profile.name] = why
    return out


def _no_node(profile: Profile, selector: Mapping[str, str], nodes: Sequence[Mapping[str, Any]]) -> str:
    labelled = [
        n
        for n in nodes
        if all(((n.get("metadata") or {}).get("labels") or {}).get(k) == v for k, v in selector.items())
    ]
    if not labelled:
        wanted = ", ".join(f"{k}={v}" for k, v in sorted(selector.items()))
        return f"no node has the labels {wanted}"
    asks = _requests(profile)
    for node in labelled:
        allocatable = (node.get("status") or {}).get("allocatable") or {}
        if all(_quantity(allocatable.get(name, "0")) >= amount for name, amount in asks.items()):
            return ""
    short = []
    for name, amount in sorted(asks.items()):
        most = max(
            _quantity(((n.get("status") or {}).get("allocatable") or {}).get(name, "0")) for n in labelled
        )
        if most < amount:
            short.append(f"{name} {amount:g} (the largest node has {most:g})")
    return f"no node with its labels can fit one worker: {', '.join(short) or 'not all requests at once'}"


def _requests(profile: Profile) -> dict[str, float]:
    resources = profile.resources
    asks = {}
    for key, name in (("cpu", "cpu"), ("memory", "memory"), ("ephemeralStorage", "ephemeral-storage")):
        if resources.get(key):
            asks[name] = _quantity(str(resources[key]))
    gpu = profile.gpu
    if gpu:
        asks[str(gpu.get("resourceName") or DEFAULT_GPU_RESOURCE)] = float(gpu["count"])
    return asks


def _quantity(text: str) -> float:
    try:
        return quantity_value(str(text))
    except ValueError:
        return 0.0
