"""A pod template cannot loosen the worker pod: the fields the operator owns are set again after the merge
(pod_policy.enforce), even for a template that admission would have refused (an old CRD, rules bypassed)."""

from __future__ import annotations

from typing import Any

from datajob_core.api import pod_policy
from datajob_core.cluster import sizing

HOSTILE: dict[str, Any] = {
    "metadata": {
        "annotations": {
            "container.apparmor.security.beta.kubernetes.io/worker": "unconfined",
            "container.apparmor.security.beta.kubernetes.io/side": "localhost/custom",
        }
    },
    "spec": {
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 86400,
        "serviceAccountName": "admin",
        "automountServiceAccountToken": True,
        "hostPID": True,
        "securityContext": {
            "runAsUser": 0,
            "runAsNonRoot": False,
            "seccompProfile": {"type": "Unconfined"},
            "appArmorProfile": {"type": "Unconfined"},
            "sysctls": [{"name": "kernel.shm_rmid_forced", "value": "0"}],
        },
        "containers": [
            {
                "name": "worker",
                "securityContext": {},
                "terminationMessagePath": "/tmp/elsewhere",
                "terminationMessagePolicy": "File",
                "restartPolicy": "Always",
            },
            {
                "name": "side",
                "image": "x",
                "ports": [{"containerPort": 80, "hostPort": 80}],
                "securityContext": {
                    "privileged": True,
                    "capabilities": {"add": ["SYS_ADMIN", "NET_BIND_SERVICE"]},
                    "seLinuxOptions": {"type": "spc_t", "level": "s0:c1"},
                    "procMount": "Unmasked",
                },
            },
        ],
        "initContainers": [
            {"name": "init", "image": "x", "restartPolicy": "OnFailure"},
            {"name": "proxy", "image": "x", "restartPolicy": "Always"},
        ],
    },
}


def render(template: dict[str, Any]) -> dict[str, Any]:
    job = {
        "apiVersion": "datajob.dev/v1alpha1",
        "kind": "DataJob",
        "metadata": {"name": "wc", "namespace": "team", "uid": "u-1"},
        "spec": {
            "image": "worker:1",
            "input": {"uris": ["/d/*"]},
            "output": {"uri": "/o"},
            "podTemplate": template,
        },
    }
    return sizing.worker_pod(job, 0, "wc-0-1", "wc-w0")


def test_a_template_cannot_change_restart_policy_grace_period_or_service_account() -> None:
    spec = render(HOSTILE)["spec"]
    assert spec["restartPolicy"] == "Never"
    assert spec["terminationGracePeriodSeconds"] == pod_policy.MAX_GRACE_SECONDS
    assert spec["serviceAccountName"] == "wc-worker"
    for forbidden in ("automountServiceAccountToken", "hostPID"):
        assert forbidden not in spec


def test_a_template_cannot_loosen_the_pod_security_context() -> None:
    context = render(HOSTILE)["spec"]["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] == 65532
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "appArmorProfile" not in context and "sysctls" not in context


def test_every_container_gets_the_restricted_context_whatever_the_template_says() -> None:
    spec = render(HOSTILE)["spec"]
    containers = {c["name"]: c for c in spec["containers"] + spec["initContainers"]}
    assert set(containers) == {"worker", "side", "init", "proxy"}
    for container in containers.values():
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["runAsNonRoot"] is True
        assert context["capabilities"]["drop"] == ["ALL"]
        assert "privileged" not in context and "procMount" not in context
    assert containers["side"]["securityContext"]["capabilities"]["add"] == ["NET_BIND_SERVICE"]
    assert containers["side"]["securityContext"]["seLinuxOptions"] == {"level": "s0:c1"}
    assert "hostPort" not in containers["side"]["ports"][0]
    assert "restartPolicy" not in containers["init"]
    assert containers["proxy"]["restartPolicy"] == "Always"  # a native sidecar stays one


def test_the_worker_keeps_its_termination_message_path_and_no_restart_policy() -> None:
    worker = render(HOSTILE)["spec"]["containers"][0]
    assert worker["terminationMessagePath"] == sizing.TERMINATION_MESSAGE_PATH
    assert worker["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert "restartPolicy" not in worker


def test_an_unconfined_apparmor_annotation_is_dropped_and_a_confined_one_kept() -> None:
    annotations = render(HOSTILE)["metadata"]["annotations"]
    assert "container.apparmor.security.beta.kubernetes.io/worker" not in annotations
    assert annotations["container.apparmor.security.beta.kubernetes.io/side"] == "localhost/custom"


def test_admission_names_every_loosening_field_of_the_hostile_template() -> None:
    problems = "\n".join(pod_policy.violations(HOSTILE["spec"]))
    for field in (
        "spec.podTemplate.spec.restartPolicy",
        "spec.podTemplate.spec.terminationGracePeriodSeconds",
        "spec.podTemplate.spec.securityContext.appArmorProfile.type",
        "spec.podTemplate.spec.containers[0].terminationMessagePath",
        "spec.podTemplate.spec.containers[0].terminationMessagePolicy",
        "spec.podTemplate.spec.containers[0].restartPolicy",
        "spec.podTemplate.spec.initContainers[0].restartPolicy",
    ):
        assert field in problems
    assert "initContainers[1]" not in problems
    assert pod_policy.annotation_violations(HOSTILE["metadata"]["annotations"]) == [
        "spec.podTemplate.metadata.annotations[container.apparmor.security.beta.kubernetes.io/worker] cannot "
        "be unconfined: AppArmor must stay confined"
    ]


def test_a_safe_template_keeps_what_it_asked_for() -> None:
    template = {"spec": {"terminationGracePeriodSeconds": 120, "securityContext": {"runAsUser": 1000}}}
    spec = render(template)["spec"]
    assert spec["terminationGracePeriodSeconds"] == 120
    assert spec["securityContext"]["runAsUser"] == 1000
