"""Every shard attempt's story, next to the output: ``_datajob/attempts/<shard>-<attempt>-<writer>.json``.

The run report (``_datajob/report.html``) is drawn from it and from the ``_SUCCESS`` manifest, so it
outlives the DataJob, its events and its TTL, and is the same in local mode and in a cluster.

A worker writes an attempt's object when the attempt starts (where, on what, resumed from which
checkpoint) and writes it again when the attempt ends without winning (failed, interrupted, lost to
another attempt), with the outcome and the cost. A winning attempt's end is its commit record, which the
``_SUCCESS`` manifest carries, so the common case costs one small write per attempt. An attempt whose
worker was killed (SIGKILL, OOM, a lost node) never writes its end: the report shows it as killed.
Writes are best effort: a report with a gap is better than a shard that fails for want of a log line.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import structlog

from datajob_core.storage.stores import StorageError, Store

DIRECTORY = "_datajob/attempts"

log = structlog.get_logger("datajob.attempt_log")


class AttemptLog:
    def __init__(self, store: Store, owner: str | None = None) -> None:
        self.store = store
        self.owner = owner  # the job's identity: records of an earlier job in the same output are not ours

    def started(self, shard: int, attempt: int, record: dict[str, Any]) -> str:
        """Writes the attempt's start; returns its object name, for :meth:`ended`."""
        name = f"{DIRECTORY}/{shard}-{attempt}-{uuid.uuid4().hex[:8]}.json"
        self._write(name, {**record, "shard": shard, "attempt": attempt})
        return name

    def ended(self, name: str, record: dict[str, Any]) -> None:
        self._write(name, record)

    def _write(self, name: str, record: dict[str, Any]) -> None:
        if self.owner:
            record = {**record, "owner": self.owner}
        # Best effort (see the module's doc): the shard's work must not depend on its history, whatever a
        # store's client raises (botocore's connection errors are not OSErrors).
        try:
            self.store.write(name, json.dumps(record, sort_keys=True))
        except Exception as error:  # noqa: BLE001
            log.debug("attempt log not written", object=name, error=str(error))

    def read(self) -> list[dict[str, Any]]:
        """Every readable attempt record of this job, in no particular order."""
        names = [f"{DIRECTORY}/{entry}" for entry in self.store.list(DIRECTORY)]
        return [r for r in _records(self.store.read_many(names).values()) if _ours(r, self.owner)]

    def clear(self) -> None:
        """Starts the log afresh (local mode: each run numbers its attempts from 1 again)."""
        with contextlib.suppress(OSError, StorageError):
            self.store.delete_tree(DIRECTORY)


def _records(payloads: Iterable[bytes | None]) -> Iterator[dict[str, Any]]:
    for payload in payloads:
        try:
            record = json.loads(payload) if payload is not None else None
        except ValueError:
            continue
        if isinstance(record, dict):
            yield record


def _ours(record: dict[str, Any], owner: str | None) -> bool:
    return not owner or record.get("owner") == owner
