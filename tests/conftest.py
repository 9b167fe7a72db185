"""Shared fixtures: the real test cluster is started once per session, only if a cluster test runs."""

from __future__ import annotations

import os
import re
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from datajob_testenv.cluster import TestCluster
from datajob_testenv.datajobs import Jobs
from datajob_testenv.kube import Kubectl
from datajob_testenv.kueue import Kueue
from datajob_testenv.objectstore import ObjectStore
from datajob_testenv.operator_process import OperatorProcess, storage_access
from datajob_testenv.processes import free_port, wait_for
from datajob_testenv.tools import REPO_ROOT


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--containers",
        action="store_true",
        default=os.environ.get("DATAJOB_CONTAINER_TESTS") == "1",
        help="also run tests/containers: images built here on a real kubelet node (root, Docker)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Directory decides the marker, so nobody has to remember it.
    run_containers = bool(config.getoption("--containers"))
    root = Path(str(config.rootpath))
    skip_containers = pytest.mark.skip(
        reason="real-container tests run with --containers (make test-containers)"
    )
    for item in items:
        # Relative to the checkout: a checkout under a directory named like a tier must not change tiers.
        parts = Path(str(item.fspath)).relative_to(root).parts
        if "containers" in parts:
            item.add_marker(pytest.mark.containers)
            if not run_containers:
                item.add_marker(skip_containers)
        elif "cluster" in parts:
            item.add_marker(pytest.mark.cluster)
        elif "unit" in parts:
            item.add_marker(pytest.mark.unit)
        elif "local" in parts:
            item.add_marker(pytest.mark.local)


TIERS = {
    "unit": "pure logic, no cluster",
    "local": "local mode: real worker processes, no cluster",
    "cluster": "a real control plane (built from Go: make tools)",
    "containers": "real containers on a kubelet node (make test CONTAINERS=1, root)",
}


def _tier(nodeid: str) -> str:
    parts = Path(nodeid.split("::", maxsplit=1)[0]).parts
    return next((tier for tier in TIERS if tier in parts), "other")


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Which tiers ran and which did not, and every test skipped for lack of a tool: never silently."""
    del exitstatus
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    missing: Counter[str] = Counter()
    for outcome in ("passed", "failed", "error", "skipped", "xfailed"):
        for report in terminalreporter.stats.get(outcome, []):
            if not getattr(report, "nodeid", ""):
                continue
            tier = _tier(report.nodeid)
            counts[tier][outcome] += 1
            if outcome == "skipped" and isinstance(report.longrepr, tuple):
                reason = str(report.longrepr[2])
                if "needs " in reason and ("does not build" in reason or "chromium" in reason):
                    missing[reason.removeprefix("Skipped: ")] += 1
    terminalreporter.section("tiers")
    for tier, what in TIERS.items():
        ran = counts.get(tier)
        if ran and (ran["passed"] or ran["failed"] or ran["error"]):
            shown = ", ".join(f"{n} {o}" for o, n in ran.items() if n)
            terminalreporter.write_line(f"{tier:<11} ran: {shown}  ({what})")
        elif tier == "containers" and not config.getoption("--containers"):
            terminalreporter.write_line(f"{tier:<11} not run: needs --containers  ({what})")
        else:
            terminalreporter.write_line(f"{tier:<11} not run: not selected  ({what})")
    for reason, n in sorted(missing.items()):
        terminalreporter.write_line(f"skipped for lack of a tool: {n} test(s): {reason}")


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestCluster]:
    test_cluster = TestCluster(tmp_path_factory.mktemp("cluster"))
    test_cluster.start()
    try:
        yield test_cluster
    finally:
        test_cluster.stop()


@pytest.fixture(scope="session")
def object_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectStore]:
    """A real S3 server (MinIO) on loopback for the session, only if a test asks for it."""
    store = ObjectStore(tmp_path_factory.mktemp("objectstore"))
    store.start()
    try:
        yield store
    finally:
        store.stop()


@pytest.fixture
def bucket(object_store: ObjectStore, request: pytest.FixtureRequest) -> str:
    """A fresh bucket per test; its s3:// URL."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-")
    return object_store.bucket(f"t-{slug}-{uuid.uuid4().hex[:5]}")


@pytest.fixture(scope="session")
def api_client(cluster: TestCluster) -> client.ApiClient:
    return cluster.api_client()


@pytest.fixture(scope="session")
def core_v1(api_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


@pytest.fixture
def namespace(core_v1: client.CoreV1Api, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test, with its default ServiceAccount ready (pods need it)."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-")
    name = f"t-{slug}-{uuid.uuid4().hex[:5]}"
    labels = getattr(request, "param", None) or {}
    core_v1.create_namespace({"metadata": {"name": name, "labels": labels}})
    # Pods need the default ServiceAccount and the CA bundle the controller-manager publishes.
    wait_for(lambda: core_v1.read_namespaced_service_account("default", name) is not None, 30, "default SA")
    wait_for(
        lambda: core_v1.read_namespaced_config_map("kube-root-ca.crt", name) is not None, 30, "CA bundle"
    )
    yield name
    core_v1.delete_namespace(name)


@pytest.fixture(scope="session")
def kubectl(cluster: TestCluster) -> Kubectl:
    return Kubectl(cluster.kubeconfig)


@pytest.fixture(scope="session")
def datajob_crd(cluster: TestCluster, kubectl: Kubectl) -> None:
    kubectl("apply", "--server-side", "-f", str(REPO_ROOT / "crds" / "datajob.dev_datajobs.yaml"))
    kubectl.wait_established("datajobs.datajob.dev")


@pytest.fixture(scope="session")
def operator(
    cluster: TestCluster, datajob_crd: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """The operator, watching all namespaces, for the whole session; tests may kill and restart it."""
    port = free_port()
    process = OperatorProcess(
        cluster.kubeconfig,
        cluster.directory / "logs",
        *("--metrics-port", str(port)),
        *storage_access(tmp_path_factory.getbasetemp()),
    )
    process.metrics_url = f"http://127.0.0.1:{port}/metrics"
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="session")
def kueue(cluster: TestCluster) -> Kueue:
    """The real Kueue controller manager on the test cluster (started by the first test that needs it)."""
    manager = Kueue(cluster.control_plane, cluster.directory / "kueue")
    manager.start()
    return manager


@pytest.fixture
def jobs(api_client: client.ApiClient, namespace: str, operator: OperatorProcess) -> Jobs:
    """DataJobs in this test's namespace, with the operator running."""
    return Jobs(api_client, namespace)
