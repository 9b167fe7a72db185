"""A continuous DataJob's batches in one operator process: list the input every pollSeconds, begin the next
batch once the last one committed, size the workers by the backlog, and say how far behind the job is.

The decisions are pure (datajob_core.cluster.continuous, datajob_core.data.increments); this adapter lists
and writes with the job's own identity (the same rule as planning: JobStorage). Exactly-once rests on the
batch log (datajob_core.storage.batch_log): the next batch is planned only after the last one's commit
entry exists (its job commit task created it before reporting done), from objects no plan names.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

from datajob_core.api.identity import incremental_owner
from datajob_core.cluster import continuous
from datajob_core.cluster.reconciler import Event, JobState, ObservedReport, Policy, idle
from datajob_core.data import increments
from datajob_core.data.increments import Backlog
from datajob_core.data.planning import InputFile, PlanError, plan_shards
from datajob_core.data.storage_access import StorageAccessError
from datajob_core.shards.stages import Layout
from datajob_core.storage.batch_log import BatchLog, LogState
from datajob_core.storage.stores import StorageError

from . import plan_loader
from .batch_planner import result_status
from .job_runtime import JobRuntime
from .job_storage import JobStorage
from .kube import JobClient


@dataclass
class Stream:
    """What one process remembers of one continuous job (all of it rebuilt from the log after a restart)."""

    log: BatchLog | None = None
    listed_at: float = float("-inf")
    listing: list[InputFile] = field(default_factory=list)
    backlog: Backlog = field(default_factory=lambda: Backlog(0, 0, None))
    commit_times: list[float] = field(default_factory=list)
    last_commit: dict[str, Any] | None = None
    told_changed: set[str] = field(default_factory=set)


class ContinuousBatches:
    def __init__(self, jobs: JobClient, runtime: JobRuntime, storage: JobStorage, log: Any) -> None:
        self.jobs, self.runtime, self.storage, self.log = jobs, runtime, storage, log
        self.stream = Stream()

    def poll_seconds(self, spec: dict[str, Any]) -> float:
        return float((spec.get("continuous") or {}).get("pollSeconds", 10))

    def next_poll_in(self, spec: dict[str, Any], now: float) -> float:
        """Seconds until the input is due to be listed again (the pass's timer)."""
        return max(self.stream.listed_at + self.poll_seconds(spec) - now, 0.1)

    def _batch_log(self, job: dict[str, Any]) -> BatchLog:
        if self.stream.log is None:
            store = self.storage.output_store(job)
            if store is None:
                raise StorageAccessError(
                    "spec.output.uri",
                    "a continuous job's output must be one the operator reads (see --storage-root)",
                )
            self.storage.claim_output(job)
            self.stream.log = BatchLog(store, incremental_owner(job))
        return self.stream.log

    # -- observing -----------------------------------------------------------------------------------
    def observe(self, job: dict[str, Any], now: float, *, force: bool = False) -> LogState | None:
        """Lists the input (at most every pollSeconds, unless ``force``) and reads the log's new entries;
        the backlog is every listed object not in a committed batch. None when it was not time yet."""
        if not force and now - self.stream.listed_at < self.poll_seconds(job["spec"]):
            return None
        self.stream.listed_at = now
        try:
            listed = plan_loader.list_job_inputs(job, self.storage)
            self.stream.listing = increments.outside(listed, job["spec"]["output"]["uri"])
        except PlanError as error:
            if not plan_loader.nothing_matched(error):
                raise
            self.stream.listing = []  # nothing has arrived yet
        except StorageError as error:
            self.log.warning("listing the input failed; trying again", error=str(error))
            return None
        state = self._batch_log(job).read()
        committed = {str(o["path"]) for n in state.commits for o in state.plans.get(n, [])}
        pending = [f for f in self.stream.listing if f.path not in committed]
        self.stream.backlog = increments.backlog(pending, time.time())
        self.stream.commit_times = sorted(float(c["committedAt"]) for c in state.commits.values())
        self.stream.last_commit = state.last_commit
        return state

    # -- the next batch ------------------------------------------------------------------------------
    def advance(
        self,
        job: dict[str, Any],
        state: JobState,
        policy: Policy,
        reports: dict[int, ObservedReport],
        now: float,
    ) -> list[Event]:
        """Begins the next batch if the job is idle, no worker still reports the last one, and new input
        is listed; returns the events to post."""
        if policy.suspend or not idle(state, policy) or not continuous.quiescent(state, reports):
            return []
        # Input already seen waiting is planned at once (a fresh listing and log read); otherwise the
        # input is listed again when pollSeconds have passed.
        last = self.stream.last_commit
        unseen = last is None or int(last["batch"]) < (state.batch or 0)  # the batch that just committed
        logged = self.observe(job, now, force=self.stream.backlog.objects > 0 or unseen)
        if logged is None:
            return []
        number = logged.open_batch
        events = []
        if number is None:
            limit = int((job["spec"].get("continuous") or {}).get("maxBatchObjects", 10000))
            selection = increments.select(self.stream.listing, logged.ingested, limit)
            untold = [f for f in selection.changed if f.path not in self.stream.told_changed]
            self.stream.told_changed.update(f.path for f in untold)
            plan_loader.tell_changed(job, self.jobs, untold)
            if not selection.new:
                return []
            number = increments.next_batch(logged.plans)
            objects = self._batch_log(job).plan(number, [increments.describe(f) for f in selection.new], now)
        else:
            objects = logged.plans[number]
        files = [increments.as_input(o) for o in objects]
        partitioning = job["spec"]["input"].get("partitioning") or {}
        plan = plan_shards(files, partitioning, increments.BATCH_MIN_SHARDS)
        plan_loader.store_plan(job, self.jobs, self.runtime, plan, number)
        continuous.begin_batch(state, number, Layout.for_spec(len(plan), job["spec"]).ledger(), now)
        events.append(Event("Normal", "BatchStarted", f"batch {number}: {len(files)} new object(s)"))
        return events

    # -- sizing and status ---------------------------------------------------------------------------
    def size(self, spec: dict[str, Any], state: JobState | None, policy: Policy) -> Policy:
        """The policy with the workers the backlog wants (spec.autoscaling), or as it is."""
        autoscaling = spec.get("autoscaling")
        if not autoscaling:
            return policy
        waiting = state is None or idle(state, policy)
        wanted = continuous.desired_workers(autoscaling, self.stream.backlog.objects, waiting)
        return replace(policy, workers=wanted, autoscaled=True)

    def status(self, state: JobState | None, now: float) -> dict[str, Any]:
        backlog = self.stream.backlog
        out: dict[str, Any] = {
            "committed": len(self.stream.commit_times),
            "pendingObjects": backlog.objects,
            "pendingBytes": backlog.bytes,
            "lag": increments.human_seconds(backlog.lag_seconds or 0.0),
            "batchesPerMinute": increments.batches_per_minute(self.stream.commit_times, now),
        }
        if backlog.lag_seconds is not None:
            out["lagSeconds"] = round(backlog.lag_seconds, 1)
        if state is not None and state.batch is not None:
            out["current"] = state.batch
        if self.stream.last_commit is not None:
            out["records"] = int(self.stream.last_commit.get("totalRecords", 0))
            stamp = time.strftime(
                "%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(self.stream.last_commit["committedAt"]))
            )
            out["lastCommittedTime"] = stamp
        return out

    def output(self, job: dict[str, Any]) -> dict[str, Any] | None:
        """status.output: the newest committed batch's result (None before the first)."""
        if self.stream.last_commit is None:
            return None
        return result_status(job["spec"]["output"]["uri"], self.stream.last_commit)
