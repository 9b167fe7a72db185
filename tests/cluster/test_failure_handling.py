"""Failures against the real API server: told why, never hung, nothing blamed on the wrong thing."""

from __future__ import annotations

import time
from pathlib import Path

from kubernetes import client

from datajob_testenv.datajobs import (
    Jobs,
    a_shard_checkpointed,
    committed,
    condition,
    job_manifest,
    shards_ledger,
    write_inputs,
)
from datajob_testenv.nodeagent import UNPULLABLE_PREFIX


def test_a_pod_refused_by_quota_blocks_a_slot_visibly_and_the_job_finishes_on_fewer_workers(
    jobs: Jobs, tmp_path: Path
) -> None:
    # Room for exactly one worker: the second pod create is refused by the ResourceQuota admission plugin.
    jobs.core.create_namespaced_resource_quota(
        jobs.namespace, {"metadata": {"name": "one-worker"}, "spec": {"hard": {"pods": "1"}}}
    )
    total = write_inputs(tmp_path / "in", files=4, lines=50)
    jobs.create(job_manifest("quota", tmp_path / "in", tmp_path / "out", workers=2))
    blocked = jobs.wait(
        "quota", lambda s: condition(s, "WorkersBlocked").get("status") == "True", 60, "WorkersBlocked"
    )
    assert condition(blocked, "WorkersBlocked")["reason"] == "PodCreateRejected"
    assert "exceeded quota" in condition(blocked, "WorkersBlocked")["message"]
    events = jobs.events("quota", wait_for_reason="WorkersBlocked")
    assert any("exceeded quota" in e.message for e in events if e.reason == "WorkersBlocked")
    status = jobs.wait_phase("quota", "Succeeded", timeout=120)
    assert status["shards"]["failed"] == 0
    assert status["restarts"] == 0, "a refused create is not a worker failure"
    assert sum(r["records"] for r in committed(tmp_path / "out").values()) == total
    assert not any(e.reason == "WorkerFailed" for e in jobs.events("quota"))


def test_a_worker_that_crashes_at_start_fails_the_job_with_its_own_error_and_charges_no_shard(
    jobs: Jobs, tmp_path: Path
) -> None:
    write_inputs(tmp_path / "in", files=2, lines=5)
    manifest = job_manifest(
        "nomodule",
        tmp_path / "in",
        tmp_path / "out",
        workers=1,
        processor={"function": "no_such_module_here:run"},
        retryPolicy={"maxWorkerRestarts": 1, "backoff": {"initialSeconds": 1, "maxSeconds": 1}},
    )
    jobs.create(manifest)
    status = jobs.wait_phase("nomodule", "Failed", timeout=120)
    failed = condition(status, "Failed")
    assert failed["reason"] == "BackoffLimitExceeded"
    # The worker's last words, from its termination message, reach the condition and the events.
    assert "No module named 'no_such_module_here'" in failed["message"]
    events = jobs.events("nomodule", wait_for_reason="WorkerFailed")
    assert any("no_such_module_here" in e.message and "no shard charged" in e.message for e in events)
    ledger = shards_ledger(status)
    assert all(entry.get("f", 0) == 0 for entry in (ledger.get("retry") or {}).values())
    assert status["shards"]["failed"] == 0


def test_a_worker_that_cannot_pull_its_image_is_reported_then_fails_the_job_at_the_startup_deadline(
    jobs: Jobs, tmp_path: Path
) -> None:
    write_inputs(tmp_path / "in", files=1, lines=5)
    manifest = job_manifest(
        "nopull",
        tmp_path / "in",
        tmp_path / "out",
        workers=1,
        image=f"{UNPULLABLE_PREFIX}datajob-worker:missing",
        startupTimeoutSeconds=8,
    )
    jobs.create(manifest)
    blocked = jobs.wait(
        "nopull", lambda s: condition(s, "WorkersBlocked").get("status") == "True", 30, "WorkersBlocked"
    )
    assert condition(blocked, "WorkersBlocked")["reason"] == "ImagePullBackOff"
    assert "datajob-worker:missing" in condition(blocked, "WorkersBlocked")["message"]
    status = jobs.wait_phase("nopull", "Failed", timeout=60)
    assert condition(status, "Failed")["reason"] == "ImagePullBackOff"
    assert "startupTimeoutSeconds" in condition(status, "Failed")["message"]
    jobs.events("nopull", wait_for_reason="ImagePullBackOff")


def test_an_evicted_worker_is_a_disruption_that_charges_nothing(jobs: Jobs, tmp_path: Path) -> None:
    total = write_inputs(tmp_path / "in", files=2, lines=600)
    manifest = job_manifest(
        "evict",
        tmp_path / "in",
        tmp_path / "out",
        workers=1,
        processor={"builtin": "wordcount", "options": {"delayPerRecord": "0.005"}},
        retryPolicy={"maxShardAttempts": 1, "backoff": {"initialSeconds": 1, "maxSeconds": 2}},
    )
    jobs.create(manifest)

    jobs.wait("evict", a_shard_checkpointed, 60, "a shard checkpointed")
    [pod] = jobs.pods("evict")
    jobs.core.create_namespaced_pod_eviction(
        pod.metadata.name,
        jobs.namespace,
        {"metadata": {"name": pod.metadata.name, "namespace": jobs.namespace}},
    )
    # With maxShardAttempts 1, a single charge would fail the shard and the job.
    status = jobs.wait_phase("evict", "Succeeded", timeout=120)
    assert status["shards"]["failed"] == 0
    assert status["disruptions"] >= 1
    events = jobs.events("evict")
    assert any(e.reason == "WorkerDisrupted" and pod.metadata.name in e.message for e in events)
    assert not any(e.reason == "WorkerFailed" for e in events)
    assert sum(r["records"] for r in committed(tmp_path / "out").values()) == total


def test_a_worker_account_the_job_does_not_own_is_never_reused(jobs: Jobs, tmp_path: Path) -> None:
    # Someone else's account, named like the job's worker account: must not be taken over or widened.
    jobs.core.create_namespaced_service_account(jobs.namespace, {"metadata": {"name": "taken-worker"}})
    rbac = client.RbacAuthorizationV1Api(jobs.core.api_client)
    rbac.create_namespaced_role(
        jobs.namespace,
        {
            "metadata": {"name": "taken-worker"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
        },
    )
    write_inputs(tmp_path / "in", files=1, lines=5)
    jobs.create(job_manifest("taken", tmp_path / "in", tmp_path / "out", workers=1))
    status = jobs.wait(
        "taken", lambda s: condition(s, "WorkersBlocked").get("status") == "True", 60, "WorkersBlocked"
    )
    assert condition(status, "WorkersBlocked")["reason"] == "WorkerAccountConflict"
    assert "taken-worker" in condition(status, "WorkersBlocked")["message"]
    assert not jobs.pods("taken")
    role = rbac.read_namespaced_role("taken-worker", jobs.namespace)
    assert [r.resources for r in role.rules] == [["pods"]], "the other role was overwritten"
    assert not jobs.core.read_namespaced_service_account(
        "taken-worker", jobs.namespace
    ).metadata.owner_references


def test_a_second_job_writing_into_another_jobs_output_fails_naming_the_owner(
    jobs: Jobs, tmp_path: Path
) -> None:
    write_inputs(tmp_path / "in", files=2, lines=5)
    jobs.create(job_manifest("owner", tmp_path / "in", tmp_path / "out", workers=1))
    jobs.wait_phase("owner", "Succeeded", timeout=120)
    before = committed(tmp_path / "out")
    jobs.create(job_manifest("intruder", tmp_path / "in", tmp_path / "out", workers=1))
    status = jobs.wait_phase("intruder", "Failed", timeout=60)
    failed = condition(status, "Failed")
    assert failed["reason"] == "OutputInUse"
    assert f"belongs to job {jobs.namespace}/owner" in failed["message"]
    assert not jobs.pods("intruder")
    assert committed(tmp_path / "out") == before


def test_an_output_inside_the_input_set_fails_the_job_before_it_reads_anything(
    jobs: Jobs, tmp_path: Path
) -> None:
    write_inputs(tmp_path / "data", files=1, lines=5)
    manifest = job_manifest("selfread", tmp_path / "data", tmp_path / "data" / "out", workers=1)
    manifest["spec"]["input"]["uris"] = [f"{tmp_path / 'data'}/**"]
    jobs.create(manifest)
    status = jobs.wait_phase("selfread", "Failed", timeout=60)
    assert condition(status, "Failed")["reason"] == "OutputInsideInput"
    assert not jobs.pods("selfread")


def test_a_regex_that_does_not_compile_fails_the_job_before_any_worker_starts(
    jobs: Jobs, tmp_path: Path
) -> None:
    write_inputs(tmp_path / "in", files=1, lines=5)
    manifest = job_manifest(
        "badregex",
        tmp_path / "in",
        tmp_path / "out",
        processor={"builtin": "grep", "options": {"pattern": "(x"}},
    )
    jobs.create(manifest)  # CEL cannot compile regexes: admission accepts it, the operator does not
    status = jobs.wait_phase("badregex", "Failed", timeout=60)
    failed = condition(status, "Failed")
    assert failed["reason"] == "InvalidSpec"
    assert "spec.processor.options.pattern is not a valid regular expression" in failed["message"]
    assert not jobs.pods("badregex")


def test_a_deleted_worker_is_replaced_while_it_terminates_and_its_shard_resumes_from_its_final_checkpoint(
    jobs: Jobs, tmp_path: Path
) -> None:
    total = write_inputs(tmp_path / "in", files=2, lines=2000)
    manifest = job_manifest(
        "replace",
        tmp_path / "in",
        tmp_path / "out",
        workers=1,
        processor={"builtin": "wordcount", "options": {"delayPerRecord": "0.002"}},
        # No periodic checkpoint within the run: a resumed shard can only have the one taken on SIGTERM.
        checkpoint={"intervalSeconds": 60},
        retryPolicy={"maxShardAttempts": 1},
    )
    jobs.create(manifest)
    jobs.wait("replace", lambda s: s.get("phase") == "Running", 60, "running")
    time.sleep(1.5)  # into its first shard (4 s of reading)
    [pod] = jobs.pods("replace")
    jobs.core.delete_namespaced_pod(pod.metadata.name, jobs.namespace)
    events = jobs.events("replace", wait_for_reason="WorkerDisrupted")
    assert any("replaced while it terminates" in e.message for e in events if e.reason == "WorkerDisrupted")
    status = jobs.wait_phase("replace", "Succeeded", timeout=120)
    assert status["shards"]["failed"] == 0 and status["disruptions"] == 1
    records = committed(tmp_path / "out")
    assert sum(r["records"] for r in records.values()) == total
    # The shard the deleted pod was reading resumed from the checkpoint it wrote on its way out.
    assert any(r.get("resumedFrom") for r in records.values()), records
