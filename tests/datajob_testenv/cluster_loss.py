"""One DataJob dispatched by MultiKueue, and the worker cluster running it lost mid-job: what the
multi-cluster tests assert on and what benchmarks/cluster_loss.py reports ("work re-done after losing a
cluster").

Every record the user's function reads is tallied (one line appended to a file on this machine, where all
clusters' worker processes run), so the work done twice is counted exactly: tallied reads minus input
records. Commit records and attempt logs in the shared object store say which shards the lost cluster had
committed and which ran again.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client

from .datajobs import write_inputs
from .multikueue import QUEUE, MultiKueueClusters
from .nodes import AGENT_NODE
from .objectstore import ObjectStore
from .processes import wait_for

GROUP, VERSION, PLURAL = "datajob.dev", "v1alpha1", "datajobs"
CREDENTIALS = "s3-credentials"

# The user's function: tallies each record it reads, is slow enough to lose a cluster mid-job, and upper-
# cases the record (a deterministic result to compare with local mode's).
TALLY = """
import os, time

def process(record):
    fd = os.open(os.environ["TALLY_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"r\\n")
    finally:
        os.close(fd)
    time.sleep(float(os.environ.get("RECORD_DELAY", "0")))
    return record.upper()
"""


@dataclass
class Submitted:
    name: str
    namespace: str
    bucket: str
    manifest: dict[str, Any]
    records: int
    tally: Path


def submit(
    env: MultiKueueClusters,
    store: ObjectStore,
    work: Path,
    namespace: str,
    name: str,
    *,
    files: int = 6,
    lines: int = 300,
    workers: int = 2,
    record_delay: float = 0.01,
) -> Submitted:
    """Input in a new bucket, the namespace in every cluster, and the DataJob submitted to the manager."""
    env.make_namespace(namespace, {CREDENTIALS: store.credentials})
    bucket = store.bucket(f"{namespace}-{name}"[:63])
    records = write_inputs(work / "in", files=files, lines=lines)
    fs = store.filesystem()
    for path in sorted((work / "in").glob("*.txt")):
        fs.pipe(f"{bucket.removeprefix('s3://')}/in/{path.name}", path.read_bytes())
    code = work / "code"
    code.mkdir(parents=True, exist_ok=True)
    (code / "tally.py").write_text(TALLY)
    tally = work / "tally"
    manifest = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DataJob",
        "metadata": {"name": name, "labels": {"kueue.x-k8s.io/queue-name": QUEUE}},
        "spec": {
            "managedBy": "kueue.x-k8s.io/multikueue",
            "image": "datajob-worker:dev",
            "command": [sys.executable, "-m", "datajob_worker"],
            "workers": workers,
            "resources": {"cpu": "1", "memory": "64Mi"},
            "nodeSelector": {"kubernetes.io/hostname": AGENT_NODE},
            "input": {
                "uris": [f"{bucket}/in/*.txt"],
                "partitioning": {"mode": "size", "targetShardSize": "4Ki"},
            },
            "output": {"uri": f"{bucket}/out", "resume": True},
            "storage": {**store.storage_spec(), "credentialsSecret": CREDENTIALS},
            "processor": {"function": "tally:process"},
            "env": [
                {"name": "PYTHONPATH", "value": str(code)},
                {"name": "TALLY_FILE", "value": str(tally)},
                {"name": "RECORD_DELAY", "value": str(record_delay)},
            ],
            "checkpoint": {"intervalSeconds": 1, "intervalRecords": 20},
            "retryPolicy": {"backoff": {"initialSeconds": 1, "maxSeconds": 5}},
        },
    }
    jobs(env, "manager").create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, manifest)
    return Submitted(name, namespace, bucket, manifest, records, tally)


def jobs(env: MultiKueueClusters, cluster: str) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(env.api(cluster))


def datajob(env: MultiKueueClusters, cluster: str, job: Submitted) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = jobs(env, cluster).get_namespaced_custom_object(
            GROUP, VERSION, job.namespace, PLURAL, job.name
        )
        return found
    except client.ApiException as error:
        if error.status == 404:
            return None
        raise


def status(env: MultiKueueClusters, job: Submitted) -> dict[str, Any]:
    """The manager's DataJob's status (Kueue mirrors the running copy's there)."""
    found = datajob(env, "manager", job)
    assert found is not None, f"{job.name} is gone from the manager"
    return dict(found.get("status") or {})


def placed_on(env: MultiKueueClusters, job: Submitted) -> str | None:
    """The worker cluster MultiKueue dispatched the job to (its manager Workload's status.clusterName)."""
    try:
        workload = jobs(env, "manager").get_namespaced_custom_object(
            "kueue.x-k8s.io", "v1beta2", job.namespace, "workloads", f"datajob-{job.name}"
        )
    except client.ApiException as error:
        if error.status == 404:
            return None
        raise
    return (workload.get("status") or {}).get("clusterName") or None


def wait_phase(env: MultiKueueClusters, job: Submitted, phase: str, timeout: float) -> dict[str, Any]:
    wait_for(lambda: status(env, job).get("phase") == phase, timeout, f"{job.name} {phase} on the manager")
    return status(env, job)


def succeeded_shards(env: MultiKueueClusters, job: Submitted) -> int:
    return int((status(env, job).get("shards") or {}).get("succeeded") or 0)


def output_names(store: ObjectStore, job: Submitted, prefix: str) -> list[str]:
    root = f"{job.bucket.removeprefix('s3://')}/out/{prefix}".rstrip("/")
    fs = store.filesystem()
    try:
        return sorted(str(p).removeprefix(root + "/") for p in fs.find(root))
    except FileNotFoundError:
        return []


def tallied(job: Submitted) -> int:
    return len(job.tally.read_bytes().splitlines()) if job.tally.exists() else 0


@dataclass
class ClusterLoss:
    lost: str
    survivor: str
    records: int  # input records
    committed_before: set[int]  # shards the lost cluster had committed
    committed_records: int  # the records of those shards
    shards: int
    records_read: int  # by both clusters (tallied)
    rerun: set[int]  # committed_before shards an attempt began on after the loss
    redispatch_seconds: float  # from the loss until the job runs in the survivor
    finish_seconds: float  # from the loss until Succeeded
    running_at_loss: int  # shards in flight on the lost cluster (its last mirrored status)
    read_at_loss: int  # records read when it was lost (tallied)
    final: dict[str, Any] = field(default_factory=dict)  # the manager's status

    @property
    def re_read(self) -> int:
        return self.records_read - self.records


def lose_mid_job(
    env: MultiKueueClusters, store: ObjectStore, job: Submitted, *, committed: int = 3, timeout: float = 300
) -> ClusterLoss:
    """Waits until ``committed`` shards are done, loses the cluster running the job, and follows it to
    Succeeded in the other."""
    wait_for(lambda: placed_on(env, job) is not None, 120, f"{job.name} dispatched")
    lost = placed_on(env, job)
    assert lost is not None
    wait_for(lambda: succeeded_shards(env, job) >= committed, 120, f"{committed} shards committed")
    running_at_loss = int((status(env, job).get("shards") or {}).get("running") or 0)
    env.lose(lost)
    lost_at = time.monotonic()
    read_at_loss = tallied(job)
    # Its worker processes are dead now: nothing of it commits any more.
    records_before = output_names(store, job, "_datajob/commits")
    committed_before = {_shard(n) for n in records_before}
    root = f"{job.bucket.removeprefix('s3://')}/out/_datajob/commits"
    committed_records = sum(
        int(json.loads(store.filesystem().cat(f"{root}/{name}")).get("records") or 0)
        for name in records_before
    )
    attempts_before = set(output_names(store, job, "_datajob/attempts"))
    survivor = next(w for w in env.workers if w != lost)
    wait_for(lambda: placed_on(env, job) == survivor, timeout, f"{job.name} re-dispatched to {survivor}")
    wait_for(lambda: datajob(env, survivor, job) is not None, 60, f"{job.name}'s copy in {survivor}")
    redispatched = time.monotonic() - lost_at
    final = wait_phase(env, job, "Succeeded", timeout)
    finished = time.monotonic() - lost_at
    began_after = [n for n in output_names(store, job, "_datajob/attempts") if n not in attempts_before]
    rerun = {int(n.split("-", 1)[0]) for n in began_after} & committed_before
    return ClusterLoss(
        lost=lost,
        survivor=survivor,
        records=job.records,
        committed_before=committed_before,
        committed_records=committed_records,
        shards=int((final.get("shards") or {}).get("total") or 0),
        records_read=tallied(job),
        rerun=rerun,
        redispatch_seconds=redispatched,
        running_at_loss=running_at_loss,
        read_at_loss=read_at_loss,
        finish_seconds=finished,
        final=final,
    )


def _shard(record_name: str) -> int:
    return int(record_name.removeprefix("part-").removesuffix(".json"))
