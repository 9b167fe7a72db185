"""Every pod template the CRD admits renders a worker pod that a namespace enforcing Pod Security
``restricted`` admits: the API server itself is the oracle, through server-side dry runs.

Hypothesis draws templates from values that are each valid for the Pod API but many of them unsafe
(root, privileged, unconfined, host ports, restart policies, a day of grace, ...). A template the DataJob
admission refuses is counted and skipped; one it admits is rendered with the operator's own code
(``sizing.worker_pod``, on the object as the API server stored it) and must be created without error.

Seeded and bounded in CI (``derandomize``); DATAJOB_PROPERTY_EXAMPLES=2000 runs longer (docs/testing.md).
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes import client

from datajob_core.cluster import sizing
from datajob_testenv.datajobs import GROUP, PLURAL, VERSION
from datajob_testenv.specs import VALID_SPEC

RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted"}
EXAMPLES = int(os.environ.get("DATAJOB_PROPERTY_EXAMPLES", "80"))
APPARMOR = "container.apparmor.security.beta.kubernetes.io/"


def _maybe(values: list[Any]) -> st.SearchStrategy[Any]:
    """Mostly absent, so that many templates are admitted and the property is exercised on both sides."""
    return st.sampled_from([*[None] * (3 * len(values)), *values])


def _profile(kind: str) -> st.SearchStrategy[dict[str, str] | None]:
    return st.sampled_from(
        [
            None,
            {"type": "RuntimeDefault"},
            {"type": "Unconfined"},
            {"type": "Localhost", "localhostProfile": kind},
        ]
    )


@st.composite
def security_context(draw: st.DrawFn, *, pod: bool) -> dict[str, Any]:
    context = {
        "runAsUser": draw(_maybe([0, 1000])),
        "runAsNonRoot": draw(_maybe([True, False])),
        "seccompProfile": draw(_profile("profiles/p.json")),
        "appArmorProfile": draw(_profile("p")),
        "seLinuxOptions": draw(_maybe([{"level": "s0:c1"}, {"type": "spc_t"}])),
    }
    if pod:
        context["sysctls"] = draw(_maybe([[{"name": "kernel.shm_rmid_forced", "value": "0"}]]))
    else:
        context["privileged"] = draw(_maybe([True, False]))
        context["allowPrivilegeEscalation"] = draw(_maybe([True, False]))
        context["readOnlyRootFilesystem"] = draw(_maybe([True, False]))
        added = draw(st.lists(st.sampled_from(["NET_BIND_SERVICE", "SYS_ADMIN", "NET_RAW"]), unique=True))
        dropped = draw(st.lists(st.sampled_from(["ALL", "NET_RAW"]), unique=True))
        context["capabilities"] = draw(_maybe([{"add": added, "drop": dropped}]))
    return {k: v for k, v in context.items() if v is not None}


@st.composite
def container(draw: st.DrawFn, name: str, *, init: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name}
    if name != "worker":
        body.update(image="busybox", command=["true"])
    if draw(st.booleans()):
        body["securityContext"] = draw(security_context(pod=False))
    restart = draw(_maybe(["Always", "OnFailure"] if init else ["Always"]))
    if restart:
        body["restartPolicy"] = restart
    if name == "worker" and draw(st.booleans()):
        body["terminationMessagePath"] = "/tmp/last-words"
    if not init and draw(st.booleans()):
        body["ports"] = [{"containerPort": 8080, **({"hostPort": 8080} if draw(st.booleans()) else {})}]
    return body


@st.composite
def pod_template(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "restartPolicy": draw(_maybe(["Never", "Always", "OnFailure"])),
        "terminationGracePeriodSeconds": draw(_maybe([0, 30, 300, 301, 86400])),
        "securityContext": draw(_maybe([draw(security_context(pod=True))])),
        "volumes": draw(
            _maybe([[{"name": "v", "emptyDir": {}}], [{"name": "v", "hostPath": {"path": "/"}}]])
        ),
    }
    names = draw(st.lists(st.sampled_from(["worker", "side-a", "side-b"]), unique=True, max_size=3))
    spec["containers"] = [draw(container(n, init=False)) for n in names] or None
    inits = draw(st.lists(st.sampled_from(["init-a", "init-b"]), unique=True, max_size=2))
    spec["initContainers"] = [draw(container(n, init=True)) for n in inits] or None
    template: dict[str, Any] = {"spec": {k: v for k, v in spec.items() if v is not None}}
    annotation = draw(_maybe(["runtime/default", "unconfined", "localhost/p"]))
    if annotation:
        target = draw(st.sampled_from(["worker", "side-a"]))
        template["metadata"] = {"annotations": {f"{APPARMOR}{target}": annotation}}
    return template


@pytest.mark.parametrize("namespace", [RESTRICTED], indirect=True)
@pytest.mark.usefixtures("datajob_crd")
def test_every_pod_template_the_crd_admits_renders_a_pod_that_restricted_pod_security_admits(
    api_client: client.ApiClient, core_v1: client.CoreV1Api, namespace: str
) -> None:
    custom = client.CustomObjectsApi(api_client)
    core_v1.create_namespaced_service_account(
        namespace, {"metadata": {"name": sizing.service_account_name("p")}}
    )
    verdicts = {"refused": 0, "admitted": 0}

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(template=pod_template())
    def admitted_templates_render_admitted_pods(template: dict[str, Any]) -> None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "DataJob",
            "metadata": {"name": "p"},
            "spec": {**VALID_SPEC, "podTemplate": template},
        }
        try:
            job = custom.create_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, body, dry_run="All"
            )
        except client.ApiException as refused:
            assert refused.status == 422, refused.body
            verdicts["refused"] += 1
            return
        verdicts["admitted"] += 1
        pod = sizing.worker_pod(job, 0, "p-0-1", "p-w0")
        try:
            core_v1.create_namespaced_pod(namespace, pod, dry_run="All")
        except client.ApiException as rejected:
            message = json.loads(rejected.body).get("message", rejected.body)
            raise AssertionError(
                f"admitted template {template} gave a pod the namespace refused: {message}"
            ) from None

    admitted_templates_render_admitted_pods()
    print(f"\n{verdicts['admitted']} templates admitted (each pod admitted), {verdicts['refused']} refused")
    # Neither side may be empty, or the property was never exercised.
    assert verdicts["admitted"] >= EXAMPLES // 10 and verdicts["refused"] >= EXAMPLES // 10
