"""Splitting the input into shards. Pure: a file listing in, the shard plan out.

A shard is a list of byte-range pieces ``{"path", "start", "end"}``; readers align pieces to record
boundaries (a record belongs to the piece in which it starts), as Hadoop's input splits do. In ``size``
mode consecutive small files share a shard (Hadoop's CombineFileInputFormat, Spark's file packing), each
counted as its bytes plus an open cost, so 50,000 tiny files do not become 50,000 shards.
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
    # When the object was last written (seconds since the epoch) and a token that changes when it is
    # rewritten (an ETag, or a POSIX mtime in ns): incremental runs tell new and changed objects by them.
    modified: float | None = None
    version: str = ""


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


# What opening one more file costs a shard, in bytes it could have read instead: a local open plus the
# per-piece bookkeeping of the worker. Object stores cost more per file (a request); see docs/operations.md.
DEFAULT_FILE_OPEN_COST = "64Ki"


# Packing never makes fewer shards than this when one file per shard would have made more: the plan must
# not depend on spec.workers (which may change while a job runs, and a replay must find the same shards),
# yet packing must not idle the workers of a job of a few medium files.
PACK_MIN_SHARDS = 128


def plan_shards(
    files: list[InputFile], partitioning: dict[str, Any], min_shards: int = PACK_MIN_SHARDS
) -> list[dict[str, Any]]:
    """``min_shards``: packing keeps at least this many shards where one file per shard would make more
    (a batch of an incremental job uses increments.BATCH_MIN_SHARDS: a batch is small, and each shard
    costs requests on an object store)."""
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
        combine = partitioning.get("combineFiles", True)
        # Counted before anything is built: a tiny target over a huge file must not exhaust memory first.
        count = sum(max(math.ceil(f.size / target), 1) for f in files if not combine or f.size >= target)
        if count <= MAX_SHARDS:
            shards = (
                _packed(files, target, _open_cost(partitioning), min_shards)
                if combine
                else [
                    {"pieces": [_piece(f, start, min(start + target, f.size))]}
                    for f in files
                    for start in range(0, max(f.size, 1), target)
                ]
            )
            count = len(shards)
        if count > MAX_SHARDS:
            raise PlanError(
                f"spec.input.partitioning.targetShardSize {partitioning['targetShardSize']} would make "
                f"{count:,} shards, more than the {MAX_SHARDS:,} a job may have; choose a larger size",
                "PlanTooLarge",
            )
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


MAX_FILE_OPEN_COST = 2**30


def open_cost_bytes(value: str) -> int:
    """``spec.input.partitioning.fileOpenCost`` in whole bytes: any quantity from 0 to 1Gi, fractions of a
    byte rounded down (the API server's rule admits every such quantity, so each of them means something
    here). Raises ValueError naming the field."""
    field = "spec.input.partitioning.fileOpenCost"
    text = str(value).strip()
    try:
        cost = byte_quantity(text)
    except ValueError as error:
        if "less than one byte" not in str(error):
            raise ValueError(f"{field}: {error}") from None
        mantissa = text.split("e")[0].split("E")[0]
        if text.startswith("-") and any(digit in mantissa for digit in "123456789"):
            raise ValueError(f"{field}: {text!r} is below zero") from None
        return 0  # "0", "0Ki", "+0", "0e3", "500m": less than a byte
    if cost > MAX_FILE_OPEN_COST:
        raise ValueError(f"{field} must be at most 1Gi")
    return cost


def _open_cost(partitioning: dict[str, Any]) -> int:
    try:
        return open_cost_bytes(str(partitioning.get("fileOpenCost", DEFAULT_FILE_OPEN_COST)))
    except ValueError as error:
        raise PlanError(str(error), "InvalidSpec") from None


def _packed(
    files: list[InputFile], target: int, open_cost: int, min_shards: int = PACK_MIN_SHARDS
) -> list[dict[str, Any]]:
    """Files at least ``target`` bytes are cut into ``target``-byte shards, as without packing; runs of
    smaller files share shards of at most ``limit`` (bytes + open cost per file). The limit is the target,
    lowered to a 1/PACK_MIN_SHARDS share of the input when the whole input is small (as Spark's
    ``maxSplitBytes`` lowers it to a share per core), so packing does not idle workers that one file per
    shard would have kept busy. File order is kept, so outputs concatenate in input order."""
    total = sum(f.size + open_cost for f in files)
    limit = max(min(target, max(open_cost, math.ceil(total / max(min_shards, 1)))), 1)
    shards: list[dict[str, Any]] = []
    pack: list[dict[str, Any]] = []
    packed = 0
    for f in files:
        cost = f.size + open_cost
        if f.size >= target:
            if pack:
                shards.append({"pieces": pack})
                pack, packed = [], 0
            for start in range(0, f.size, target):
                shards.append({"pieces": [_piece(f, start, min(start + target, f.size))]})
            continue
        if pack and packed + cost > limit:
            shards.append({"pieces": pack})
            pack, packed = [], 0
        pack.append(_piece(f, 0, f.size))
        packed += cost
    if pack:
        shards.append({"pieces": pack})
    return shards
