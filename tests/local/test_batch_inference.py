"""The batch form of user code (a class with setup / process_batch / teardown) in local mode: the shipped
inference example scores what a single-process run scores, survives worker kills byte-identical, sets up
once per worker process, and finds a bad record inside a failing batch under badRecordPolicy."""

from __future__ import annotations

import importlib
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import joblib  # type: ignore[import-untyped]
import numpy as np
import pytest
import yaml

from datajob_core.cluster.reconciler import Phase
from datajob_core.storage.committer import BAD_RECORDS
from datajob_testenv.localjobs import corpus, manifest, markers
from datajob_worker.cli import main as datajob
from datajob_worker.local_runner import LocalRun

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "inference"


def _payments(directory: Path, files: int = 3, per_file: int = 3000) -> None:
    subprocess.run(
        [
            *(sys.executable, str(EXAMPLE / "generate.py"), "--out", str(directory)),
            *("--files", str(files), "--records-per-file", str(per_file)),
        ],
        check=True,
        capture_output=True,
    )


def _scoring_job(tmp_path: Path, out: str, **options: str) -> Path:
    return manifest(
        tmp_path,
        out,
        workers=2,
        input={"uris": ["data/*.jsonl"], "format": "jsonl", "partitioning": {"mode": "count", "shards": 6}},
        processor={
            "function": "scoring:FraudScorer",
            "batchSize": 256,
            "options": {"model": str(tmp_path / "data" / "model.joblib"), **options},
        },
        env=[{"name": "PYTHONPATH", "value": str(EXAMPLE)}],
    )


def test_the_inference_example_scores_every_payment_as_a_single_process_run_does(tmp_path: Path) -> None:
    _payments(tmp_path / "data")
    assert datajob(["run", str(_scoring_job(tmp_path, "out"))]) == 0
    scored = {row["id"]: row for row in map(json.loads, (tmp_path / "out" / "result").open())}
    sys.path.insert(0, str(EXAMPLE))
    try:
        features = importlib.import_module("scoring").FEATURES  # the example's own module
    finally:
        sys.path.remove(str(EXAMPLE))
    payments = [json.loads(line) for f in sorted((tmp_path / "data").glob("*.jsonl")) for line in f.open()]
    model = joblib.load(tmp_path / "data" / "model.joblib")
    expected = model.predict_proba(np.array([[float(p[n]) for n in features] for p in payments]))[:, 1]
    assert sorted(scored) == [p["id"] for p in payments]  # each payment scored once
    for payment, score in zip(payments, expected, strict=True):
        assert scored[payment["id"]]["score"] == pytest.approx(float(score), rel=1e-9, abs=1e-12)
        assert scored[payment["id"]]["flagged"] == bool(score >= 0.5)
    assert 0 < sum(row["flagged"] for row in scored.values()) < len(scored)  # a model, not a constant


def test_batch_inference_survives_worker_kills_byte_identical(tmp_path: Path) -> None:
    _payments(tmp_path / "data")
    assert datajob(["run", str(_scoring_job(tmp_path, "ref"))]) == 0
    chaos = _scoring_job(tmp_path, "chaos", delayPerRecord="0.0002")  # ~0.3 s a shard: kills land mid-shard
    assert datajob(["run", str(chaos), "--kill-every", "0.5", "--seed", "5"]) == 0
    retried = [m for m in markers(tmp_path / "chaos") if m["attempt"] > 1]
    assert retried, "no failure was injected mid-shard"
    assert any(m["resumedFrom"] for m in retried), "no retried shard resumed from a checkpoint"
    assert (tmp_path / "chaos" / "result").read_bytes() == (tmp_path / "ref" / "result").read_bytes()
    assert sum(m["records"] for m in markers(tmp_path / "chaos")) == 9000


# A batch class that records what happened to it: one file per setup / teardown (named by process), and per
# output line the size of the batch it came from. Raises on "poison" records, or on every batch (BROKEN).
RECORDER = """
import os
from pathlib import Path

class Recorder:
    def setup(self, options):
        self.log = Path(options["log"])
        (self.log / f"setup-{os.getpid()}").write_text("")

    def process_batch(self, batch):
        if os.environ.get("BROKEN"):
            raise ConnectionError("the model server is gone")
        if any("poison" in r for r in batch):
            raise ValueError("cannot score poison")
        return [{"line": r, "batch": len(batch)} for r in batch]

    def teardown(self):
        (self.log / f"teardown-{os.getpid()}").write_text("")

class Echo:
    def process_batch(self, batch):
        return batch  # a pyarrow.RecordBatch in, the same out

class NoBatch:
    def process(self, record):
        return record
"""


def _recorder_job(tmp_path: Path, out: str, processor: dict[str, Any], **spec: Any) -> dict[str, Any]:
    (tmp_path / "code").mkdir(exist_ok=True)
    (tmp_path / "code" / "recorder.py").write_text(RECORDER)
    (tmp_path / "log").mkdir(exist_ok=True)
    env = [{"name": "PYTHONPATH", "value": str(tmp_path / "code")}, *spec.pop("env", [])]
    path = manifest(tmp_path, out, workers=2, processor=processor, env=env, **spec)
    job: dict[str, Any] = yaml.safe_load(path.read_text())
    return job


def _run(tmp_path: Path, job: dict[str, Any], grace_seconds: float = 2) -> tuple[Phase, str]:
    screen = io.StringIO()
    state = LocalRun(job, tmp_path, out=screen, grace_seconds=grace_seconds).run()
    return state.phase, state.message + screen.getvalue()[-2000:]


def test_setup_runs_once_per_worker_process_and_teardown_when_it_ends(tmp_path: Path) -> None:
    corpus(tmp_path / "data", files=4, lines=700)
    options = {"log": str(tmp_path / "log")}
    processor = {"function": "recorder:Recorder", "batchSize": 100, "options": options}
    # The default grace: on a busy machine a worker may need more than 2 s to end after its last shard.
    phase, said = _run(tmp_path, _recorder_job(tmp_path, "out", processor), grace_seconds=30)
    assert phase is Phase.SUCCEEDED, said
    setups = {p.name.split("-")[1] for p in (tmp_path / "log").glob("setup-*")}
    teardowns = {p.name.split("-")[1] for p in (tmp_path / "log").glob("teardown-*")}
    shards = len(markers(tmp_path / "out"))
    assert 1 <= len(setups) <= 2 < shards, (setups, shards)  # two workers, many shards: not per shard
    assert teardowns == setups
    rows = [json.loads(line) for line in (tmp_path / "out" / "result").open()]
    assert len(rows) == 4 * 700
    sizes = [row["batch"] for row in rows]
    assert max(sizes) == 100 and sizes.count(100) > len(sizes) // 2, "records were not given in batches"


@pytest.mark.parametrize("policy", ["DeadLetter", "Skip"])
def test_a_failing_batch_is_retried_record_by_record_and_only_the_bad_record_is_dropped(
    tmp_path: Path, policy: str
) -> None:
    corpus(tmp_path / "data", files=2, lines=500)
    text = (tmp_path / "data" / "in-1.txt").read_text().splitlines(keepends=True)
    text[123] = "poison pill\n"
    (tmp_path / "data" / "in-1.txt").write_text("".join(text))
    processor = {"function": "recorder:Recorder", "batchSize": 64, "options": {"log": str(tmp_path / "log")}}
    job = _recorder_job(tmp_path, "out", processor)
    job["spec"]["input"]["badRecordPolicy"] = policy
    phase, said = _run(tmp_path, job)
    assert phase is Phase.SUCCEEDED, said
    lines = [json.loads(line)["line"] for line in (tmp_path / "out" / "result").open()]
    assert len(lines) == 999 and "poison pill" not in lines
    assert sum(m["skipped"] for m in markers(tmp_path / "out")) == 1
    letters = list((tmp_path / "out" / BAD_RECORDS).glob("*.jsonl"))
    if policy == "DeadLetter":
        (letter,) = [json.loads(line) for f in letters for line in f.open()]
        assert letter["record"] == "poison pill" and "ValueError: cannot score poison" in letter["error"]
        assert letter["file"].endswith("in-1.txt")
    else:
        assert not letters


def test_under_fail_a_bad_record_fails_the_job_naming_it(tmp_path: Path) -> None:
    corpus(tmp_path / "data", files=1, lines=300)
    text = (tmp_path / "data" / "in-0.txt").read_text().replace("beta w10 ", "poison ", 1)
    (tmp_path / "data" / "in-0.txt").write_text(text)
    processor = {"function": "recorder:Recorder", "options": {"log": str(tmp_path / "log")}}
    retry = {"maxShardAttempts": 2, "backoff": {"initialSeconds": 1, "maxSeconds": 1}}
    phase, said = _run(tmp_path, _recorder_job(tmp_path, "out", processor, retryPolicy=retry))
    assert phase is Phase.FAILED, said
    assert "ValueError: cannot score poison" in said and "alpha poison gamma10" in said, said


def test_a_batch_function_that_fails_on_every_record_fails_the_job_instead_of_skipping_everything(
    tmp_path: Path,
) -> None:
    corpus(tmp_path / "data", files=1, lines=300)
    processor = {"function": "recorder:Recorder", "options": {"log": str(tmp_path / "log")}}
    retry = {"maxShardAttempts": 2, "backoff": {"initialSeconds": 1, "maxSeconds": 1}}
    job = _recorder_job(tmp_path, "out", processor, retryPolicy=retry, env=[{"name": "BROKEN", "value": "1"}])
    job["spec"]["input"]["badRecordPolicy"] = "Skip"
    phase, said = _run(tmp_path, job)
    assert phase is Phase.FAILED, said
    assert "ConnectionError: the model server is gone" in said, said


def test_the_arrow_batch_format_gives_a_record_batch_of_the_records(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    rows = [{"id": n, "name": f"n{n}", "score": n / 8} for n in range(1000)]
    (tmp_path / "data" / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    job = _recorder_job(
        tmp_path,
        "out",
        {"function": "recorder:Echo", "batchSize": 128, "batchFormat": "arrow"},
        input={"uris": ["data/*.jsonl"], "format": "jsonl"},
    )
    phase, said = _run(tmp_path, job)
    assert phase is Phase.SUCCEEDED, said
    assert [json.loads(line) for line in (tmp_path / "out" / "result").open()] == rows


def test_a_class_without_process_batch_is_a_per_record_callable_and_batch_size_needs_one(
    tmp_path: Path,
) -> None:
    corpus(tmp_path / "data", files=1, lines=10)
    phase, said = _run(tmp_path, _recorder_job(tmp_path, "out", {"function": "builtins:str"}))
    assert phase is Phase.SUCCEEDED, said  # as before the batch form: str(record) per record
    assert (tmp_path / "out" / "result").read_text() == (tmp_path / "data" / "in-0.txt").read_text()
    # The worker cannot start: like a module that does not import, a crash loop, cut short here.
    retry = {"maxWorkerRestarts": 1, "backoff": {"initialSeconds": 1, "maxSeconds": 1}}
    processor = {"function": "recorder:NoBatch", "batchSize": 8}
    phase, said = _run(tmp_path, _recorder_job(tmp_path, "out2", processor, retryPolicy=retry))
    assert phase is Phase.FAILED, said
    assert "batchSize and batchFormat are for a class with process_batch(batch)" in said, said
