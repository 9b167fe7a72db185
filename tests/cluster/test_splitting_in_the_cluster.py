"""Splitting through the operator: one input file 20x the others straggles at the end of the job; its
worker is asked (through its Lease) to stop, its rest becomes new shards for the idle workers, the status
and the events say so, a worker killed meanwhile loses nothing, and the result equals local mode's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from datajob_testenv.datajobs import Jobs, job_manifest

SLOWPOKE = """
import os, time

def process(record):
    if os.environ.get("SLOW"):
        time.sleep(0.002)
    return record.upper()
"""


def test_a_large_shards_rest_is_split_among_idle_workers_and_the_result_equals_local_modes(
    jobs: Jobs, tmp_path: Path
) -> None:
    data = tmp_path / "in"
    data.mkdir()
    (data / "big.txt").write_text("".join(f"big line {i} {'x' * (i % 23)}\n" for i in range(12000)))
    for f in range(6):
        (data / f"small{f}.txt").write_text("".join(f"small {f} line {i}\n" for i in range(300)))
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "slowpoke.py").write_text(SLOWPOKE)
    spec = {
        "input": {"uris": [f"{data}/*.txt"], "partitioning": {"mode": "perFile"}},
        "processor": {"function": "slowpoke:process"},
        "env": [{"name": "PYTHONPATH", "value": str(tmp_path / "code")}, {"name": "SLOW", "value": "1"}],
        "checkpoint": {"intervalSeconds": 1},
        "splitting": {"enabled": True, "minRemainder": "4Ki"},
    }
    manifest = job_manifest("split", data, tmp_path / "out", workers=4, **spec)
    jobs.create(manifest)
    # Once the first split is made, SIGKILL a worker mid-shard: its shard resumes from its checkpoint.
    jobs.events("split", wait_for_reason="ShardSplit", timeout=120)
    jobs.kill_a_worker_mid_shard("split")
    status = jobs.wait_phase("split", "Succeeded", timeout=240)
    assert status["splitting"]["shards"] >= 1 and status["splitting"]["made"] >= 1, status["splitting"]
    reasons = {e.reason for e in jobs.events("split")}
    assert {"SplitRequested", "ShardSplit"} <= reasons, reasons
    published = json.loads((tmp_path / "out" / "_SUCCESS").read_text())
    assert any("of" in s for s in published["shards"]), published["shards"]
    assert published["records"] == 12000 + 6 * 300

    # Local mode, without splitting and without the sleep, writes the same result.
    local = {**manifest, "spec": {**manifest["spec"], "output": {"uri": str(tmp_path / "local")}}}
    local["spec"].pop("splitting")
    local["spec"]["env"] = [e for e in local["spec"]["env"] if e["name"] != "SLOW"]
    path = tmp_path / "local.yaml"
    path.write_text(json.dumps(local))
    env = {**os.environ, "PYTHONPATH": f"{tmp_path / 'code'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env.pop("SLOW", None)
    subprocess.run([sys.executable, "-m", "datajob_worker.cli", "run", str(path)], check=True, env=env)
    assert (tmp_path / "out" / "result").read_bytes() == (tmp_path / "local" / "result").read_bytes()
