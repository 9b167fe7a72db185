"""A DataJob checked with the API's own models before it goes anywhere: the messages name the fields as the
API server's do (``spec.workers: ...``)."""

from __future__ import annotations

import re
from typing import Any

from datajob_core.api.models import DataJob

from .errors import JobRejectedError

FIELD = re.compile(r"^((?:spec|metadata)[\w.\[\]]*)(?::| )")


def validated(job: DataJob | dict[str, Any]) -> dict[str, Any]:
    """The manifest to send (as the API server stores it); JobRejectedError naming every field at fault."""
    manifest = job.model_dump(by_alias=True, exclude_none=True) if isinstance(job, DataJob) else dict(job)
    manifest.setdefault("apiVersion", "datajob.dev/v1alpha1")
    manifest.setdefault("kind", "DataJob")
    try:
        checked = DataJob.load(manifest)
    except ValueError as error:
        message = str(error)
        raise JobRejectedError(message, fields_named(message)) from None
    dumped: dict[str, Any] = checked.model_dump(by_alias=True, exclude_none=True, exclude={"status"})
    return dumped


def fields_named(message: str) -> list[str]:
    """The field paths at the start of each line of a validation message."""
    return [m.group(1) for line in message.splitlines() if (m := FIELD.match(line))]
