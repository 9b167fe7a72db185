"""`from datajob import ...`: the Python client against the real control plane, the operator and MinIO."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.rest import ApiException

from datajob import Client, DataJob, JobRejectedError, JobStatus, run_local
from datajob.cluster import _rejected
from datajob_core.api.crd import PLURAL
from datajob_core.api.models import GROUP, VERSION
from datajob_testenv.cluster import TestCluster
from datajob_testenv.datajobs import Jobs, job_manifest, write_inputs
from datajob_testenv.objectstore import ObjectStore


def _s3_manifest(name: str, bucket: str, store: ObjectStore) -> dict[str, Any]:
    manifest = job_manifest(name, Path("/unused"), Path("/unused"), workers=2)
    manifest["spec"]["input"] = {"uris": [f"{bucket}/in/*.txt"], "partitioning": {"mode": "perFile"}}
    manifest["spec"]["output"] = {"uri": f"{bucket}/out"}
    manifest["spec"]["storage"] = {**store.storage_spec(), "credentialsSecret": "s3-credentials"}
    return manifest


def test_a_job_built_from_the_models_is_submitted_waited_for_and_its_result_read_from_the_store(
    jobs: Jobs, cluster: TestCluster, tmp_path: Path, object_store: ObjectStore, bucket: str
) -> None:
    write_inputs(tmp_path / "in", files=3, lines=200)
    fs = object_store.filesystem()
    for path in sorted((tmp_path / "in").glob("*.txt")):
        fs.pipe(f"{bucket.removeprefix('s3://')}/in/{path.name}", path.read_bytes())
    jobs.core.create_namespaced_secret(
        jobs.namespace, {"metadata": {"name": "s3-credentials"}, "stringData": object_store.credentials}
    )
    job = DataJob.load(_s3_manifest("from-python", bucket, object_store))  # the API's own models

    client = Client.from_kubeconfig(cluster.kubeconfig, namespace=jobs.namespace)
    handle = client.submit(job)
    seen: list[JobStatus] = []
    final = handle.wait(timeout=180, on_progress=seen.append)

    assert final.phase == "Succeeded" and final.shards_succeeded == final.shards_total == 3
    assert final.records == 600
    assert seen and seen[-1] == final and len({s.phase for s in seen}) >= 2, [s.phase for s in seen]
    assert client.job("from-python").status() == final
    assert "Completed" in {e.reason for e in handle.events()}
    # The result, read with the job's own Secret (the caller may read it here).
    counts = dict(line.split("\t") for line in handle.result().decode().splitlines())
    assert int(counts["alpha"]) == 600
    assert '"attempts": 3' in handle.report()

    # The same spec on this machine: the same result.
    local = json.loads(json.dumps(job.model_dump(by_alias=True, exclude_none=True)))
    local["spec"]["input"] = {"uris": [str(tmp_path / "in" / "*.txt")], "partitioning": {"mode": "perFile"}}
    local["spec"]["output"] = {"uri": str(tmp_path / "local-out")}
    del local["spec"]["storage"]
    done = run_local(local, progress=io.StringIO())
    assert done.phase == "Succeeded" and done.records == 600
    assert (tmp_path / "local-out" / "result").read_bytes() == handle.result()


def test_an_invalid_spec_is_refused_before_it_is_sent_naming_the_field(
    jobs: Jobs, cluster: TestCluster, tmp_path: Path
) -> None:
    manifest = job_manifest("bad", tmp_path / "in", tmp_path / "out", workers=0)
    client = Client.from_kubeconfig(cluster.kubeconfig, namespace=jobs.namespace)
    with pytest.raises(JobRejectedError) as refused:
        client.submit(manifest)
    assert refused.value.fields == ["spec.workers"], refused.value
    with pytest.raises(JobRejectedError):
        run_local(manifest, progress=io.StringIO())
    assert not jobs.exists("bad")


def test_the_api_servers_refusal_becomes_a_typed_error_naming_the_field(
    jobs: Jobs, cluster: TestCluster
) -> None:
    # What the API server answers when its own rules refuse a DataJob (the client checks first, so this
    # goes around it), read by the same code the client uses for its answers.
    client = Client.from_kubeconfig(cluster.kubeconfig, namespace=jobs.namespace)
    manifest = job_manifest("refused", Path("/in"), Path("/out"))
    manifest["spec"]["workers"] = 0
    with pytest.raises(ApiException) as answer:
        client.custom.create_namespaced_custom_object(GROUP, VERSION, jobs.namespace, PLURAL, manifest)
    error = _rejected(answer.value)
    assert isinstance(error, JobRejectedError)
    assert "spec.workers" in error.fields, (error, error.fields)
