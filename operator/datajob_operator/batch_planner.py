"""The batch an incremental DataJob runs, in a cluster: read its output's batch log with the job's own
identity, take the objects no earlier run took, and fix them in a plan entry before a pod starts.

The decisions are datajob_core.data.increments'; the log is datajob_core.storage.batch_log. A re-applied
DataJob (a new UID, the same computation) continues the log: its identity is the spec's
(increments.identity), not the UID. A batch planned by an earlier run and never committed (its DataJob
deleted mid-run) is run again first, exactly as planned.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from datajob_core.api.identity import incremental_owner
from datajob_core.data import increments
from datajob_core.data.planning import InputFile, PlanError
from datajob_core.data.storage_access import StorageAccessError
from datajob_core.storage.batch_log import BatchLog

from .job_storage import JobStorage


class NothingNewError(Exception):
    """Every input object is in a committed batch already: the run has nothing to do."""

    def __init__(self, message: str, last: dict[str, Any] | None) -> None:
        super().__init__(message)
        self.last = last


@dataclass(frozen=True)
class PlannedBatch:
    number: int
    files: list[InputFile]
    changed: list[InputFile]


def plan_batch(job: dict[str, Any], storage: JobStorage, listing: list[InputFile]) -> PlannedBatch:
    """The batch this run processes; NothingNewError when there is none. Raises OutputInUseError (another
    job's output), BatchLogError, StorageAccessError (the operator may not read this output)."""
    store = storage.output_store(job)
    if store is None:
        raise StorageAccessError(
            "spec.output.uri",
            "an incremental job's output must be one the operator reads (its batch log says what earlier "
            "runs took), and this path is not mounted in the operator (see --storage-root)",
        )
    storage.claim_output(job)  # the batch log is written only into an output that is this job's
    log = BatchLog(store, incremental_owner(job))
    state = log.read()
    number = state.open_batch
    if number is not None:
        return PlannedBatch(number, [increments.as_input(o) for o in state.plans[number]], [])
    continuous = job["spec"].get("mode") == "Continuous"
    limit = int((job["spec"].get("continuous") or {}).get("maxBatchObjects", 10000)) if continuous else None
    selection = increments.select(
        increments.outside(listing, job["spec"]["output"]["uri"]), state.ingested, limit
    )
    if not selection.new:
        log.refresh()  # the result copy a commit killed after its log entry may not have made
        last = state.last_commit
        if last is None and not continuous:
            raise PlanError(f"no input files matched spec.input.uris {job['spec']['input']['uris']}")
        told = f" since batch {last['batch']}" if last else ""
        raise NothingNewError(f"no new input{told}: every object is in a committed batch", last)
    number = increments.next_batch(state.plans)
    objects = log.plan(number, [increments.describe(f) for f in selection.new], time.time())
    return PlannedBatch(number, [increments.as_input(o) for o in objects], selection.changed)


def result_status(uri: str, last: dict[str, Any] | None) -> dict[str, Any]:
    """status.output of an incremental run: the log's newest result, which a reader should take."""
    root = uri.rstrip("/")
    if last is None:
        return {"uri": uri}
    named = f"{root}/{last['result']['object']}"
    return {
        "uri": uri,
        "commit": "Succeeded",
        "result": f"{root}/result" if last.get("mode") == "merge" else named,
        "manifest": f"{root}/{increments.commit_entry(int(last['batch']))}",
    }


def show_batch(status: dict[str, Any], spec: dict[str, Any], batch: int) -> None:
    """The batch in status.batches and, once its commit is done, where its result is (not the root's
    _SUCCESS: the batch's log entry)."""
    status["batches"] = {**(status.get("batches") or {}), "current": batch}
    output = status.get("output") or {}
    if output.get("result"):
        root = str(output.get("uri") or spec["output"]["uri"]).rstrip("/")
        merged = increments.combines(spec)
        output["result"] = f"{root}/result" if merged else f"{root}/{increments.batch_root(batch)}/result"
        output["manifest"] = f"{root}/{increments.commit_entry(batch)}"
        status["batches"]["committed"] = batch + 1
