"""The same DataJob on this machine: local mode (``datajob run``), from Python."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from datajob_core.api.models import DataJob
from datajob_core.cluster.reconciler import Phase
from datajob_worker.local_runner import LocalRun

from .errors import JobFailedError, JobRejectedError
from .validation import fields_named, validated


@dataclass(frozen=True)
class LocalResult:
    phase: str
    records: int
    result: str | None  # URL (or path) of the merged result, once succeeded
    report: str | None  # URL (or path) of the run report
    message: str = ""


def run_local(
    job: DataJob | dict[str, Any],
    *,
    base: str | Path = ".",
    workers: int | None = None,
    progress: TextIO | None = None,
    raise_on_failure: bool = True,
) -> LocalResult:
    """Runs ``job`` with worker subprocesses on this machine, as ``datajob run`` does. Relative paths in the
    spec are taken from ``base``. Progress goes to ``progress`` (default: stderr; ``io.StringIO()`` for
    none). JobRejectedError if the spec is invalid, JobFailedError if the job fails."""
    manifest = validated(job)
    if DataJob.load(manifest).spec.incremental:
        return _run_batches(manifest, Path(base).resolve(), workers, progress, raise_on_failure)
    try:
        run = LocalRun(manifest, Path(base).resolve(), workers=workers, out=progress or sys.stderr)
    except ValueError as error:  # e.g. a processor module that cannot be imported here
        raise JobRejectedError(str(error), fields_named(str(error))) from None
    state = run.run()
    result = LocalResult(
        phase=state.phase.value,
        records=state.records,
        result=run.result,
        report=run.report,
        message=state.message,
    )
    if state.phase is Phase.FAILED and raise_on_failure:
        raise JobFailedError(
            f"datajob {manifest['metadata'].get('name', '')} failed: {state.message}", result
        )
    return result


def _run_batches(
    manifest: dict[str, Any], base: Path, workers: int | None, progress: TextIO | None, raise_on_failure: bool
) -> LocalResult:
    """An incremental job: the batches of input no earlier run took (a continuous one: until it has been
    idle for one poll interval, since a call must return)."""
    from datajob_worker.incremental_runner import IncrementalRun  # noqa: PLC0415 - only incremental jobs

    try:
        run = IncrementalRun(manifest, base, workers=workers, out=progress or sys.stderr, stop_when_idle=0.0)
    except ValueError as error:
        raise JobRejectedError(str(error), fields_named(str(error))) from None
    phase = run.run()
    result = LocalResult(phase=phase.value, records=run.records, result=run.result, report=None)
    if phase is Phase.FAILED and raise_on_failure:
        raise JobFailedError(f"datajob {manifest['metadata'].get('name', '')} failed", result)
    return result


__all__ = ["LocalResult", "run_local"]
