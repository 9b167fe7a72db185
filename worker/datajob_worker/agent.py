"""The worker loop: take shards from the slot's Lease, process them with checkpoints, report outcomes.

Protocol: docs/design.md. Reported outcomes stay in the report until the operator acknowledges them, so a
completion survives an operator outage or restart.
"""

from __future__ import annotations

import faulthandler
import json
import os
import resource
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from datajob_core.data import increments, plan_store
from datajob_core.data.locations import StorageConfig
from datajob_core.protocol import (
    ENV_BAD_RECORDS,
    ENV_BATCH_LOG,
    ENV_CHECKPOINT_RECORDS,
    ENV_CHECKPOINT_SECONDS,
    ENV_DEVICES,
    ENV_DRIVER_PID,
    ENV_ENCODING,
    ENV_FORMAT,
    ENV_JOB,
    ENV_LEASE,
    ENV_MULTI_LINE,
    ENV_NAMESPACE,
    ENV_OUTPUT,
    ENV_OUTPUT_FORMAT,
    ENV_OUTPUT_OWNER,
    ENV_PLAN_FILE,
    ENV_POD,
    ENV_PROCESSOR,
    ENV_REDUCE_PARTITIONS,
    ENV_REDUCE_SQL,
    ENV_REDUCER,
    ENV_REPORT_ANNOTATION,
    ENV_STORAGE,
    ENV_TIME_LIMITS,
    AssignmentMessage,
    CurrentShard,
    LostInput,
    ReportMessage,
    ShardOutcome,
    ShardProgress,
    ShardTask,
    WorkerNotice,
    slot_of_lease,
)
from datajob_core.shards import splitting, stages
from datajob_core.shards.rangeset import RangeSet
from datajob_core.storage.attempt_log import AttemptLog
from datajob_core.storage.batch_log import BatchLog
from datajob_core.storage.committer import MissingOutputError
from datajob_core.storage.output_format import OutputCodec
from datajob_core.storage.stores import Store

from . import lifeline, processors, read_counter, readers, runtime, watchdog
from .channel import ENV_ASSIGNMENT_FD, PipeChannel
from .lease_client import LeaseClient, LeaseError
from .processors import State

log = structlog.get_logger("datajob.worker")

HEARTBEAT_SECONDS = 5.0
ORPHAN_GRACE_SECONDS = 5.0  # a local worker outliving its driver checkpoints, then is gone
# The longest an idle worker waits before reading its assignment again; news wakes it at once (a watch on
# its Lease, or the local driver's pipe).
IDLE_SECONDS = 5.0
RETRY_SECONDS = 1.0  # after a failed read of the stored plan
# Reading or writing the channel can fail transiently (API outage, file being replaced): retry later.
CHANNEL_ERRORS = (LeaseError, OSError, ValueError)


class Channel(Protocol):
    def assignment(self) -> AssignmentMessage | None: ...

    def report(self, message: ReportMessage) -> None: ...

    def plan(self) -> bytes: ...

    def wait(self, timeout: float) -> None:
        """Returns when the assignment may have changed, or after ``timeout`` seconds at most."""
        ...


@dataclass
class Reporter:
    """The worker's half of the Lease: progress of in-flight shards and unacknowledged outcomes."""

    pod: str
    seq: int = 0
    progress: dict[str, ShardProgress] = field(default_factory=dict)
    done: list[ShardOutcome] = field(default_factory=list)
    failed: list[ShardOutcome] = field(default_factory=list)
    current: CurrentShard | None = None
    notices: list[WorkerNotice] = field(default_factory=list)
    terminated: bool = False  # SIGTERM received: the exit that follows is not the user code's
    stopped: bool = False  # its slot was given to another pod: it processes nothing more

    def acknowledge(self, ack: int) -> None:
        self.done = [o for o in self.done if o.seq > ack]
        self.failed = [o for o in self.failed if o.seq > ack]
        self.notices = [n for n in self.notices if n.seq > ack]

    def outcome(
        self,
        task: ShardTask,
        *,
        records: int,
        bytes_read: int = 0,
        reason: str = "",
        permanent: bool = False,
        skipped: int = 0,
        lost: LostInput | None = None,
        end: list[int] | None = None,
    ) -> None:
        self.seq += 1
        entry = ShardOutcome(
            shard=task.shard,
            attempt=task.attempt,
            seq=self.seq,
            batch=task.batch,
            records=records,
            bytes=bytes_read,
            skipped=skipped,
            reason=reason,
            permanent=permanent,
            lost=lost,
            end=end,
        )
        (self.failed if reason else self.done).append(entry)
        self.progress.pop(str(task.shard), None)
        self.current = None

    def notice(self, reason: str, message: str) -> None:
        self.seq += 1
        self.notices.append(WorkerNotice(seq=self.seq, reason=reason, message=message[:1024]))

    def message(self) -> ReportMessage:
        return ReportMessage(
            pod=self.pod,
            seq=self.seq,
            progress=dict(self.progress),
            done=list(self.done),
            failed=list(self.failed),
            current=self.current,
            notices=list(self.notices),
            terminated=self.terminated,
            stopped=self.stopped,
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
        owner: str | None = None,
        encoding: str = "utf-8",
        bad_records: str = "Fail",
        job: str = "",
        storage: StorageConfig | None = None,
        partitions: int = 0,
        reducer: str | None = None,
        reduce_sql: str | None = None,
        output_format: str = "jsonl",
        limits: watchdog.Limits | None = None,
        multi_line: bool = False,
        slot: int | None = None,
    ) -> None:
        self.multi_line = multi_line
        self.client = client
        self.watch = watchdog.Watchdog(limits or watchdog.Limits(), time.monotonic)
        self.job = job
        self.partitions = partitions  # spec.reduce.partitions: map output is split for the reducers
        self.encoding = encoding
        self.bad_records = bad_records
        self.reporter = Reporter(pod)
        readers.use_storage(storage or StorageConfig())
        self.fmt = fmt
        spec = processor or {}
        self.exec_argv: list[str] = list(spec.get("exec") or [])
        self.processor = processors.build(
            None if self.exec_argv else spec,
            reducer,
            reduce_sql=reduce_sql,
            partitions=partitions,
            watch=self.watch,
        )
        codec = OutputCodec(output_format, self.processor.to_row, self.processor.from_row)
        self.output = runtime.OutputDir(output, owner, storage, codec)
        self.root, self.owner, self.codec = output, owner, codec
        self.batch: int | None = None  # an incremental job's batch whose prefix self.output is
        self.storage = storage
        # What the job computes, for an incremental job's batch commit (merge or append).
        self.spec, self.reducer, self.reduce_sql = (
            spec if not self.exec_argv else {"exec": True},
            reducer,
            reduce_sql,
        )
        self.attempts = AttemptLog(self.output.store, owner)  # for the run report
        self.slot = slot
        self.checkpoint_seconds = checkpoint_seconds
        self.checkpoint_records = checkpoint_records
        options = {str(k): str(v) for k, v in (spec.get("options") or {}).items()}
        # A demo/test knob: slows processing down so kills land mid-shard.
        self.delay = float(options.get("delayPerRecord", "0"))
        # The same for the job commit (per shard published) and reducers (per map output read).
        self.commit_delay = float(options.get("delayPerCommittedShard", "0"))
        self.stopping = False
        self.driver: int | None = None  # local mode: the driver's pidfd (lifeline.watch)
        # (batch, shard, attempt) of every task this worker ended: shard numbers start again each batch
        self.finished: set[tuple[int | None, int, int]] = set()
        self.moved_on = False  # its slot was given to another pod, or it was told to stop
        self.last_report = 0.0
        self.saves = 0  # checkpoint files written by this process; names are <attempt>.<saves>
        self.plan: list[dict[str, Any]] | None = None
        self.reads = read_counter.ReadCounter.from_env()  # local mode: records read, redone work included
        # The heartbeat thread and the processing loop both report; one report is built and sent at a time.
        self.lock = threading.Lock()

    # -- Lease I/O, tolerant of API outages: the work goes on and the report catches up -----------
    def send(self) -> None:
        with self.lock:
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

    def heartbeat(self, stop: threading.Event) -> None:
        """Renews the report while a record, a batch or an exec child takes longer than a heartbeat."""
        armed = self.watch.armed or self.driver is not None
        tick = min(HEARTBEAT_SECONDS / 2, 1.0) if armed else HEARTBEAT_SECONDS / 2
        orphaned_at = None
        while not stop.wait(tick):
            expired = self.watch.expired()
            if expired is not None:
                self.give_up(expired)
            if self.driver is not None and lifeline.ended(self.driver):
                # Local mode's driver is gone (killed): stop as on SIGTERM, and for good after a grace.
                orphaned_at = orphaned_at or time.monotonic()
                self.stopping = True
                if time.monotonic() - orphaned_at > ORPHAN_GRACE_SECONDS:
                    os._exit(1)
            if time.monotonic() - self.last_report >= HEARTBEAT_SECONDS:
                self.send()

    def give_up(self, reason: str) -> None:
        """User code overstayed its time limit: end the process, leaving the reason as its last words.

        Its shard stays current in the last report, so the operator charges it, with this reason."""
        log.warning("time limit exceeded; stopping the worker", reason=reason)
        lifeline.write_termination_message(reason)
        faulthandler.dump_traceback(all_threads=True)  # where the user code hung, into the log
        sys.stderr.flush()
        os._exit(watchdog.EXIT_CODE)

    # -- main loop ----------------------------------------------------------------------------------
    def run(self) -> int:
        log.info("worker started", pod=self.reporter.pod, pid=os.getpid())
        stop = threading.Event()
        beat = threading.Thread(target=self.heartbeat, args=(stop,), name="heartbeat", daemon=True)
        beat.start()
        try:
            return self._loop()
        finally:
            stop.set()
            if self.reporter.terminated:
                log.info("signal received; checkpointing and exiting")
            self.processor.close()  # the batch form's teardown(), once per worker process

    def _loop(self) -> int:
        self.send()
        while not self.stopping:
            message = self.fetch()
            if message is None or not message.pod:
                self.client.wait(IDLE_SECONDS)
                continue
            if message.pod != self.reporter.pod:
                log.info("this slot now belongs to another pod; exiting", owner=message.pod)
                with self.lock:
                    self.reporter.stopped = True
                self.send()  # the operator hands this pod's shards on once it hears it stopped
                return 0
            with self.lock:
                self.reporter.acknowledge(message.ack)
            if message.devices:
                # What DRA allocated, for user code and for the commit records (runtime.where_it_ran).
                os.environ[ENV_DEVICES] = ",".join(message.devices)
            if message.stop:
                self.send()
                log.info("told to stop")
                return 0
            todo = [t for t in message.shards if (t.batch, t.shard, t.attempt) not in self.finished]
            if not todo:
                unsent = self.reporter.done or self.reporter.failed or self.reporter.notices
                if time.monotonic() - self.last_report > HEARTBEAT_SECONDS or unsent:
                    self.send()
                self.client.wait(IDLE_SECONDS)
                continue
            task = todo[0]
            self._enter_batch(task.batch)
            with self.lock:
                self.reporter.current = CurrentShard(shard=task.shard, attempt=task.attempt, batch=task.batch)
            # Said before the first record is read (together with the last shard's outcome): if this
            # worker dies now, this shard, and only this one, is the one it was processing.
            self.send()
            self.process(task)
        self.send()
        return 0

    def _enter_batch(self, batch: int | None) -> None:
        """An incremental job's task writes its batch's own prefix (batches/<N>/ under the output root);
        the stored plan is the batch's too, so a plan read for another batch is read again."""
        if batch is None or batch == self.batch:
            return
        root = os.environ.get(ENV_BATCH_LOG) or self.root
        self.output = runtime.OutputDir(
            f"{root.rstrip('/')}/{increments.batch_root(batch)}", self.owner, self.storage, self.codec
        )
        self.attempts = AttemptLog(self.output.store, self.owner)
        self.batch, self.plan = batch, None
        with self.lock:  # what it said about the last batch's shards (a lost backup's) is over
            self.reporter.progress = {
                k: p for k, p in self.reporter.progress.items() if p.batch in (batch, None)
            }
        log.info("batch", batch=batch, output=self.output.store.url)

    def notice(self, reason: str, message: str) -> None:
        log.warning(message, reason=reason)
        with self.lock:
            self.reporter.notice(reason, message)

    def checkpoint(self, task: ShardTask, progress: runtime.Progress, state: Any) -> None:
        """Writes a checkpoint file (never replacing another attempt's) and puts it in the report."""
        self.saves += 1
        progress.state_file = self.output.checkpoints.save(
            task.shard, task.attempt, self.saves, progress.position(), state, bad=progress.bad
        )
        self._put_progress(task, progress, progress.checkpoint())

    def heartbeat_progress(self, task: ShardTask, progress: runtime.Progress) -> None:
        """How far the shard is between checkpoints (the last checkpoint stands): the operator judges
        stragglers by bytes read per second (speculation)."""
        with self.lock:
            last = self.reporter.progress.get(str(task.shard))
        same = last is not None and (last.batch, last.attempt) == (task.batch, task.attempt)
        checkpoint = last.checkpoint if last is not None and same else None
        self._put_progress(task, progress, checkpoint)

    def _put_progress(
        self, task: ShardTask, progress: runtime.Progress, checkpoint: dict[str, Any] | None
    ) -> None:
        with self.lock:
            self.reporter.progress[str(task.shard)] = ShardProgress(
                attempt=task.attempt,
                batch=task.batch,
                checkpoint=checkpoint,
                records=progress.records,
                bytes=progress.bytes,
                resumed_bytes=_resumed_bytes(task),
            )

    def resolve(self, task: ShardTask) -> ShardTask:
        """The task with its input, read from the stored plan (once) if it was too large to send inline."""
        if not task.planned:
            return task
        if self.plan is None:
            self.plan = plan_store.decode(self.client.plan())
        if task.input.get("cut") is not None:  # a shard split off a planned one: its range of that entry
            cut = splitting.Cut.from_list(task.input["cut"])
            entry = splitting.entry(cut, splitting.pieces_of(self.plan[cut.root]))
        else:
            entry = self.plan[task.shard]
        return task.model_copy(update={"input": entry, "planned": False})

    def process(self, task: ShardTask) -> None:
        log.info("processing shard", shard=task.shard, attempt=task.attempt, resume=task.checkpoint)
        last_checkpoint = time.monotonic()
        records_since = 0
        history = AttemptHistory(self, task)

        def on_record(progress: runtime.Progress, state: State, count: int) -> None:
            nonlocal last_checkpoint, records_since
            records_since += count
            history.read += count
            if self.watch.armed:
                self.watch.batch_done(progress.records, _position(task, progress))
            self.reads.add(count)
            if self.delay:
                time.sleep(self.delay * count)
            now = time.monotonic()
            due = now - last_checkpoint >= self.checkpoint_seconds or (
                self.checkpoint_records is not None and records_since >= self.checkpoint_records
            )
            if self.stopping or due:
                self.checkpoint(task, progress, state)
                last_checkpoint, records_since = now, 0
            if self.stopping or due or now - self.last_report >= HEARTBEAT_SECONDS:
                if not (self.stopping or due):
                    self.heartbeat_progress(task, progress)
                self.send()
                current = None if self.stopping else self.assigned(task)
                if current is None:
                    if self.moved_on:
                        # The slot has a new pod (this one is being deleted and SIGTERM is still on its way):
                        # leave a checkpoint to resume from, as on SIGTERM.
                        self.checkpoint(task, progress, state)
                        self.send()
                    raise runtime.ShardInterruptedError
                if current.split and self.fmt != "parquet":  # parquet positions are rows: never split
                    raise runtime.ShardSplitRequestedError

        try:
            task = self.resolve(task)
        except CHANNEL_ERRORS as error:  # the API is away: not the shard's fault, try again shortly
            log.warning("cannot read the stored plan; will retry", error=str(error))
            time.sleep(RETRY_SECONDS)
            return
        records = bytes_read = skipped = 0
        end: list[int] | None = None
        try:
            marker = None if stages.is_commit(task.input) else self.output.committed(task.shard)
            if stages.is_commit(task.input):
                self.commit_job(task)
            elif marker is not None and not self.output.committer.lost(marker):
                # (A record whose objects were deleted is not a commit: the shard runs again.)
                # Counted from the marker, so status.processed does not depend on who committed it.
                records, bytes_read = int(marker.get("records", 0)), int(marker.get("bytes", 0))
                skipped = int(marker.get("skipped", 0))
                end = runtime.end_of(marker)
                log.info("shard already committed by another attempt", shard=task.shard)
            elif task.verify:
                # The last attempt's worker died; it had not committed (storage is the truth): the shard
                # fails with the death's reason, which the ledger kept.
                raise runtime.PermanentShardError(
                    f"shard {task.shard}: the worker of attempt {task.attempt - 1} died without committing"
                )
            elif stages.is_reduce(task.input):
                history.begin()
                history.won = self.run_reduce(task)
            elif self.exec_argv:
                history.begin()
                history.won = self.run_exec(task)
            else:
                history.begin()
                self.watch.start_shard(task.shard, int((task.checkpoint or {}).get("records", 0)))
                context = runtime.ShardContext(
                    self.fmt,
                    self.processor,
                    self.output,
                    on_record,
                    self.notice,
                    encoding=self.encoding,
                    bad_records=self.bad_records,
                    multi_line=self.multi_line,
                    partitions=self.partitions,
                    # delayPerRecord (a demo and test knob) wants kills and progress to land mid-shard.
                    chunk_lines=self.checkpoint_records or (runtime.CALLBACK_EVERY if self.delay else None),
                )
                progress = runtime.run_shard(task, context)
                records, bytes_read, skipped = progress.records, progress.bytes, progress.skipped
                end = progress.end
                history.won, history.in_commit_record = progress.won, progress.won
        except runtime.ShardInterruptedError:
            history.end(*self.why_interrupted(task))
            self.watch.end_shard()
            log.info("shard interrupted; its last checkpoint stands", shard=task.shard)
            with self.lock:
                self.reporter.current = None
            return
        except (Exception, SystemExit) as error:  # noqa: BLE001 - a bad shard is reported, the worker goes on
            # sys.exit() in user code is this shard's failure too, not a request to stop the worker.
            history.end("failed", _describe(error)[:400])
            self.watch.end_shard()
            log.warning("shard failed", shard=task.shard, error=_describe(error))
            self.finished.add((task.batch, task.shard, task.attempt))
            permanent = isinstance(error, runtime.PermanentShardError)
            lost = None
            later_stage = stages.is_reduce(task.input) or stages.is_commit(task.input)
            if isinstance(error, MissingOutputError) and later_stage and error.shard != task.shard:
                lost = LostInput(shard=error.shard, attempt=error.attempt)  # that map shard must run again
            with self.lock:
                self.reporter.outcome(
                    task,
                    records=0,
                    reason=_describe(error)[:400],
                    permanent=permanent,
                    lost=lost,
                )
            return
        if not history.in_commit_record:
            history.end("committed" if history.won else "lost")
        self.watch.end_shard()
        self.finished.add((task.batch, task.shard, task.attempt))
        with self.lock:
            self.reporter.outcome(task, records=records, bytes_read=bytes_read, skipped=skipped, end=end)
        # The outcome goes out with the next shard's "current" (one write), or alone when idle.
        log.info("shard committed", shard=task.shard, attempt=task.attempt, records=records)

    def run_reduce(self, task: ShardTask) -> bool:
        """Reduce task: merge partition p of every map shard's output into this task's part."""
        partition, shards = int(task.input["partition"]), int(task.input["shards"])
        committer = self.output.committer
        texts = []
        for shard in range(shards):
            if self.commit_delay:
                time.sleep(self.commit_delay)
            texts.append(committer.read_partition(shard, partition).decode())
            if self.stopping:
                raise runtime.ShardInterruptedError
        merged = self.processor.merge(texts)
        meta = {"partition": partition, "records": 0, "keys": merged.count("\n")}
        won = committer.commit_shard(task.shard, task.attempt, committer.codec.encode(merged), meta)
        log.info("reduce partition committed", partition=partition, keys=meta["keys"])
        return won

    def commit_job(self, task: ShardTask) -> None:
        """The job commit: publish every shard's winning attempt, the merged result and _SUCCESS."""
        # Command-mode output is concatenated (user functions' merge already is).
        merge = processors.concatenate if self.exec_argv else self.processor.merge
        check = self.interruption_check(task)

        def on_shard(shard: int) -> None:
            if self.commit_delay:
                time.sleep(self.commit_delay)
            check()

        done = self.output.committer.commit_job(
            int(task.input["shards"]),
            merge,
            {"job": self.job},
            on_shard=on_shard,
            partitions=int(task.input.get("partitions", 0)),
            failed=None if task.input.get("failed") is None else RangeSet.from_list(task.input["failed"]),
            segments={int(root): list(parts) for root, parts in (task.input.get("segments") or {}).items()},
        )
        log.info("job committed", result=done.result, manifest=done.manifest, missing=done.missing)
        if task.batch is not None and os.environ.get(ENV_BATCH_LOG):
            self._commit_batch(task.batch, os.environ[ENV_BATCH_LOG])
        if self.driver is not None:
            return  # local mode: the driver draws the report, with what only it knows
        try:
            from datajob_core.report import files as run_report  # noqa: PLC0415 - plotly (70 ms): only the commit draws

            known = {
                "processor": json.loads(os.environ.get(ENV_PROCESSOR) or "null"),
                "input": {"format": self.fmt},
            }
            report = run_report.publish(
                self.output.store, self.output.owner, self.job, spec=known, summary={"phase": "Succeeded"}
            )
            log.info("run report written", report=report)
        except Exception as error:  # noqa: BLE001 - the job is committed; a missing report is not its failure
            log.warning("run report not written", error=str(error))

    def _commit_batch(self, number: int, root: str) -> None:
        """An incremental job's batch, published: its log entry and the merged result (a cluster's commit
        task; local mode's driver does it itself). Part of the commit task: a failure here is retried."""
        kind = {"processor": self.spec or None, "reduce": {"function": self.reducer, "sql": self.reduce_sql}}
        merge = self.processor.merge if increments.combines(kind) else None
        batch_log = BatchLog(Store(root, self.storage), self.output.owner or "", self.output.committer.codec)
        entry = batch_log.commit(number, merge, time.time())
        log.info("batch committed", batch=number, result=entry["result"]["object"], records=entry["records"])

    def why_interrupted(self, task: ShardTask) -> tuple[str, str]:
        """The outcome an interrupted attempt records: SIGTERM, its slot moved on, or the operator took the
        shard away (its race lost to another attempt's commit, or a stop)."""
        if self.stopping:
            return "interrupted", "SIGTERM"
        if self.moved_on:
            return "stopped", "its slot was given to another pod"
        try:
            winner = self.output.committed(task.shard)
        except Exception:  # noqa: BLE001 - only the report's wording depends on it
            winner = None
        if winner is not None and winner.get("attempt") != task.attempt:
            return "lost", f"attempt {winner.get('attempt')} committed first"
        return "stopped", "the operator took the shard away"

    def run_exec(self, task: ShardTask) -> bool:
        progress, resume_state = runtime.resume_point(task, self.output, self.notice)

        def checkpoint(value: Any) -> None:
            self.checkpoint(task, progress, value)
            self.send()

        # The heartbeat thread renews the report; the tick checks the shard is still ours.
        hooks = runtime.ExecHooks(tick=self.interruption_check(task), checkpoint=checkpoint)
        return runtime.run_exec(
            task, self.exec_argv, self.output, dict(os.environ), hooks=hooks, resume_state=resume_state
        )

    def interruption_check(self, task: ShardTask) -> Callable[[], None]:
        """For work that is not a record loop (a command, the job commit): a check to call often that raises
        ShardInterruptedError on SIGTERM, or when the task was taken away (asked once per heartbeat)."""
        checked = time.monotonic()

        def check() -> None:
            nonlocal checked
            if self.stopping:
                raise runtime.ShardInterruptedError
            if time.monotonic() - checked >= HEARTBEAT_SECONDS:
                checked = time.monotonic()
                if not self.still_assigned(task):
                    raise runtime.ShardInterruptedError

        return check

    def still_assigned(self, task: ShardTask) -> bool:
        return self.assigned(task) is not None

    def assigned(self, task: ShardTask) -> ShardTask | None:
        """The operator's current version of ``task`` (it may ask for a split); None once it is taken away."""
        message = self.fetch()
        if message is None:
            return task  # keep working through an API outage
        if message.pod != self.reporter.pod or message.stop:
            self.moved_on = True
            return None
        mine = (task.batch, task.shard, task.attempt)
        return next((t for t in message.shards if (t.batch, t.shard, t.attempt) == mine), None)


class AttemptHistory:
    """One attempt's entry in the attempt log (datajob_core.storage.attempt_log), for the run report."""

    def __init__(self, worker: Worker, task: ShardTask) -> None:
        self.worker, self.task = worker, task
        self.name: str | None = None  # the log object, once begun
        self.start: dict[str, Any] = {}
        self.cpu = 0.0
        self.read = 0  # records read by this attempt
        self.won = True
        self.in_commit_record = False  # a won map shard: its commit record tells the end

    def begin(self) -> None:
        self.cpu = _cpu_seconds()
        self.start = {
            "startedAt": time.time(),
            "pod": self.worker.reporter.pod,
            "slot": self.worker.slot,
            "resumedRecords": int((self.task.checkpoint or {}).get("records", 0) or 0),
            "speculative": self.task.backup,
            "stage": "reduce" if stages.is_reduce(self.task.input) else "map",
            **runtime.where_it_ran(),
        }
        self.name = self.worker.attempts.started(self.task.shard, self.task.attempt, self.start)

    def end(self, outcome: str, reason: str = "") -> None:
        if self.name is None:
            return
        record = {
            **self.start,
            "shard": self.task.shard,
            "attempt": self.task.attempt,
            "endedAt": time.time(),
            "outcome": outcome,
            "cpuSeconds": round(_cpu_seconds() - self.cpu, 3),
            "recordsRead": self.read,
        }
        if reason:
            record["reason"] = reason
        self.worker.attempts.ended(self.name, record)


def _cpu_seconds() -> float:
    """This process's CPU time and that of its finished children (an exec processor's command)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def _resumed_bytes(task: ShardTask) -> int:
    try:
        return max(0, int((task.checkpoint or {}).get("bytes", 0)))
    except (TypeError, ValueError):
        return 0


def main() -> int:
    structlog.configure(
        processors=[structlog.processors.TimeStamper(fmt="iso"), structlog.processors.JSONRenderer()]
    )
    # SIGUSR1 writes every thread's stack to stderr (the log): how a worker that will not stop is debugged
    # (local mode sends it before killing an overdue worker; in a pod, `kubectl exec ... kill -USR1 1`).
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    env = os.environ
    driver = None
    if env.get(ENV_DRIVER_PID):
        # Local mode: go when the driver goes. Checked after arming, in case it died before.
        lifeline.die_with_parent(signal.SIGTERM)
        try:
            driver = lifeline.watch(int(env[ENV_DRIVER_PID]))
        except ProcessLookupError:
            return 0
    try:
        records = env.get(ENV_CHECKPOINT_RECORDS)
        channel: Channel = (
            PipeChannel.from_env(env.get(ENV_PLAN_FILE))
            if env.get(ENV_ASSIGNMENT_FD)
            else LeaseClient(
                env[ENV_NAMESPACE],
                env[ENV_LEASE],
                job=env[ENV_JOB],
                report_key=env.get(ENV_REPORT_ANNOTATION, ""),
            )
        )
        worker = Worker(
            channel,
            pod=env[ENV_POD],
            output=env[ENV_OUTPUT],
            checkpoint_seconds=float(env.get(ENV_CHECKPOINT_SECONDS, "30")),
            checkpoint_records=int(records) if records else None,
            processor=json.loads(env.get(ENV_PROCESSOR) or "null"),
            fmt=env.get(ENV_FORMAT, "text"),
            owner=env.get(ENV_OUTPUT_OWNER) or None,
            encoding=env.get(ENV_ENCODING, "utf-8"),
            bad_records=env.get(ENV_BAD_RECORDS, "Fail"),
            job=env.get(ENV_JOB, ""),
            storage=StorageConfig.from_spec(json.loads(env.get(ENV_STORAGE) or "null")),
            partitions=int(env.get(ENV_REDUCE_PARTITIONS) or 0),
            reducer=env.get(ENV_REDUCER) or None,
            reduce_sql=env.get(ENV_REDUCE_SQL) or None,
            output_format=env.get(ENV_OUTPUT_FORMAT) or "jsonl",
            limits=watchdog.Limits.from_env(env.get(ENV_TIME_LIMITS)),
            multi_line=env.get(ENV_MULTI_LINE) == "true",
            slot=slot_of_lease(env.get(ENV_LEASE, "")),
        )

        def on_term(signum: int, _frame: object) -> None:
            # Preemption, scale-down, drain: checkpoint at the next record and exit cleanly. Nothing is
            # logged here: the handler runs between two bytecodes of the main thread, which may hold the
            # logger's lock mid-write, and a second write would wait for it forever (seen as a worker that
            # never stopped and was killed 30 s later). The loop says it once it stops.
            worker.stopping = worker.reporter.terminated = True

        signal.signal(signal.SIGTERM, on_term)
        worker.driver = driver
        return worker.run()
    except (Exception, SystemExit) as error:  # SystemExit: user code exiting while it is imported
        # Its last words reach the pod's termination message, then the DataJob's events and conditions.
        lifeline.write_termination_message(_describe(error))
        log.exception("worker failed", error=_describe(error))
        return 1


def _position(task: ShardTask, progress: runtime.Progress) -> str:
    pieces = task.input.get("pieces") or []
    if progress.piece >= len(pieces) or progress.offset is None:
        return ""
    unit = "row" if str(pieces[progress.piece]["path"]).endswith(".parquet") else "byte"
    return f"after {pieces[progress.piece]['path']} {unit} {progress.offset}"


def _describe(error: BaseException) -> str:
    if isinstance(error, SystemExit):
        return f"SystemExit: user code called sys.exit({error.code!r})"
    return f"{type(error).__name__}: {error}"


if __name__ == "__main__":
    sys.exit(main())
