"""Local mode: run a DataJob manifest on this machine, like Spark's ``local[*]``.

Worker subprocesses take the place of pods and two pipes per worker take the place of its Lease
(datajob_worker.channel); the decisions (ledger, assignment, retries, backoff) are made by the same
``datajob_core.cluster.reconciler.reconcile`` the operator calls. So a local run fails and recovers exactly as
the cluster would.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.machinery
import json
import os
import random
import selectors
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import structlog

from datajob_core import protocol
from datajob_core.api.models import DataJob
from datajob_core.cluster import sizing
from datajob_core.cluster.reconciler import (
    JobState,
    ObservedReport,
    ObservedWorker,
    Phase,
    policy_from_spec,
    reconcile,
)
from datajob_core.cluster.worker_exit import describe_exit
from datajob_core.data import increments, plan_store
from datajob_core.data.locations import StorageConfig
from datajob_core.data.planning import InputFile, PlanError, plan_shards
from datajob_core.report import files as run_report
from datajob_core.shards.ledger import MAX_REASON_CHARS
from datajob_core.shards.stages import Layout
from datajob_core.storage import committer, output_identity
from datajob_core.storage.attempt_log import AttemptLog
from datajob_core.storage.checkpoint_store import CheckpointCollector, CheckpointStore
from datajob_core.storage.inputs import list_inputs
from datajob_core.storage.stores import StorageError, Store

from . import read_counter, worker_process
from .channel import WorkerLink
from .progress_display import Figures, ProgressDisplay, clock

log = structlog.get_logger("datajob.local")

# A pass runs when a worker reports or exits, and at least this often, for timers (retry backoff,
# heartbeats, injected failures).
PASS_SECONDS = 0.2
# As a pod's terminationGracePeriodSeconds: a worker still alive this long after SIGTERM is killed, so the
# driver never waits forever on one that does not exit.
GRACE_SECONDS = 30.0
STACK_DUMP_LEAD_SECONDS = 1.0


def resolve_paths(spec: dict[str, Any], base: Path) -> dict[str, Any]:
    """Relative input and output paths are taken relative to the manifest's directory."""

    def resolve(uri: str) -> str:
        if "://" in uri or os.path.isabs(uri):
            return uri
        return str((base / uri).resolve())

    spec = dict(spec)
    spec["input"] = {**spec["input"], "uris": [resolve(u) for u in spec["input"]["uris"]]}
    spec["output"] = {**spec["output"], "uri": resolve(spec["output"]["uri"])}
    return spec


def run_directory(store: Store) -> Path:
    """Where local mode keeps its channels, logs and plan: in the output directory, or for an object-store
    output in the user's cache (keyed by the output URL, so a rerun finds its own)."""
    if not store.remote:
        return Path(store.root) / "_datajob"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "datajob" / "runs" / hashlib.sha256(store.url.encode()).hexdigest()[:16]


def check_local(job: DataJob) -> None:
    """What can be checked on this machine beyond the API's rules: a user function's module is importable.

    Raises ValueError naming the field. (In a cluster the module lives in the worker image, which the
    operator cannot import from; there a missing module is the worker's termination message.)
    """
    functions = (
        ("spec.processor.function", job.spec.processor.function if job.spec.processor else None),
        ("spec.reduce.function", job.spec.reduce.function if job.spec.reduce else None),
    )
    for where, function in functions:
        if function:
            _check_importable(job, where, function)


def _check_importable(job: DataJob, field: str, function: str) -> None:
    module = function.partition(":")[0]
    # The workers get spec.env, so a PYTHONPATH there counts; the top-level package is what must be found.
    extra = [
        part
        for variable in job.spec.env or []
        if variable.name == "PYTHONPATH"
        for part in variable.value.split(os.pathsep)
        if part
    ]
    top = module.partition(".")[0]
    try:
        found = importlib.machinery.PathFinder.find_spec(top, [*extra, *sys.path])
    except (ImportError, ValueError):
        found = None
    if found is None and top not in sys.builtin_module_names:
        raise ValueError(f"{field}: module {module!r} cannot be imported here (is it on PYTHONPATH?)")


@dataclass
class LocalWorker:
    name: str
    slot: int
    process: worker_process.WorkerProcess
    started_at: float
    link: WorkerLink
    terminating: bool = False
    terminating_since: float = 0.0  # monotonic time of its SIGTERM
    stacks_dumped: bool = False  # asked for its stacks (SIGUSR1) before being killed for overstaying
    killed: bool = False  # for overstaying its grace period
    injected: bool = False  # killed by --kill-every: a disruption the harness caused, charged to nobody

    termination_log: Path | None = None

    def observe(self) -> ObservedWorker:
        code = self.process.poll()
        if code is None:
            return ObservedWorker(self.name, self.slot, "Running", self.terminating, self.started_at)
        phase = "Succeeded" if code == 0 else "Failed"
        # As a container runtime reports it: a process killed by signal N exits with 128+N.
        exit_code = code if code >= 0 else 128 - code
        reason = describe_exit(exit_code, message=self._last_words())
        return ObservedWorker(
            self.name,
            self.slot,
            phase,
            started_at=self.started_at,
            reason=reason,
            exit_code=exit_code,
            disruption=f"injected failure (--kill-every): {reason}" if self.injected else "",
        )

    def _last_words(self) -> str:
        if self.termination_log is None:
            return ""
        try:
            return self.termination_log.read_text().strip()[-MAX_REASON_CHARS:]
        except OSError:
            return ""


@dataclass
class Stats:
    started: float = field(default_factory=time.monotonic)
    records_done: dict[int, int] = field(default_factory=dict)
    records_running: int = 0
    kills: int = 0

    def records(self) -> int:
        return sum(self.records_done.values()) + self.records_running


# Normal events worth a line on the terminal: what speculation and splitting did.
SHOWN_EVENTS = frozenset({"Speculated", "SpeculationEnded", "SplitRequested", "ShardSplit"})


def _inside_of(root: Path, paths: list[str]) -> list[str]:
    """The paths that resolve inside ``root``. Each directory is resolved once and a file again only when
    it is a link: resolving 50,000 small files one by one took 1.5 s of a 3 s run."""
    directories: dict[str, Path] = {}
    inside = []
    for path in paths:
        parent, name = os.path.split(path)
        if parent not in directories:
            directories[parent] = Path(parent or ".").resolve()
        real = Path(path).resolve() if os.path.islink(path) else directories[parent] / name
        if real.is_relative_to(root):
            inside.append(path)
    return inside


@dataclass(frozen=True)
class Batch:
    """One batch of an incremental or continuous job (datajob_worker.incremental_runner)."""

    output: str  # the batch's own prefix, batches/<N>/ under the job's output
    files: list[InputFile]  # the objects its plan entry names
    owner: str  # the job's incremental identity (datajob_core.data.increments.identity)


class LocalRun:
    def __init__(
        self,
        manifest: dict[str, Any],
        base: Path,
        *,
        workers: int | None = None,
        overwrite: bool = False,
        kill_every: float | None = None,
        seed: int | None = None,
        out: TextIO | None = None,
        grace_seconds: float = GRACE_SECONDS,
        report: Path | None = None,
        batch: Batch | None = None,
    ) -> None:
        job = DataJob.load(manifest)  # raises ValueError naming every bad field
        check_local(job)
        self.name = str(job.metadata.get("name") or "datajob")
        spec = resolve_paths(job.spec.model_dump(by_alias=True, exclude_none=True), base)
        if workers is not None:
            spec["workers"] = workers
        self.batch = batch
        if batch is not None:  # one batch of an incremental job: its objects, into its own prefix
            spec["output"] = {**spec["output"], "uri": batch.output, "overwrite": False}
            spec["mode"] = "Batch"  # the batch ends when it is committed (its runner goes on to the next)
        self.spec = spec
        self.overwrite = overwrite or bool(spec["output"].get("overwrite"))
        self.owner = ""  # the output's owner id: a fingerprint of plan, parsing and processor
        self.policy = policy_from_spec(spec)
        self.output_url = spec["output"]["uri"]
        self.storage = StorageConfig.from_spec(spec.get("storage"))
        self.store = Store(self.output_url, self.storage)
        self.run_dir = run_directory(self.store)
        self.kill_every = kill_every
        self.report_copy = report  # datajob run --report PATH
        self.report: str | None = None  # the report's URL, once written
        self.grace_seconds = grace_seconds
        self.random = random.Random(seed)
        self.out = out or sys.stderr  # looked up now: a default bound at import would keep an old stream
        self.workers: dict[int, LocalWorker] = {}
        self.stats = Stats()
        self.result: str | None = None
        self.collector = CheckpointCollector(CheckpointStore(self.store))
        self.selector = selectors.DefaultSelector()
        # Per slot: the newest report received (kept after its worker exits, as a Lease keeps it) with when,
        # and the newest assignment decided (sent to the slot's worker when it starts).
        self.reports: dict[int, tuple[protocol.ReportMessage, float]] = {}
        self.assignments: dict[int, protocol.AssignmentMessage] = {}
        self.next_kill: float | None = None
        self.display = ProgressDisplay(self.out)

    # -- processes ---------------------------------------------------------------------------------
    def _slot_dir(self, slot: int) -> Path:
        return self.run_dir / "slots" / str(slot)

    def _log_path(self, worker: str) -> Path:
        return self.run_dir / "logs" / f"{worker}.log"

    def _start(self, slot: int, name: str) -> None:
        spec = self.spec
        termination_log = self._slot_dir(slot) / f"{name}.termination-log"
        checkpoint = spec.get("checkpoint") or {}
        link = WorkerLink()
        env = {
            **os.environ,
            **{e["name"]: e.get("value", "") for e in spec.get("env") or []},
            protocol.ENV_POD: name,
            protocol.ENV_JOB: self.name,
            protocol.ENV_OUTPUT: self.output_url,
            protocol.ENV_STORAGE: json.dumps(self.storage.to_dict()),
            protocol.ENV_REDUCE_PARTITIONS: str((spec.get("reduce") or {}).get("partitions") or 0),
            protocol.ENV_REDUCER: (spec.get("reduce") or {}).get("function") or "",
            protocol.ENV_REDUCE_SQL: (spec.get("reduce") or {}).get("sql") or "",
            protocol.ENV_OUTPUT_FORMAT: (spec.get("output") or {}).get("format") or "jsonl",
            protocol.ENV_OUTPUT_OWNER: self.owner,
            protocol.ENV_LEASE: protocol.lease_name(
                self.name, slot
            ),  # names the slot (the run report's rows)
            protocol.ENV_CHECKPOINT_SECONDS: str(checkpoint.get("intervalSeconds", 30)),
            protocol.ENV_PROCESSOR: json.dumps(spec.get("processor"), sort_keys=True),
            protocol.ENV_FORMAT: spec["input"].get("format", "text"),
            protocol.ENV_ENCODING: spec["input"].get("encoding", "utf-8"),
            protocol.ENV_BAD_RECORDS: spec["input"].get("badRecordPolicy", "Fail"),
            protocol.ENV_DRIVER_PID: str(os.getpid()),
            protocol.ENV_PLAN_FILE: str(self.run_dir / plan_store.PLAN_KEY),
            protocol.ENV_TERMINATION_LOG: str(termination_log),
            protocol.ENV_TIME_LIMITS: sizing.time_limits(spec),
            read_counter.ENV_READ_COUNTER: str(self._slot_dir(slot) / f"{name}.reads"),
        }
        if checkpoint.get("intervalRecords"):
            env[protocol.ENV_CHECKPOINT_RECORDS] = str(checkpoint["intervalRecords"])
        if spec["input"].get("multiLine"):
            env[protocol.ENV_MULTI_LINE] = "true"
        self._log_path(name).parent.mkdir(parents=True, exist_ok=True)
        termination_log.parent.mkdir(parents=True, exist_ok=True)
        if slot in self.workers:  # the slot's previous process has ended; its pipes go with it
            self._forget(slot)
        try:
            process = worker_process.start(env, str(self._log_path(name)), link.child_fds_by_name())
        except BaseException:
            link.close()
            raise
        link.started()
        worker = LocalWorker(name, slot, process, time.time(), link, termination_log=termination_log)
        self.workers[slot] = worker
        self.selector.register(link.reports_fd, selectors.EVENT_READ, worker)
        if slot in self.assignments:
            link.send(self.assignments[slot])

    def _stop(self, name: str, graceful: bool) -> None:
        for slot, worker in list(self.workers.items()):
            if worker.name != name:
                continue
            if worker.process.poll() is not None:
                self._forget(slot)
            elif graceful:
                if not worker.terminating:
                    worker.process.send_signal(signal.SIGTERM)
                    worker.terminating, worker.terminating_since = True, time.monotonic()
            else:
                worker.process.kill()
                worker.process.wait()
                self._forget(slot)

    def _kill_overdue(self) -> None:
        """SIGKILLs workers that outlived their grace period after SIGTERM, as kubelet does; a second before,
        each is asked to write its threads' stacks to its log, so what held it up can be seen."""
        now = time.monotonic()
        for worker in self.workers.values():
            if not worker.terminating or worker.killed or worker.process.poll() is not None:
                continue
            overstay = now - worker.terminating_since - self.grace_seconds
            if overstay > -STACK_DUMP_LEAD_SECONDS and not worker.stacks_dumped:
                worker.stacks_dumped = True
                with contextlib.suppress(ProcessLookupError):
                    worker.process.send_signal(signal.SIGUSR1)
            elif overstay > 0:
                worker.killed = True
                worker.process.kill()
                self._line(f"{worker.name} did not stop {self.grace_seconds:g}s after SIGTERM; killed it")
                self._line(f"  its threads' stacks are at the end of {self._log_path(worker.name)}")

    def _forget(self, slot: int) -> None:
        worker = self.workers.pop(slot)
        self._receive(worker)  # its last words, if any are still in the pipe
        if not worker.link.gone:
            self.selector.unregister(worker.link.reports_fd)
        worker.link.close()

    def _receive(self, worker: LocalWorker) -> None:
        """Takes the worker's newest report; at end of file (it exited) reaps it, so this pass sees it."""
        if worker.link.gone:
            return
        report = worker.link.receive()
        if report is not None:
            self.reports[worker.slot] = (report, time.time())
        if worker.link.gone:
            self.selector.unregister(worker.link.reports_fd)
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.process.wait(timeout=1.0)

    def _wait(self, timeout: float) -> None:
        """Until a worker reports or exits, or ``timeout`` passes (timers: backoff, heartbeats, chaos)."""
        for key, _ in self.selector.select(timeout):
            self._receive(key.data)

    def _chaos(self, now: float) -> None:
        """--kill-every: SIGKILL a random busy worker now and then (a Poisson process), to show recovery."""
        if not self.kill_every:
            return
        if self.next_kill is None:
            self.next_kill = now + self.random.expovariate(1 / self.kill_every)
        if now < self.next_kill:
            return
        self.next_kill = now + self.random.expovariate(1 / self.kill_every)
        # Not one killed already: it can read as alive (poll() is None) until the kernel has torn it down,
        # and a second kill of it would be counted as a second disruption the job never saw.
        alive = [w for w in self.workers.values() if w.process.poll() is None]
        busy = [w for w in alive if not w.terminating and not w.injected]
        if busy:
            victim = self.random.choice(busy)
            victim.injected = True
            victim.process.kill()
            self.stats.kills += 1
            self._line(f"injected failure: killed {victim.name}")

    # -- the loop ------------------------------------------------------------------------------------
    def run(self) -> JobState:
        worker_process.warm_up()  # imports the worker while the input is listed and planned
        files = self.batch.files if self.batch else list_inputs(self.spec["input"]["uris"], self.storage)
        here = None if self.store.remote else Path(self.store.root).resolve()
        inside = _inside_of(here, [f.path for f in files]) if here else []
        if inside:
            raise PlanError(f"spec.input.uris match the job's own output ({inside[0]}); narrow them")
        partitioning = self.spec["input"].get("partitioning") or {}
        plan = (
            plan_shards(files, partitioning, increments.BATCH_MIN_SHARDS)
            if self.batch
            else plan_shards(files, partitioning)
        )
        self.owner = self.batch.owner if self.batch else output_identity.fingerprint(plan, self.spec)
        # Raises OutputInUseError if the output is another job's (or this job's before its input changed).
        output_identity.claim(self.store, {"job": self.name, "id": self.owner}, overwrite=self.overwrite)
        layout = Layout.for_spec(len(plan), self.spec)
        state = JobState(layout.ledger())
        published = committer.Committer(self.store, self.owner).published()
        if published is not None and not self.overwrite:
            # The same job, unchanged input: its result stands. Nothing is reprocessed, nothing discarded.
            self.result = self.store.url_of(committer.RESULT)
            state.phase, state.records = Phase.SUCCEEDED, int(published.get("records", 0))
            state.message = "already succeeded with this input (--overwrite processes it again)"
            self._line(f"{self.name}: {state.message}")
            self._line(f"result: {self.result}  (manifest: {self.store.url_of(committer.SUCCESS)})")
            if self.report_copy is not None:  # the report of the run that committed it
                self._copy_report()
            return state
        if published is not None:
            output_identity.clear(self.store, {"job": self.name, "id": self.owner})
        # This run numbers its attempts from 1 again: an earlier run's attempt log would be taken for its.
        AttemptLog(self.store, self.owner).clear()
        # Channels of an earlier run into the same output would look like reports of this run's workers
        # (pod names repeat); committed parts are kept and skipped by the workers.
        shutil.rmtree(self.run_dir / "slots", ignore_errors=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # Shards too large to send inline are read from here by the workers, as from the ConfigMaps.
        (self.run_dir / plan_store.PLAN_KEY).write_bytes(plan_store.encode(plan))
        self._line(
            f"{self.name}: {len(plan)} shards from {len(files)} file(s), {self.policy.workers} worker(s), "
            f"output {self.output_url}"
        )
        try:
            while True:
                now = time.time()
                observed = [w.observe() for w in self.workers.values()]
                reports = {}
                for slot in state.slots:
                    report, renewed = self.reports.get(slot, (None, None))
                    reports[slot] = ObservedReport(slot, report, renewed)
                    self._count(report)
                decision = reconcile(
                    self.name, self.policy, state=state, workers=observed, reports=reports, plan=plan, now=now
                )
                # The driver's state is its memory: "persisted" as soon as decided, so collect now.
                problem = self.collector.after_persist(state.ledger)
                if problem:
                    log.warning(problem)
                for slot, message in decision.assignments.items():
                    if self.assignments.get(slot) != message:
                        self.assignments[slot] = message
                        if slot in self.workers:
                            self.workers[slot].link.send(message)
                for worker in self.workers.values():
                    worker.link.flush()  # what a busy worker could not take before
                for name, graceful in decision.delete:
                    self._stop(name, graceful)
                for slot, name in decision.create:
                    self._start(slot, name)
                for event in decision.events:
                    if event.type == "Warning" or event.reason in SHOWN_EVENTS:
                        self._line(f"{event.reason}: {event.message}")
                self._progress(state, reports)
                self._kill_overdue()
                if decision.finished and all(w.process.poll() is not None for w in self.workers.values()):
                    break
                self._chaos(now)
                self._wait(PASS_SECONDS)
        finally:
            for slot, worker in list(self.workers.items()):
                if worker.process.poll() is None:
                    worker.process.kill()
                    worker.process.wait()
                self._forget(slot)
            self.selector.close()
            self.display.close()  # a bar left drawn would swallow the traceback's first line
        if state.phase is Phase.SUCCEEDED:
            self.result = self.store.url_of(committer.RESULT)
        self._summary(state)
        if self.batch is None or self.report_copy is not None:
            # A batch's report only when asked for (--report): drawing and writing ~5 MB per batch is most of
            # a small batch's time on an object store.
            self._report(state)
        return state

    def _report(self, state: JobState) -> None:
        """The run report (datajob_worker.run_report), with what only the driver knows: the whole spec and
        the records read by every attempt, killed ones included."""
        counts = state.ledger.counts(0, Layout.of(state.ledger).map_shards)
        summary = {
            "phase": state.phase.value,
            "shards": f"{counts.succeeded}/{counts.total} committed, {counts.failed} failed",
            "records committed": f"{state.records:,}",
            "records read by all attempts": f"{read_counter.total(self.run_dir / 'slots'):,}",
            "worker restarts": state.restarts,
            "kills injected (--kill-every)": self.stats.kills,
            "output": self.output_url,
        }
        if state.message and state.phase is Phase.FAILED:
            summary["reason"] = state.message
        try:
            self.report = run_report.publish(
                self.store,
                self.owner,
                self.name,
                spec={"metadata": {"name": self.name}, "spec": self.spec},
                summary=summary,
                finished=True,
            )
            if self.report_copy is not None:
                self._copy_report()
        except (OSError, StorageError) as error:
            self._line(f"run report not written: {error}")
            return
        self._line(f"report: {self.report_copy or self.report}")

    def _copy_report(self) -> None:
        assert self.report_copy is not None
        try:
            self.report_copy.write_bytes(self.store.read_bytes(run_report.REPORT_NAME))
        except FileNotFoundError:
            self._line(f"no run report in {self.store.url_of(run_report.REPORT_NAME)} to copy")

    # -- display ------------------------------------------------------------------------------------
    def _count(self, report: protocol.ReportMessage | None) -> None:
        if report is None:
            return
        for outcome in report.done:
            self.stats.records_done[outcome.shard] = outcome.records

    def _progress(self, state: JobState, reports: dict[int, ObservedReport]) -> None:
        """Draws the progress bar from the reports this pass already read (no second read per slot)."""
        counts = state.ledger.counts(0, Layout.of(state.ledger).map_shards)
        running = 0
        for observed in reports.values():
            if observed.report:
                running += sum(
                    p.records
                    for k, p in observed.report.progress.items()
                    if int(k) not in self.stats.records_done
                )
        self.stats.records_running = running
        elapsed = max(time.monotonic() - self.stats.started, 1e-6)
        done = counts.succeeded + counts.failed
        self.display.update(
            Figures(
                done=done,
                total=counts.total,
                records_per_second=self.stats.records() / elapsed,
                eta_seconds=None if done == 0 else elapsed * (counts.total - done) / done,
                workers=sum(1 for w in self.workers.values() if w.process.poll() is None),
                wanted=self.policy.workers,
                restarts=state.restarts,
            )
        )

    def _line(self, text: str) -> None:
        self.display.line(text)

    def _summary(self, state: JobState) -> None:
        self.display.close()
        counts = state.ledger.counts(0, Layout.of(state.ledger).map_shards)
        elapsed = time.monotonic() - self.stats.started
        injected = f", {self.stats.kills} injected" if self.stats.kills else ""
        self._line(
            f"{self.name}: {state.phase.value} in {clock(elapsed)}: {counts.succeeded}/{counts.total} "
            f"shards committed, {counts.failed} failed, {state.records:,} records, "
            f"{state.restarts} worker restart(s){injected}"
        )
        if state.backups:
            launched, won = state.backups.get("launched", 0), state.backups.get("won", 0)
            self._line(
                f"speculation: {launched} backup attempt(s), {won} committed first, "
                f"{state.backups.get('wasted', 0)} lost to the original"
            )
        read = read_counter.total(self.run_dir / "slots")
        redone = state.restarts or state.disruptions or self.stats.kills or state.backups
        if redone and state.records and read > state.records:
            # Records read again after failures: the work lost to each kill since its last checkpoint.
            self._line(
                f"{read:,} records read by all attempts ({read / state.records:.3f}x the committed records)"
            )
        if state.skipped:
            self._line(f"{state.skipped:,} malformed record(s) skipped (spec.input.badRecordPolicy)")
        if state.message and state.phase is Phase.FAILED:
            self._line(f"reason: {state.message}")
        if self.result is not None and self.batch is None:  # a batch's: its runner says what the result is
            self._line(f"result: {self.result}  (parts: {self.output_url}/part-*, manifest: _SUCCESS)")
