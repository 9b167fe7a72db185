"""Incremental and continuous DataJobs in the cluster, on MinIO and on a POSIX directory: a re-applied job
processes only objects no earlier run took, kills included, and merges its result with theirs; with nothing
new it succeeds at once. A continuous job ingests files as they arrive, through worker kills and an operator
restart, exactly once, scales to zero when idle and back, and pauses while suspended."""

from __future__ import annotations

import collections
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
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


@dataclass
class Where:
    """A test's input and output: a MinIO bucket, or directories under the session's temporary directory
    (a storage root of the suite's operator)."""

    fs: Any  # fsspec filesystem, paths without the scheme
    input_dir: str
    output_dir: str
    scheme: str  # "s3://" or ""
    storage: dict[str, Any] | None

    @property
    def input_glob(self) -> str:
        return f"{self.scheme}{self.input_dir}/*.txt"

    @property
    def output(self) -> str:
        return f"{self.scheme}{self.output_dir}"

    def put(self, name: str, data: str) -> None:
        if self.scheme:
            self.fs.pipe(f"{self.input_dir}/{name}", data.encode())
            return
        scratch = Path(self.input_dir).parent / f".{name}"
        scratch.write_text(data)
        scratch.rename(Path(self.input_dir) / name)  # arrives whole, as an upload does


@pytest.fixture(params=["s3", "posix"])
def where(request: pytest.FixtureRequest, jobs: Jobs, tmp_path: Path) -> Where:
    if request.param == "posix":
        (tmp_path / "in").mkdir()
        return Where(fsspec.filesystem("file"), str(tmp_path / "in"), str(tmp_path / "out"), "", None)
    store: ObjectStore = request.getfixturevalue("object_store")
    bucket: str = request.getfixturevalue("bucket")
    jobs.core.create_namespaced_secret(
        jobs.namespace, {"metadata": {"name": "s3"}, "type": "Opaque", "stringData": store.credentials}
    )
    prefix = bucket.removeprefix("s3://")
    storage = {**store.storage_spec(), "credentialsSecret": "s3"}
    return Where(store.filesystem(), f"{prefix}/in", f"{prefix}/out", "s3://", storage)


def _result(where: Where) -> dict[str, int]:
    text = where.fs.cat_file(f"{where.output_dir}/result").decode()
    return {word: int(count) for word, count in (line.split("\t") for line in text.splitlines())}


def _plans(where: Where) -> dict[int, list[str]]:
    found = {}
    for path in where.fs.ls(f"{where.output_dir}/{increments.LOG}", detail=False, refresh=True):
        named = increments.entry_number(str(path))
        if named and named[1] == "plan":
            found[named[0]] = [o["path"] for o in json.loads(where.fs.cat_file(path))["objects"]]
    return found


def _manifest(name: str, where: Where, **spec: Any) -> dict[str, Any]:
    manifest: dict[str, Any] = job_manifest(name, Path("/unused"), Path("/unused"), **spec)
    manifest["spec"]["output"] = {"uri": where.output}
    if where.storage:
        manifest["spec"]["storage"] = where.storage
    return manifest


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
    jobs: Jobs, where: Where
) -> None:
    for n in range(4):
        where.put(f"f{n}.txt", _lines(n))
    manifest = _manifest(
        "inc",
        where,
        workers=2,
        input={"uris": [where.input_glob], "incremental": True},
        processor={"builtin": "wordcount", "options": {"delayPerRecord": "0.01"}},
        checkpoint={"intervalSeconds": 1, "intervalRecords": 10},
        retryPolicy={"maxShardAttempts": 10, "backoff": {"initialSeconds": 1, "maxSeconds": 2}},
    )
    jobs.create(manifest)
    jobs.kill_a_worker_mid_shard("inc")
    status = jobs.wait_phase("inc", "Succeeded", timeout=180)
    assert status["output"]["result"] == f"{where.output}/result"
    assert status["batches"]["current"] == 0
    assert _result(where) == _expected(range(4))

    # New objects arrive; the job is applied again (a new UID: the same job, its next run).
    for n in (4, 5):
        where.put(f"f{n}.txt", _lines(n))
    _delete(jobs, "inc")
    jobs.create(manifest)
    status = jobs.wait_phase("inc", "Succeeded", timeout=180)
    assert status["batches"]["current"] == 1
    assert status["output"]["manifest"] == f"{where.output}/{increments.commit_entry(1)}"
    plans = _plans(where)
    assert sorted(Path(p).name for p in plans[1]) == ["f4.txt", "f5.txt"]
    assert _result(where) == _expected(range(6))

    # Nothing new: succeeded at once, no worker started, the result unchanged.
    _delete(jobs, "inc")
    jobs.create(manifest)
    status = jobs.wait_phase("inc", "Succeeded", timeout=60)
    assert "no new input since batch 1" in status["message"]
    assert not jobs.pods("inc")
    assert _result(where) == _expected(range(6))
    assert len(_plans(where)) == 2


def test_a_continuous_job_ingests_arriving_files_exactly_once_through_kills_and_an_operator_restart(
    jobs: Jobs, where: Where, operator: OperatorProcess, kubectl: Kubectl
) -> None:
    manifest = _manifest(
        "stream",
        where,
        mode="Continuous",
        continuous={"pollSeconds": 1, "maxBatchObjects": 6},
        autoscaling={"minWorkers": 0, "maxWorkers": 2, "objectsPerWorker": 3},
        input={"uris": [where.input_glob]},
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
            where.put(f"f{number:03d}.txt", _lines(number))
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
    assert _result(where) == _expected(range(24))
    plans = _plans(where)
    taken = [Path(p).name for plan in plans.values() for p in plan]
    assert sorted(taken) == [f"f{n:03d}.txt" for n in range(24)]  # each file in exactly one batch
    assert all(len(plan) <= 6 for plan in plans.values())
    assert status["output"]["result"] == f"{where.output}/result"
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
    assert _result(where) == _expected(range(27))
