"""Names, sizes and limits against the real API server: bounded objects, clear refusals, no silent loops."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kubernetes import client

from datajob_testenv.datajobs import Jobs, committed, condition, job_manifest

ANNOTATION_LIMIT = 256 * 1024
OBJECT_LIMIT = 1024 * 1024


def test_a_job_over_100000_input_files_fits_every_object_limit_and_completes(
    jobs: Jobs, tmp_path: Path
) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for n in range(100_000):
        (inputs / f"event-log-shard-{n:06d}.txt").write_text(f"w{n % 10} common\n")
    # Four shards of 25,000 files each: far too large to send inline in a Lease annotation.
    manifest = job_manifest(
        "many-files",
        inputs,
        tmp_path / "out",
        workers=2,
        input={"uris": [f"{inputs}/*.txt"], "partitioning": {"mode": "count", "shards": 4}},
    )
    jobs.create(manifest)
    status = jobs.wait_phase("many-files", "Succeeded", timeout=300)
    assert status["processed"]["records"] == 100_000
    assert sum(r["records"] for r in committed(tmp_path / "out").values()) == 100_000
    plans = jobs.core.list_namespaced_config_map(
        jobs.namespace, label_selector="datajob.dev/job=many-files"
    ).items
    assert plans, "no plan stored"
    for plan in plans:
        size = len(json.dumps(client.ApiClient().sanitize_for_serialization(plan)))
        assert size < OBJECT_LIMIT, f"{plan.metadata.name} is {size} bytes"
    leases = client.CoordinationV1Api(jobs.core.api_client).list_namespaced_lease(
        jobs.namespace, label_selector="datajob.dev/job=many-files"
    )
    for lease in leases.items:
        annotations = sum(len(k) + len(v) for k, v in (lease.metadata.annotations or {}).items())
        assert annotations < 16 * 1024, f"{lease.metadata.name}: {annotations} bytes of annotations"


@pytest.mark.usefixtures("operator")
def test_a_name_too_long_for_labels_is_rejected_at_admission_naming_the_limit(
    jobs: Jobs, tmp_path: Path
) -> None:
    with pytest.raises(client.ApiException) as rejected:
        jobs.create(job_manifest("n" * 70, tmp_path / "in", tmp_path / "out"))
    assert rejected.value.status == 422
    message = json.loads(rejected.value.body)["message"]
    assert "metadata.name must be at most 63 characters" in message


def test_long_names_with_a_common_prefix_get_distinct_bounded_pod_names(jobs: Jobs, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("x\n")
    names = [
        "customer-events-daily-aggregation-for-the-analytics-team-" + suffix for suffix in ("east", "west")
    ]
    for name in names:
        assert len(name) <= 63
        jobs.create(job_manifest(name, tmp_path / "in", tmp_path / f"out-{name[-4:]}", workers=1))
    for name in names:
        jobs.wait_phase(name, "Succeeded", timeout=120)
        [marker] = committed(tmp_path / f"out-{name[-4:]}").values()
        assert marker["records"] == 1


def test_a_shard_size_the_planner_cannot_use_fails_the_job_with_a_condition(
    jobs: Jobs, tmp_path: Path
) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "big.txt").write_bytes(b"x\n" * 600_000)
    manifest = job_manifest(
        "tiny-shards",
        tmp_path / "in",
        tmp_path / "out",
        input={
            "uris": [f"{tmp_path / 'in'}/*.txt"],
            "partitioning": {"mode": "size", "targetShardSize": "1"},
        },
    )
    jobs.create(manifest)
    status = jobs.wait_phase("tiny-shards", "Failed", timeout=60)
    failed = condition(status, "Failed")
    assert failed["reason"] == "PlanTooLarge"
    assert "would make 1,200,000 shards" in failed["message"]
