"""The shard plan as stored in the API server: compact, compressed, and split to fit object limits.

A ConfigMap holds at most 1 MiB, and 30,000 input paths spelled out once per piece already exceed that.
So the plan is stored as a file table plus, per shard, flat (file index, start, end) triples, gzipped and
cut into chunks of at most :data:`CHUNK_BYTES`, one ConfigMap each (``<job>-plan``, ``<job>-plan-1``, ...).
A job of a million shards over 100,000 files fits in a handful of chunks; past :data:`MAX_CHUNKS` planning
refuses with a clear message.

Assignments carry a shard's pieces inline when they are small (the common case: one byte range); a
shard spanning many files is sent as a reference, and the worker reads the plan itself, once.
"""

from __future__ import annotations

import gzip
import json
from typing import Any

from datajob_core.data.planning import PlanError

FORMAT = 2
CHUNK_BYTES = 512 * 1024  # of gzip output; base64 makes it ~683 KiB, under the 1 MiB object limit
MAX_CHUNKS = 64
INLINE_PIECES = 16  # a shard of more pieces (or longer paths) goes by reference
INLINE_PATH_CHARS = 2048
PLAN_KEY = "plan.json.gz"
CHUNKS_KEY = "chunks"


def encode(plan: list[dict[str, Any]]) -> bytes:
    files: dict[str, int] = {}
    shards = []
    for entry in plan:
        flat: list[int] = []
        for piece in entry.get("pieces") or []:
            index = files.setdefault(piece["path"], len(files))
            flat += [index, int(piece["start"]), int(piece["end"])]
        shards.append(flat)
    document = {"v": FORMAT, "files": list(files), "shards": shards}
    return gzip.compress(json.dumps(document, separators=(",", ":")).encode(), mtime=0)


def decode(data: bytes) -> list[dict[str, Any]]:
    document = json.loads(gzip.decompress(data))
    if isinstance(document, list):  # format 1: the plan as a plain list (jobs started before format 2)
        return document
    if document.get("v") != FORMAT:
        raise ValueError(f"unsupported plan format {document.get('v')!r}")
    files = document["files"]
    return [
        {"pieces": [{"path": files[f], "start": start, "end": end} for f, start, end in _triples(flat)]}
        for flat in document["shards"]
    ]


def _triples(flat: list[int]) -> list[tuple[int, int, int]]:
    return [(flat[i], flat[i + 1], flat[i + 2]) for i in range(0, len(flat), 3)]


def split(data: bytes) -> list[bytes]:
    chunks = [data[i : i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES)] or [b""]
    if len(chunks) > MAX_CHUNKS:
        raise PlanError(
            f"the shard plan is {len(data) / 2**20:.0f} MiB compressed, more than the "
            f"{MAX_CHUNKS * CHUNK_BYTES // 2**20} MiB a job can store; use fewer input files or fewer shards",
            "PlanTooLarge",
        )
    return chunks


def chunk_names(job: str, count: int) -> list[str]:
    return [f"{job}-plan" if index == 0 else f"{job}-plan-{index}" for index in range(count)]


def inline(entry: dict[str, Any]) -> bool:
    """Whether a shard's plan entry is small enough to travel inside an assignment (cheap: every pass)."""
    pieces = entry.get("pieces") or []
    return len(pieces) <= INLINE_PIECES and sum(len(p["path"]) for p in pieces) <= INLINE_PATH_CHARS
