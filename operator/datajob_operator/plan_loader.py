"""A job's shard plan: made once from its input listing, kept in ConfigMaps, read back after a restart.

The encoding and chunking are datajob_core.data.plan_store's; this is where they meet the API server.
"""

from __future__ import annotations

import base64
from typing import Any

from datajob_core.cluster import sizing
from datajob_core.data import increments, plan_store, storage_access
from datajob_core.data.planning import InputFile, PlanError, plan_shards
from datajob_core.storage.inputs import list_inputs

from . import batch_planner
from .job_runtime import JobRuntime
from .job_storage import JobStorage
from .kube import JobClient

BATCH_KEY = "batch"  # in the plan's index ConfigMap: the incremental batch the plan is


def load_plan(
    job: dict[str, Any], jobs: JobClient, runtime: JobRuntime, storage: JobStorage
) -> list[dict[str, Any]]:
    """The job's shard plan: made once, stored in ConfigMaps (plan_store), read back after a restart.
    An incremental job's is its current batch's (batch_planner; a continuous job's next batches are
    planned by continuous_batches)."""
    if runtime.plan is not None:
        return runtime.plan
    names = plan_store.chunk_names(jobs.name, 1)
    index = jobs.read_config_map(names[0])
    if index is not None and not _ours(index, job):
        if not _an_earlier_datajob_of_this_name(index, jobs.name):
            raise PlanError(
                f"ConfigMap {names[0]} exists and is not this job's plan; delete or rename it", "PlanConflict"
            )
        # A deleted DataJob's plan, not yet garbage-collected, under the name a new one of the same name uses:
        # never this job's (its input, or its incremental batch, may differ). Only chunks owned by that
        # DataJob go, and at most as many as a plan can have.
        for name in plan_store.chunk_names(jobs.name, MAX_CHUNKS):
            chunk = jobs.read_config_map(name)
            if chunk is None:
                break
            if _an_earlier_datajob_of_this_name(chunk, jobs.name) and not _ours(chunk, job):
                jobs.delete_config_map(name)
        index = None
    if index is None:
        try:
            files = list_job_inputs(job, storage)
            if job["spec"]["output"].get("resume"):  # JobController._new_state checks the plan against it
                runtime.listed = files
        except PlanError as error:
            if not (increments.is_incremental(job["spec"]) and nothing_matched(error)):
                raise
            files = []  # an open batch still runs; else NothingNew (continuous: waiting for input)
        batch = None
        if increments.is_incremental(job["spec"]):
            planned = batch_planner.plan_batch(job, storage, files)  # NothingNewError: nothing to run
            files, batch = planned.files, planned.number
            tell_changed(job, jobs, planned.changed)
        partitioning = job["spec"]["input"].get("partitioning") or {}
        plan = (
            plan_shards(files, partitioning)
            if batch is None
            else plan_shards(files, partitioning, increments.BATCH_MIN_SHARDS)
        )
        store_plan(job, jobs, runtime, plan, batch)
        return plan
    count = int(index["data"].get(plan_store.CHUNKS_KEY, "1"))
    parts = [base64.b64decode(index["binaryData"][plan_store.PLAN_KEY])]
    for name in plan_store.chunk_names(jobs.name, count)[1:]:
        stored = jobs.read_config_map(name)
        if stored is None:
            raise RuntimeError(f"plan chunk {name} is missing")
        parts.append(base64.b64decode(stored["binaryData"][plan_store.PLAN_KEY]))
    runtime.plan_chunks = count
    runtime.batch = int(index["data"][BATCH_KEY]) if BATCH_KEY in index["data"] else None
    runtime.plan = plan_store.decode(b"".join(parts))
    return runtime.plan


def nothing_matched(error: PlanError) -> bool:
    """The input's patterns matched nothing (an emptied prefix, no input yet), not an unreadable input."""
    return str(error).startswith("no input files matched")


def list_job_inputs(job: dict[str, Any], storage: JobStorage) -> list[InputFile]:
    """The job's input as listed now, with the job's own identity and only where it may reach."""
    spec_input = job["spec"]["input"]
    config, credentials = storage.credentials_for(job)
    for number, uri in enumerate(spec_input["uris"]):
        # Where a pattern can reach, symlinks resolved, before anything is listed.
        prefix = storage_access.static_prefix(uri.removeprefix("file://")) or "/"
        storage.confine(prefix, f"spec.input.uris[{number}]", shown=uri)
    files = list_inputs(spec_input["uris"], config, credentials)
    for found in files:  # a link met below the prefix; its name and target are not told
        storage.confine(found.path, "spec.input.uris", shown=None)
    return files


def tell_changed(job: dict[str, Any], jobs: JobClient, changed: list[InputFile]) -> None:
    """One event for all the objects rewritten after a batch took them (not one per object)."""
    if not changed:
        return
    more = f" and {len(changed) - 1} more" if len(changed) > 1 else ""
    jobs.post_event(
        job,
        "Warning",
        "InputChanged",
        f"{changed[0].path}{more} were rewritten after an earlier batch took them; their new content is not "
        "processed (write new data under new names)",
    )


def store_plan(
    job: dict[str, Any], jobs: JobClient, runtime: JobRuntime, plan: list[dict[str, Any]], batch: int | None
) -> None:
    """Writes the plan's ConfigMaps, replacing an earlier batch's (a continuous job's next batch)."""
    chunks = plan_store.split(plan_store.encode(plan))
    names = plan_store.chunk_names(jobs.name, len(chunks))
    if runtime.plan is not None:  # the last batch's: its chunks go (no worker reads them any more)
        delete_plan(jobs, min(runtime.plan_chunks, MAX_CHUNKS))
    for name in names:  # a deleted same-named job's chunk, left by the garbage collector, is replaced
        found = jobs.read_config_map(name)
        if found is not None and not _ours(found, job):
            if not _an_earlier_datajob_of_this_name(found, jobs.name):
                raise PlanError(f"ConfigMap {name} exists and is not this job's plan", "PlanConflict")
            jobs.delete_config_map(name)
    # The index (chunk 0, with the count) goes last: once it exists, every chunk does.
    for name, chunk in reversed(list(zip(names, chunks, strict=True))):
        manifest: dict[str, Any] = {
            "metadata": {
                "name": name,
                "labels": sizing.worker_labels(jobs.name),
                "ownerReferences": [sizing.owner_reference(job)],
            },
            "binaryData": {plan_store.PLAN_KEY: base64.b64encode(chunk).decode()},
        }
        if name == names[0]:
            manifest["data"] = {plan_store.CHUNKS_KEY: str(len(chunks))}
            if batch is not None:
                manifest["data"][BATCH_KEY] = str(batch)
        jobs.create_config_map(manifest)
    runtime.plan_chunks = len(chunks)
    runtime.plan, runtime.batch = plan, batch
    runtime.input_bytes = None  # the new plan's, for status.progress


# A plan of MAX_SHARDS shards is a few dozen chunks; this bounds what a forged "chunks" count can cost.
MAX_CHUNKS = 1000


def _ours(configmap: dict[str, Any], job: dict[str, Any]) -> bool:
    return any(uid == job["metadata"]["uid"] for _, _, uid in configmap.get("owners") or [])


def _an_earlier_datajob_of_this_name(configmap: dict[str, Any], name: str) -> bool:
    return any(
        kind.startswith("datajob.dev/") and kind.endswith("/DataJob") and owner == name
        for kind, owner, _ in configmap.get("owners") or []
    )


def delete_plan(jobs: JobClient, count: int) -> None:
    for name in plan_store.chunk_names(jobs.name, count):
        jobs.delete_config_map(name)
