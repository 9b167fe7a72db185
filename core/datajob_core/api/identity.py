"""The owner id of a DataJob's output: its UID, or for jobs whose runs share one output (incremental and
continuous jobs, spec.output.resume) datajob_core.data.increments.identity, from the DataJob as the API
server stores it or as a manifest gives it: one id however the spec is written."""

from __future__ import annotations

from typing import Any

from datajob_core.api.models import Input, Processor, Reduce
from datajob_core.data import increments


def incremental_owner(job: dict[str, Any], kind: str = "") -> str:
    """From the immutable parts only (input, processor, reduce, output format), each normalised on its own:
    a later edit of a mutable field (hardware, workers) can neither change the id nor make it fail."""
    meta, spec = job.get("metadata") or {}, job["spec"]
    name = str(meta.get("name") or "datajob")
    parts: dict[str, Any] = {"input": _dump(Input, spec.get("input")), "output": spec.get("output") or {}}
    for key, model in (("processor", Processor), ("reduce", Reduce)):
        if spec.get(key) is not None:
            parts[key] = _dump(model, spec[key])
    if spec.get("command"):
        parts["command"] = spec["command"]
    return increments.identity(parts, name, meta.get("namespace"), kind)


def output_owner(job: dict[str, Any]) -> str:
    """Whose output the job's is (datajob_core.storage.output_identity): its UID, unless its runs share the
    output: an incremental job's batch log, or spec.output.resume, where a re-applied DataJob or its copy
    in another cluster continues what an earlier run committed (docs/design.md, Rebuilding the ledger)."""
    spec = job["spec"]
    if increments.is_incremental(spec):
        return incremental_owner(job)
    if (spec.get("output") or {}).get("resume"):
        return incremental_owner(job, kind="resume")
    return str(job["metadata"]["uid"])


def _dump(model: Any, value: Any) -> dict[str, Any]:
    dumped: dict[str, Any] = model.model_validate(value).model_dump(by_alias=True, exclude_none=True)
    return dumped
