"""Local mode's stand-in for a worker's Lease: two pipes between the driver and each worker process.

The same messages as in the cluster (datajob_core.protocol), one JSON document per line: assignments flow
driver → worker, reports worker → driver. Only the newest message on either pipe matters (each one is a
whole state, like the Lease annotation it stands for), so a reader skips to the last complete line.

Pipes instead of files polled by both sides: a message wakes its reader at once (``select``), and a shard
costs a handful of system calls instead of a write, rename and re-read per message and per pass. Nothing
is lost by not writing them down: the driver is the only durable party in local mode, and a report a
worker wrote before it died stays readable in the pipe after its death, which is also how the driver learns
of the death at once (end of file).
"""

from __future__ import annotations

import contextlib
import os
import select
import time
from pathlib import Path

from datajob_core.protocol import AssignmentMessage, ReportMessage

ENV_ASSIGNMENT_FD = "DATAJOB_ASSIGNMENT_FD"  # the worker reads assignments from this pipe
ENV_REPORT_FD = "DATAJOB_REPORT_FD"  # and writes its reports to this one

CHUNK = 1 << 16


class LineReader:
    """Complete lines from a non-blocking pipe; remembers a partial last line until the rest arrives."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        os.set_blocking(fd, False)
        self.partial = b""
        self.closed = False

    def read(self) -> list[bytes]:
        """Every complete line available now (never blocks); sets ``closed`` at end of file."""
        data = [self.partial]
        while not self.closed:
            try:
                chunk = os.read(self.fd, CHUNK)
            except BlockingIOError:
                break
            if not chunk:
                self.closed = True  # a line cut short by the writer's death is dropped, never parsed
                break
            data.append(chunk)
        *lines, self.partial = b"".join(data).split(b"\n")
        if self.closed:
            self.partial = b""
        return [line for line in lines if line]


def write_all(fd: int, data: bytes) -> None:
    """A blocking write of the whole message (the worker's side: the driver reads on every pass)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class PipeChannel:
    """The worker's side: the newest assignment from the driver, reports back, and a wait that wakes."""

    def __init__(self, assignments: int, reports: int, plan_file: str | Path | None = None) -> None:
        self.inbox = LineReader(assignments)
        self.reports = reports
        self.plan_file = Path(plan_file) if plan_file else None
        self.latest: AssignmentMessage | None = None

    @classmethod
    def from_env(cls, plan_file: str | None) -> PipeChannel:
        return cls(int(os.environ[ENV_ASSIGNMENT_FD]), int(os.environ[ENV_REPORT_FD]), plan_file)

    def assignment(self) -> AssignmentMessage | None:
        lines = self.inbox.read()
        if lines:
            self.latest = AssignmentMessage.model_validate_json(lines[-1])
        return self.latest

    def report(self, message: ReportMessage) -> None:
        write_all(self.reports, message.model_dump_json().encode() + b"\n")

    def wait(self, timeout: float) -> None:
        """Until the driver sends something (or has gone: then the lifeline signal ends this process)."""
        if self.inbox.closed:
            time.sleep(timeout)
            return
        select.select([self.inbox.fd], [], [], timeout)

    def plan(self) -> bytes:
        """The stored shard plan (datajob_core.data.plan_store) the driver wrote."""
        if self.plan_file is None:
            raise FileNotFoundError("no plan file was given to this worker")
        return self.plan_file.read_bytes()


class WorkerLink:
    """The driver's side of one worker's pipes. Sending never blocks the driver: what a busy worker has not
    read yet waits here, and a newer assignment replaces an older one that was not started on the pipe."""

    def __init__(self) -> None:
        assignments_read, self.assignments = os.pipe()
        self.reports_fd, reports_write = os.pipe()
        os.set_blocking(self.assignments, False)
        self.incoming = LineReader(self.reports_fd)
        self.child_fds: tuple[int, ...] = (assignments_read, reports_write)
        self.unsent = b""  # the rest of a message partly written
        self.queued = b""  # the newest whole message, not yet started

    def child_fds_by_name(self) -> dict[str, int]:
        """The worker's ends, by the environment variable that tells the worker their numbers."""
        return {ENV_ASSIGNMENT_FD: self.child_fds[0], ENV_REPORT_FD: self.child_fds[1]}

    def started(self) -> None:
        """The child has its copies; the driver's must go, or end of file would never come."""
        for fd in self.child_fds:
            os.close(fd)
        self.child_fds = ()

    def send(self, message: AssignmentMessage) -> None:
        self.queued = message.model_dump_json().encode() + b"\n"
        self.flush()

    def flush(self) -> None:
        with contextlib.suppress(BlockingIOError, BrokenPipeError):
            while self.unsent or self.queued:
                if not self.unsent:
                    self.unsent, self.queued = self.queued, b""
                written = os.write(self.assignments, self.unsent)
                self.unsent = self.unsent[written:]

    def receive(self) -> ReportMessage | None:
        """The newest complete report sent since the last call, if any (a malformed one is skipped)."""
        for line in reversed(self.incoming.read()):
            try:
                return ReportMessage.model_validate_json(line)
            except ValueError:
                continue
        return None

    @property
    def gone(self) -> bool:
        """The worker's end has closed: it exited (every report it sent has been received)."""
        return self.incoming.closed

    def close(self) -> None:
        for fd in (self.assignments, self.reports_fd, *self.child_fds):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.child_fds = ()
