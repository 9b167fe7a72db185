"""`datajob run MANIFEST --shard N`: one shard, planned as the operator plans it, run in-process into a
scratch directory; with --from-checkpoint, from where the job's newest checkpoint of it is."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from datajob_testenv.localjobs import DATAJOB, committed_text, corpus, manifest
from datajob_testenv.processes import wait_for
from datajob_worker.cli import main as datajob
from datajob_worker.runtime import OutputDir


def test_replaying_one_shard_gives_the_same_output_as_the_job_in_a_scratch_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus(tmp_path / "data", files=3, lines=2000)
    path = manifest(tmp_path, "out", workers=2)
    scratch = tmp_path / "scratch"
    assert datajob(["run", str(path), "--shard", "2", "--shard-output", str(scratch)]) == 0
    replayed = committed_text(OutputDir(str(scratch)), 2)
    assert not (tmp_path / "out" / "_SUCCESS").exists(), "a replay never writes into the job's output"
    assert "shard 2 of" in capsys.readouterr().err
    assert datajob(["run", str(path)]) == 0
    job = OutputDir(str(tmp_path / "out"))
    published = next(r for r in _records(job) if r["shard"] == 2)["object"]
    assert replayed == job.store.read_text(str(published))
    assert datajob(["run", str(path), "--shard", "999"]) == 2
    assert "--shard 999: the job has" in capsys.readouterr().err


def _records(output: OutputDir) -> list[dict[str, object]]:
    import json  # noqa: PLC0415

    return list(json.loads(output.store.read_text("_SUCCESS"))["shards"])


def test_replaying_a_shard_from_its_checkpoint_resumes_where_the_job_stopped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus(tmp_path / "data", files=1, lines=3000)
    slow = {"builtin": "wordcount", "options": {"delayPerRecord": "0.002"}}  # about 6 s for the shard
    path = manifest(
        tmp_path,
        "out",
        workers=1,
        processor=slow,
        input={"uris": ["data/*.txt"]},
        checkpoint={"intervalSeconds": 1, "intervalRecords": 200},
    )
    # A run that dies mid-shard (the whole process group, driver and worker): its checkpoints stay.
    run = subprocess.Popen([*DATAJOB, "run", str(path)], cwd=tmp_path, start_new_session=True)
    checkpoints = tmp_path / "out" / "_checkpoints" / "000000"
    # (Superseded checkpoints are deleted as the ledger moves on: one file at a time remains.)
    wait_for(lambda: any(checkpoints.glob("*.json")), 60, "a checkpoint of shard 0")
    time.sleep(1.0)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    time.sleep(0.2)
    capsys.readouterr()

    scratch = tmp_path / "scratch"
    args = ["run", str(path), "--shard", "0", "--shard-output", str(scratch), "--from-checkpoint"]
    code = datajob(args)
    err = capsys.readouterr().err
    assert code == 0, err
    assert "resuming from checkpoint" in err, err
    resumed = OutputDir(str(scratch)).committer.committed(0)
    assert resumed is not None and resumed["resumedFrom"]["records"] > 0
    assert resumed["records"] == 3000  # the checkpointed records plus the rest: the whole shard
    # The same shard replayed from its start commits the same output.
    fresh = tmp_path / "fresh"
    assert datajob(["run", str(path), "--shard", "0", "--shard-output", str(fresh)]) == 0
    assert committed_text(OutputDir(str(scratch)), 0) == committed_text(OutputDir(str(fresh)), 0)
