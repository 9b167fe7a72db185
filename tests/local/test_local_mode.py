"""`datajob run`: local mode with real worker subprocesses, failures injected, output compared."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from datajob_testenv.datajobs import data_digest
from datajob_worker.cli import main as datajob

DATAJOB = [sys.executable, "-m", "datajob_worker.cli"]


def corpus(directory: Path, files: int = 6, lines: int = 3000) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for f in range(files):
        text = "".join(f"alpha beta w{(f * lines + n) % 97} gamma{n % 13}\n" for n in range(lines))
        (directory / f"in-{f}.txt").write_text(text)


def manifest(tmp_path: Path, out: str, **spec: Any) -> Path:
    body: dict[str, Any] = {
        "image": "local",
        "input": {"uris": ["data/*.txt"], "partitioning": {"mode": "size", "targetShardSize": "32Ki"}},
        "output": {"uri": out},
        "processor": {"builtin": "wordcount"},
        "workers": 3,
        "checkpoint": {"intervalSeconds": 1, "intervalRecords": 200},
        "retryPolicy": {"maxShardAttempts": 10, "backoff": {"initialSeconds": 1, "maxSeconds": 2}},
    }
    body.update(spec)
    path = tmp_path / f"{out.replace('/', '_')}.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "datajob.dev/v1alpha1",
                "kind": "DataJob",
                "metadata": {"name": "wc"},
                "spec": body,
            }
        )
    )
    return path


def markers(output: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(output.glob("part-*.json"))]


def test_random_worker_kills_give_output_identical_to_an_undisturbed_run(tmp_path: Path) -> None:
    corpus(tmp_path / "data")
    assert datajob(["run", str(manifest(tmp_path, "ref"))]) == 0
    slow = {"builtin": "wordcount", "options": {"delayPerRecord": "0.0002"}}
    code = datajob(
        ["run", str(manifest(tmp_path, "chaos", processor=slow)), "--kill-every", "0.7", "--seed", "11"]
    )
    assert code == 0
    assert data_digest(tmp_path / "chaos") == data_digest(tmp_path / "ref")
    retried = [m for m in markers(tmp_path / "chaos") if m["attempt"] > 1]
    assert retried, "no failure was injected mid-shard"
    assert any(m["resumedFrom"] for m in retried), "no retried shard resumed from a checkpoint"
    # The summary counts each shard once however often it was retried.
    assert sum(m["records"] for m in markers(tmp_path / "chaos")) == 6 * 3000


def test_sigterm_checkpoints_and_the_shard_resumes_without_counting_a_failure(tmp_path: Path) -> None:
    corpus(tmp_path / "data", files=1, lines=4000)
    slow = {"builtin": "wordcount", "options": {"delayPerRecord": "0.001"}}
    path = manifest(
        tmp_path,
        "term",
        processor=slow,
        workers=1,
        input={"uris": ["data/*.txt"]},
        checkpoint={"intervalSeconds": 1},
    )
    process = subprocess.Popen(
        [*DATAJOB, "run", str(path)],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    logs = tmp_path / "term" / "_datajob" / "logs"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (logs / "wc-0-1.log").exists():
        time.sleep(0.1)
    time.sleep(2.5)  # mid-shard, after a checkpoint or two
    worker_pid = int(
        subprocess.run(
            ["pgrep", "-f", "-n", "datajob_worker$"], capture_output=True, text=True, check=True
        ).stdout.split()[0]
    )
    os.kill(worker_pid, signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    log = (logs / "wc-0-1.log").read_text()
    assert "checkpointing and exiting" in log
    [marker] = markers(tmp_path / "term")
    assert marker["attempt"] == 2
    assert marker["resumedFrom"]["records"] > 0
    assert "0 worker restart(s)" in stderr  # a clean exit is not a crash


def test_invalid_manifest_is_rejected_with_the_api_servers_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = manifest(
        tmp_path, "bad", workers=5, input={"uris": ["a"], "partitioning": {"mode": "count", "shards": 2}}
    )
    assert datajob(["run", str(path)]) == 2
    assert "spec.workers must not exceed spec.input.partitioning.shards" in capsys.readouterr().err


def test_input_matching_nothing_fails_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert datajob(["run", str(manifest(tmp_path, "none"))]) == 1
    assert "no input files matched spec.input.uris" in capsys.readouterr().err
