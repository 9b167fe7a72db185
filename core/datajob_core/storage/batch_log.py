"""The batch log of an incremental or continuous job: which objects each batch took, and what it published.

Layout under the output (names from datajob_core.data.increments):

- ``_datajob/batches/<N>.plan.json``: batch N's objects (path, size, version, modified), created exclusively
  before the batch runs. Once it exists the batch is fixed: a driver that restarts runs exactly it again.
- ``batches/<N>/``: the batch's own output, an ordinary job's (``part-*``, ``result``, ``_SUCCESS``),
  committed exactly once per shard by :mod:`datajob_core.storage.committer`.
- ``batches/<N>/cumulative`` (merging processors): the merge of batch N-1's cumulative result and batch N's
  result, created exclusively.
- ``_datajob/batches/<N>.json``: the commit entry, created exclusively once the above are in place. Its
  existence is the batch's commit point: it names the result a reader should take, with its checksum.
- ``result`` (merging processors): a copy of the newest cumulative result, for readers that do not read the
  log. It is rewritten after each commit entry, so for a moment it may be one batch behind the log.

A batch commit is idempotent and safe to race (a zombie and its replacement, two drivers): every object it
creates is created exclusively, and a loser adopts what the winner published.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from datajob_core.data import increments
from datajob_core.storage.committer import RESULT, Committer, checksum
from datajob_core.storage.output_format import OutputCodec
from datajob_core.storage.stores import Store


class BatchLogError(Exception):
    """The log cannot be continued (an entry of another job, a batch committed before its predecessor)."""


@dataclass(frozen=True)
class LogState:
    plans: dict[int, list[dict[str, Any]]]  # batch -> its objects
    commits: dict[int, dict[str, Any]]  # batch -> its commit entry

    @property
    def ingested(self) -> dict[str, dict[str, Any]]:
        return increments.ingested_objects(self.plans)

    @property
    def open_batch(self) -> int | None:
        return increments.open_batch(self.plans, self.commits)

    @property
    def last_commit(self) -> dict[str, Any] | None:
        return self.commits[max(self.commits)] if self.commits else None


class BatchLog:
    def __init__(self, store: Store, owner: str, codec: OutputCodec | None = None) -> None:
        self.store = store
        self.owner = owner
        self.codec = codec or OutputCodec()
        self._plans: dict[int, list[dict[str, Any]]] = {}  # entries never change once created: cached
        self._commits: dict[int, dict[str, Any]] = {}

    def batch_store(self, number: int) -> Store:
        return self.store.below(increments.batch_root(number))

    # -- reading -------------------------------------------------------------------------------------
    def read(self) -> LogState:
        """Every entry of the log (entries read before are not read again: they never change). An entry
        that is listed but cannot be read is an error, never taken for an absent one: its objects would
        be planned again."""
        names = [n for n in self.store.list(increments.LOG) if increments.entry_number(n) is not None]
        unread = [
            f"{increments.LOG}/{n}"
            for n in names
            if (found := increments.entry_number(n))
            and found[0] not in (self._plans if found[1] == "plan" else self._commits)
        ]
        for name, payload in self.store.read_many(unread).items():
            number, kind = increments.entry_number(name) or (0, "")
            # Entries are created whole (one PUT, or a link of a finished file): None was a failed read.
            entry = self._parse(name, payload if payload is not None else self.store.read_bytes(name))
            if kind == "plan":
                self._plans[number] = list(entry["objects"])
            else:
                self._commits[number] = entry
        return LogState(dict(self._plans), dict(self._commits))

    def _entry(self, kind: str, number: int) -> dict[str, Any] | None:
        """One entry (cached), None if there is none."""
        cache: dict[int, Any] = self._plans if kind == "plan" else self._commits
        if number in cache:
            return {"objects": cache[number]} if kind == "plan" else dict(cache[number])
        name = increments.plan_entry(number) if kind == "plan" else increments.commit_entry(number)
        payload = _read(self.store, name)
        if payload is None:
            return None
        entry = self._parse(name, payload)
        cache[number] = list(entry["objects"]) if kind == "plan" else entry
        return entry

    def _parse(self, name: str, payload: bytes) -> dict[str, Any]:
        try:
            entry = json.loads(payload)
        except ValueError:
            entry = None
        if not isinstance(entry, dict) or not isinstance(entry.get("objects"), list):
            raise BatchLogError(f"{self.store.url_of(name)} is not a readable batch log entry")
        if entry.get("owner") != self.owner:
            raise BatchLogError(
                f"{self.store.url_of(name)} was written by another job ({entry.get('owner') or 'unknown'}), "
                f"not by {self.owner}: the job's name, input, processor or output format changed since; use "
                "another output or set spec.output.overwrite"
            )
        return entry

    # -- planning ------------------------------------------------------------------------------------
    def plan(self, number: int, objects: list[dict[str, Any]], now: float) -> list[dict[str, Any]]:
        """Fixes batch ``number``'s objects, or adopts the plan a concurrent driver fixed first."""
        entry = {"batch": number, "owner": self.owner, "objects": objects, "plannedAt": now}
        name = increments.plan_entry(number)
        if not self.store.create(name, json.dumps(entry, sort_keys=True) + "\n"):
            objects = list(self._parse(name, self.store.read_bytes(name))["objects"])
        self._plans[number] = objects
        return objects

    # -- committing ----------------------------------------------------------------------------------
    def commit(self, number: int, merge: Callable[[list[str]], str] | None, now: float) -> dict[str, Any]:
        """Batch ``number``'s commit entry, after its own job commit published ``batches/<N>/_SUCCESS``.

        ``merge``: the processor's merge for a merging processor (the cumulative result is the merge of the
        previous one and this batch's), None to append (the batch's own result is its share).
        """
        name = increments.commit_entry(number)
        known = self._entry("commit", number)
        if known is not None:
            self._refresh_result(known)  # the copy a killed commit may not have made
            return known
        batch = self.batch_store(number)
        manifest = Committer(batch, self.owner).published()
        if manifest is None:
            raise BatchLogError(f"batch {number} has no _SUCCESS in {batch.url}: it has not committed")
        plan = self._entry("plan", number)
        if plan is None:
            raise BatchLogError(f"batch {number} has no plan entry")
        # Only its plan and the entry before it are read: a commit costs the same after 10,000 batches.
        previous = self._entry("commit", number - 1) if number > 0 else None
        if number > 0 and previous is None:
            raise BatchLogError(f"batch {number} cannot commit before batch {number - 1}")
        own = batch.read_bytes(RESULT)
        entry: dict[str, Any] = {
            "batch": number,
            "owner": self.owner,
            "objects": plan["objects"],
            "records": int(manifest.get("records", 0)),
            "batchResult": {"object": f"{increments.batch_root(number)}/{RESULT}", "checksum": checksum(own)},
            "committedAt": now,
            "mode": "merge" if merge is not None else "append",
            "totalRecords": int(manifest.get("records", 0)) + int((previous or {}).get("totalRecords", 0)),
        }
        if merge is not None:
            texts = [self.codec.decode(own)]
            if previous is not None:
                earlier = self.store.read_bytes(previous["result"]["object"])
                if checksum(earlier) != previous["result"]["checksum"]:
                    raise BatchLogError(f"{previous['result']['object']} does not match its commit entry")
                texts.insert(0, self.codec.decode(earlier))
            cumulative = self.codec.encode(merge(texts))
            target = f"{increments.batch_root(number)}/{increments.CUMULATIVE}"
            if not self.store.create(target, cumulative):
                cumulative = self.store.read_bytes(target)  # a concurrent commit's: the same merge
            entry["result"] = {"object": target, "size": len(cumulative), "checksum": checksum(cumulative)}
        else:
            entry["result"] = {**entry["batchResult"], "size": len(own)}
        if not self.store.create(name, json.dumps(entry, sort_keys=True) + "\n"):
            entry = self._parse(name, self.store.read_bytes(name))
        self._commits[number] = entry
        self._refresh_result(entry)
        return entry

    def _refresh_result(self, entry: dict[str, Any]) -> None:
        """Makes the top-level ``result`` the newest merged result, if ``entry`` is the newest entry and
        the copy is not it already (a commit killed between its entry and its copy left an older one)."""
        if entry.get("mode") != "merge" or self.store.exists(
            increments.commit_entry(int(entry["batch"]) + 1)
        ):
            return
        current = _read(self.store, RESULT)
        if current is not None and checksum(current) == entry["result"]["checksum"]:
            return
        # A commit of a later batch may replace it meanwhile; the check above narrows that, and readers
        # needing the exact batch read the log.
        self.store.write(RESULT, self.store.read_bytes(entry["result"]["object"]))

    def refresh(self) -> None:
        """Repairs the top-level result copy from the newest commit entry (a run with nothing new)."""
        state = self.read()
        if state.last_commit is not None:
            self._refresh_result(state.last_commit)


def _read(store: Store, name: str) -> bytes | None:
    try:
        return store.read_bytes(name)
    except FileNotFoundError:
        return None
