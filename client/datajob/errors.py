"""The client's errors: one type per thing a caller does something different about."""

from __future__ import annotations


class DataJobError(Exception):
    """Anything the client refuses or reports about a job."""


class JobRejectedError(DataJobError, ValueError):
    """The spec is invalid; ``fields`` names each field at fault as the API server does (spec.workers)."""

    def __init__(self, message: str, fields: list[str] | None = None) -> None:
        super().__init__(message)
        self.fields = fields or []


class JobFailedError(DataJobError):
    """The job ran and ended Failed; ``status`` is its last status."""

    def __init__(self, message: str, status: object) -> None:
        super().__init__(message)
        self.status = status


class JobTimeoutError(DataJobError):
    """``wait`` gave up before the job finished; the job itself goes on."""
