"""Exactly-once output without rename: attempt-scoped objects, a commit record per shard, a job commit.

Layout under the output root (a directory or an object prefix, :class:`datajob_core.storage.stores.Store`):

- ``_attempts/<shard>/<attempt>-<writer>/part`` (and ``bad_records.jsonl``; with a reduce stage a map shard
  writes ``r-<p>`` per partition instead of ``part``): what one attempt produced. ``<writer>`` is random per
  commit, so no two writers ever share a name, even two runs of one manifest that number their attempts
  alike, and a zombie can only touch its own objects.
- ``_datajob/commits/part-<shard>.json``: the shard's commit record, created exclusively (S3 ``If-None-Match:
  *``, POSIX ``link``). Creating it is the commit point: of all attempts that finished the shard exactly one
  creates it, and the record names that attempt's objects with their size and checksum. Every other attempt
  (a zombie, a duplicate) sees the record and its own objects are garbage.
- after the job commit: ``part-<shard>`` (the winners' objects, copied server-side), ``_bad_records/``,
  ``result`` (the processor's merge of all parts) and ``_SUCCESS``, a manifest of every shard's attempt,
  object, size, checksum and record count. ``result`` and ``_SUCCESS`` are created exclusively, ``_SUCCESS``
  last; then scratch is deleted.

The job commit is idempotent and safe to race: rerun after a crash at any point, or run twice at once (a
zombie and its replacement, two local runs), it publishes the same objects and one manifest. A published
``_SUCCESS`` is never replaced: a later commit adopts it. A commit record missing for a shard the ledger
does not list as failed is an error (it was deleted by a concurrent commit's cleanup, which means a
``_SUCCESS`` exists to adopt, or it was lost), never a silent gap (docs/design.md, "Committing output").
"""

from __future__ import annotations

import hashlib
import itertools
import json
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from datajob_core.data import shuffle
from datajob_core.shards.splitting import Cut
from datajob_core.storage.checkpoint_store import DIRECTORY as CHECKPOINTS
from datajob_core.storage.output_format import OutputCodec
from datajob_core.storage.stores import Store

ATTEMPTS = "_attempts"
COMMITS = "_datajob/commits"
TEMPORARY = "_temporary"
BAD_RECORDS = "_bad_records"
RESULT = "result"
SUCCESS = "_SUCCESS"
MANIFEST_VERSION = 1
# Object names inside an attempt's prefix, by their key in the commit record.
OBJECT_FILES = {"part": "part", "badRecords": "bad_records.jsonl"}
# Scratch prefixes the job commit removes once _SUCCESS is written.
SCRATCH = (ATTEMPTS, CHECKPOINTS, TEMPORARY, COMMITS)


class ForeignOutputError(Exception):
    """A commit record in this output was written by another job."""


class SplitMismatchError(Exception):
    """The commit records of a split shard do not tile its input: publishing would lose or repeat records.
    An ordinary (charged) failure of the job commit: rerunning it reads the same records."""


class MissingOutputError(Exception):
    """A committed shard's objects are gone (deleted by someone else): the shard must run again."""

    def __init__(self, shard: int, message: str, attempt: int = 1) -> None:
        super().__init__(message)
        self.shard = shard
        self.attempt = attempt  # of the lost output, so the rerun gets a higher number


def part_name(shard: int) -> str:
    return f"part-{shard:06d}"


def reduce_part_name(partition: int) -> str:
    """A reducer's published output (Hadoop's naming)."""
    return f"part-r-{partition:05d}"


def attempt_prefix(shard: int, attempt: int, writer: str) -> str:
    return f"{ATTEMPTS}/{shard:06d}/{attempt}-{writer}"


def record_name(shard: int) -> str:
    return f"{COMMITS}/{part_name(shard)}.json"


def checksum(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _in_input_order(shards: int, segments: dict[int, list[int]]) -> list[tuple[int, str]]:
    """(shard, published name) of every map shard and every shard split off one, in input order."""
    order = []
    for root in range(shards):
        parts = segments.get(root) or [root]
        order += [(s, part_name(root) + (f"-{i:04d}" if i else "")) for i, s in enumerate(parts)]
    return order


def _check_tiling(segments: dict[int, list[int]], records: dict[int, dict[str, Any] | None]) -> None:
    """Each shard split off a map shard must begin where the record before it ends: a record that ran past
    a split (or stopped short of one) would publish records twice (or lose them)."""
    followed = {shard for parts in segments.values() for shard in parts[:-1]}
    for shard, record in records.items():
        if record is not None and "end" in record and shard not in followed:
            # It stopped early, yet no shard follows it (its rest was split off after this commit began).
            raise SplitMismatchError(
                f"shard {shard} stopped at {record['end']}, but no shard covers the rest of its input"
            )
    for root, parts in segments.items():
        for before, after in itertools.pairwise(parts):
            left, right = records.get(before), records.get(after)
            if left is None or right is None:
                continue  # a failed shard (within maxFailedShards): its records are missing anyway
            ends, starts = _ends(left), _starts(right)
            if ends is None or ends != starts:
                raise SplitMismatchError(
                    f"shard {after} (split off shard {root}) begins at {starts} but shard {before} "
                    f"ends at {ends or 'the end of the shard'}: its output would be published twice or lost",
                )


def _cut(record: dict[str, Any]) -> Cut | None:
    """The range of its root shard a record's shard covered (a shard split off another); None: a whole one."""
    try:
        return Cut.from_list(record.get("cut"))
    except ValueError:
        return None


def _starts(record: dict[str, Any]) -> list[int] | None:
    cut = _cut(record)
    return list(cut.start) if cut else None


def _ends(record: dict[str, Any]) -> list[int] | None:
    """Where a record's output ends in its root shard; None: at the root's end."""
    cut, end = _cut(record), record.get("end")
    if isinstance(end, list) and len(end) == 2:
        return [(cut.start[0] if cut else 0) + int(end[0]), int(end[1])]
    return list(cut.end) if cut else None


@dataclass(frozen=True)
class JobCommit:
    """What the job commit published."""

    result: str  # URL of the merged result
    manifest: str  # URL of _SUCCESS
    shards: int  # shards published
    missing: list[int]  # shards without a commit record (failed within retryPolicy.maxFailedShards)


class Committer:
    def __init__(self, store: Store, owner: str | None = None, codec: OutputCodec | None = None) -> None:
        self._foreign = False  # a _SUCCESS of another job was found (see _job_committed)
        self.store = store
        # How published objects are written (spec.output.format); merges see their text.
        self.codec = codec or OutputCodec()
        self.owner = (
            owner  # the job that owns the output (datajob_core.storage.output_identity); records name it
        )

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
        data: bytes | None,
        meta: dict[str, Any],
        *,
        dead_letters: bytes | None = None,
        partitions: list[bytes] | None = None,
    ) -> bool:
        """Writes this attempt's objects, then tries to create the commit record; True if this attempt won.

        ``data`` is the shard's output; a map shard of a job with a reduce stage writes ``partitions`` instead
        (one object per reduce partition, :mod:`datajob_core.data.shuffle`). Losing is normal (a zombie or a
        duplicate got there first) and leaves only garbage the job commit deletes: the record, not the data,
        decides what is published.
        """
        if self._job_committed():
            # This job is committed (a backup or a replacement won and the job commit ran): a late attempt,
            # e.g. a speculation's loser that has not yet heard it lost, must leave nothing in the output.
            # (Another job's _SUCCESS in an unclaimed output is not this job's: it is replaced.)
            return False
        prefix = attempt_prefix(shard, attempt, uuid.uuid4().hex[:12])
        named = [("part", data)] if data is not None else []
        named += [(shuffle.object_name(p), text) for p, text in enumerate(partitions or [])]
        if dead_letters is not None:
            named.append(("badRecords", dead_letters))
        objects = {}
        for key, payload in named:
            name = f"{prefix}/{OBJECT_FILES.get(key, key)}"
            self.store.write(name, payload)
            objects[key] = {"object": name, "size": len(payload), "checksum": checksum(payload)}
        record = {**meta, "shard": shard, "attempt": attempt, "objects": objects}
        if self.owner:
            record["owner"] = self.owner
        text = json.dumps(record, sort_keys=True) + "\n"
        if self._job_committed():  # checked again: writing the objects took time
            for entry in objects.values():
                self.store.delete(str(entry["object"]))
            return False
        if self.store.create(record_name(shard), text):
            return True
        existing = self.committed(shard)
        if self.lost(existing) and (existing or {}).get("end") == record.get("end"):
            # The winner's objects were deleted (the reason this shard runs again): this attempt replaces it
            # (only if it covers the same range: a split was made from where the winner stopped).
            self.store.write(record_name(shard), text)
            return True
        return False

    def lost(self, record: dict[str, Any] | None) -> bool:
        """Whether a commit record names objects that are gone (deleted by someone else)."""
        objects = (record or {}).get("objects") or {}
        return record is not None and not all(self.store.exists(o["object"]) for o in objects.values())

    def read_partition(self, shard: int, partition: int) -> bytes:
        """A reducer's input: map shard ``shard``'s output for ``partition`` (empty if the shard failed
        within maxFailedShards). MissingOutputError (naming the attempt) if it is gone or corrupt."""
        record = self.committed(shard)
        if record is None:
            return b""
        attempt = int(record.get("attempt", 1))
        entry = (record.get("objects") or {}).get(shuffle.object_name(partition))
        if entry is None:
            raise MissingOutputError(shard, f"shard {shard} has no output for partition {partition}", attempt)
        where = self.store.url_of(entry["object"])
        try:
            data = self.store.read_bytes(entry["object"])
        except FileNotFoundError:
            raise MissingOutputError(shard, f"map output {where} is gone", attempt) from None
        if checksum(data) != entry.get("checksum"):
            raise MissingOutputError(shard, f"map output {where} is corrupt", attempt)
        return data

    # -- job commit (one task, after every shard finished) -----------------------------------------------
    def commit_job(  # noqa: PLR0917 - the callers name everything past merge
        self,
        shards: int,
        merge: Callable[[list[str]], str],
        summary: dict[str, Any],
        on_shard: Callable[[int], None] = lambda shard: None,
        partitions: int = 0,
        failed: Iterable[int] | None = None,
        segments: dict[int, list[int]] | None = None,
    ) -> JobCommit:
        """Publishes every committed shard, the merged ``result`` and the ``_SUCCESS`` manifest, then
        deletes scratch. Safe to rerun from any point; MissingOutputError if a winner's data is gone.

        With a reduce stage (``partitions`` > 0) the reducers' outputs (tasks ``shards ..
        shards+partitions-1``) are published as ``part-r-<p>`` and ``result`` is their concatenation (each
        is already merged); the map shards' outputs were intermediate and are not published.
        ``on_shard`` is called after each task's output is published: a long commit can check it is still
        wanted (and raise to stop; nothing is lost, the rerun redoes the copies).

        ``failed``: the map shards the ledger says failed for good (within maxFailedShards); any other
        shard without a commit record raises MissingOutputError, unless a ``_SUCCESS`` of this job appeared
        meanwhile (a concurrent commit published and cleaned up): then that manifest is adopted. None: an
        older operator's task, which does not say; every gap is then taken as a failed shard.

        ``segments``: for each map shard that was split (datajob_core.shards.splitting), the shards that now
        cover it, in input order (itself first); their parts are published as ``part-<shard>``,
        ``part-<shard>-0001``, ... so that names sort in input order, and each must begin where the one
        before it ended (checked from the records: a gap or an overlap is an error, never published)."""
        done = self._manifest()
        if done is not None and self.owner and done.get("owner") != self.owner:
            # Another job's publication, left here (an output the operator could not claim): not ours to
            # adopt. Its result goes with it, or it would be taken for an earlier attempt's of this job.
            self.store.delete(SUCCESS)
            self.store.delete(RESULT)
            done = None
        if done is None:
            order = _in_input_order(shards, segments or {})
            records = [self.committed(shard) for shard, _ in order]
            _check_tiling(segments or {}, {shard: r for (shard, _), r in zip(order, records, strict=True)})
            known = None if failed is None else set(failed)
            entries: list[dict[str, Any]] = []
            ran_on: dict[str, int] = {}  # each distinct worker (pod, profile, node, devices), by first use
            texts: list[str] = []
            for (shard, name), record in zip(order, records, strict=True):
                if record is None:
                    if known is None or shard in known:
                        continue
                    adopted = self._ours()
                    if adopted is not None:  # published by a concurrent commit, which then cleaned up
                        return self._adopt(adopted)
                    raise MissingOutputError(
                        shard, f"shard {shard} has no commit record, although it did not fail"
                    )
                entry = {
                    "shard": shard,
                    "attempt": record["attempt"],
                    "records": record.get("records", 0),
                    "bytes": record.get("bytes", 0),
                    "skipped": record.get("skipped", 0),
                    "resumedFrom": record.get("resumedFrom"),  # the checkpoint the winning attempt began at
                }
                for key in ("committedAt", "cpuSeconds"):  # for the run report
                    if key in record:
                        entry[key] = record[key]
                if record.get("hardware"):  # the pod, profile, node and devices the winning attempt ran on
                    entry["ranOn"] = ran_on.setdefault(
                        json.dumps(record["hardware"], sort_keys=True), len(ran_on)
                    )
                cut = _cut(record)
                if cut is not None:
                    entry["of"] = cut.root  # a shard split off the map shard it names
                if not partitions:
                    data = self._publish(shard, record, name)
                    texts.append(self.codec.decode(data))
                    entry.update(object=name, size=len(data), checksum=checksum(data))
                self._publish_bad_records(shard, record)
                on_shard(shard)
                entries.append(entry)
            reduced: list[dict[str, Any]] = []
            for partition in range(partitions):
                task = shards + partition
                record = self.committed(task)
                if record is None:
                    adopted = self._ours()
                    if adopted is not None:  # published by a concurrent commit, which then cleaned up
                        return self._adopt(adopted)
                    raise MissingOutputError(task, f"reduce partition {partition} has no commit record")
                data = self._publish(task, record, reduce_part_name(partition))
                texts.append(self.codec.decode(data))
                reduced.append(
                    {
                        "task": task,
                        "partition": partition,
                        "attempt": record["attempt"],
                        "object": reduce_part_name(partition),
                        "size": len(data),
                        "checksum": checksum(data),
                    }
                )
                on_shard(task)
            result = self.codec.encode("".join(texts) if partitions else merge(texts))
            if not self.store.create(RESULT, result):
                # An earlier or concurrent commit of the same records got there first: its bytes are the
                # same for a deterministic merge. Different bytes with nothing published yet are stale
                # (another job's, or a non-deterministic merge's): this commit's replace them.
                existing = self.store.read_bytes(RESULT)
                if existing != result and self._ours() is None:
                    self.store.write(RESULT, result)
                else:
                    result = existing
            manifest = {
                **summary,
                "records": sum(int(e["records"]) for e in entries),
                "bytes": sum(int(e["bytes"]) for e in entries),
                "skipped": sum(int(e["skipped"]) for e in entries),
                "version": MANIFEST_VERSION,
                "owner": self.owner,
                "result": {"object": RESULT, "size": len(result), "checksum": checksum(result)},
                "format": self.codec.format,
                "shards": entries,
                "missingShards": [s for (s, _), r in zip(order, records, strict=True) if r is None],
            }
            if ran_on:  # each worker once; a shard's ranOn is its index (100,000 shards, a few hundred pods)
                manifest["hardware"] = [json.loads(key) for key in ran_on]
            if partitions:
                manifest["partitions"] = reduced
            # The last write: its presence says every object it lists is in place. Exclusive: a manifest
            # already published (by a concurrent commit) is adopted, never replaced.
            if self.store.create(SUCCESS, json.dumps(manifest, sort_keys=True, indent=1) + "\n"):
                done = manifest
            else:
                done = self._ours()
                if done is None:
                    raise ForeignOutputError(f"{self.store.url_of(SUCCESS)} was published by another job")
        return self._adopt(done)

    def _adopt(self, done: dict[str, Any]) -> JobCommit:
        self.clean_scratch()
        return JobCommit(
            result=self.store.url_of(RESULT),
            manifest=self.store.url_of(SUCCESS),
            shards=len(done.get("shards") or []),
            missing=list(done.get("missingShards") or []),
        )

    def records(self) -> list[dict[str, Any]]:
        """Every readable commit record of this job (a running or failed job's committed shards, for the
        run report), each with ``of`` when its shard was split off another."""
        names = [f"{COMMITS}/{entry}" for entry in self.store.list(COMMITS) if entry.endswith(".json")]
        out = []
        for payload in self.store.read_many(names).values():
            try:
                record = json.loads(payload) if payload is not None else None
            except ValueError:
                continue
            if not isinstance(record, dict) or (self.owner and record.get("owner") != self.owner):
                continue
            cut = _cut(record)
            out.append({**record, "of": cut.root} if cut else record)
        return out

    def published(self) -> dict[str, Any] | None:
        """This job's ``_SUCCESS`` manifest, if it committed already."""
        return self._ours()

    def _ours(self) -> dict[str, Any] | None:
        done = self._manifest()
        return done if done is not None and (not self.owner or done.get("owner") == self.owner) else None

    def _publish(self, shard: int, record: dict[str, Any], target: str) -> bytes:
        """Copies the winning attempt's ``part`` to ``target`` (server-side on S3, a hard link on POSIX);
        returns its bytes, which the merge needs anyway."""
        part = (record.get("objects") or {}).get("part") or {}
        source: str | None = str(part.get("object"))
        try:
            data = self.store.read_bytes(str(source))
        except FileNotFoundError:
            # A rerun after the scratch was already deleted publishes nothing new: take what is published.
            source = None
            try:
                data = self.store.read_bytes(target)
            except FileNotFoundError:
                raise MissingOutputError(
                    shard, f"shard {shard}: committed object {part.get('object')} is gone"
                ) from None
        if part.get("checksum") and checksum(data) != part["checksum"]:
            raise MissingOutputError(shard, f"shard {shard}: {part.get('object')} does not match its record")
        if source is not None:
            try:
                self.store.copy(source, target)
            except FileNotFoundError:  # deleted since it was read (a concurrent commit's cleanup)
                self.store.write(target, data)
        return data

    def _publish_bad_records(self, shard: int, record: dict[str, Any]) -> None:
        bad = (record.get("objects") or {}).get("badRecords")
        if not bad:
            return
        target = f"{BAD_RECORDS}/{part_name(shard)}.jsonl"
        try:
            self.store.copy(str(bad["object"]), target)
        except FileNotFoundError:
            if not self.store.exists(target):
                raise MissingOutputError(shard, f"shard {shard}: {bad['object']} is gone") from None

    def _job_committed(self) -> bool:
        """Whether this job's ``_SUCCESS`` is published; another job's, seen once, is not read again (a
        100,000-shard manifest is tens of MB, and every shard commit asks)."""
        if self._foreign or not self.store.exists(SUCCESS):
            return False
        done = self._manifest()
        if done is None:
            return False
        if not self.owner or done.get("owner") == self.owner:
            return True
        self._foreign = True
        return False

    def _manifest(self) -> dict[str, Any] | None:
        try:
            manifest: dict[str, Any] = json.loads(self.store.read_bytes(SUCCESS))
        except (FileNotFoundError, ValueError):
            return None
        return manifest

    def clean_scratch(self) -> None:
        for prefix in SCRATCH:
            self.store.delete_tree(prefix)
