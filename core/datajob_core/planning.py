"""Splitting the input into shards. Pure: a file listing in, the shard plan out.

A shard is a list of byte-range pieces ``{"path", "start", "end"}``; readers align pieces to record
boundaries (a record belongs to the piece in which it starts), as Hadoop's input splits do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

_SUFFIXES = {
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "": 1,
}


class PlanError(ValueError):
    """The input cannot be planned (no files matched, empty input, ...); the message says why."""


@dataclass(frozen=True)
class InputFile:
    path: str
    size: int


def byte_quantity(value: str) -> int:
    """A Kubernetes byte quantity (``64Mi``, ``1G``, ``4096``) as an int."""
    text = str(value).strip()
    for suffix, factor in sorted(_SUFFIXES.items(), key=lambda item: -len(item[0])):
        if suffix and text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * factor)
    return int(float(text))


def plan_shards(files: list[InputFile], partitioning: dict[str, Any]) -> list[dict[str, Any]]:
    if not files:
        raise PlanError("no input files matched spec.input.uris")
    mode = partitioning.get("mode", "perFile")
    if mode == "perFile":
        return [{"pieces": [_piece(f, 0, f.size)]} for f in files]
    if mode == "size":
        target = byte_quantity(partitioning["targetShardSize"])
        if target <= 0:
            raise PlanError("spec.input.partitioning.targetShardSize must be positive")
        shards = []
        for f in files:
            for start in range(0, max(f.size, 1), target):
                shards.append({"pieces": [_piece(f, start, min(start + target, f.size))]})
        return shards
    if mode == "count":
        return _even_split(files, int(partitioning["shards"]))
    raise PlanError(f"unknown spec.input.partitioning.mode {mode!r}")


def _piece(f: InputFile, start: int, end: int) -> dict[str, Any]:
    return {"path": f.path, "start": start, "end": end}


def _even_split(files: list[InputFile], count: int) -> list[dict[str, Any]]:
    """``count`` shards of near-equal bytes over the concatenated input; a shard may span files."""
    total = sum(f.size for f in files)
    if count < 1:
        raise PlanError("spec.input.partitioning.shards must be at least 1")
    size = max(math.ceil(total / count), 1)
    shards: list[dict[str, Any]] = [{"pieces": []} for _ in range(count)]
    offset = 0  # position in the concatenated input
    for f in files:
        start = 0
        while start < f.size:
            index = min(offset // size, count - 1)
            end = min(f.size, start + (index + 1) * size - offset)
            shards[index]["pieces"].append(_piece(f, start, end))
            offset += end - start
            start = end
    return shards
