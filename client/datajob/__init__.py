"""The Python client: build a DataJob from the API's own models, run it on a cluster or on this machine.

    from datajob import Client, DataJob, run_local

    job = DataJob.load(yaml.safe_load(open("examples/wordcount/datajob-s3.yaml")))
    handle = Client.from_kubeconfig(namespace="default").submit(job)
    status = handle.wait(on_progress=lambda s: print(s.phase, s.progress_percent))
    print(handle.result().decode()[:200])

Errors are typed: :class:`JobRejectedError` (the spec is invalid: checked here with the same models the
API server's rules come from, and again by the API server), :class:`JobFailedError` (it ran and failed),
:class:`JobTimeoutError` (``wait`` gave up; the job goes on).
"""

from __future__ import annotations

from datajob_core.api.models import DataJob, DataJobSpec

from .cluster import Client, JobEvent, JobHandle, JobStatus
from .errors import DataJobError, JobFailedError, JobRejectedError, JobTimeoutError
from .local import LocalResult, run_local

__all__ = [
    "Client",
    "DataJob",
    "DataJobError",
    "DataJobSpec",
    "JobEvent",
    "JobFailedError",
    "JobHandle",
    "JobRejectedError",
    "JobStatus",
    "JobTimeoutError",
    "LocalResult",
    "run_local",
]
