"""The shuffle between the map and reduce stages: map output split by key into R partitions.

A map attempt renders its shard's combined state (a word count's counts, an aggregate's groups: the
combiner is the processor itself, so intermediate data is one line per key per shard) and splits the lines
by ``crc32(key) % R`` into R objects ``_attempts/<shard>/<attempt>-<writer>/r-<p>``, named in its commit
record.
Reduce task ``p`` reads object ``r-<p>`` of every map shard's winning attempt and merges them with the
processor's merge, so it holds only the keys of its partition: 1/R of the result, not all of it.

crc32 rather than Python's ``hash``: string hashing is salted per process, and every map worker must send a
key to the same partition.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

MAX_PARTITIONS = 1024


def partition_of(key: str, partitions: int) -> int:
    return zlib.crc32(key.encode()) % partitions


def object_name(partition: int) -> str:
    """The map output object of one partition, inside an attempt's prefix."""
    return f"r-{partition:05d}"


def split(text: str, partitions: int, key_of: Callable[[str], str]) -> list[str]:
    """Rendered lines, grouped by the partition of their key; each group keeps the lines' order."""
    groups: list[list[str]] = [[] for _ in range(partitions)]
    for line in text.splitlines(keepends=True):
        groups[partition_of(key_of(line.rstrip("\n")), partitions)].append(line)
    return ["".join(group) for group in groups]
