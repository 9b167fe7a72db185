"""Exactly-once output without rename: attempt-scoped objects, a commit record per shard, a job commit.

Layout under the output root (a directory or an object prefix, :class:`datajob_core.storage.Store`):

- ``_attempts/<shard>/<attempt>/part`` (and ``bad_records.jsonl``): what one attempt produced. Only that
  attempt writes there, so no two writers ever share a name, and a zombie can only touch its own attempt.
- ``_datajob/commits/part-<shard>.json``: the shard's commit record, created exclusively (S3 ``If-None-Match:
  *``, POSIX ``link``). Creating it is the commit point: of all attempts that finished the shard exactly one
  creates it, and the record names that attempt's objects with their size and checksum. Every other attempt
  (a zombie, a duplicate) sees the record and its own objects are garbage.
- after the job commit: ``part-<shard>`` (the winners' objects, copied server-side), ``_bad_records/``,
  ``result`` (the processor's merge of all parts) and ``_SUCCESS``, a manifest of every shard's attempt,
  object, size, checksum and record count. ``_SUCCESS`` is written last; then scratch is deleted.

The job commit is idempotent: rerun after a crash at any point, it publishes the same objects with the same
bytes and ends with the same manifest (docs/design.md, "Committing output").
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from datajob_core.storage import Store

ATTEMPTS = "_attempts"
COMMITS = "_datajob/commits"
CHECKPOINTS = "_checkpoints"
TEMPORARY = "_temporary"
BAD_RECORDS = "_bad_records"
RESULT = "result"
SUCCESS = "_SUCCESS"
MANIFEST_VERSION = 1
# Scratch prefixes the job commit removes once _SUCCESS is written.
SCRATCH = (ATTEMPTS, CHECKPOINTS, TEMPORARY, COMMITS)


class ForeignOutputError(Exception):
    """A commit record in this output was written by another job."""


class MissingOutputError(Exception):
    """A committed shard's objects are gone (deleted by someone else): the shard must run again."""

    def __init__(self, shard: int, message: str) -> None:
        super().__init__(message)
        self.shard = shard


def part_name(shard: int) -> str:
    return f"part-{shard:06d}"


def attempt_prefix(shard: int, attempt: int) -> str:
    return f"{ATTEMPTS}/{shard:06d}/{attempt}"


def record_name(shard: int) -> str:
    return f"{COMMITS}/{part_name(shard)}.json"


def checksum(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class JobCommit:
    """What the job commit published."""

    result: str  # URL of the merged result
    manifest: str  # URL of _SUCCESS
    shards: int  # shards published
    missing: list[int]  # shards without a commit record (failed within retryPolicy.maxFailedShards)


class Committer:
    def __init__(self, store: Store, owner: str | None = None) -> None:
        self.store = store
        self.owner = owner  # the job that owns the output (datajob_core.output_identity); records name it

    # -- shard commit (a worker, once per attempt that finished its shard) ---------------------------------
    def committed(self, shard: int) -> dict[str, Any] | None:
        """The shard's commit record, or None while no attempt has committed it."""
        try:
            record: dict[str, Any] = json.loads(self.store.read_bytes(record_name(shard)))
        except FileNotFoundError:
            return None
        if self.owner and record.get("owner") != self.owner:
            # Never count another job's result as ours (a changed input or processor, a shared output).
            raise ForeignOutputError(
                f"{self.store.url_of(record_name(shard))} was committed by another job "
                f"({record.get('owner') or 'unknown'}), not by {self.owner}; use another output or set "
                "spec.output.overwrite"
            )
        return record

    def commit_shard(
        self,
        shard: int,
        attempt: int,
        data: bytes,
        meta: dict[str, Any],
        *,
        dead_letters: bytes | None = None,
    ) -> bool:
        """Writes this attempt's objects, then tries to create the commit record; True if this attempt won.

        Losing is normal (a zombie or a duplicate got there first) and leaves only garbage the job commit
        deletes: the record, not the data, decides what is published.
        """
        prefix = attempt_prefix(shard, attempt)
        objects = {"part": {"object": f"{prefix}/part", "size": len(data), "checksum": checksum(data)}}
        self.store.write(f"{prefix}/part", data)
        if dead_letters is not None:
            self.store.write(f"{prefix}/bad_records.jsonl", dead_letters)
            objects["badRecords"] = {
                "object": f"{prefix}/bad_records.jsonl",
                "size": len(dead_letters),
                "checksum": checksum(dead_letters),
            }
        record = {**meta, "shard": shard, "attempt": attempt, "objects": objects}
        if self.owner:
            record["owner"] = self.owner
        return self.store.create(record_name(shard), json.dumps(record, sort_keys=True) + "\n")

    # -- job commit (one task, after every shard finished) -----------------------------------------------
    def commit_job(
        self,
        shards: int,
        merge: Callable[[list[str]], str],
        summary: dict[str, Any],
        on_shard: Callable[[int], None] = lambda shard: None,
    ) -> JobCommit:
        """Publishes every committed shard, the merged ``result`` and the ``_SUCCESS`` manifest, then
        deletes scratch. Safe to rerun from any point; MissingOutputError if a winner's data is gone.

        ``on_shard`` is called after each shard is published: a long commit can check it is still wanted
        (and raise to stop; nothing is lost, the rerun redoes the copies)."""
        done = self._manifest()
        if done is None or (self.owner and done.get("owner") != self.owner):
            records = [self.committed(shard) for shard in range(shards)]
            published: list[dict[str, Any]] = []
            texts: list[str] = []
            for shard, record in enumerate(records):
                if record is None:
                    continue
                data = self._publish(shard, record)
                on_shard(shard)
                texts.append(data.decode())
                entry = {
                    "shard": shard,
                    "attempt": record["attempt"],
                    "object": part_name(shard),
                    "size": len(data),
                    "checksum": checksum(data),
                    "records": record.get("records", 0),
                    "bytes": record.get("bytes", 0),
                    "skipped": record.get("skipped", 0),
                    "resumedFrom": record.get("resumedFrom"),  # the checkpoint the winning attempt began at
                }
                published.append(entry)
            result = merge(texts).encode()
            self.store.write(RESULT, result)
            manifest = {
                **summary,
                "records": sum(int(e["records"]) for e in published),
                "bytes": sum(int(e["bytes"]) for e in published),
                "skipped": sum(int(e["skipped"]) for e in published),
                "version": MANIFEST_VERSION,
                "owner": self.owner,
                "result": {"object": RESULT, "size": len(result), "checksum": checksum(result)},
                "shards": published,
                "missingShards": [s for s, r in enumerate(records) if r is None],
            }
            # The last write: its presence says every object it lists is in place.
            self.store.write(SUCCESS, json.dumps(manifest, sort_keys=True, indent=1) + "\n")
            done = manifest
        self.clean_scratch()
        return JobCommit(
            result=self.store.url_of(RESULT),
            manifest=self.store.url_of(SUCCESS),
            shards=len(done.get("shards") or []),
            missing=list(done.get("missingShards") or []),
        )

    def _publish(self, shard: int, record: dict[str, Any]) -> bytes:
        objects = record.get("objects") or {}
        part = objects.get("part") or {}
        try:
            data = self.store.read_bytes(str(part.get("object")))
        except FileNotFoundError:
            # A rerun after the scratch was already deleted publishes nothing new: take what is published.
            try:
                data = self.store.read_bytes(part_name(shard))
            except FileNotFoundError:
                raise MissingOutputError(
                    shard, f"shard {shard}: committed object {part.get('object')} is gone"
                ) from None
        if part.get("checksum") and checksum(data) != part["checksum"]:
            raise MissingOutputError(shard, f"shard {shard}: {part.get('object')} does not match its record")
        self.store.write(part_name(shard), data)
        bad = objects.get("badRecords")
        if bad:
            try:
                self.store.copy(str(bad["object"]), f"{BAD_RECORDS}/{part_name(shard)}.jsonl")
            except FileNotFoundError:
                if not self.store.exists(f"{BAD_RECORDS}/{part_name(shard)}.jsonl"):
                    raise MissingOutputError(shard, f"shard {shard}: {bad['object']} is gone") from None
        return data

    def _manifest(self) -> dict[str, Any] | None:
        try:
            manifest: dict[str, Any] = json.loads(self.store.read_bytes(SUCCESS))
        except (FileNotFoundError, ValueError):
            return None
        return manifest

    def clean_scratch(self) -> None:
        for prefix in SCRATCH:
            self.store.delete_tree(prefix)
