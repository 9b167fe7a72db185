"""Incremental and continuous DataJobs in the cluster on MinIO: a re-applied job processes only objects no
earlier run took, kills included, and merges its result with theirs; with nothing new it succeeds at once.
A continuous job ingests files as they arrive, through worker kills and an operator restart, exactly once,
scales to zero when idle and back, and pauses while suspended."""

from __future__ import annotations

import collections
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from datajob_core.data import increments
from datajob_testenv.datajobs import Jobs, job_manifest
from datajob_testenv.kube import Kubectl
from datajob_testenv.objectstore import ObjectStore
from datajob_testenv.operator_process import OperatorProcess
from datajob_testenv.processes import wait_for

pytestmark = pytest.mark.cluster


def _lines(number: int) -> str:
    return "".join(f"w{number % 5} shared n{number}\n" for _ in range(40))


def _expected(numbers: range) -> dict[str, int]:
    counts: collections.Counter[str] = collections.Counter()
    for n in numbers:
        counts.update(_lines(n).split())
    return dict(counts)


def _result(store: ObjectStore, bucket: str) -> dict[str, int]:
    text = store.filesystem().cat_file(f"{bucket.removeprefix('s3://')}/out/result").decode()
    return {word: int(count) for word, count in (line.split("\t") for line in text.splitlines())}


def _plans(store: ObjectStore, bucket: str) -> dict[int, list[str]]:
    fs, root = store.filesystem(), f"{bucket.removeprefix('s3://')}/out/{increments.LOG}"
    found = {}
    for path in fs.ls(root, detail=False, refresh=True):
        named = increments.entry_number(str(path))
        if named and named[1] == "plan":
            found[named[0]] = [o["path"] for o in json.loads(fs.cat_file(path))["objects"]]
    return found


def _delete(jobs: Jobs, name: str) -> None:
    # Foreground: gone once its pods, Leases and plan are (kubectl delete --cascade=foreground).
    jobs.custom.delete_namespaced_custom_object(
        "datajob.dev", "v1alpha1", jobs.namespace, "datajobs", name, propagation_policy="Foreground"
    )
    deadline = time.monotonic() + 90
    while jobs.exists(name) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not jobs.exists(name)


def test_a_reapplied_incremental_job_processes_only_new_objects_and_merges_the_result(
    jobs: Jobs, object_store: ObjectStore, bucket: str, tmp_path: Path
) -> None:
    fs = object_store.filesystem()
    for n in range(4):
        fs.pipe(f"{bucket.removeprefix('s3://')}/in/f{n}.txt", _lines(n).encode())
    jobs.core.create_namespaced_secret(
        jobs.namespace, {"metadata": {"name": "s3"}, "type": "Opaque", "stringData": object_store.credentials}
    )
    manifest: dict[str, Any] = job_manifest(
        "inc",
        Path("/unused"),
        Path("/unused"),
        workers=2,
        processor={"builtin": "wordcount", "options": {"delayPerRecord": "0.01"}},
        checkpoint={"intervalSeconds": 1, "intervalRecords": 10},
        retryPolicy={"maxShardAttempts": 10, "backoff": {"initialSeconds": 1, "maxSeconds": 2}},
    )
    manifest["spec"].update(
        input={"uris": [f"{bucket}/in/*.txt"], "incremental": True},
        output={"uri": f"{bucket}/out"},
        storage={**object_store.storage_spec(), "credentialsSecret": "s3"},
    )
    jobs.create(manifest)
    jobs.kill_a_worker_mid_shard("inc")
    status = jobs.wait_phase("inc", "Succeeded", timeout=180)
    assert status["output"]["result"] == f"{bucket}/out/result"
    assert status["batches"]["current"] == 0
    assert _result(object_store, bucket) == _expected(range(4))

    # New objects arrive; the job is applied again (a new UID: the same computation, its next run).
    for n in (4, 5):
        fs.pipe(f"{bucket.removeprefix('s3://')}/in/f{n}.txt", _lines(n).encode())
    _delete(jobs, "inc")
    jobs.create(manifest)
    status = jobs.wait_phase("inc", "Succeeded", timeout=180)
    assert status["batches"]["current"] == 1
    assert status["output"]["manifest"] == f"{bucket}/out/{increments.commit_entry(1)}"
    plans = _plans(object_store, bucket)
    assert sorted(Path(p).name for p in plans[1]) == ["f4.txt", "f5.txt"]
    assert _result(object_store, bucket) == _expected(range(6))

    # Nothing new: succeeded at once, no worker started, the result unchanged.
    _delete(jobs, "inc")
    jobs.create(manifest)
    status = jobs.wait_phase("inc", "Succeeded", timeout=60)
    assert "no new input since batch 1" in status["message"]
    assert not jobs.pods("inc")
    assert _result(object_store, bucket) == _expected(range(6))
    assert len(_plans(object_store, bucket)) == 2


def _s3_manifest(name: str, object_store: ObjectStore, bucket: str, **spec: Any) -> dict[str, Any]:
    manifest: dict[str, Any] = job_manifest(name, Path("/unused"), Path("/unused"), **spec)
    manifest["spec"].update(
        output={"uri": f"{bucket}/out"},
        storage={**object_store.storage_spec(), "credentialsSecret": "s3"},
    )
    return manifest


def test_a_continuous_job_ingests_arriving_files_exactly_once_through_kills_and_an_operator_restart(
    jobs: Jobs, object_store: ObjectStore, bucket: str, operator: OperatorProcess, kubectl: Kubectl
) -> None:
    fs, prefix = object_store.filesystem(), bucket.removeprefix("s3://")
    jobs.core.create_namespaced_secret(
        jobs.namespace, {"metadata": {"name": "s3"}, "type": "Opaque", "stringData": object_store.credentials}
    )
    manifest = _s3_manifest(
        "stream",
        object_store,
        bucket,
        mode="Continuous",
        continuous={"pollSeconds": 1, "maxBatchObjects": 6},
        autoscaling={"minWorkers": 0, "maxWorkers": 2, "objectsPerWorker": 3},
        input={"uris": [f"{bucket}/in/*.txt"]},
        processor={"builtin": "wordcount", "options": {"delayPerRecord": "0.005"}},
        checkpoint={"intervalSeconds": 1, "intervalRecords": 10},
        retryPolicy={"maxShardAttempts": 10, "backoff": {"initialSeconds": 1, "maxSeconds": 2}},
    )
    jobs.create(manifest)
    # No input yet: waiting, and no worker (scaled to zero from the start).
    status = jobs.wait("stream", lambda s: s.get("message") == "waiting for new input", 60, "waiting")
    assert status["phase"] == "Pending" and not jobs.pods("stream")

    written: list[int] = []

    def arrive(first: int, count: int) -> None:
        for number in range(first, first + count):
            fs.pipe(f"{prefix}/in/f{number:03d}.txt", _lines(number).encode())
            written.append(number)
            time.sleep(0.4)

    feeder = threading.Thread(target=arrive, args=(0, 24))
    feeder.start()
    try:
        jobs.kill_a_worker_mid_shard("stream")
        jobs.wait(
            "stream", lambda s: (s.get("batches") or {}).get("committed", 0) >= 1, 120, "a batch committed"
        )
        operator.kill()
        time.sleep(2)
        operator.start()
    finally:
        feeder.join()

    def caught_up(status: dict[str, Any]) -> bool:
        batches = status.get("batches") or {}
        return batches.get("pendingObjects") == 0 and batches.get("committed", 0) >= 2

    status = jobs.wait("stream", caught_up, 240, "every file in a committed batch")
    assert status["phase"] in ("Running", "Pending")  # a continuous job never finishes by itself
    assert _result(object_store, bucket) == _expected(range(24))
    plans = _plans(object_store, bucket)
    taken = [Path(p).name for plan in plans.values() for p in plan]
    assert sorted(taken) == [f"f{n:03d}.txt" for n in range(24)]  # each file in exactly one batch
    assert all(len(plan) <= 6 for plan in plans.values())
    assert status["output"]["result"] == f"{bucket}/out/result"
    table = kubectl("get", "datajob", "stream", "-n", jobs.namespace).stdout
    assert "LAG" in table.splitlines()[0]

    # Idle: scaled to zero.
    wait_for(lambda: not jobs.pods("stream"), 90, "workers scaled to zero while idle")

    # Suspended: new files wait (the backlog shows them); resumed: they are processed, workers come back.
    jobs.patch("stream", {"suspend": True})
    jobs.wait("stream", lambda s: s.get("phase") == "Suspended", 60, "suspended")
    arrive(24, 3)
    status = jobs.wait(
        "stream",
        lambda s: (s.get("batches") or {}).get("pendingObjects") == 3,
        60,
        "the backlog while suspended",
    )
    committed = status["batches"]["committed"]
    time.sleep(3)
    assert jobs.status("stream")["batches"]["committed"] == committed
    jobs.patch("stream", {"suspend": False})
    jobs.wait("stream", lambda s: (s.get("batches") or {}).get("committed", 0) > committed, 120, "resumed")
    jobs.wait("stream", caught_up, 120, "caught up again")
    assert _result(object_store, bucket) == _expected(range(27))
