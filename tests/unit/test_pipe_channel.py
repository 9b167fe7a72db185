"""Local mode's driver ↔ worker pipes (datajob_worker.channel), with real pipes and processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from datajob_core.protocol import AssignmentMessage, ReportMessage, ShardTask
from datajob_worker.channel import PipeChannel, WorkerLink

pytestmark = pytest.mark.unit


def worker_side(link: WorkerLink) -> PipeChannel:
    """The worker's end in this process (as a forked worker would hold it)."""
    fds = link.child_fds_by_name()
    channel = PipeChannel(os.dup(fds["DATAJOB_ASSIGNMENT_FD"]), os.dup(fds["DATAJOB_REPORT_FD"]))
    link.started()
    return channel


def test_the_worker_sees_only_the_newest_assignment() -> None:
    link = WorkerLink()
    channel = worker_side(link)
    for shard in range(3):
        link.send(AssignmentMessage(pod="p", shards=[ShardTask(shard=shard, attempt=1)]))
    message = channel.assignment()
    assert message is not None and [t.shard for t in message.shards] == [2]
    assert channel.assignment() == message  # nothing new: the last one stands
    link.close()


def test_an_assignment_wakes_a_waiting_worker_at_once() -> None:
    link = WorkerLink()
    channel = worker_side(link)
    started = time.monotonic()
    link.send(AssignmentMessage(pod="p"))
    channel.wait(5.0)
    assert time.monotonic() - started < 1.0
    link.close()


def test_the_driver_never_blocks_on_a_worker_that_does_not_read() -> None:
    link = WorkerLink()
    channel = worker_side(link)
    big = [ShardTask(shard=n, attempt=1, input={"path": "x" * 200}) for n in range(40)]
    started = time.monotonic()
    for _ in range(200):  # far more than a pipe holds
        link.send(AssignmentMessage(pod="p", shards=big))
    assert time.monotonic() - started < 5.0
    last = AssignmentMessage(pod="p", shards=[ShardTask(shard=99, attempt=1)])
    link.send(last)
    deadline = time.monotonic() + 5
    seen = None
    while seen != last and time.monotonic() < deadline:  # as the worker reads, the rest goes through
        seen = channel.assignment()
        link.flush()
    assert seen == last
    link.close()


def test_a_report_sent_just_before_the_worker_died_still_reaches_the_driver() -> None:
    link = WorkerLink()
    fds = link.child_fds_by_name()
    report = ReportMessage(pod="p", seq=7)
    code = (
        "import os, sys; from datajob_worker.channel import PipeChannel; "
        "from datajob_core.protocol import ReportMessage; "
        "PipeChannel(int(sys.argv[1]), int(sys.argv[2])).report(ReportMessage(pod='p', seq=7)); "
        "os.kill(os.getpid(), 9)"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(fds["DATAJOB_ASSIGNMENT_FD"]), str(fds["DATAJOB_REPORT_FD"])],
        pass_fds=tuple(fds.values()),
    )
    link.started()
    assert child.wait(30) == -9
    assert link.receive() == report
    assert link.gone  # and its death is seen as the end of the pipe
    link.close()
