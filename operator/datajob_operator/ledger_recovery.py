"""spec.output.resume, the I/O side: read what a job's output holds (with the job's own identity, through
JobStorage) and rebuild the ledger from it (the decisions: datajob_core.shards.recovery).

The commit records are read (each must be this job's, and says what its shard counted; after the job
commit, the _SUCCESS manifest says it for all); checkpoints and attempt logs are only listed, but for the
interrupted shards, whose newest checkpoint is read.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from datajob_core.data.planning import InputFile
from datajob_core.shards.recovery import Evidence, Rebuilt, ResumeMismatchError, rebuild
from datajob_core.shards.stages import Layout
from datajob_core.storage.attempt_log import DIRECTORY as ATTEMPT_LOG
from datajob_core.storage.checkpoint_store import DIRECTORY as CHECKPOINTS
from datajob_core.storage.checkpoint_store import CheckpointStore
from datajob_core.storage.committer import ATTEMPTS, Committer
from datajob_core.storage.stores import Store

PLAN_RECORD = "_datajob/resume-plan.json"
PLAN_RECORD_VERSION = 1
_CHECKPOINT = re.compile(r"^(\d+)/(\d+)\.\d+\.json$")
_ATTEMPT_OBJECT = re.compile(r"^(\d+)/(\d+)-[0-9a-f]+(/|$)")
_ATTEMPT_LOG = re.compile(r"^(\d+)-(\d+)-[0-9a-f]+\.json$")


class OutputNotVisibleError(Exception):
    """spec.output.resume, but the operator cannot read the output to rebuild from it."""


def resume(
    store: Store, owner: str, layout: Layout, plan: list[dict[str, Any]], inputs: list[InputFile]
) -> Rebuilt:
    """The ledger that continues the work this job's output holds (a fresh one if it holds none). Raises
    ResumeMismatchError if that work was planned differently or read other versions of the input."""
    check_plan(store, plan, layout, inputs)
    return rebuild(layout, read_evidence(store, owner))


def plan_record(plan: list[dict[str, Any]], layout: Layout, inputs: list[InputFile]) -> dict[str, Any]:
    """What must not change between runs: the shards (input ranges), and the version (ETag, or POSIX
    mtime) and size of every object they read: an object rewritten at the same size is another input."""
    planned = {str(piece.get("path")) for shard in plan for piece in shard.get("pieces") or []}
    objects = sorted([f.path, f.size, f.version] for f in inputs if f.path in planned)
    return {
        "v": PLAN_RECORD_VERSION,
        "shards": _digest(plan),
        "objects": _digest(objects),
        "mapShards": layout.map_shards,
        "partitions": layout.partitions,
    }


def check_plan(store: Store, plan: list[dict[str, Any]], layout: Layout, inputs: list[InputFile]) -> None:
    """The first run records its plan, exclusively, and it is never replaced: two runs (a lost cluster's
    pods still starting, and its successor) must never work to two plans, or shard N would mean two ranges
    of the input. Later runs must plan the same shards over the same object versions."""
    mine = plan_record(plan, layout, inputs)
    if store.create(PLAN_RECORD, json.dumps(mine, sort_keys=True) + "\n"):
        return
    where = store.url_of(PLAN_RECORD)
    try:
        recorded = json.loads(store.read_bytes(PLAN_RECORD))
    except (FileNotFoundError, ValueError) as error:
        raise ResumeMismatchError(f"{where} cannot be read: {error}") from None
    if recorded == mine:
        return
    if not isinstance(recorded, dict) or recorded.get("v") != PLAN_RECORD_VERSION:
        raise ResumeMismatchError(
            f"{where} was written by another version of the operator; use another output"
        )
    if recorded.get("shards") != mine["shards"] or recorded.get("partitions") != mine["partitions"]:
        raise ResumeMismatchError(
            f"the input plans differently from the first run of this job ({recorded.get('mapShards')} map "
            f"shards then, {layout.map_shards} now; {where}): objects were added or removed, or their sizes "
            "or the partitioning changed. Restore the input or use another output (if that run did no work, "
            f"deleting {where} lets this plan count)"
        )
    raise ResumeMismatchError(
        f"an input object was rewritten since the first run of this job (same shards, another version: "
        f"{where}): its committed shards read other bytes. Restore the input or use another output"
    )


def _digest(value: Any) -> str:
    return "sha256:" + hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def read_evidence(store: Store, owner: str) -> Evidence:
    committer = Committer(store, owner)
    manifest = committer.published()
    # Read, not only listed: a record counts only if it is this job's, and says what its shard counted.
    records = list(manifest.get("shards") or []) if manifest is not None else committer.records()
    if manifest is None and not records:
        # A commit elsewhere may have published and removed the records between the two reads.
        manifest = committer.published()
        records = list(manifest.get("shards") or []) if manifest is not None else []
    committed = frozenset(int(r["shard"]) for r in records if manifest is None)
    attempts: dict[int, int] = {}
    checkpointed: set[int] = set()
    for match in _matches(_CHECKPOINT, _below(store, CHECKPOINTS)):
        shard = int(match.group(1))
        checkpointed.add(shard)
        _highest(attempts, shard, int(match.group(2)))
    for match in _matches(_ATTEMPT_OBJECT, _below(store, ATTEMPTS)):
        _highest(attempts, int(match.group(1)), int(match.group(2)))
    for match in _matches(_ATTEMPT_LOG, store.list(ATTEMPT_LOG)):
        _highest(attempts, int(match.group(1)), int(match.group(2)))
    checkpoints = CheckpointStore(store)
    newest = {}
    for shard in sorted(checkpointed - committed):
        found = checkpoints.newest(shard)
        if found is not None:
            name, saved = found
            newest[shard] = {**saved.position, "state": name}
    return Evidence(
        committed,
        manifest is not None,
        newest,
        attempts,
        records=sum(int(r.get("records") or 0) for r in records),
        bytes=sum(int(r.get("bytes") or 0) for r in records),
        skipped=sum(int(r.get("skipped") or 0) for r in records),
    )


def _below(store: Store, prefix: str) -> list[str]:
    return [name.removeprefix(prefix + "/") for name in store.walk(prefix)]


def _matches(pattern: re.Pattern[str], names: list[str]) -> list[re.Match[str]]:
    return [m for m in map(pattern.match, names) if m is not None]


def _highest(attempts: dict[int, int], shard: int, attempt: int) -> None:
    attempts[shard] = max(attempts.get(shard, 0), attempt)


__all__ = ["OutputNotVisibleError", "ResumeMismatchError", "check_plan", "read_evidence", "resume"]
