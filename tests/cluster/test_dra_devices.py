"""Devices through Dynamic Resource Allocation: the real scheduler allocates the preferred device class
first and the fallback once it is exhausted, and each worker's devices are recorded.

A DRA driver publishes ResourceSlices for the devices on its node; this test publishes them itself for a
kwok node (no driver prepares them, and kwok's pods only pretend to run, which is all allocation needs).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from datajob_testenv.datajobs import Jobs, condition, job_manifest, write_inputs

DRIVER = "gpu.example.com"
NODE = "cpu-large-0"  # a kwok node
CLASSES = {"h100.gpu.example.com": "h100", "a100.gpu.example.com": "a100"}


@pytest.fixture
def fake_devices(api_client: client.ApiClient) -> Iterator[None]:
    """DeviceClasses by GPU model, and a ResourceSlice with one H100 and two A100s on the kwok node."""
    custom = client.CustomObjectsApi(api_client)
    classes: list[dict[str, Any]] = [
        {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "DeviceClass",
            "metadata": {"name": name},
            "spec": {
                "selectors": [
                    {
                        "cel": {
                            "expression": f'device.driver == "{DRIVER}" && '
                            f'device.attributes["{DRIVER}"].model == "{model}"'
                        }
                    }
                ]
            },
        }
        for name, model in CLASSES.items()
    ]
    devices = [("h100-0", "h100"), ("a100-0", "a100"), ("a100-1", "a100")]
    slice_: dict[str, Any] = {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {"name": f"{NODE}-{DRIVER}"},
        "spec": {
            "driver": DRIVER,
            "nodeName": NODE,
            "pool": {"name": NODE, "generation": 1, "resourceSliceCount": 1},
            "devices": [
                {"name": name, "attributes": {"model": {"string": model}}} for name, model in devices
            ],
        },
    }
    for body in classes:
        custom.create_cluster_custom_object("resource.k8s.io", "v1", "deviceclasses", body)
    custom.create_cluster_custom_object("resource.k8s.io", "v1", "resourceslices", slice_)
    try:
        yield
    finally:
        for plural, name in [("resourceslices", f"{NODE}-{DRIVER}")] + [
            ("deviceclasses", c) for c in CLASSES
        ]:
            try:
                custom.delete_cluster_custom_object("resource.k8s.io", "v1", plural, name)
            except ApiException as error:
                if error.status != 404:
                    raise


def dra_job(tmp_path: Path, workers: int, hardware: list[dict[str, Any]]) -> dict[str, Any]:
    write_inputs(tmp_path / "in", files=8, lines=5)
    manifest = job_manifest("dra", tmp_path / "in", tmp_path / "out", workers=workers, hardware=hardware)
    del manifest["spec"]["resources"]
    manifest["spec"]["nodeSelector"] = {"kubernetes.io/hostname": NODE}
    return manifest


def test_the_scheduler_allocates_the_preferred_device_class_first_then_the_fallback(
    jobs: Jobs, tmp_path: Path, fake_devices: None
) -> None:
    devices = {"firstAvailable": [{"deviceClassName": c} for c in CLASSES]}
    cpu = {"cpu": "100m", "memory": "64Mi"}
    hardware: list[dict[str, Any]] = [
        {"name": "gpu", "resources": cpu, "devices": devices, "waitSeconds": 3},
        {"name": "cpu", "resources": cpu},  # the fourth worker finds no device left and comes here
    ]
    jobs.create(dra_job(tmp_path, 4, hardware))

    def allocated(status: dict[str, Any]) -> bool:
        rows = (status.get("hardware") or {}).get("workers") or []
        with_devices = sum(1 for r in rows if r.get("devices"))
        return with_devices == 3 and [r["profile"] for r in rows].count("cpu") == 1

    status = jobs.wait("dra", allocated, 90, "three workers with devices, one on the cpu profile")
    rows = status["hardware"]["workers"]
    got = sorted(d for r in rows for d in r.get("devices") or [])
    assert got == [f"{DRIVER}/{NODE}/a100-0", f"{DRIVER}/{NODE}/a100-1", f"{DRIVER}/{NODE}/h100-0"]
    assert sorted(r["profile"] for r in rows) == ["cpu", "gpu", "gpu", "gpu"]
    assert "profile gpu: " in condition(status, "HardwareFallback")["message"]
    # One claim per worker, from the job's template; the prioritized list chose H100 once, then A100.
    claims = jobs.custom.list_namespaced_custom_object(
        "resource.k8s.io", "v1", jobs.namespace, "resourceclaims"
    )["items"]
    chosen = sorted(
        r["request"]
        for c in claims
        for r in ((c.get("status") or {}).get("allocation") or {})["devices"]["results"]
    )
    assert chosen == ["devices/option-0", "devices/option-1", "devices/option-1"]


def test_a_profile_naming_a_device_class_that_does_not_exist_gets_a_condition(
    jobs: Jobs, tmp_path: Path
) -> None:
    hardware = [{"name": "gpu", "devices": {"deviceClassName": "missing.example.com"}, "waitSeconds": 600}]
    jobs.create(dra_job(tmp_path, 1, hardware))
    status = jobs.wait(
        "dra",
        lambda s: condition(s, "HardwareUnavailable").get("status") == "True",
        60,
        "HardwareUnavailable",
    )
    assert condition(status, "HardwareUnavailable")["message"] == (
        "profile gpu: DeviceClass missing.example.com does not exist"
    )
