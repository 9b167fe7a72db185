"""What a user watching a job sees: percent done, throughput and ETA in `kubectl get`, a Stalled condition
with its likely cause when nothing moves, and an event for every lifecycle step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from datajob_testenv.datajobs import Jobs, condition, job_manifest, write_inputs
from datajob_testenv.kube import Kubectl


def test_kubectl_get_shows_progress_percent_throughput_and_eta_while_a_job_runs(
    jobs: Jobs, tmp_path: Path, kubectl: Kubectl
) -> None:
    write_inputs(tmp_path / "in", files=2, lines=400)
    manifest = job_manifest(
        "eta",
        tmp_path / "in",
        tmp_path / "out",
        processor={"builtin": "wordcount", "options": {"delayPerRecord": "0.02"}},  # 8 s per shard
        checkpoint={"intervalSeconds": 1},
    )
    jobs.create(manifest)

    def has_eta(status: dict[str, Any]) -> bool:
        return bool((status.get("progress") or {}).get("eta")) and status.get("phase") == "Running"

    status = jobs.wait("eta", has_eta, 60, "an ETA while running")
    progress = status["progress"]
    assert 0 < progress["percent"] < 100 and progress["summary"] == f"{progress['percent']}%"
    assert progress["bytesPerSecond"] > 0 and progress["recordsPerSecond"] > 0
    assert progress["totalBytes"] > progress["bytes"] > 0
    lines = kubectl("get", "dj", "eta", "-n", jobs.namespace).stdout.splitlines()
    header, row = lines[0].split(), lines[1].split()
    columns = dict(zip(header, row, strict=False))
    assert columns["PROGRESS"].endswith("%") and columns["ETA"][-1] in "smhd", lines

    done = jobs.wait_phase("eta", "Succeeded", timeout=120)
    assert done["progress"]["percent"] == 100 and "eta" not in done["progress"]
    reasons = {e.reason for e in jobs.events("eta", wait_for_reason="Completed")}
    assert {"WorkerCreated", "Started", "Completed"} <= reasons, reasons


def test_a_job_that_makes_no_progress_is_stalled_with_the_likely_cause_and_can_fail(
    jobs: Jobs, tmp_path: Path
) -> None:
    write_inputs(tmp_path / "in", files=1, lines=5)
    manifest = job_manifest(
        "stall",
        tmp_path / "in",
        tmp_path / "out",
        workers=1,
        nodeSelector={"datajob.dev/no-such-pool": "true"},  # never scheduled
        checkpoint={"intervalSeconds": 1},
        progressDeadlineSeconds=4,
    )
    jobs.create(manifest)
    status = jobs.wait("stall", lambda s: condition(s, "Stalled").get("status") == "True", 60, "Stalled")
    stalled = condition(status, "Stalled")
    assert stalled["reason"] == "WorkersUnschedulable", stalled
    assert "progressDeadlineSeconds" in stalled["message"] and "didn't match" in stalled["message"]
    progressing = condition(status, "Progressing")
    assert progressing["status"] == "False" and progressing["reason"] == "ProgressDeadlineExceeded"
    assert status["phase"] == "Pending"  # Report: the job keeps waiting
    assert any(e.reason == "Stalled" for e in jobs.events("stall", wait_for_reason="Stalled"))

    # progressDeadlineAction: Fail turns the stall into a failure.
    jobs.patch("stall", {"progressDeadlineAction": "Fail"})
    failed = jobs.wait_phase("stall", "Failed", timeout=60)
    assert condition(failed, "Failed")["reason"] == "ProgressDeadlineExceeded"
    assert jobs.pods("stall") == [] or all(p.metadata.deletion_timestamp for p in jobs.pods("stall"))
