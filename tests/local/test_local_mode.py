"""`datajob run`: local mode with real worker subprocesses, failures injected, output compared."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from datajob_core.cluster.reconciler import Phase
from datajob_testenv.datajobs import data_digest
from datajob_testenv.localjobs import DATAJOB, corpus, manifest, markers
from datajob_worker.cli import main as datajob
from datajob_worker.local_runner import LocalRun


def test_random_worker_kills_give_output_identical_to_an_undisturbed_run(tmp_path: Path) -> None:
    corpus(tmp_path / "data")
    assert datajob(["run", str(manifest(tmp_path, "ref"))]) == 0
    slow = {"builtin": "wordcount", "options": {"delayPerRecord": "0.001"}}
    code = datajob(
        ["run", str(manifest(tmp_path, "chaos", processor=slow)), "--kill-every", "1.5", "--seed", "12"]
    )
    assert code == 0
    assert data_digest(tmp_path / "chaos") == data_digest(tmp_path / "ref")
    retried = [m for m in markers(tmp_path / "chaos") if m["attempt"] > 1]
    assert retried, "no failure was injected mid-shard"
    assert any(m["resumedFrom"] for m in retried), "no retried shard resumed from a checkpoint"
    # The summary counts each shard once however often it was retried.
    assert sum(m["records"] for m in markers(tmp_path / "chaos")) == 6 * 3000
    # The job commit: one merged result, identical to the reference's, and the success marker.
    assert (tmp_path / "chaos" / "result").read_bytes() == (tmp_path / "ref" / "result").read_bytes()
    counts = dict(line.split("\t") for line in (tmp_path / "ref" / "result").read_text().splitlines())
    assert int(counts["alpha"]) == int(counts["beta"]) == 6 * 3000
    assert json.loads((tmp_path / "chaos" / "_SUCCESS").read_text())["records"] == 6 * 3000
    assert not (tmp_path / "chaos" / "_temporary").exists()
    assert not (tmp_path / "chaos" / "_checkpoints").exists()


def test_csv_and_parquet_copies_of_a_table_aggregate_to_the_same_result(tmp_path: Path) -> None:
    rows = 4000
    table = pa.table(
        {
            "region": [["emea", "amer", "apac"][n % 3] for n in range(rows)],
            "amount": [float(n % 101) for n in range(rows)],
        }
    )
    (tmp_path / "data").mkdir()
    for part in range(2):
        chunk = table.slice(part * rows // 2, rows // 2)
        pq.write_table(chunk, tmp_path / "data" / f"t{part}.parquet", row_group_size=300)
        lines = ["region,amount"] + [
            f"{r},{a}" for r, a in zip(chunk["region"].to_pylist(), chunk["amount"].to_pylist(), strict=True)
        ]
        (tmp_path / "data" / f"t{part}.csv").write_text("\n".join(lines) + "\n")
    aggregate = {"builtin": "aggregate", "options": {"groupBy": "region", "value": "amount"}}
    small = {"mode": "count", "shards": 6}
    for fmt in ("csv", "parquet"):
        job = manifest(
            tmp_path,
            fmt,
            input={"uris": [f"data/*.{fmt}"], "format": fmt, "partitioning": small},
            processor=aggregate,
        )
        assert datajob(["run", str(job)]) == 0
        assert len(markers(tmp_path / fmt)) > 2, "the table was not split into several shards"
    result = (tmp_path / "csv" / "result").read_text()
    assert result == (tmp_path / "parquet" / "result").read_text()
    groups = {row["region"]: row for row in map(json.loads, result.splitlines())}
    assert sum(g["count"] for g in groups.values()) == rows
    expected = sum(float(n % 101) for n in range(rows) if n % 3 == 0)
    assert groups["emea"]["sum"] == pytest.approx(expected)
    assert groups["emea"]["max"] == 100.0


def test_command_mode_runs_a_program_per_shard_and_concatenates_their_output(tmp_path: Path) -> None:
    corpus(tmp_path / "data", files=2, lines=500)
    program = tmp_path / "bytes_per_shard.py"
    program.write_text(
        "import json, os\n"
        "pieces = json.loads(os.environ['DATAJOB_SHARD_PIECES'])\n"
        "size = sum(int(p['end']) - int(p['start']) for p in pieces)\n"
        "with open(os.environ['DATAJOB_OUTPUT_FILE'], 'w') as out:\n"
        "    out.write(f\"{os.environ['DATAJOB_SHARD']} {size}\\n\")\n"
    )
    job = manifest(tmp_path, "exec", processor={"exec": [sys.executable, str(program)]})
    assert datajob(["run", str(job)]) == 0
    lines = (tmp_path / "exec" / "result").read_text().splitlines()
    assert [int(line.split()[0]) for line in lines] == list(range(len(lines)))
    total = sum((tmp_path / "data" / name).stat().st_size for name in ("in-0.txt", "in-1.txt"))
    assert sum(int(line.split()[1]) for line in lines) == total


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_and_a_rerun_into_the_same_output(tmp_path: Path) -> None:
    corpus(tmp_path / "data", files=3, lines=2000)
    path = manifest(tmp_path, "again")
    job = yaml.safe_load(path.read_text())
    screen = Terminal()
    state = LocalRun(job, tmp_path, out=screen).run()
    assert state.phase is Phase.SUCCEEDED
    shown = _without_escapes(screen.getvalue())
    frames = re.findall(
        r"(\d+)/(\d+) shards +[\d,]+ rec/s +ETA (?:\d+:\d\d|--:--) +workers (\d)/3 +restarts \d+", shown
    )
    assert frames, shown
    assert frames[-1][0] == frames[-1][1], "the last frame drawn shows every shard done"
    assert "━" in shown, "a bar is drawn on a terminal"
    assert "progress:" not in shown
    assert re.search(r"wc: Succeeded in \d+:\d\d: (\d+)/\1 shards committed", shown), shown
    first = (tmp_path / "again" / "result").read_bytes()
    # Committed shards are recognised by their markers and counted from them, not processed again.
    again = LocalRun(job, tmp_path, out=io.StringIO()).run()
    assert again.phase is Phase.SUCCEEDED
    assert again.records == state.records == 3 * 2000
    assert (tmp_path / "again" / "result").read_bytes() == first
    assert {m["attempt"] for m in markers(tmp_path / "again")} == {1}


def _without_escapes(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def test_progress_is_written_as_plain_lines_when_the_output_is_not_a_terminal(tmp_path: Path) -> None:
    corpus(tmp_path / "data", files=3, lines=2000)
    job = yaml.safe_load(manifest(tmp_path, "plain").read_text())
    log = io.StringIO()
    assert LocalRun(job, tmp_path, out=log).run().phase is Phase.SUCCEEDED
    text = log.getvalue()
    assert "\x1b[" not in text and "\r" not in text, "no terminal control codes in a log file"
    lines = [line for line in text.splitlines() if line.startswith("progress: ")]
    assert lines, text
    assert all(
        re.fullmatch(r"progress: \d+/\d+ shards  [\d,]+ rec/s  ETA \S+  workers \d/3  restarts \d+", line)
        for line in lines
    ), lines
    assert len(lines) <= 11, "at most one line per tenth of the shards, or every few seconds"


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
    started = next(
        json.loads(line)
        for line in (logs / "wc-0-1.log").read_text().splitlines()
        if '"worker started"' in line
    )
    worker_pid = int(started["pid"])
    os.kill(worker_pid, signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    log = (logs / "wc-0-1.log").read_text()
    assert "checkpointing and exiting" in log
    [marker] = markers(tmp_path / "term")
    assert marker["attempt"] == 2
    assert marker["resumedFrom"]["records"] > 0
    # Nothing charged (it checkpointed), but a SIGTERM no part of the job sent counts as a restart.
    assert "1 worker restart(s)" in stderr and "no shard charged" in stderr


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


# A processor whose module leaves a non-daemon thread running: the worker finishes its shards, but the
# interpreter waits for that thread at exit, and SIGTERM only sets the worker's stop flag.
LINGERING = """
import threading

threading.Thread(target=threading.Event().wait, name="lingering", daemon=False).start()


def upper(line):
    return line.upper()
"""


def test_a_worker_that_does_not_exit_is_killed_after_its_grace_period_with_its_stacks_in_its_log(
    tmp_path: Path,
) -> None:
    corpus(tmp_path / "data", files=1, lines=200)
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "lingering.py").write_text(LINGERING)
    path = manifest(
        tmp_path,
        "stuck",
        workers=1,
        processor={"function": "lingering:upper"},
        env=[{"name": "PYTHONPATH", "value": str(tmp_path / "code")}],
    )
    screen = io.StringIO()
    started = time.monotonic()
    state = LocalRun(yaml.safe_load(path.read_text()), tmp_path, out=screen, grace_seconds=2).run()
    elapsed = time.monotonic() - started
    assert state.phase is Phase.SUCCEEDED, screen.getvalue()
    assert elapsed < 60, f"the run waited {elapsed:.0f}s on a worker that would not exit"
    assert "did not stop 2s after SIGTERM; killed it" in screen.getvalue(), screen.getvalue()
    log = (tmp_path / "stuck" / "_datajob" / "logs" / "wc-0-1.log").read_text()
    # faulthandler's dump, requested (SIGUSR1) before the kill: the thread that held the worker up.
    assert "Thread 0x" in log and "in wait" in log, log[-2000:]
