"""Speculative attempts in local mode (the same reconciler and ledger as the operator), with real worker
processes: a worker slowed by its own processor gets its shards backed up on idle workers; whichever attempt
commits first wins, the other stops uncharged, and the output equals an undisturbed run's."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from datajob_testenv.localjobs import DATAJOB, manifest

# A transform whose speed depends on the worker: pods named in slow.txt sleep 20 ms a record, others 1 ms.
SLOWPOKE = """
import os, time
from pathlib import Path

FLAG = Path(__file__).with_name("slow.txt")

def process(record):
    slow = os.environ.get("DATAJOB_POD", "") in FLAG.read_text().split()
    time.sleep(0.02 if slow else 0.001)
    return record.upper()
"""
SPECULATION = {"enabled": True, "quantile": 0.5, "minRuntimeSeconds": 1}


def _job(tmp_path: Path, out: str, slow: list[str], **spec: object) -> tuple[Path, dict[str, str]]:
    data = tmp_path / "data"
    if not data.exists():
        data.mkdir()
        for f in range(12):
            (data / f"f{f:02}.txt").write_text(
                "".join(f"word{i % 37} file{f} line {i}\n" for i in range(400))
            )
    (tmp_path / "slowpoke.py").write_text(SLOWPOKE)
    (tmp_path / "slow.txt").write_text("\n".join(slow))
    path = manifest(
        tmp_path,
        out,
        input={"uris": ["data/*.txt"]},
        processor={"function": "slowpoke:process"},
        checkpoint={"intervalSeconds": 1},
        retryPolicy={"maxShardAttempts": 1},
        **spec,
    )
    return path, {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def _attempts(output: Path) -> dict[int, int]:
    manifest = json.loads((output / "_SUCCESS").read_text())
    return {int(s["shard"]): int(s["attempt"]) for s in manifest["shards"]}


def test_a_straggling_shards_backup_commits_first_and_the_output_equals_an_undisturbed_run(
    tmp_path: Path,
) -> None:
    path, env = _job(tmp_path, "plain", slow=[])
    subprocess.run([*DATAJOB, "run", str(path)], check=True, env=env, capture_output=True, cwd=tmp_path)
    path, env = _job(tmp_path, "speculated", slow=["wc-0-1"], speculation=SPECULATION)
    started = time.monotonic()
    done = subprocess.run(
        [*DATAJOB, "run", str(path)], check=True, env=env, capture_output=True, text=True, cwd=tmp_path
    )
    took = time.monotonic() - started
    assert "Speculated: shard" in done.stderr, done.stderr
    assert "the backup committed first" in done.stderr, done.stderr
    assert "0 failed" in done.stderr and "0 worker restart(s)" in done.stderr, done.stderr
    # Every shard the slow worker would have held for 8 s was committed by a backup attempt instead.
    assert any(attempt > 1 for attempt in _attempts(tmp_path / "speculated").values())
    assert (tmp_path / "speculated" / "result").read_bytes() == (tmp_path / "plain" / "result").read_bytes()
    assert took < 30, done.stderr


def test_when_the_original_commits_first_the_backup_stops_uncharged(tmp_path: Path) -> None:
    path, env = _job(tmp_path, "plain", slow=[])
    subprocess.run([*DATAJOB, "run", str(path)], check=True, env=env, capture_output=True, cwd=tmp_path)
    path, env = _job(tmp_path, "out", slow=["wc-0-1"], speculation=SPECULATION)
    driver = subprocess.Popen(
        [*DATAJOB, "run", str(path)], env=env, stderr=subprocess.PIPE, text=True, cwd=tmp_path
    )
    assert driver.stderr is not None
    lines = []
    for line in driver.stderr:
        lines.append(line)
        if line.startswith("Speculated:"):
            # Now the original's worker is fast and every other one slow: the original must win.
            (tmp_path / "slow.txt").write_text("wc-1-1\nwc-2-1")
            break
    lines += driver.stderr.readlines()
    assert driver.wait(120) == 0, "".join(lines)
    text = "".join(lines)
    assert "the original attempt committed first" in text, text
    assert "0 failed" in text and "0 worker restart(s)" in text, text
    assert (tmp_path / "out" / "result").read_bytes() == (tmp_path / "plain" / "result").read_bytes()
