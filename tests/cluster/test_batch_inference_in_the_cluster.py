"""The batch form of user code in the cluster: the inference example (a scikit-learn model, set up once per
worker) with a worker killed mid-shard writes output byte-identical to the same manifest in local mode."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from datajob_testenv.datajobs import Jobs, committed, job_manifest, local_result

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "inference"
PER_FILE = 1500


def test_batch_inference_in_the_cluster_survives_a_worker_kill_identical_to_local_mode(
    jobs: Jobs, tmp_path: Path
) -> None:
    subprocess.run(
        [
            *(sys.executable, str(EXAMPLE / "generate.py"), "--out", str(tmp_path / "in")),
            *("--files", "2", "--records-per-file", str(PER_FILE)),
        ],
        check=True,
        capture_output=True,
    )
    options = {"model": str(tmp_path / "in" / "model.joblib"), "delayPerRecord": "0.002"}
    spec = {
        "input": {"uris": [f"{tmp_path / 'in'}/*.jsonl"], "format": "jsonl"},
        # 128-record batches at 2 ms a record: a quarter of a second a batch, so the kill lands mid-shard.
        "processor": {"function": "scoring:FraudScorer", "batchSize": 128, "options": options},
        "env": [{"name": "PYTHONPATH", "value": str(EXAMPLE)}],
        "checkpoint": {"intervalSeconds": 1, "intervalRecords": 256},
    }
    jobs.create(job_manifest("scores", tmp_path / "in", tmp_path / "out", **spec))
    jobs.kill_a_worker_mid_shard("scores")
    status = jobs.wait_phase("scores", "Succeeded", timeout=240)
    assert status["restarts"] >= 1
    results = committed(tmp_path / "out")
    resumed = [r for r in results.values() if r["attempt"] > 1]
    assert resumed and any(r["resumedFrom"] for r in resumed), results
    assert sum(r["records"] for r in results.values()) == 2 * PER_FILE
    local = local_result(job_manifest("scores", tmp_path / "in", tmp_path / "out", **spec), tmp_path)
    assert (tmp_path / "out" / "result").read_bytes() == local
