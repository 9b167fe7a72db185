"""DataJobs end to end: the real operator process, real worker processes run by the node agent."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml

from datajob_testenv.datajobs import (
    GROUP,
    PLURAL,
    VERSION,
    Jobs,
    a_shard_checkpointed,
    committed,
    data_digest,
    job_manifest,
    shards_ledger,
    write_inputs,
)
from datajob_testenv.kube import request_counts
from datajob_testenv.nodeagent import SIGNAL_ANNOTATION
from datajob_testenv.processes import wait_for
from datajob_worker.cli import main as datajob


def test_more_shards_than_workers_completes_with_every_shard_committed_once(
    jobs: Jobs, tmp_path: Path
) -> None:
    total_lines = write_inputs(tmp_path / "in", files=12, lines=40)
    jobs.create(job_manifest("many", tmp_path / "in", tmp_path / "out", workers=3, ttlSecondsAfterFinished=5))
    status = jobs.wait_phase("many", "Succeeded", timeout=180)
    assert status["shards"]["total"] == 12
    assert status["shards"]["succeeded"] == 12
    assert status["shards"]["summary"] == "12/12"
    assert status["completionTime"]
    assert status["processed"]["records"] == total_lines
    results = committed(tmp_path / "out")
    assert sorted(results) == list(range(12))
    assert sum(r["records"] for r in results.values()) == total_lines
    assert not list((tmp_path / "out" / "_temporary").glob("*")), "attempt scratch files left behind"
    # The same manifest in local mode commits byte-identical output.
    local = job_manifest("many", tmp_path / "in", tmp_path / "local-out", workers=2)
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(local))
    assert datajob(["run", str(tmp_path / "job.yaml")]) == 0
    assert data_digest(tmp_path / "local-out") == data_digest(tmp_path / "out")
    # Finished jobs do not keep workers around, and go away after ttlSecondsAfterFinished.
    wait_for(lambda: not jobs.pods("many"), 60, "worker pods cleaned up")
    wait_for(lambda: not jobs.exists("many"), 60, "job deleted after its TTL")


def test_killed_worker_is_replaced_and_resumes_from_checkpoint(jobs: Jobs, tmp_path: Path) -> None:
    total_lines = write_inputs(tmp_path / "in", files=2, lines=400)
    manifest = job_manifest(
        "resume",
        tmp_path / "in",
        tmp_path / "out",
        workers=2,
        processor={"builtin": "wordcount", "options": {"delayPerRecord": "0.01"}},
        checkpoint={"intervalSeconds": 1, "intervalRecords": 25},
    )
    jobs.create(manifest)

    jobs.wait(manifest["metadata"]["name"], a_shard_checkpointed, 60, "a shard checkpointed")
    # The victim is a worker whose shard has checkpointed (the other may not have yet: dispatch is fast).
    running = shards_ledger(jobs.get("resume")["status"]).get("running") or {}
    checkpointed = {e["w"] for e in running.values() if (e.get("c") or {}).get("records")}
    victim = next(p for p in jobs.pods("resume") if p.metadata.name in checkpointed)
    killed_at = time.monotonic()
    jobs.core.patch_namespaced_pod(
        victim.metadata.name, jobs.namespace, {"metadata": {"annotations": {SIGNAL_ANNOTATION: "KILL"}}}
    )
    slot = victim.metadata.labels["datajob.dev/slot"]

    def replaced() -> bool:
        return any(
            p.metadata.labels["datajob.dev/slot"] == slot
            and p.metadata.name != victim.metadata.name
            and p.status.phase == "Running"
            for p in jobs.pods("resume")
        )

    wait_for(replaced, 60, "replacement pod running")
    replacement_seconds = time.monotonic() - killed_at
    status = jobs.wait_phase("resume", "Succeeded", timeout=180)
    assert status["restarts"] >= 1
    results = committed(tmp_path / "out")
    assert sum(r["records"] for r in results.values()) == total_lines
    resumed = [r for r in results.values() if r["attempt"] > 1]
    assert resumed, f"no shard needed a second attempt: {results}"
    assert all((r["resumedFrom"] or {}).get("records", 0) > 0 for r in resumed), resumed
    events = jobs.events("resume", wait_for_reason="Completed")
    failures = [e.message for e in events if e.reason == "WorkerFailed"]
    assert any(victim.metadata.name in m and "killed by SIGKILL (exit code 137)" in m for m in failures), (
        failures
    )
    assert not any('{"' in m for m in failures), f"raw log lines in a failure reason: {failures}"
    print(f"replacement pod running {replacement_seconds:.1f}s after the kill")


def test_a_job_at_rest_does_not_rewrite_its_status(jobs: Jobs, tmp_path: Path) -> None:
    """Event-driven: workers that only heartbeat (no new report) wake no pass, and a pass that would
    change nothing writes nothing; the DataJob object stays as it is."""
    write_inputs(tmp_path / "in", files=2, lines=400)
    slow = {"builtin": "wordcount", "options": {"delayPerRecord": "0.1"}}  # 40 s per shard
    jobs.create(
        job_manifest(
            "rest", tmp_path / "in", tmp_path / "out", processor=slow, checkpoint={"intervalSeconds": 30}
        )
    )

    def both_working(status: dict[str, Any]) -> bool:
        return (status.get("shards") or {}).get("running") == 2 and status["workers"]["ready"] == 2

    jobs.wait("rest", both_working, 60, "both workers processing a shard")

    def settled() -> bool:
        # The counters are the API server's, for all jobs: earlier tests' jobs must be gone (their
        # namespaces are deleted in the background), and this job's first reports folded.
        others = jobs.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)["items"]
        if [j["metadata"]["name"] for j in others] != ["rest"]:
            return False
        version = jobs.get("rest")["metadata"]["resourceVersion"]
        time.sleep(3)
        return bool(jobs.get("rest")["metadata"]["resourceVersion"] == version)

    wait_for(settled, 120, "the other jobs to go and this job's status to settle")
    before = jobs.get("rest")["metadata"]["resourceVersion"]
    requests = request_counts(jobs.core.api_client)
    time.sleep(12)  # two heartbeats of each worker; the polling operator made a pass a second
    after = request_counts(jobs.core.api_client)
    changed = {k: after[k] - requests[k] for k in after if after[k] != requests[k]}
    assert jobs.get("rest")["metadata"]["resourceVersion"] == before, changed
    # This is the only DataJob now, so these counters are its operator's: no status write, and at most a
    # pass or two (its resync is 30 s away), where polling made a GET and two LISTs a second. (LISTs are
    # not checked: other components' relists, e.g. the node agent's every 5 minutes, count there too.)
    assert after[("PUT", "datajobs/status")] == requests[("PUT", "datajobs/status")], changed
    assert after[("GET", "datajobs")] - requests[("GET", "datajobs")] <= 2, changed
