"""The owner id of an incremental or continuous DataJob's output (datajob_core.data.increments.identity),
from the DataJob as the API server stores it or as a manifest gives it: one id however the spec is written."""

from __future__ import annotations

from typing import Any

from datajob_core.api.models import normalised_spec
from datajob_core.data import increments


def incremental_owner(job: dict[str, Any]) -> str:
    meta = job.get("metadata") or {}
    name = str(meta.get("name") or "datajob")
    return increments.identity(normalised_spec(job["spec"]), name, meta.get("namespace"))
