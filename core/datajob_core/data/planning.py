"""Splitting the input into shards. Pure: a file listing in, the shard plan out.

A shard is a list of byte-range pieces ``{"path", "start", "end"}``; readers align pieces to record
boundaries (a record belongs to the piece in which it starts), as Hadoop's input splits do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

# Every suffix a Kubernetes quantity may have.
_SUFFIXES = {
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
    "m": 10**-3,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "": 1,
}
# A plan holds one entry per shard and lives in the API server: past this, planning refuses with a clear
# message instead of exhausting the operator's memory.
MAX_SHARDS = 1_000_000


class PlanError(ValueError):
    """The input cannot be planned (no files matched, too many shards, ...); the message says why."""

    def __init__(self, message: str, reason: str = "InputNotFound") -> None:
        super().__init__(message)
        self.reason = reason  # for the Failed condition


@dataclass(frozen=True)
class InputFile:
    path: str
    size: int


def byte_quantity(value: str) -> int:
    """A Kubernetes byte quantity (``64Mi``, ``1G``, ``4096``, ``1e3``) as a whole number of bytes.

    Raises ValueError (never anything else, so validation reports it against the field) for text that is
    not a quantity, for infinite or absurd values, and for fractions of a byte (``100m``).
    """
    text = str(value).strip()
    number, factor = text, 1.0
    for suffix, scale in sorted(_SUFFIXES.items(), key=lambda item: -len(item[0])):
        # "1e3" is an exponent, not the suffix E: only treat E as a suffix when no digit follows it.
        if suffix and text.endswith(suffix) and not (suffix == "E" and text[:-1].lower().endswith("e")):
            number, factor = text[: -len(suffix)], float(scale)
            break
    try:
        amount = float(number) * factor
    except ValueError:
        raise ValueError(f"{text!r} is not a byte quantity (e.g. 64Mi, 1G, 4096)") from None
    if not math.isfinite(amount) or amount > 2**62:
        raise ValueError(f"{text!r} is too large for a byte quantity")
    if amount < 1:
        raise ValueError(f"{text!r} is less than one byte")
    return int(amount)


def plan_shards(files: list[InputFile], partitioning: dict[str, Any]) -> list[dict[str, Any]]:
    if not files:
        raise PlanError("no input files matched spec.input.uris")
    mode = partitioning.get("mode", "perFile")
    if mode == "perFile":
        if len(files) > MAX_SHARDS:
            raise PlanError(
                f"{len(files):,} input files make more than the {MAX_SHARDS:,} shards a job may have; "
                "use partitioning mode count",
                "PlanTooLarge",
            )
        return [{"pieces": [_piece(f, 0, f.size)]} for f in files]
    if mode == "size":
        try:
            target = byte_quantity(partitioning["targetShardSize"])
        except ValueError as error:
            raise PlanError(f"spec.input.partitioning.targetShardSize: {error}", "InvalidSpec") from None
        count = sum(max(math.ceil(f.size / target), 1) for f in files)
        if count > MAX_SHARDS:
            raise PlanError(
                f"spec.input.partitioning.targetShardSize {partitioning['targetShardSize']} would make "
                f"{count:,} shards, more than the {MAX_SHARDS:,} a job may have; choose a larger size",
                "PlanTooLarge",
            )
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
