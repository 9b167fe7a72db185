"""The worker's API client (pykube-ng) against the real API server, with the RBAC the operator gives workers.

The worker authenticates as its job's ServiceAccount with a projected token; here the token comes from a
TokenRequest and is written where the worker reads it (NODE_AGENT_ROOT rebases the service-account dir).
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from kubernetes import client, utils

from datajob_core.cluster import sizing
from datajob_core.data import plan_store
from datajob_core.protocol import ASSIGNMENT_ANNOTATION, AssignmentMessage, ReportMessage, lease_name
from datajob_testenv.cluster import TestCluster
from datajob_testenv.processes import wait_for
from datajob_worker.lease_client import SERVICE_ACCOUNT_DIR, LeaseClient, LeaseError

JOB = "leasejob"
LEASE = lease_name(JOB, 0)


def _job(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "datajob.dev/v1",
        "kind": "DataJob",
        "metadata": {"name": JOB, "namespace": namespace, "uid": "u"},
    }


def _create(api_client: client.ApiClient, namespace: str, manifest: dict[str, Any]) -> None:
    manifest = {
        **manifest,
        "metadata": {k: v for k, v in manifest["metadata"].items() if k != "ownerReferences"},
    }
    utils.create_from_dict(api_client, manifest, namespace=namespace)


def _token(core_v1: client.CoreV1Api, namespace: str, account: str) -> str:
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
    )
    return str(core_v1.create_namespaced_service_account_token(account, namespace, request).status.token)


class WorkerEnv:
    """A worker's view of the cluster: its ServiceAccount's token, the CA bundle and the API address."""

    def __init__(self, root: Path, token: str) -> None:
        self.dir = Path(str(root) + SERVICE_ACCOUNT_DIR)
        self.dir.mkdir(parents=True)
        self.token = token
        self.set_token(token)

    def set_token(self, token: str) -> None:
        (self.dir / "token").write_text(token)


@pytest.fixture
def worker_env(
    cluster: TestCluster,
    namespace: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> Iterator[WorkerEnv]:
    watch = getattr(request, "param", True)
    api_client = cluster.api_client()
    core_v1 = client.CoreV1Api(api_client)
    plan_names = plan_store.chunk_names(JOB, 2)
    account, role, binding = sizing.worker_rbac(_job(namespace), [LEASE], plan=plan_names)
    if not watch:  # a Role made by an older operator: get and patch only
        role["rules"][0]["verbs"] = ["get", "patch"]
    for manifest in (account, role, binding, sizing.slot_lease(_job(namespace), 0)):
        _create(api_client, namespace, manifest)
    server = urlsplit(cluster.state.server)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", str(server.hostname))
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(server.port))
    monkeypatch.setenv("NODE_AGENT_ROOT", str(tmp_path / "root"))
    env = WorkerEnv(tmp_path / "root", _token(core_v1, namespace, account["metadata"]["name"]))
    (env.dir / "ca.crt").write_text(Path(cluster.state.ca_file).read_text())
    # RBAC takes effect a moment after the binding is created.
    wait_for(lambda: _can_read(namespace), 30, "worker RBAC in effect")
    yield env


def _can_read(namespace: str) -> bool:
    try:
        LeaseClient(namespace, LEASE, job=JOB).assignment()
        return True
    except LeaseError:
        return False


def _assign(coordination: client.CoordinationV1Api, namespace: str, message: AssignmentMessage) -> None:
    body = {"metadata": {"annotations": {ASSIGNMENT_ANNOTATION: message.model_dump_json()}}}
    coordination.patch_namespaced_lease(LEASE, namespace, body)


def test_a_worker_sees_a_new_assignment_as_soon_as_the_operator_writes_it(
    worker_env: WorkerEnv, api_client: client.ApiClient, namespace: str
) -> None:
    coordination = client.CoordinationV1Api(api_client)
    lease = LeaseClient(namespace, LEASE, job=JOB)
    assert lease.assignment() is None
    # The worker's own report changes the Lease too; the watch must not return for that.
    lease.report(ReportMessage(pod="p0"))
    message = AssignmentMessage(pod="p0", ack=1)
    timer = threading.Timer(1.5, _assign, (coordination, namespace, message))
    timer.start()
    started = time.monotonic()
    lease.wait(20)
    waited = time.monotonic() - started
    timer.join()
    assert 1.0 < waited < 8, f"the watch returned after {waited:.1f}s"
    assert lease.assignment() == message


def test_a_watch_with_nothing_new_ends_after_its_timeout(worker_env: WorkerEnv, namespace: str) -> None:
    lease = LeaseClient(namespace, LEASE, job=JOB)
    lease.assignment()
    started = time.monotonic()
    lease.wait(2)
    assert 1.5 < time.monotonic() - started < 6
    assert lease.can_watch


def test_a_report_patches_only_the_workers_report_key_and_the_renew_time(
    worker_env: WorkerEnv, api_client: client.ApiClient, namespace: str
) -> None:
    coordination = client.CoordinationV1Api(api_client)
    _assign(coordination, namespace, AssignmentMessage(pod="p0", ack=3))
    lease = LeaseClient(namespace, LEASE, job=JOB, report_key="datajob.dev/report-b")
    lease.report(ReportMessage(pod="p0", current=None))
    stored = coordination.read_namespaced_lease(LEASE, namespace)
    annotations = stored.metadata.annotations
    assert ReportMessage.model_validate_json(annotations["datajob.dev/report-b"]).pod == "p0"
    assert AssignmentMessage.model_validate_json(annotations[ASSIGNMENT_ANNOTATION]).ack == 3
    assert stored.spec.renew_time is not None
    assert "datajob.dev/report" not in annotations


@pytest.mark.parametrize("worker_env", [False], indirect=True)
def test_a_worker_without_watch_rights_reads_its_lease_instead(
    worker_env: WorkerEnv, api_client: client.ApiClient, namespace: str
) -> None:
    lease = LeaseClient(namespace, LEASE, job=JOB)
    lease.assignment()
    lease.wait(5)  # the watch is refused (403): it falls back to reading once a second
    assert not lease.can_watch
    _assign(client.CoordinationV1Api(api_client), namespace, AssignmentMessage(pod="p0", ack=7))
    lease.wait(5)
    assigned = lease.assignment()
    assert assigned is not None and assigned.ack == 7


def test_the_token_is_read_again_for_every_request(worker_env: WorkerEnv, namespace: str) -> None:
    # kubelet rotates the projected token in place; a client that kept the first one would fail later.
    lease = LeaseClient(namespace, LEASE, job=JOB)
    lease.assignment()
    worker_env.set_token("not-a-token")
    with pytest.raises(LeaseError) as refused:
        lease.assignment()
    assert refused.value.code == 401
    worker_env.set_token(worker_env.token)
    assert lease.assignment() is None


def test_a_worker_reads_the_stored_plan_from_its_jobs_config_maps(
    worker_env: WorkerEnv, core_v1: client.CoreV1Api, namespace: str
) -> None:
    plan = [{"pieces": [{"path": f"/data/{i}.txt", "start": 0, "end": 100 + i}]} for i in range(2000)]
    data = plan_store.encode(plan)
    chunks = [data[: len(data) // 2], data[len(data) // 2 :]]  # as plan_store.split cuts a large plan
    names = plan_store.chunk_names(JOB, len(chunks))
    for index, (name, chunk) in enumerate(zip(names, chunks, strict=True)):
        index_data = {plan_store.CHUNKS_KEY: str(len(chunks))} if index == 0 else None
        core_v1.create_namespaced_config_map(
            namespace,
            {
                "metadata": {"name": name},
                "data": index_data,
                "binaryData": {plan_store.PLAN_KEY: _b64(chunk)},
            },
        )
    assert plan_store.decode(LeaseClient(namespace, LEASE, job=JOB).plan()) == plan


def test_a_worker_may_not_read_other_leases(
    worker_env: WorkerEnv, api_client: client.ApiClient, namespace: str
) -> None:
    other = sizing.slot_lease(_job(namespace), 1)
    _create(api_client, namespace, other)
    with pytest.raises(LeaseError) as refused:
        LeaseClient(namespace, other["metadata"]["name"], job=JOB).assignment()
    assert refused.value.code == 403


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
