"""spec.output.resume on one cluster: a DataJob deleted mid-run and applied again continues from what its
output holds (the ledger rebuilt from commit records and checkpoints), a changed input is refused, and
spec.managedBy hands a DataJob to another controller."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from datajob_testenv.datajobs import (
    Jobs,
    a_shard_checkpointed,
    condition,
    job_manifest,
    local_result,
    write_inputs,
)
from datajob_testenv.processes import wait_for

GROUP, VERSION, PLURAL = "datajob.dev", "v1alpha1", "datajobs"


def resumable(name: str, work: Path, **spec: Any) -> dict[str, Any]:
    manifest = job_manifest(
        name,
        work / "in",
        work / "out",
        input={"uris": [f"{work / 'in'}/*.txt"], "partitioning": {"mode": "size", "targetShardSize": "4Ki"}},
        processor={"builtin": "wordcount", "options": {"delayPerRecord": "0.01"}},
        checkpoint={"intervalSeconds": 1, "intervalRecords": 20},
        **spec,
    )
    manifest["spec"]["output"]["resume"] = True
    return manifest


def delete_and_wait(jobs: Jobs, name: str) -> None:
    """Deletes the DataJob and waits until it and its worker pods are gone (foreground deletion)."""
    jobs.custom.delete_namespaced_custom_object(
        GROUP, VERSION, jobs.namespace, PLURAL, name, body={"propagationPolicy": "Foreground"}
    )
    wait_for(lambda: not jobs.exists(name) and not jobs.pods(name), 120, f"{name} and its pods gone")


def commit_records(output: Path) -> set[int]:
    return {int(p.stem.removeprefix("part-")) for p in (output / "_datajob" / "commits").glob("part-*.json")}


def attempt_logs(output: Path) -> set[str]:
    return {p.name for p in (output / "_datajob" / "attempts").glob("*.json")}


def test_a_datajob_deleted_mid_run_and_applied_again_continues_from_its_output(
    jobs: Jobs, tmp_path: Path
) -> None:
    total = write_inputs(tmp_path / "in", files=6, lines=300)
    manifest = resumable("resumable", tmp_path, workers=2)
    jobs.create(manifest)
    jobs.wait("resumable", lambda s: (s.get("shards") or {}).get("succeeded", 0) >= 3, 120, "3 shards done")
    jobs.wait("resumable", a_shard_checkpointed, 60, "a shard checkpointed")
    delete_and_wait(jobs, "resumable")
    done_before = commit_records(tmp_path / "out")
    attempts_before = attempt_logs(tmp_path / "out")
    assert len(done_before) >= 3

    jobs.create(manifest)
    status = jobs.wait_phase("resumable", "Succeeded", timeout=240)
    assert status["processed"]["records"] == total  # the earlier run's shards are counted too
    resumed = [e for e in jobs.events("resumable", wait_for_reason="ResumedFromStorage")]
    message = next(e.message for e in resumed if e.reason == "ResumedFromStorage")
    assert f"{len(done_before)} of" in message, message
    began_after = attempt_logs(tmp_path / "out") - attempts_before
    rerun = {int(name.split("-", 1)[0]) for name in began_after} & done_before
    assert rerun == set(), f"committed shards ran again: {sorted(rerun)}"
    assert (tmp_path / "out" / "result").read_bytes() == local_result(manifest, tmp_path)


def test_a_datajob_applied_again_over_a_changed_input_is_refused_with_resume_mismatch(
    jobs: Jobs, tmp_path: Path
) -> None:
    write_inputs(tmp_path / "in", files=2, lines=100)
    manifest = resumable("changed", tmp_path, workers=1)
    manifest["spec"]["processor"]["options"] = {}
    jobs.create(manifest)
    jobs.wait_phase("changed", "Succeeded", timeout=120)
    delete_and_wait(jobs, "changed")
    (tmp_path / "in" / "late.txt").write_text("a file that came after the first run\n" * 200)

    jobs.create(manifest)
    status = jobs.wait_phase("changed", "Failed", timeout=60)
    failed = condition(status, "Failed")
    assert failed["reason"] == "ResumeMismatch", failed
    assert "the input plans differently" in failed["message"], failed
    assert not jobs.pods("changed")


def test_a_datajob_managed_by_another_controller_gets_no_pods_and_no_status(
    jobs: Jobs, tmp_path: Path
) -> None:
    write_inputs(tmp_path / "in", files=1, lines=10)
    theirs = job_manifest("theirs", tmp_path / "in", tmp_path / "out-theirs", managedBy="example.com/other")
    mine = job_manifest("mine", tmp_path / "in", tmp_path / "out-mine")
    jobs.create(theirs)
    jobs.create(mine)
    jobs.wait_phase("mine", "Succeeded", timeout=120)  # the operator is at work in this namespace
    time.sleep(2)
    left_alone = jobs.get("theirs")
    assert "status" not in left_alone or not left_alone["status"], json.dumps(left_alone.get("status"))
    assert not jobs.pods("theirs")
    assert not (tmp_path / "out-theirs").exists()
