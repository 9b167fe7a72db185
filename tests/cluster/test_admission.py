"""The real API server rejects each class of bad DataJob spec with a message naming the field."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client

from datajob_testenv.kube import Kubectl
from datajob_testenv.specs import BAD_SPECS, SAFE_POD_TEMPLATE, VALID_SPEC, spec_with

GROUP, VERSION, PLURAL = "datajob.dev", "v1alpha1", "datajobs"


def _create(api: client.ApiClient, namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "DataJob", "metadata": {"name": name}, "spec": spec}
    created: dict[str, Any] = client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body
    )
    return created


@pytest.mark.parametrize(("name", "spec", "expected"), BAD_SPECS, ids=[b[0] for b in BAD_SPECS])
@pytest.mark.usefixtures("datajob_crd")
def test_bad_spec_is_rejected_at_admission(
    api_client: client.ApiClient,
    namespace: str,
    name: str,
    spec: dict[str, Any],
    expected: str,
) -> None:
    with pytest.raises(client.ApiException) as rejected:
        _create(api_client, namespace, "bad", spec)
    assert rejected.value.status == 422
    message = json.loads(rejected.value.body)["message"]
    assert expected in message, f"{name}: {message}"


def test_valid_spec_is_defaulted_and_immutable_fields_stay_put(
    api_client: client.ApiClient, datajob_crd: None, namespace: str
) -> None:
    created = _create(api_client, namespace, "ok", VALID_SPEC)
    spec = created["spec"]
    assert spec["workers"] == 1
    assert spec["resources"] == {"cpu": "1", "memory": "1Gi"}
    assert spec["retryPolicy"]["backoff"] == {"initialSeconds": 10, "maxSeconds": 300}
    assert spec["input"]["partitioning"] == {"mode": "perFile"}
    custom = client.CustomObjectsApi(api_client)
    with pytest.raises(client.ApiException) as rejected:
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, "ok", {"spec": {"input": {"uris": ["/elsewhere"]}}}
        )
    assert "spec.input is immutable" in json.loads(rejected.value.body)["message"]
    # Mutable fields change freely.
    patched = custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "ok", {"spec": {"workers": 4}}
    )
    assert patched["spec"]["workers"] == 4


def test_managed_by_cannot_be_set_changed_or_removed_after_creation(
    api_client: client.ApiClient, datajob_crd: None, namespace: str
) -> None:
    custom = client.CustomObjectsApi(api_client)
    _create(api_client, namespace, "mine", VALID_SPEC)
    dispatched = {**VALID_SPEC, "output": {**VALID_SPEC["output"], "resume": True}}
    _create(api_client, namespace, "theirs", {**dispatched, "managedBy": "kueue.x-k8s.io/multikueue"})
    attempts = [
        ("mine", {"spec": {"managedBy": "kueue.x-k8s.io/multikueue"}}),
        ("theirs", {"spec": {"managedBy": "datajob.dev/operator"}}),
        ("theirs", {"spec": {"managedBy": None}}),
    ]
    for name, patch in attempts:
        with pytest.raises(client.ApiException) as rejected:
            custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, patch)
        assert "spec.managedBy is immutable" in json.loads(rejected.value.body)["message"], (name, patch)


def test_kubectl_explains_fields_and_lists_columns(
    kubectl: Kubectl, datajob_crd: None, namespace: str
) -> None:
    explained = kubectl("explain", "datajob.spec.resources.gpu.product").stdout
    assert "GPU model required" in explained
    kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps(
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "DataJob",
                "metadata": {"name": "cols"},
                "spec": VALID_SPEC,
            }
        ),
    )
    header = kubectl("get", "dj", "-n", namespace).stdout.splitlines()[0].split()
    assert header == ["NAME", "PHASE", "SHARDS", "WORKERS", "PROGRESS", "ETA", "LAG", "RESTARTS", "AGE"]
    assert "datajob.datajob.dev/cols" in kubectl("get", "all", "-n", namespace, "-o", "name").stdout


def test_safe_pod_template_is_accepted_and_kept(
    api_client: client.ApiClient, datajob_crd: None, namespace: str
) -> None:
    created = _create(api_client, namespace, "safe", spec_with(podTemplate=SAFE_POD_TEMPLATE))
    # Nothing pruned: unknown pod fields are preserved and the declared ones keep their values.
    assert created["spec"]["podTemplate"] == SAFE_POD_TEMPLATE
