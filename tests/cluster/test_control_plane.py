"""The test cluster is real: CRDs are served, the scheduler places by resources, PSA enforces, pods run."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from datajob_testenv.kube import Kubectl, pod_manifest
from datajob_testenv.nodeagent import SIGNAL_ANNOTATION
from datajob_testenv.nodes import AGENT_NODE, GPU_PRODUCT_LABEL, GPU_RESOURCE
from datajob_testenv.processes import wait_for

WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.testing.datajob.dev"},
    "spec": {
        "group": "testing.datajob.dev",
        "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "description": "What a widget should be.",
                                "properties": {
                                    "size": {
                                        "type": "integer",
                                        "minimum": 1,
                                        "description": "How big the widget is, in sprockets.",
                                    }
                                },
                            }
                        },
                    }
                },
            }
        ],
    },
}


def _pod(core_v1: client.CoreV1Api, namespace: str, name: str) -> Any:
    return core_v1.read_namespaced_pod(name, namespace)


def _wait_phase(
    core_v1: client.CoreV1Api, namespace: str, name: str, phases: set[str], timeout: float = 60
) -> Any:
    wait_for(
        lambda: _pod(core_v1, namespace, name).status.phase in phases, timeout, f"pod {name} in {phases}"
    )
    return _pod(core_v1, namespace, name)


def test_crd_is_served_and_explained(kubectl: Kubectl, api_client: client.ApiClient, namespace: str) -> None:
    kubectl("apply", "-f", "-", input=json.dumps(WIDGET_CRD))
    kubectl.wait_established("widgets.testing.datajob.dev")
    custom = client.CustomObjectsApi(api_client)
    body = {
        "apiVersion": "testing.datajob.dev/v1",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": {"size": 3},
    }
    created = custom.create_namespaced_custom_object("testing.datajob.dev", "v1", namespace, "widgets", body)
    assert created["spec"]["size"] == 3
    # The schema is enforced by the API server, not by the client.
    with pytest.raises(ApiException) as rejected:
        custom.create_namespaced_custom_object(
            "testing.datajob.dev",
            "v1",
            namespace,
            "widgets",
            {**body, "metadata": {"name": "bad"}, "spec": {"size": 0}},
        )
    assert rejected.value.status == 422
    assert "spec.size" in rejected.value.body
    # Discovery may lag the Established condition by a moment.
    wait_for(lambda: kubectl("explain", "widget.spec.size", check=False).returncode == 0, 30, "explain")
    explained = kubectl("explain", "widget.spec.size").stdout
    assert "How big the widget is, in sprockets." in explained


def test_scheduler_places_pods_by_resource_requests(core_v1: client.CoreV1Api, namespace: str) -> None:
    big = pod_manifest("big-cpu", ["sleep", "1"], container={"resources": {"requests": {"cpu": "20"}}})
    core_v1.create_namespaced_pod(namespace, big)
    gpu = pod_manifest(
        "gpu",
        ["sleep", "1"],
        container={"resources": {"limits": {GPU_RESOURCE: "2"}}},
        nodeSelector={GPU_PRODUCT_LABEL: "NVIDIA-A100-SXM4-80GB"},
        tolerations=[{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}],
    )
    core_v1.create_namespaced_pod(namespace, gpu)
    # Only the 32-core nodes fit 20 CPUs; the GPU pod must go to the A100 node.
    big_pod = _wait_phase(core_v1, namespace, "big-cpu", {"Running"})
    assert big_pod.spec.node_name in {"cpu-large-0", "gpu-a100-0"}
    assert _wait_phase(core_v1, namespace, "gpu", {"Running"}).spec.node_name == "gpu-a100-0"


def test_pod_that_fits_nowhere_stays_pending_with_the_scheduler_reason(
    core_v1: client.CoreV1Api, namespace: str
) -> None:
    core_v1.create_namespaced_pod(
        namespace,
        pod_manifest("huge", ["sleep", "1"], container={"resources": {"requests": {"memory": "4Ti"}}}),
    )

    def unschedulable() -> bool:
        conditions = _pod(core_v1, namespace, "huge").status.conditions or []
        return any(c.type == "PodScheduled" and c.reason == "Unschedulable" for c in conditions)

    wait_for(unschedulable, 60, "PodScheduled=False/Unschedulable")
    pod = _pod(core_v1, namespace, "huge")
    assert pod.status.phase == "Pending"
    assert pod.spec.node_name is None
    condition = next(c for c in pod.status.conditions if c.type == "PodScheduled")
    assert "Insufficient memory" in condition.message
    events = core_v1.list_namespaced_event(namespace, field_selector="involvedObject.name=huge").items
    assert any(e.reason == "FailedScheduling" for e in events)


def test_gpu_pod_without_toleration_is_kept_off_gpu_nodes(core_v1: client.CoreV1Api, namespace: str) -> None:
    core_v1.create_namespaced_pod(
        namespace,
        pod_manifest("no-tol", ["sleep", "1"], container={"resources": {"limits": {GPU_RESOURCE: "1"}}}),
    )

    def why() -> str:
        conditions = _pod(core_v1, namespace, "no-tol").status.conditions or []
        return next(
            (c.message for c in conditions if c.type == "PodScheduled" and c.reason == "Unschedulable"), ""
        )

    wait_for(lambda: bool(why()), 60, "unschedulable")
    assert "untolerated taint" in why()


def test_node_agent_runs_pod_and_reports_exit_code(core_v1: client.CoreV1Api, namespace: str) -> None:
    script = (
        'test "$POD_NAME" = exit-code && test "$POD_NS" = "$EXPECTED_NS" '
        '&& test "$GREETING" = "hi exit-code" && exit 3'
    )
    pod = pod_manifest(
        "exit-code",
        ["sh", "-c", script],
        nodeSelector={"kubernetes.io/hostname": AGENT_NODE},
        container={
            "env": [
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "EXPECTED_NS", "value": namespace},
                {"name": "GREETING", "value": "hi $(POD_NAME)"},
            ]
        },
    )
    core_v1.create_namespaced_pod(namespace, pod)
    done = _wait_phase(core_v1, namespace, "exit-code", {"Succeeded", "Failed"})
    assert done.spec.node_name == AGENT_NODE
    assert done.status.phase == "Failed"
    # Exit code 3 proves every env check in the script passed (any failing `test` exits 1).
    assert done.status.container_statuses[0].state.terminated.exit_code == 3

    core_v1.create_namespaced_pod(
        namespace, pod_manifest("ok", ["true"], nodeSelector={"kubernetes.io/hostname": AGENT_NODE})
    )
    ok = _wait_phase(core_v1, namespace, "ok", {"Succeeded", "Failed"})
    assert ok.status.phase == "Succeeded"
    assert ok.status.container_statuses[0].state.terminated.exit_code == 0


def test_node_agent_gives_pods_a_working_service_account_token(
    core_v1: client.CoreV1Api, namespace: str
) -> None:
    # The projected token must authenticate as the pod's ServiceAccount against the real API server.
    script = (
        'd="$NODE_AGENT_ROOT/var/run/secrets/kubernetes.io/serviceaccount"; '
        'test -s "$d/token" && test -s "$d/ca.crt" && test "$(cat $d/namespace)" = "$NS" && '
        'python3 -c "import ssl,urllib.request,os,sys; d=sys.argv[1]; '
        "ctx=ssl.create_default_context(cafile=d+'/ca.crt'); "
        "e=os.environ; url='https://'+e['KUBERNETES_SERVICE_HOST']+':'+e['KUBERNETES_SERVICE_PORT']; "
        "h={'Authorization': 'Bearer '+open(d+'/token').read()}; "
        "req=urllib.request.Request(url+'/version', headers=h); "
        'urllib.request.urlopen(req, context=ctx)" "$d"'
    )
    pod = pod_manifest(
        "sa-token",
        ["sh", "-c", script],
        nodeSelector={"kubernetes.io/hostname": AGENT_NODE},
        container={"env": [{"name": "NS", "value": namespace}]},
    )
    core_v1.create_namespaced_pod(namespace, pod)
    done = _wait_phase(core_v1, namespace, "sa-token", {"Succeeded", "Failed"})
    assert done.status.phase == "Succeeded", done.status.container_statuses[0].state


def test_node_agent_kills_on_demand_and_honours_deletion(core_v1: client.CoreV1Api, namespace: str) -> None:
    for name in ("victim", "graceful"):
        core_v1.create_namespaced_pod(
            namespace,
            pod_manifest(name, ["sleep", "300"], nodeSelector={"kubernetes.io/hostname": AGENT_NODE}),
        )
        _wait_phase(core_v1, namespace, name, {"Running"})
    core_v1.patch_namespaced_pod(
        "victim", namespace, {"metadata": {"annotations": {SIGNAL_ANNOTATION: "KILL"}}}
    )
    killed = _wait_phase(core_v1, namespace, "victim", {"Failed"})
    assert killed.status.container_statuses[0].state.terminated.exit_code == 137

    started = time.monotonic()
    core_v1.delete_namespaced_pod("graceful", namespace)

    def gone() -> bool:
        try:
            _pod(core_v1, namespace, "graceful")
        except ApiException as error:
            return bool(error.status == 404)
        return False

    wait_for(gone, 30, "pod deleted after SIGTERM")
    # sleep dies on SIGTERM at once, so the pod goes long before its 30s grace period.
    assert time.monotonic() - started < 15


@pytest.mark.parametrize("namespace", [{"pod-security.kubernetes.io/enforce": "restricted"}], indirect=True)
def test_pod_security_restricted_rejects_privileged_pod(core_v1: client.CoreV1Api, namespace: str) -> None:
    privileged = pod_manifest("priv", ["sleep", "1"], container={"securityContext": {"privileged": True}})
    with pytest.raises(ApiException) as rejected:
        core_v1.create_namespaced_pod(namespace, privileged)
    assert rejected.value.status == 403
    message = json.loads(rejected.value.body)["message"]
    assert 'violates PodSecurity "restricted:latest"' in message
    assert 'privileged (container "main" must not set securityContext.privileged=true)' in message
    compliant = pod_manifest(
        "compliant",
        ["sleep", "1"],
        securityContext={
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        container={"securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}},
    )
    assert core_v1.create_namespaced_pod(namespace, compliant).metadata.name == "compliant"
