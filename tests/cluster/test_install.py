"""Installing the operator: Helm chart, kustomize manifests, their RBAC, and replicas that hand over."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from datajob_testenv.cluster import TestCluster
from datajob_testenv.datajobs import Jobs, committed, job_manifest, write_inputs
from datajob_testenv.kube import CHART, Kubectl, helm
from datajob_testenv.operator_process import OperatorProcess, storage_access
from datajob_testenv.processes import free_port, wait_for
from datajob_testenv.schemas import LOCATION, write_builtin_schemas, write_crd_schemas
from datajob_testenv.tools import REPO_ROOT, tool

# Operator pods of these installs go to kwok nodes: nothing runs them, which is all these tests need.
ON_KWOK = ["--set", "nodeSelector.type=kwok"]


def objects(text: str) -> dict[tuple[str, str, str], dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(text) if d]
    return {(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]): d for d in docs}


@pytest.fixture(scope="module")
def peering_crds(kubectl: Kubectl, datajob_crd: None) -> None:
    kubectl("apply", "--server-side", "-f", str(REPO_ROOT / "crds" / "kopf.dev_peerings.yaml"))
    for name in ("kopfpeerings.kopf.dev", "clusterkopfpeerings.kopf.dev"):
        kubectl.wait_established(name)


@pytest.fixture(scope="module")
def schemas(cluster: TestCluster, kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory) -> str:
    directory = tmp_path_factory.mktemp("schemas")
    builtin = write_builtin_schemas(json.loads(kubectl("get", "--raw", "/openapi/v2").stdout), directory)
    custom = write_crd_schemas(sorted((REPO_ROOT / "crds").glob("*.yaml")), directory)
    assert builtin > 50 and custom == 3
    return str(directory / LOCATION)


@pytest.fixture
def no_session_operator(operator: OperatorProcess) -> Iterator[None]:
    """These tests run their own operators; the suite's cluster-wide one must not act meanwhile."""
    operator.stop()
    try:
        yield
    finally:
        operator.start()


def test_chart_lints_clean_in_strict_mode(cluster: TestCluster) -> None:
    result = helm(cluster.kubeconfig, "lint", "--strict", str(CHART))
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize(
    "values",
    [
        [],
        [
            "--set",
            "watchNamespaces={team-a,team-b}",
            "--set",
            "replicaCount=2",
            "--set",
            "metrics.enabled=false",
        ],
    ],
    ids=["defaults", "namespaced"],
)
def test_rendered_chart_and_examples_validate_strictly(
    cluster: TestCluster, kubectl: Kubectl, peering_crds: None, schemas: str, values: list[str]
) -> None:
    rendered = helm(cluster.kubeconfig, "template", "dj", str(CHART), "-n", "datajob-system", *values).stdout
    examples = [
        str(p) for p in [*REPO_ROOT.glob("examples/*/datajob.yaml"), *REPO_ROOT.glob("examples/kind/*.yaml")]
    ]
    chart_file = cluster.directory / "rendered-chart.yaml"
    chart_file.write_text(rendered)
    result = subprocess.run(
        [tool("kubeconform"), "-strict", "-summary", "-schema-location", schemas, str(chart_file), *examples],
        text=True,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Invalid: 0, Errors: 0, Skipped: 0" in result.stdout, result.stdout
    # And the API server accepts every object as it would be created.
    kubectl("create", "namespace", "datajob-system", check=False)
    for namespace in ("team-a", "team-b"):
        kubectl("create", "namespace", namespace, check=False)
    kubectl("apply", "--dry-run=server", "-f", "-", input=rendered)


def test_kubeconform_catches_a_misspelt_field(cluster: TestCluster, schemas: str) -> None:
    rendered = helm(cluster.kubeconfig, "template", "dj", str(CHART), "-n", "datajob-system").stdout
    broken = rendered.replace("imagePullPolicy:", "imagePulPolicy:", 1)
    result = subprocess.run(
        [tool("kubeconform"), "-strict", "-schema-location", schemas, "-"],
        input=broken,
        text=True,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0 and "imagePulPolicy" in result.stdout, result.stdout


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["--set", "replicaCount=two"], "at '/replicaCount': got string, want integer"),
        (["--set", "logFormat=xml"], "at '/logFormat': value must be one of 'json', 'text'"),
        (["--set", "watchNamespaces={Team_A}"], "/watchNamespaces/0"),
        (["--set", "replicas=2"], "additional properties 'replicas' not allowed"),
    ],
)
def test_bad_values_fail_at_install_with_a_clear_message(
    cluster: TestCluster, values: list[str], message: str
) -> None:
    result = helm(
        cluster.kubeconfig, "install", "bad", str(CHART), "-n", "default", "--dry-run", *values, check=False
    )
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_manifests_are_the_chart_rendered_with_defaults(cluster: TestCluster, kubectl: Kubectl) -> None:
    check = subprocess.run(
        [sys.executable, str(REPO_ROOT / "hack" / "render_manifests.py"), tool("helm"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    chart = helm(
        cluster.kubeconfig,
        *("template", "datajob-operator", str(CHART), "-n", "datajob-system", "--include-crds"),
    ).stdout
    kustomized = objects(kubectl("kustomize", str(REPO_ROOT / "manifests")).stdout)
    expected = objects(chart)
    assert kustomized.pop(("Namespace", "", "datajob-system"))
    assert kustomized == expected


def test_helm_install_upgrade_and_uninstall(
    cluster: TestCluster, kubectl: Kubectl, api_client: client.ApiClient, peering_crds: None
) -> None:
    namespace = "dj-helm"
    values = ("--set", "peering.name=dj-helm", *ON_KWOK)
    install = ("--namespace", namespace, "--create-namespace", *values)
    result = helm(cluster.kubeconfig, "install", "dj", str(CHART), *install)
    assert "kubectl explain datajob.spec" in result.stdout  # NOTES.txt tells the user what next
    apps, rbac = client.AppsV1Api(api_client), client.RbacAuthorizationV1Api(api_client)
    core = client.CoreV1Api(api_client)
    deployment = apps.read_namespaced_deployment("dj-datajob-operator", namespace)
    assert deployment.spec.replicas == 1
    container = deployment.spec.template.spec.containers[0]
    assert "--peering=dj-helm" in container.args
    assert container.security_context.allow_privilege_escalation is False
    assert core.read_namespaced_service_account("dj-datajob-operator", namespace)
    assert core.read_namespaced_service("dj-datajob-operator-metrics", namespace)
    assert core.read_namespaced_config_map("dj-datajob-operator-worker-account", namespace)
    for name in ("dj-datajob-operator-cluster", "dj-datajob-operator-jobs"):
        assert rbac.read_cluster_role(name) and rbac.read_cluster_role_binding(name)
    assert kubectl("get", "clusterkopfpeering", "dj-helm").returncode == 0

    helm(
        cluster.kubeconfig,
        "upgrade",
        "dj",
        str(CHART),
        "--namespace",
        namespace,
        *values,
        "--set",
        "replicaCount=2",
    )
    assert apps.read_namespaced_deployment("dj-datajob-operator", namespace).spec.replicas == 2

    helm(cluster.kubeconfig, "uninstall", "dj", "--namespace", namespace, "--wait")
    left = kubectl(
        "get", "deploy,sa,svc,cm", "-n", namespace, "-l", "app.kubernetes.io/instance=dj", "-o", "name"
    )
    assert left.stdout.strip() == ""
    for kind in ("clusterrole", "clusterrolebinding", "clusterkopfpeering"):
        assert kubectl("get", kind, "-l", "app.kubernetes.io/instance=dj", "-o", "name").stdout.strip() == ""
    # By Helm's convention CRDs stay (deleting them would delete every DataJob).
    assert kubectl("get", "crd", "datajobs.datajob.dev").returncode == 0
    core.delete_namespace(namespace)


def test_kubectl_apply_k_installs_the_same_objects(kubectl: Kubectl, peering_crds: None) -> None:
    kubectl("apply", "-k", str(REPO_ROOT / "manifests"))
    try:
        expected = objects(kubectl("kustomize", str(REPO_ROOT / "manifests")).stdout)
        for kind, namespace, name in expected:
            where = ["-n", namespace] if namespace else []
            assert kubectl("get", kind, name, *where, "-o", "name").returncode == 0
    finally:
        # The CRDs stay, as with helm uninstall; everything else goes.
        rest = [
            d
            for d in yaml.safe_load_all(kubectl("kustomize", str(REPO_ROOT / "manifests")).stdout)
            if d and d["kind"] != "CustomResourceDefinition"
        ]
        kubectl("delete", "--wait=false", "-f", "-", input=yaml.safe_dump_all(rest))


def token_kubeconfig(
    cluster: TestCluster, api_client: client.ApiClient, namespace: str, account: str
) -> Path:
    """A kubeconfig that authenticates as ``namespace/account`` with a bound token, as the pod would."""
    request = client.CoreV1Api(api_client).create_namespaced_service_account_token(
        account, namespace, {"spec": {"expirationSeconds": 3600}}
    )
    admin = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    admin["users"] = [{"name": account, "user": {"token": request.status.token}}]
    for context in admin["contexts"]:
        context["context"]["user"] = account
    path = cluster.directory / f"{namespace}-{account}.kubeconfig"
    path.write_text(yaml.safe_dump(admin))
    return path


@pytest.mark.usefixtures("peering_crds", "no_session_operator")
def test_operator_with_the_charts_credentials_completes_a_job_and_nothing_more(
    cluster: TestCluster,
    kubectl: Kubectl,
    api_client: client.ApiClient,
    namespace: str,
    tmp_path: Path,
) -> None:
    release_ns = "dj-rbac"
    helm(
        cluster.kubeconfig,
        *("install", "rbac", str(CHART), "--namespace", release_ns, "--create-namespace", *ON_KWOK),
        *(
            "--set",
            "peering.name=dj-rbac",
            "--set",
            "workers.serviceAccount.annotations.example\\.com/role=reader",
            # The hardened setting: no Secrets at all (object-store access by the operator's own identity).
            "--set",
            "storage.operatorReadsSecrets=false",
        ),
    )
    try:
        token_config = token_kubeconfig(cluster, api_client, release_ns, "rbac-datajob-operator")
        as_operator = Kubectl(str(token_config))
        # What it must not do: read Secrets anywhere, change RBAC cluster-wide, delete nodes, exec into pods.
        for verb, resource, where in (
            ("get", "secrets", ["-n", "kube-system"]),
            ("list", "secrets", ["-n", namespace]),
            ("create", "clusterrolebindings", []),
            ("delete", "nodes", []),
            ("create", "pods", ["--subresource=exec", "-n", namespace]),
        ):
            answer = as_operator("auth", "can-i", verb, resource, *where, check=False).stdout.strip()
            assert answer == "no", f"operator may {verb} {resource} {where}"
        denied = as_operator("get", "secrets", "-n", "kube-system", check=False)
        assert denied.returncode != 0 and "Forbidden" in denied.stderr

        template = cluster.directory / "worker-account.yaml"
        template.write_text(
            client.CoreV1Api(api_client)
            .read_namespaced_config_map("rbac-datajob-operator-worker-account", release_ns)
            .data["worker-account.yaml"]
        )
        metrics_port = free_port()
        runner = OperatorProcess(
            str(token_config),
            cluster.directory / "logs" / "rbac",
            *("--peering", "dj-rbac", "--worker-account-template", str(template)),
            *("--metrics-port", str(metrics_port), "--log-format", "json"),
            *storage_access(tmp_path.parent),
        )
        runner.log_dir.mkdir(parents=True, exist_ok=True)
        runner.start()
        try:
            jobs = Jobs(api_client, namespace)
            total = write_inputs(tmp_path / "in", files=4, lines=50)
            jobs.create(job_manifest("chartrbac", tmp_path / "in", tmp_path / "out", workers=2))
            status = jobs.wait_phase("chartrbac", "Succeeded", timeout=120)
            series = f'namespace="{namespace}",state="succeeded"'

            def scraped() -> str:
                with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as page:
                    return str(page.read().decode())

            wait_for(lambda: f'datajob_shards{{job="chartrbac",{series}}} 4.0' in scraped(), 10, "metrics")
            assert 'datajob_reconcile_passes_total{outcome="ok"}' in scraped()
        finally:
            runner.stop()
        assert status["shards"]["succeeded"] == 4
        assert sum(r["records"] for r in committed(tmp_path / "out").values()) == total
        account = client.CoreV1Api(api_client).read_namespaced_service_account("chartrbac-worker", namespace)
        assert account.metadata.annotations == {"example.com/role": "reader"}
        assert "Forbidden" not in runner.log_text(), "the chart's RBAC lacks something the operator used"
        # --log-format json: every line kopf or the operator logs is one JSON object.
        lines = [line for line in runner.log_text().splitlines() if line.strip()]
        assert lines and all(json.loads(line)["event"] for line in lines)
    finally:
        helm(cluster.kubeconfig, "uninstall", "rbac", "--namespace", release_ns, "--wait")


def peers(kubectl: Kubectl, name: str) -> int:
    status = kubectl("get", "clusterkopfpeering", name, "-o", "jsonpath={.status}").stdout
    return len(json.loads(status)) if status.strip() else 0


@pytest.mark.usefixtures("peering_crds", "no_session_operator")
def test_two_replicas_one_acts_and_a_kill_hands_over_without_losing_the_job(
    cluster: TestCluster,
    api_client: client.ApiClient,
    kubectl: Kubectl,
    namespace: str,
    tmp_path: Path,
) -> None:
    kubectl(
        "apply",
        "-f",
        "-",
        input=yaml.safe_dump(
            {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": "dj-ha"}}
        ),
    )
    logs = cluster.directory / "logs"
    peering: tuple[str, ...] = ("--peering", "dj-ha", "--peering-lifetime", "10")
    (logs / "ha-a").mkdir(parents=True, exist_ok=True)
    (logs / "ha-b").mkdir(parents=True, exist_ok=True)
    peering = (*peering, *storage_access(tmp_path.parent))
    leader = OperatorProcess(cluster.kubeconfig, logs / "ha-a", *peering, "--priority", "200")
    standby = OperatorProcess(cluster.kubeconfig, logs / "ha-b", *peering, "--priority", "100")
    leader.start()
    wait_for(lambda: peers(kubectl, "dj-ha") == 1, 30, "the leader's peering record")
    standby.start()
    try:
        # kopf starts paused and resumes only when no live peer outranks it: the standby stays paused.
        wait_for(lambda: peers(kubectl, "dj-ha") == 2, 60, "the standby's peering record")
        assert "Resuming operations" in leader.log_text()
        jobs = Jobs(api_client, namespace)
        total = write_inputs(tmp_path / "in", files=6, lines=400)
        slow = {"builtin": "wordcount", "options": {"delayPerRecord": "0.005"}}
        jobs.create(job_manifest("ha", tmp_path / "in", tmp_path / "out", workers=2, processor=slow))
        jobs.wait("ha", lambda s: (s.get("shards") or {}).get("succeeded", 0) >= 1, 90, "progress")
        assert "created worker" in leader.log_text()
        assert "created worker" not in standby.log_text()
        assert "Resuming operations" not in standby.log_text()
        leader.kill()
        killed = time.monotonic()
        wait_for(lambda: "Resuming operations" in standby.log_text(), 60, "the standby to take over")
        handover = time.monotonic() - killed
        status = jobs.wait_phase("ha", "Succeeded", timeout=180)
    finally:
        leader.stop()
        standby.stop()
        kubectl("delete", "clusterkopfpeering", "dj-ha", check=False)
    assert status["shards"]["succeeded"] == 6
    results = committed(tmp_path / "out")
    assert sorted(results) == list(range(6))
    assert sum(r["records"] for r in results.values()) == total
    print(f"standby took over {handover:.1f}s after the leader was killed (peering lifetime 10s)")
