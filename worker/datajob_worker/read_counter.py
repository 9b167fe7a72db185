"""How many records a worker process has read, kept where a SIGKILL cannot take it: local mode's measure of
work done twice (records read by every attempt, including those a killed worker read after its last
checkpoint), shown in the run's summary.

The count lives in an 8-byte shared file mapping that the worker updates per batch of records (a memory
write, no system call); the kernel keeps what was written when the process dies, and the driver sums the
files at the end. In a cluster no counter file is given, and counting is a no-op.
"""

from __future__ import annotations

import mmap
import os
import struct
from pathlib import Path

ENV_READ_COUNTER = "DATAJOB_READ_COUNTER"
_FORMAT = "<q"
SIZE = struct.calcsize(_FORMAT)


class ReadCounter:
    def __init__(self, path: str | None) -> None:
        self.total = 0
        self.view: mmap.mmap | None = None
        if path:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                os.ftruncate(fd, SIZE)
                self.view = mmap.mmap(fd, SIZE)
            finally:
                os.close(fd)

    @classmethod
    def from_env(cls) -> ReadCounter:
        return cls(os.environ.get(ENV_READ_COUNTER))

    def add(self, count: int) -> None:
        if self.view is not None:
            self.total += count
            struct.pack_into(_FORMAT, self.view, 0, self.total)


def total(directory: Path, pattern: str = "*.reads") -> int:
    """The sum of every counter file under ``directory``."""
    return sum(
        struct.unpack(_FORMAT, path.read_bytes()[:SIZE])[0]
        for path in directory.rglob(pattern)
        if path.stat().st_size >= SIZE
    )
