"""`kubectl datajob`, run by the real kubectl (which finds `kubectl-datajob` on PATH) against the real
control plane."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from datajob_testenv.datajobs import (
    Jobs,
    a_shard_checkpointed,
    committed,
    job_manifest,
    shards_ledger,
    write_inputs,
)
from datajob_testenv.kube import Kubectl
from datajob_testenv.processes import wait_for


def plugin(kubectl: Kubectl, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`kubectl datajob ...` with the plugin (installed next to this Python) on PATH."""
    env = {
        **os.environ,
        "KUBECONFIG": kubectl.kubeconfig,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    result = subprocess.run(
        [kubectl.binary, "datajob", *args], env=env, text=True, capture_output=True, timeout=60, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl datajob {' '.join(args)} failed: {result.stdout}{result.stderr}")
    return result


def test_kubectl_datajob_shows_status_why_and_logs_and_suspends_resumes_and_scales(
    jobs: Jobs, tmp_path: Path, kubectl: Kubectl
) -> None:
    write_inputs(tmp_path / "in", files=4, lines=300)
    manifest = job_manifest(
        "watched",
        tmp_path / "in",
        tmp_path / "out",
        processor={"builtin": "wordcount", "options": {"delayPerRecord": "0.05"}},  # 15 s a shard
        checkpoint={"intervalSeconds": 1, "intervalRecords": 25},
    )
    jobs.create(manifest)
    jobs.wait("watched", a_shard_checkpointed, 60, "a shard checkpointed")
    ns = ["-n", jobs.namespace]

    text = plugin(kubectl, "status", "watched", *ns).stdout
    assert "Phase:      Running" in text and "Shards:" in text and "Workers:    2/2 ready" in text, text
    report = json.loads(plugin(kubectl, "status", "watched", *ns, "-o", "json").stdout)
    assert report["phase"] == "Running" and report["shards"]["total"] == 4
    assert yaml.safe_load(plugin(kubectl, "status", "watched", *ns, "-o", "yaml").stdout)["name"] == "watched"
    # --context picks the kubeconfig context, as kubectl's own flag does.
    context = kubectl("config", "current-context").stdout.strip()
    assert "Running" in plugin(kubectl, "--context", context, "status", "watched", *ns).stdout
    assert "It is running" in plugin(kubectl, "why", "watched", *ns).stdout

    assert "worker started" in plugin(kubectl, "logs", "watched", *ns, "--slot", "0").stdout
    running = shards_ledger(jobs.status("watched")).get("running") or {}
    shard = next(iter(running))
    assert "worker started" in plugin(kubectl, "logs", "watched", *ns, "--shard", str(shard)).stdout
    missing = plugin(kubectl, "status", "nosuchjob", *ns, check=False)
    assert missing.returncode == 1 and 'datajob "nosuchjob" not found' in missing.stderr

    plugin(kubectl, "suspend", "watched", *ns)
    jobs.wait("watched", lambda s: s.get("phase") == "Suspended", 60, "suspended")
    assert "suspended" in plugin(kubectl, "why", "watched", *ns).stdout
    plugin(kubectl, "scale", "watched", *ns, "--workers", "3")
    plugin(kubectl, "resume", "watched", *ns)
    assert jobs.get("watched")["spec"]["workers"] == 3
    status = jobs.wait_phase("watched", "Succeeded", timeout=180)
    assert status["shards"]["failed"] == 0
    assert "It succeeded" in plugin(kubectl, "why", "watched", *ns).stdout


def test_kubectl_datajob_retry_failed_reruns_only_the_failed_shards(
    jobs: Jobs, tmp_path: Path, kubectl: Kubectl
) -> None:
    total = write_inputs(tmp_path / "in", files=3, lines=20)
    bad = sorted((tmp_path / "in").glob("*.txt"))[1]
    good_bytes = bad.read_bytes()
    bad.write_bytes(b"\xff" + good_bytes[1:])  # one malformed record; badRecordPolicy Fail (the default)
    # One worker takes the shards in order: shard 0 commits before shard 1 meets the bad record.
    jobs.create(job_manifest("retry", tmp_path / "in", tmp_path / "out", workers=1))
    failed: dict[str, Any] = jobs.wait_phase("retry", "Failed", timeout=120)
    assert failed["shards"]["failed"] == 1
    why = plugin(kubectl, "why", "retry", "-n", jobs.namespace).stdout
    assert "It failed (ShardsFailed)" in why and "retry" in why, why
    assert "ShardFailed" in plugin(kubectl, "status", "retry", "-n", jobs.namespace).stdout
    first = committed(tmp_path / "out")
    assert 0 in first and 1 not in first, first

    bad.write_bytes(good_bytes)  # the user fixes the input (same size: the plan still fits)
    plugin(kubectl, "retry", "retry", "--failed", "-n", jobs.namespace)
    status = jobs.wait_phase("retry", "Succeeded", timeout=120)
    assert status["shards"]["failed"] == 0
    results = committed(tmp_path / "out")
    assert sum(r["records"] for r in results.values()) == total
    # The shards that had succeeded were not run again.
    assert {s: results[s]["attempt"] for s in first} == {s: r["attempt"] for s, r in first.items()}
    assert any(e.reason == "Retrying" for e in jobs.events("retry", wait_for_reason="Retrying"))
    wait_for(lambda: not jobs.pods("retry"), 60, "workers gone")
