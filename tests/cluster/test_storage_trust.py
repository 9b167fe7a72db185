"""No confused deputy: the operator never acts on storage for a job with an identity its author lacks.

These tests run their own operator, set up the way an administrator of a shared cluster would: one
storage root per namespace (``<root>/{namespace}``), MinIO as the only allowed endpoint, and the
operator's own identity able to read every bucket (its environment holds MinIO's root credentials), so
that any fallback to that identity would show.
"""

from __future__ import annotations

import http.server
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from kubernetes import client

from datajob_testenv.cluster import TestCluster
from datajob_testenv.datajobs import Jobs, condition, job_manifest, write_inputs
from datajob_testenv.objectstore import ObjectStore
from datajob_testenv.operator_process import OperatorProcess
from datajob_testenv.processes import free_port, wait_for


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("storage-roots")


@pytest.fixture(scope="module")
def tenant_operator(
    cluster: TestCluster, datajob_crd: None, operator: OperatorProcess, object_store: ObjectStore, root: Path
) -> Iterator[OperatorProcess]:
    """Instead of the suite's operator (which may act anywhere under the session's temporary directory)."""
    operator.stop()
    log_dir = cluster.directory / "logs" / "tenants"
    log_dir.mkdir(parents=True, exist_ok=True)
    tenant = OperatorProcess(
        cluster.kubeconfig,
        log_dir,
        *("--storage-root", f"{root}/{{namespace}}", "--storage-endpoint", object_store.endpoint),
        env=object_store.credentials,  # the operator's own identity can read every bucket
    )
    tenant.start()
    try:
        yield tenant
    finally:
        tenant.stop()
        operator.start()


@pytest.fixture
def other_namespace(core_v1: client.CoreV1Api) -> Iterator[str]:
    name = f"t-other-{uuid.uuid4().hex[:5]}"
    core_v1.create_namespace({"metadata": {"name": name}})
    wait_for(lambda: core_v1.read_namespaced_service_account("default", name) is not None, 30, "default SA")
    yield name
    core_v1.delete_namespace(name)


def snapshot(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
    }


def refused(jobs: Jobs, name: str) -> str:
    status = jobs.wait_phase(name, "Failed", timeout=60)
    failed = condition(status, "Failed")
    assert failed["reason"] == "StorageAccessDenied"
    assert not jobs.pods(name), "a refused job must not get workers"
    jobs.events(name, wait_for_reason="StorageAccessDenied")
    return str(failed["message"])


def test_a_job_cannot_overwrite_another_namespaces_output_through_the_operator(
    tenant_operator: OperatorProcess,
    api_client: client.ApiClient,
    namespace: str,
    other_namespace: str,
    root: Path,
) -> None:
    victim, attacker = Jobs(api_client, namespace), Jobs(api_client, other_namespace)
    home = root / namespace
    write_inputs(home / "in", files=4, lines=30)
    victim.create(job_manifest("published", home / "in", home / "out"))
    victim.wait_phase("published", "Succeeded", timeout=120)
    before = snapshot(home / "out")
    assert "result" in before and "_SUCCESS" in before

    own = root / other_namespace
    write_inputs(own / "in", files=1, lines=3)
    attack = job_manifest("overwrite", own / "in", home / "out")
    attack["spec"]["output"]["overwrite"] = True
    attacker.create(attack)
    message = refused(attacker, "overwrite")
    assert message.startswith(f"spec.output.uri: {home / 'out'} is outside the storage roots")
    assert f"for namespace {other_namespace} ({own};" in message

    # A symlink inside the attacker's own root that leads into the victim's is no way around it.
    (own / "link").symlink_to(home)
    through_link = job_manifest("via-link", own / "in", own / "link" / "out")
    through_link["spec"]["output"]["overwrite"] = True
    attacker.create(through_link)
    assert f"resolves to {home / 'out'}" in refused(attacker, "via-link")
    assert snapshot(home / "out") == before


def test_a_job_without_credentials_cannot_make_the_operator_list_a_bucket(
    tenant_operator: OperatorProcess, jobs: Jobs, root: Path, object_store: ObjectStore, bucket: str
) -> None:
    secret_key = f"{bucket.removeprefix('s3://')}/payroll/2026-employee-salaries.csv"
    object_store.filesystem().pipe(secret_key, b"name,salary\n")
    manifest = job_manifest("peek", Path("/unused"), root / jobs.namespace / "out")
    manifest["spec"]["input"] = {"uris": [f"{bucket}/payroll/*"], "format": "csv"}
    manifest["spec"]["storage"] = object_store.storage_spec()  # allowed endpoint, no credentialsSecret
    jobs.create(manifest)
    message = refused(jobs, "peek")
    assert message.startswith(f"spec.input.uris[0]: {bucket}/payroll/* is outside the storage roots")
    assert "the job's own credentials are needed (spec.storage.credentialsSecret is not set)" in message
    plans = jobs.core.list_namespaced_config_map(jobs.namespace, label_selector="datajob.dev/job=peek")
    assert not plans.items, "the input was listed into a plan"
    assert "salaries" not in str(jobs.get("peek")) + str([e.message for e in jobs.events("peek")])


class _Counting(http.server.BaseHTTPRequestHandler):
    requests: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.requests.append(self.path)
        self.send_response(200)
        self.end_headers()

    do_HEAD = do_PUT = do_POST = do_GET  # noqa: N815

    def log_message(self, *args: object) -> None:
        pass


def test_a_job_naming_an_endpoint_not_allowed_is_refused_and_no_request_is_sent(
    tenant_operator: OperatorProcess, jobs: Jobs, root: Path, object_store: ObjectStore
) -> None:
    _Counting.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.2", free_port()), _Counting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.2:{server.server_address[1]}"
        jobs.core.create_namespaced_secret(
            jobs.namespace,
            {"metadata": {"name": "s3"}, "type": "Opaque", "stringData": object_store.credentials},
        )
        manifest = job_manifest("ssrf", Path("/unused"), Path("/unused"))
        manifest["spec"]["input"] = {"uris": ["s3://internal/admin/*"]}
        manifest["spec"]["output"] = {"uri": "s3://internal/out"}
        manifest["spec"]["storage"] = {"endpoint": endpoint, "credentialsSecret": "s3"}
        jobs.create(manifest)
        message = refused(jobs, "ssrf")
        assert message.startswith(f"spec.storage.endpoint: {endpoint} is not an object-store endpoint")
        assert object_store.endpoint in message
        assert _Counting.requests == []
    finally:
        server.shutdown()


def test_a_job_inside_its_namespaces_root_and_with_its_own_credentials_runs(
    tenant_operator: OperatorProcess, jobs: Jobs, root: Path, object_store: ObjectStore, bucket: str
) -> None:
    jobs.core.create_namespaced_secret(
        jobs.namespace,
        {"metadata": {"name": "s3"}, "type": "Opaque", "stringData": object_store.credentials},
    )
    home = root / jobs.namespace
    total = write_inputs(home / "in", files=3, lines=20)
    manifest = job_manifest("mine", home / "in", Path("/unused"))
    manifest["spec"]["output"] = {"uri": f"{bucket}/out"}
    manifest["spec"]["storage"] = {**object_store.storage_spec(), "credentialsSecret": "s3"}
    jobs.create(manifest)
    status = jobs.wait_phase("mine", "Succeeded", timeout=120)
    assert status["processed"]["records"] == total
