"""DataJobs reading and writing a real S3 server (MinIO) in the cluster: credentials from a Secret, worker
kills, the job commit in a worker pod, and output byte-identical to local mode."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from datajob_testenv.datajobs import (
    JOB_FILES_KEPT,
    Jobs,
    a_shard_checkpointed,
    condition,
    data_digest,
    job_manifest,
    published,
    shards_ledger,
    write_inputs,
)
from datajob_testenv.localjobs import markers, run_locally
from datajob_testenv.nodeagent import SIGNAL_ANNOTATION
from datajob_testenv.objectstore import ObjectStore
from datajob_testenv.operator_process import OperatorProcess


def upload(store: ObjectStore, source: Path, url: str) -> None:
    fs = store.filesystem()
    for path in sorted(source.glob("*.txt")):
        fs.pipe(f"{url.removeprefix('s3://')}/{path.name}", path.read_bytes())


def download(store: ObjectStore, url: str, target: Path) -> list[str]:
    """Copies everything under ``url`` to ``target``; returns the object names, relative and sorted."""
    store.filesystem().get(f"{url.removeprefix('s3://')}/", str(target), recursive=True)
    return sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())


def credentials_secret(jobs: Jobs, name: str, store: ObjectStore) -> None:
    jobs.core.create_namespaced_secret(
        jobs.namespace, {"metadata": {"name": name}, "type": "Opaque", "stringData": store.credentials}
    )


def s3_job(name: str, bucket: str, store: ObjectStore, **spec: object) -> dict[str, Any]:
    manifest = job_manifest(name, Path("/unused"), Path("/unused"), **spec)
    body = manifest["spec"]
    body["input"] = {
        "uris": [f"{bucket}/in/*.txt"],
        "partitioning": {"mode": "size", "targetShardSize": "4Ki"},
    }
    body["output"] = {"uri": f"{bucket}/out"}
    body["storage"] = {**store.storage_spec(), "credentialsSecret": "s3-credentials"}
    return manifest


def kill(jobs: Jobs, pod: str) -> None:
    """SIGKILL the pod's worker process (the node agent acts on the annotation)."""
    jobs.core.patch_namespaced_pod(
        pod, jobs.namespace, {"metadata": {"annotations": {SIGNAL_ANNOTATION: "KILL"}}}
    )


def kill_a_running_worker(jobs: Jobs, name: str) -> None:
    victim = next(
        p for p in jobs.pods(name) if p.status.phase == "Running" and not p.metadata.deletion_timestamp
    )
    kill(jobs, victim.metadata.name)


def restarted(times: int) -> Callable[[dict[str, Any]], bool]:
    return lambda status: int(status.get("restarts", 0)) >= times


def test_a_job_on_s3_survives_worker_kills_and_publishes_result_and_manifest_identical_to_local_mode(
    jobs: Jobs, tmp_path: Path, object_store: ObjectStore, bucket: str
) -> None:
    total_lines = write_inputs(tmp_path / "in", files=6, lines=300)
    upload(object_store, tmp_path / "in", f"{bucket}/in")
    credentials_secret(jobs, "s3-credentials", object_store)
    manifest = s3_job(
        "s3-wordcount",
        bucket,
        object_store,
        workers=3,
        processor={"builtin": "wordcount", "options": {"delayPerRecord": "0.02"}},
        checkpoint={"intervalSeconds": 1, "intervalRecords": 20},
        retryPolicy={"maxShardAttempts": 10, "backoff": {"initialSeconds": 1, "maxSeconds": 2}},
    )
    jobs.create(manifest)
    for kills in (1, 2):
        jobs.wait("s3-wordcount", a_shard_checkpointed, 90, "a shard checkpointed")
        kill_a_running_worker(jobs, "s3-wordcount")
        jobs.wait("s3-wordcount", restarted(kills), 60, f"{kills} restart(s)")
    status = jobs.wait_phase("s3-wordcount", "Succeeded", timeout=240)
    assert status["restarts"] >= 2
    assert status["processed"]["records"] == total_lines
    assert status["output"] == {
        "uri": f"{bucket}/out",
        "commit": "Succeeded",
        "result": f"{bucket}/out/result",
        "manifest": f"{bucket}/out/_SUCCESS",
    }

    names = download(object_store, f"{bucket}/out", tmp_path / "out")
    parts = [n for n in names if n.startswith("part-")]
    # Only what the job publishes: no attempt objects, commit records, checkpoints or scratch left behind.
    assert parts and published(names) == sorted([*parts, "result", "_SUCCESS", *JOB_FILES_KEPT])
    records = markers(tmp_path / "out")
    assert [r["shard"] for r in records] == list(range(len(parts)))
    assert any(r["attempt"] > 1 for r in records), "no kill landed mid-shard"
    assert sum(r["records"] for r in records) == total_lines

    run_locally(manifest, object_store, tmp_path)
    assert data_digest(tmp_path / "out") == data_digest(tmp_path / "local-out")
    assert (tmp_path / "out" / "result").read_bytes() == (tmp_path / "local-out" / "result").read_bytes()

    # The credentials never reach the status or the events.
    secret = object_store.secret_key
    assert secret not in json.dumps(jobs.get("s3-wordcount"))
    events = jobs.core.list_namespaced_event(jobs.namespace).items
    assert not [e for e in events if secret in (e.message or "")]


def test_a_job_waits_for_its_credentials_secret_and_says_so(
    jobs: Jobs, tmp_path: Path, object_store: ObjectStore, bucket: str
) -> None:
    write_inputs(tmp_path / "in", files=2, lines=20)
    upload(object_store, tmp_path / "in", f"{bucket}/in")
    jobs.create(s3_job("no-secret", bucket, object_store))

    def blocked(status: dict[str, object]) -> bool:
        found = condition(status, "ReconcileFailing")
        return bool(found and found["status"] == "True" and "credentialsSecret" in found.get("message", ""))

    status = jobs.wait("no-secret", blocked, 60, "ReconcileFailing naming the missing Secret")
    assert "s3-credentials does not exist" in condition(status, "ReconcileFailing")["message"]
    assert not jobs.pods("no-secret")
    credentials_secret(jobs, "s3-credentials", object_store)
    jobs.wait_phase("no-secret", "Succeeded", timeout=120)


def commit_holder(status: dict[str, Any]) -> str | None:
    """The worker running the job commit (the ledger's last task), or None."""
    shards = shards_ledger(status)
    entry = (shards.get("running") or {}).get(str(shards.get("total", 0) - 1))
    return str(entry["w"]) if isinstance(entry, dict) else None


def test_a_job_commit_interrupted_by_a_worker_kill_and_an_operator_restart_resumes_to_the_same_output(
    jobs: Jobs, operator: OperatorProcess, tmp_path: Path, object_store: ObjectStore, bucket: str
) -> None:
    total_lines = write_inputs(tmp_path / "in", files=4, lines=100)
    upload(object_store, tmp_path / "in", f"{bucket}/in")
    credentials_secret(jobs, "s3-credentials", object_store)
    # The commit publishes ~25 shards at 0.3 s each: long enough to be interrupted twice.
    options = {"delayPerCommittedShard": "0.3"}
    jobs.create(
        s3_job(
            "slow-commit",
            bucket,
            object_store,
            workers=2,
            processor={"builtin": "wordcount", "options": options},
        )
    )
    status = jobs.wait("slow-commit", lambda s: commit_holder(s) is not None, 120, "the job commit running")
    assert status["output"]["commit"] == "Running"
    first = commit_holder(status)
    assert first is not None
    kill(jobs, first)
    status = jobs.wait(
        "slow-commit", lambda s: commit_holder(s) not in (None, first), 90, "the job commit reassigned"
    )
    operator.kill()
    time.sleep(2)
    operator.start()
    status = jobs.wait_phase("slow-commit", "Succeeded", timeout=180)
    assert status["output"]["commit"] == "Succeeded"
    assert status["processed"]["records"] == total_lines

    names = download(object_store, f"{bucket}/out", tmp_path / "out")
    parts = [n for n in names if n.startswith("part-")]
    assert parts and published(names) == sorted([*parts, "result", "_SUCCESS", *JOB_FILES_KEPT])
    # The same job, never interrupted, in local mode (POSIX output): identical parts and result.
    run_locally(s3_job("slow-commit", bucket, object_store), object_store, tmp_path)
    assert data_digest(tmp_path / "out") == data_digest(tmp_path / "local-out")
    assert (tmp_path / "out" / "result").read_bytes() == (tmp_path / "local-out" / "result").read_bytes()


def test_a_reduce_job_on_s3_with_worker_kills_equals_the_same_job_in_local_mode(
    jobs: Jobs, tmp_path: Path, object_store: ObjectStore, bucket: str
) -> None:
    total_lines = write_inputs(tmp_path / "in", files=6, lines=300)
    upload(object_store, tmp_path / "in", f"{bucket}/in")
    credentials_secret(jobs, "s3-credentials", object_store)
    manifest = s3_job(
        "s3-reduce",
        bucket,
        object_store,
        workers=3,
        reduce={"partitions": 4},
        processor={"builtin": "wordcount", "options": {"delayPerRecord": "0.02"}},
        checkpoint={"intervalSeconds": 1, "intervalRecords": 20},
        retryPolicy={"maxShardAttempts": 10, "backoff": {"initialSeconds": 1, "maxSeconds": 2}},
    )
    jobs.create(manifest)
    jobs.wait("s3-reduce", a_shard_checkpointed, 90, "a shard checkpointed")
    kill_a_running_worker(jobs, "s3-reduce")
    status = jobs.wait_phase("s3-reduce", "Succeeded", timeout=240)
    assert status["restarts"] >= 1
    assert status["reduce"]["summary"] == "4/4"
    assert status["processed"]["records"] == total_lines

    names = download(object_store, f"{bucket}/out", tmp_path / "out")
    reduced = [f"part-r-{p:05d}" for p in range(4)]
    assert published(names) == sorted([*reduced, "result", "_SUCCESS", *JOB_FILES_KEPT])

    run_locally(manifest, object_store, tmp_path)
    for name in [*reduced, "result"]:
        assert (tmp_path / "out" / name).read_bytes() == (tmp_path / "local-out" / name).read_bytes(), name
