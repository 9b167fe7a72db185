"""Speculation through the operator: a worker slowed by its node (here: its own processor) has its shard
backed up on an idle worker; the backup commits first, the original is stopped uncharged, the status and
the events say so, and the output equals local mode's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from datajob_testenv.datajobs import Jobs, job_manifest, write_inputs

SLOWPOKE = """
import os, time

def process(record):
    # Slot 0's first pod reads 20x slower, as on a throttled node.
    time.sleep(0.02 if os.environ.get("DATAJOB_POD", "").endswith("-0-1") else 0.001)
    return record.upper()
"""


def test_a_slow_workers_shard_is_backed_up_and_the_backup_wins_uncharged(jobs: Jobs, tmp_path: Path) -> None:
    write_inputs(tmp_path / "in", files=9, lines=300)
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "slowpoke.py").write_text(SLOWPOKE)
    spec = {
        "input": {"uris": [f"{tmp_path / 'in'}/*.txt"], "partitioning": {"mode": "perFile"}},
        "processor": {"function": "slowpoke:process"},
        "env": [{"name": "PYTHONPATH", "value": str(tmp_path / "code")}],
        "checkpoint": {"intervalSeconds": 1},
        "retryPolicy": {"maxShardAttempts": 1},
        "speculation": {"enabled": True, "quantile": 0.5, "minRuntimeSeconds": 1},
    }
    manifest = job_manifest("speculate", tmp_path / "in", tmp_path / "out", workers=3, **spec)
    jobs.create(manifest)
    status = jobs.wait_phase("speculate", "Succeeded", timeout=180)
    speculation = status["speculation"]
    assert speculation["launched"] >= 1 and speculation["won"] >= 1, speculation
    assert any(item["winner"] == "backup" for item in speculation["shards"]), speculation
    assert status["shards"]["failed"] == 0 and status["restarts"] == 0, status
    reasons = {e.reason for e in jobs.events("speculate")}
    assert {"Speculated", "SpeculationEnded"} <= reasons, reasons
    attempts = {
        s["shard"]: s["attempt"] for s in json.loads((tmp_path / "out" / "_SUCCESS").read_text())["shards"]
    }
    assert any(a > 1 for a in attempts.values()), attempts

    # Local mode with the same spec, without speculation (slot 0 is slow there too), writes the same result.
    local = {**manifest, "spec": {**manifest["spec"], "output": {"uri": str(tmp_path / "local")}}}
    local["spec"].pop("speculation")
    path = tmp_path / "local.yaml"
    path.write_text(json.dumps(local))
    env = {**os.environ, "PYTHONPATH": f"{tmp_path / 'code'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    subprocess.run([sys.executable, "-m", "datajob_worker.cli", "run", str(path)], check=True, env=env)
    assert (tmp_path / "out" / "result").read_bytes() == (tmp_path / "local" / "result").read_bytes()
