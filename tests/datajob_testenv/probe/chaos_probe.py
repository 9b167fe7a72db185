"""A user processor for chaos runs: passes each record through and counts it in a file per process.

One byte per record, appended with os.write, so the count survives a SIGKILL of the process: the sum over
all files is every record any worker read, including work lost to kills (work amplification).
"""

from __future__ import annotations

import os

_descriptor: int | None = None


def passthrough(record: str) -> str:
    global _descriptor  # noqa: PLW0603 - one open file per worker process
    if _descriptor is None:
        path = os.path.join(os.environ["CHAOS_READS_DIR"], str(os.getpid()))
        _descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.write(_descriptor, b".")
    return record
