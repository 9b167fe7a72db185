"""Local mode ends well: bad flags are refused, and no worker or exec child outlives what started it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from datajob_core.protocol import AssignmentMessage, ReportMessage, ShardTask
from datajob_core.storage.checkpoint_store import CheckpointStore
from datajob_testenv.localjobs import DATAJOB, committed_text, corpus, manifest
from datajob_worker import agent
from datajob_worker.cli import main as datajob
from datajob_worker.runtime import ExecHooks, OutputDir, run_exec


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) is not running anything.
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False).stdout
    return [int(p) for p in out.split()]


@pytest.mark.parametrize("workers", ["0", "-2", "two"])
def test_run_refuses_a_worker_count_below_one(
    tmp_path: Path, workers: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        datajob(["run", str(manifest(tmp_path, "out")), "--workers", workers])
    assert exited.value.code == 2
    assert "--workers" in capsys.readouterr().err


def test_workers_die_with_their_driver(tmp_path: Path) -> None:
    corpus(tmp_path / "data", files=2, lines=4000)
    slow = {"builtin": "wordcount", "options": {"delayPerRecord": "0.01"}}
    driver = subprocess.Popen([*DATAJOB, "run", str(manifest(tmp_path, "out", processor=slow, workers=2))])
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(children(driver.pid)) < 2:
            time.sleep(0.1)
        workers = children(driver.pid)
        assert len(workers) == 2, "workers did not start"
        driver.kill()
        driver.wait()
        assert wait_gone(workers, 15) == [], "workers outlived their driver"
    finally:
        driver.kill()


SLEEPER = """
import os, time
open(os.environ["PIDFILE"], "w").write(str(os.getpid()))
time.sleep(120)
"""

EXEC_WORKER = """
import sys
from datajob_core.storage.checkpoint_store import CheckpointStore
from datajob_core.protocol import AssignmentMessage, ReportMessage, ShardTask
from datajob_worker.runtime import ExecHooks, OutputDir, run_exec
child, output, pidfile = sys.argv[1:]
hooks = ExecHooks(tick=lambda: None, checkpoint=lambda value: None)
task = ShardTask(shard=0, attempt=1)
run_exec(task, [sys.executable, child], OutputDir(output), {"PIDFILE": pidfile}, hooks=hooks)
"""

# Checkpoints (atomically) every half second and takes 3 s: longer than many heartbeats.
CHECKPOINTING_CHILD = """
import json, os, time
resume = os.environ.get("DATAJOB_RESUME_FILE")
start = json.load(open(resume))["done"] if resume else 0
target = os.environ["DATAJOB_CHECKPOINT_FILE"]
for step in range(start, 6):
    json.dump({"done": step}, open(target + ".tmp", "w"))
    os.replace(target + ".tmp", target)
    time.sleep(0.5)
open(os.environ["DATAJOB_OUTPUT_FILE"], "w").write(f"resumed at {start}\\n")
"""


def script(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_an_exec_child_dies_with_its_worker(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    child_script = script(tmp_path, "sleeper.py", SLEEPER)
    worker = subprocess.Popen(
        [
            sys.executable,
            script(tmp_path, "worker.py", EXEC_WORKER),
            child_script,
            str(tmp_path),
            str(pidfile),
        ]
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not pidfile.exists():
            time.sleep(0.1)
        child = int(pidfile.read_text())
        worker.kill()
        worker.wait()
        assert wait_gone([child], 10) == [], "the exec child was orphaned"
    finally:
        worker.kill()


class CountingChannel:
    """A channel in memory: the assignment it holds, and how many reports it was sent."""

    def __init__(self) -> None:
        self.message: AssignmentMessage | None = None
        self.reports = 0

    def assignment(self) -> AssignmentMessage | None:
        return self.message

    def report(self, message: ReportMessage) -> None:
        self.reports += 1

    def plan(self) -> bytes:
        raise FileNotFoundError("no stored plan in this test")

    def wait(self, timeout: float) -> None:
        time.sleep(timeout)


def test_exec_heartbeats_while_its_child_runs_and_hands_its_checkpoint_to_the_next_attempt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(agent, "HEARTBEAT_SECONDS", 0.4)
    child = script(tmp_path, "child.py", CHECKPOINTING_CHILD)
    channel = CountingChannel()
    worker = agent.Worker(
        channel,
        pod="p",
        output=str(tmp_path / "out"),
        checkpoint_seconds=30,
        checkpoint_records=None,
        processor={"exec": [sys.executable, child]},
    )
    task = ShardTask(shard=0, attempt=1)
    channel.message = AssignmentMessage(pod="p", shards=[task])
    stop = threading.Event()
    threading.Thread(target=worker.heartbeat, args=(stop,), daemon=True).start()
    started = channel.reports
    worker.process(task)
    stop.set()
    assert channel.reports - started >= 5, "no heartbeat while the child ran"
    assert [o.shard for o in worker.reporter.message().done] == [0]
    assert committed_text(worker.output, 0) == "resumed at 0\n"
    # The child's checkpoints were stored like any other, so a later attempt can resume from them.
    stored = CheckpointStore(tmp_path / "out").newest(0)
    assert stored is not None and stored[1].state == {"done": 5}
    again = tmp_path / "again"
    again.mkdir()
    hooks = ExecHooks(tick=lambda: None, checkpoint=lambda value: None)
    output = OutputDir(str(again))
    run_exec(
        ShardTask(shard=0, attempt=2),
        [sys.executable, child],
        output,
        dict(os.environ),
        hooks=hooks,
        resume_state={"done": 4},
    )
    assert committed_text(output, 0) == "resumed at 4\n"
