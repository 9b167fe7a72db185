"""DataJobs across clusters with Kueue's MultiKueue: a manager cluster dispatches each DataJob to a worker
cluster with capacity and mirrors its status back; when that worker cluster is lost mid-job the job runs
again in the other and continues from the shared object store (spec.output.resume).

The environment (datajob_testenv.multikueue) is three real control planes, three real Kueues and three
operators, started once for this module (~35 s); the tests run in order, the last one loses a cluster.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from kubernetes import client

from datajob_testenv.cluster_loss import (
    Submitted,
    datajob,
    lose_mid_job,
    output_names,
    placed_on,
    status,
    submit,
    wait_phase,
)
from datajob_testenv.datajobs import data_digest
from datajob_testenv.localjobs import run_locally
from datajob_testenv.multikueue import MultiKueueClusters
from datajob_testenv.objectstore import ObjectStore
from datajob_testenv.processes import wait_for

log = structlog.get_logger(__name__)


@pytest.fixture(scope="module")
def clusters(
    tmp_path_factory: pytest.TempPathFactory, object_store: ObjectStore
) -> Iterator[MultiKueueClusters]:
    env = MultiKueueClusters(tmp_path_factory.mktemp("multikueue"), tmp_path_factory.getbasetemp())
    env.start()
    try:
        yield env
    finally:
        env.stop()


def local_digest(job: Submitted, store: ObjectStore, work: Path) -> str:
    """The same DataJob run in local mode: the digest of its parts."""
    local = json.loads(json.dumps(job.manifest))
    local["metadata"].pop("labels")
    local["spec"].pop("managedBy")
    local["spec"]["env"] = [
        {**e, "value": str(work / "local-tally")} if e["name"] == "TALLY_FILE" else e
        for e in local["spec"]["env"]
        if e["name"] != "RECORD_DELAY"
    ]
    return data_digest(run_locally(local, store, work))


def cluster_digest(job: Submitted, store: ObjectStore, work: Path) -> str:
    store.filesystem().get(f"{job.bucket.removeprefix('s3://')}/out/", str(work / "out"), recursive=True)
    return data_digest(work / "out")


def test_a_datajob_sent_to_the_manager_runs_on_the_worker_cluster_with_capacity_and_its_status_is_mirrored(
    clusters: MultiKueueClusters, object_store: ObjectStore, tmp_path: Path
) -> None:
    clusters.set_capacity("worker-1", "0")  # no room: Kueue there never admits it
    try:
        job = submit(clusters, object_store, tmp_path, "mk-capacity", "wordfile")
        wait_for(lambda: placed_on(clusters, job) == "worker-2", 120, "dispatched to worker-2")
        running: dict[str, Any] = {}

        def mirrored_while_running() -> bool:
            copy = datajob(clusters, "worker-2", job)
            manager = status(clusters, job)
            if copy is None or manager.get("phase") != "Running" or not manager.get("shards"):
                return False
            running.update(manager)
            return True

        wait_for(mirrored_while_running, 120, "the running copy's status on the manager")
        assert running["shards"]["total"] >= 10, running["shards"]
        final = wait_phase(clusters, job, "Succeeded", 240)
    finally:
        clusters.set_capacity("worker-1", "8")
    assert final["processed"]["records"] == job.records
    assert final["shards"]["succeeded"] == final["shards"]["total"]
    assert final["output"]["commit"] == "Succeeded"
    assert datajob(clusters, "worker-1", job) is None  # never copied where it could not run
    # Kueue removes the worker copy once its Workload finished; the manager keeps the status.
    wait_for(lambda: datajob(clusters, "worker-2", job) is None, 120, "worker copy removed")
    assert cluster_digest(job, object_store, tmp_path) == local_digest(job, object_store, tmp_path)


def test_a_datajob_whose_worker_cluster_is_lost_mid_job_finishes_in_the_other_from_storage(
    clusters: MultiKueueClusters, object_store: ObjectStore, tmp_path: Path
) -> None:
    job = submit(clusters, object_store, tmp_path, "mk-loss", "wordfile", lines=600)
    loss = lose_mid_job(clusters, object_store, job, committed=3)
    log.info(
        "cluster lost mid-job",
        lost=loss.lost,
        committed_before=len(loss.committed_before),
        shards=loss.shards,
        re_read=loss.re_read,
        records=loss.records,
        redispatch_seconds=round(loss.redispatch_seconds, 1),
        finish_seconds=round(loss.finish_seconds, 1),
    )
    assert len(loss.committed_before) >= 3
    assert loss.rerun == set(), f"committed shards ran again: {sorted(loss.rerun)}"
    assert loss.final["processed"]["records"] == job.records
    # Only what the lost workers read since their shard's last checkpoint (every 20 records) is read again:
    # at most the shard each of the 2 workers was on (one whose commit had not landed is read whole).
    manifest = json.loads(object_store.filesystem().cat(f"{job.bucket.removeprefix('s3://')}/out/_SUCCESS"))
    largest = max(int(shard["records"]) for shard in manifest["shards"])
    assert 0 <= loss.re_read <= 2 * largest, loss
    assert loss.read_at_loss > loss.committed_records, "the cluster was lost between shards, not mid-job"
    assert cluster_digest(job, object_store, tmp_path) == local_digest(job, object_store, tmp_path)
    # The survivor said what it continued from.
    events = client.CoreV1Api(clusters.api(loss.survivor)).list_namespaced_event(job.namespace).items
    resumed = [e for e in events if e.reason == "ResumedFromStorage"]
    assert resumed and "already committed" in resumed[0].message, [e.reason for e in events]
    assert "_datajob/resume-plan.json" in output_names(object_store, job, "")
