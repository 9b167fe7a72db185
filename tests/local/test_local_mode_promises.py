"""Local mode keeps what docs/local-mode.md promises: workers die with their driver, even a SIGKILLed one;
kills injected by the harness are disruptions, not the shards' failures; a rerun of a finished job does not
reprocess and discard; replay output never goes into the job's output."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from datajob_core.cluster.reconciler import Phase
from datajob_testenv.localjobs import DATAJOB, corpus, manifest
from datajob_testenv.processes import wait_for
from datajob_worker.cli import main as datajob
from datajob_worker.local_runner import LocalRun


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"


def test_workers_die_with_their_driver_even_when_it_is_sigkilled(tmp_path: Path) -> None:
    corpus(tmp_path / "data", files=3, lines=3000)
    slow = {"builtin": "wordcount", "options": {"delayPerRecord": "0.01"}}
    path = manifest(tmp_path, "out", workers=3, processor=slow)
    driver = subprocess.Popen([*DATAJOB, "run", str(path)], stderr=subprocess.DEVNULL)
    logs = tmp_path / "out" / "_datajob" / "logs"

    def workers() -> list[int]:
        started = [
            json.loads(line)["pid"]
            for log in logs.glob("*.log")
            for line in log.read_text().splitlines()
            if '"worker started"' in line
        ]
        return started if len(started) >= 3 else []

    wait_for(lambda: bool(workers()), 60, "three workers to start")
    pids = workers()
    assert all(_alive(pid) for pid in pids)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    wait_for(lambda: not any(_alive(pid) for pid in pids), 20, "the workers to die with the driver")


def test_injected_kills_are_disruptions_never_charged_to_a_shard(tmp_path: Path) -> None:
    corpus(tmp_path / "data", files=4, lines=2000)
    slow = {"builtin": "wordcount", "options": {"delayPerRecord": "0.0005"}}
    retry = {"maxShardAttempts": 1, "backoff": {"initialSeconds": 1, "maxSeconds": 1}}
    path = manifest(tmp_path, "out", workers=2, processor=slow, retryPolicy=retry)
    screen = io.StringIO()
    run = LocalRun(yaml.safe_load(path.read_text()), tmp_path, kill_every=0.3, seed=3, out=screen)
    state = run.run()
    assert run.stats.kills >= 3, screen.getvalue()
    # With a single attempt per shard, one charged kill would have failed the job.
    assert state.phase is Phase.SUCCEEDED, screen.getvalue()
    assert not state.ledger.failed and state.disruptions >= run.stats.kills
    assert "WorkerFailed" not in screen.getvalue()


def test_rerunning_a_finished_job_says_so_instead_of_reprocessing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus(tmp_path / "data", files=2, lines=500)
    path = manifest(tmp_path, "out", workers=2)
    assert datajob(["run", str(path)]) == 0
    success = (tmp_path / "out" / "_SUCCESS").read_bytes()
    capsys.readouterr()
    started = time.monotonic()
    assert datajob(["run", str(path)]) == 0
    err = capsys.readouterr().err
    assert "already succeeded with this input" in err and "result:" in err
    assert (tmp_path / "out" / "_SUCCESS").read_bytes() == success
    assert not (tmp_path / "out" / "_datajob" / "logs").exists() or time.monotonic() - started < 5
    # Changed input: refused, or processed afresh with --overwrite, never both.
    (tmp_path / "data" / "in-0.txt").write_text("changed input\n")
    assert datajob(["run", str(path)]) == 1
    assert "belongs to" in capsys.readouterr().err
    assert datajob(["run", str(path), "--overwrite"]) == 0
    assert json.loads((tmp_path / "out" / "_SUCCESS").read_text())["records"] == 501


def test_replay_output_inside_the_jobs_output_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus(tmp_path / "data", files=1, lines=100)
    path = manifest(tmp_path, "out", workers=1)
    for inside in ("out", "out/replay"):
        code = datajob(["run", str(path), "--shard", "0", "--shard-output", str(tmp_path / inside)])
        assert code == 2
        assert "--shard-output" in capsys.readouterr().err
    assert not (tmp_path / "out" / "_datajob" / "commits").exists()
