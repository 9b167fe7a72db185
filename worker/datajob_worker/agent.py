"""The worker loop: take shards from the slot's Lease, process them with checkpoints, report outcomes.

Protocol: docs/design.md. Reported outcomes stay in the report until the operator acknowledges them, so a
completion survives an operator outage or restart.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from datajob_core.protocol import (
    ENV_CHANNEL_DIR,
    ENV_CHECKPOINT_RECORDS,
    ENV_CHECKPOINT_SECONDS,
    ENV_FORMAT,
    ENV_LEASE,
    ENV_NAMESPACE,
    ENV_OUTPUT,
    ENV_POD,
    ENV_PROCESSOR,
    AssignmentMessage,
    ReportMessage,
    ShardOutcome,
    ShardProgress,
    ShardTask,
)

from . import processors, runtime
from .channel import FileChannel
from .lease_client import LeaseClient, LeaseError
from .processors import State

log = structlog.get_logger("datajob.worker")

HEARTBEAT_SECONDS = 5.0
POLL_SECONDS = 1.0
# Reading or writing the channel can fail transiently (API outage, file being replaced): retry later.
CHANNEL_ERRORS = (LeaseError, OSError, ValueError)


class Channel(Protocol):
    def assignment(self) -> AssignmentMessage | None: ...

    def report(self, message: ReportMessage) -> None: ...


@dataclass
class Reporter:
    """The worker's half of the Lease: progress of in-flight shards and unacknowledged outcomes."""

    pod: str
    seq: int = 0
    progress: dict[str, ShardProgress] = field(default_factory=dict)
    done: list[ShardOutcome] = field(default_factory=list)
    failed: list[ShardOutcome] = field(default_factory=list)

    def acknowledge(self, ack: int) -> None:
        self.done = [o for o in self.done if o.seq > ack]
        self.failed = [o for o in self.failed if o.seq > ack]

    def outcome(self, task: ShardTask, *, records: int, bytes_read: int = 0, reason: str = "") -> None:
        self.seq += 1
        entry = ShardOutcome(
            shard=task.shard,
            attempt=task.attempt,
            seq=self.seq,
            records=records,
            bytes=bytes_read,
            reason=reason,
        )
        (self.failed if reason else self.done).append(entry)
        self.progress.pop(str(task.shard), None)

    def message(self) -> ReportMessage:
        return ReportMessage(
            pod=self.pod,
            seq=self.seq,
            progress=dict(self.progress),
            done=list(self.done),
            failed=list(self.failed),
        )


class Worker:
    def __init__(
        self,
        client: Channel,
        *,
        pod: str,
        output: str,
        checkpoint_seconds: float,
        checkpoint_records: int | None,
        processor: dict[str, Any] | None,
        fmt: str = "text",
    ) -> None:
        self.client = client
        self.reporter = Reporter(pod)
        self.output = runtime.OutputDir(output)
        self.fmt = fmt
        spec = processor or {}
        self.exec_argv: list[str] = list(spec.get("exec") or [])
        self.processor = processors.build(None if self.exec_argv else spec)
        self.checkpoint_seconds = checkpoint_seconds
        self.checkpoint_records = checkpoint_records
        options = {str(k): str(v) for k, v in (spec.get("options") or {}).items()}
        # A demo/test knob: slows processing down so kills land mid-shard.
        self.delay = float(options.get("delayPerRecord", "0"))
        self.stopping = False
        self.finished: set[tuple[int, int]] = set()
        self.last_report = 0.0

    # -- Lease I/O, tolerant of API outages: the work goes on and the report catches up -----------
    def send(self) -> None:
        try:
            self.client.report(self.reporter.message())
            self.last_report = time.monotonic()
        except CHANNEL_ERRORS as error:
            log.warning("report failed; will retry", error=str(error))

    def fetch(self) -> AssignmentMessage | None:
        try:
            return self.client.assignment()
        except CHANNEL_ERRORS as error:
            log.warning("cannot read assignment", error=str(error))
            return None

    # -- main loop ----------------------------------------------------------------------------------
    def run(self) -> int:
        self.send()
        while not self.stopping:
            message = self.fetch()
            if message is None or not message.pod:
                time.sleep(POLL_SECONDS)
                continue
            if message.pod != self.reporter.pod:
                log.info("this slot now belongs to another pod; exiting", owner=message.pod)
                return 0
            self.reporter.acknowledge(message.ack)
            if message.stop:
                self.send()
                log.info("told to stop")
                return 0
            todo = [t for t in message.shards if (t.shard, t.attempt) not in self.finished]
            if not todo:
                if time.monotonic() - self.last_report > HEARTBEAT_SECONDS or self.reporter.done:
                    self.send()
                time.sleep(POLL_SECONDS)
                continue
            self.process(todo[0])
        self.send()
        return 0

    def process(self, task: ShardTask) -> None:
        log.info("processing shard", shard=task.shard, attempt=task.attempt, resume=task.checkpoint)
        last_checkpoint = time.monotonic()
        records_since = 0
        saves = 0

        def on_record(progress: runtime.Progress, state: State, count: int) -> None:
            nonlocal last_checkpoint, records_since, saves
            records_since += count
            if self.delay:
                time.sleep(self.delay * count)
            now = time.monotonic()
            due = now - last_checkpoint >= self.checkpoint_seconds or (
                self.checkpoint_records is not None and records_since >= self.checkpoint_records
            )
            if self.stopping or due:
                saves += 1
                progress.state_file = self.output.save_state(task.shard, task.attempt, saves, state)
                self.reporter.progress[str(task.shard)] = ShardProgress(
                    attempt=task.attempt,
                    checkpoint=progress.checkpoint(),
                    records=progress.records,
                    bytes=progress.bytes,
                )
                last_checkpoint, records_since = now, 0
            if self.stopping or due or now - self.last_report >= HEARTBEAT_SECONDS:
                self.send()
                if self.stopping or not self.still_assigned(task):
                    raise runtime.ShardInterruptedError

        records = bytes_read = 0
        try:
            marker = self.output.committed(task.shard)
            if marker is not None:
                # Counted from the marker, so status.processed does not depend on who committed it.
                records, bytes_read = int(marker.get("records", 0)), int(marker.get("bytes", 0))
                log.info("shard already committed by another attempt", shard=task.shard)
            elif self.exec_argv:
                runtime.run_exec(task, self.exec_argv, self.output, dict(os.environ))
            else:
                context = runtime.ShardContext(self.fmt, self.processor, self.output, on_record)
                progress = runtime.run_shard(task, context)
                records, bytes_read = progress.records, progress.bytes
        except runtime.ShardInterruptedError:
            log.info("shard interrupted; its last checkpoint stands", shard=task.shard)
            return
        except Exception as error:  # noqa: BLE001 - a bad shard is reported, the worker goes on
            log.warning("shard failed", shard=task.shard, error=str(error))
            self.finished.add((task.shard, task.attempt))
            self.reporter.outcome(task, records=0, reason=f"{type(error).__name__}: {error}"[:200])
            self.send()
            return
        self.finished.add((task.shard, task.attempt))
        self.reporter.outcome(task, records=records, bytes_read=bytes_read)
        self.send()
        log.info("shard committed", shard=task.shard, attempt=task.attempt, records=records)

    def still_assigned(self, task: ShardTask) -> bool:
        message = self.fetch()
        if message is None:
            return True  # keep working through an API outage
        if message.pod != self.reporter.pod or message.stop:
            return False
        return any(t.shard == task.shard and t.attempt == task.attempt for t in message.shards)


def main() -> int:
    structlog.configure(
        processors=[structlog.processors.TimeStamper(fmt="iso"), structlog.processors.JSONRenderer()]
    )
    env = os.environ
    records = env.get(ENV_CHECKPOINT_RECORDS)
    channel: Channel = (
        FileChannel(env[ENV_CHANNEL_DIR])
        if env.get(ENV_CHANNEL_DIR)
        else LeaseClient(env[ENV_NAMESPACE], env[ENV_LEASE])
    )
    worker = Worker(
        channel,
        pod=env[ENV_POD],
        output=env[ENV_OUTPUT],
        checkpoint_seconds=float(env.get(ENV_CHECKPOINT_SECONDS, "30")),
        checkpoint_records=int(records) if records else None,
        processor=json.loads(env.get(ENV_PROCESSOR) or "null"),
        fmt=env.get(ENV_FORMAT, "text"),
    )

    def on_term(signum: int, _frame: object) -> None:
        # Preemption, scale-down, drain: checkpoint at the next record and exit cleanly.
        log.info("signal received; checkpointing and exiting", signal=signum)
        worker.stopping = True

    signal.signal(signal.SIGTERM, on_term)
    return worker.run()


if __name__ == "__main__":
    sys.exit(main())
