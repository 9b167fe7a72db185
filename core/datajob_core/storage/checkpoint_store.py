"""Checkpoint files next to the output: ``_checkpoints/<shard>/<attempt>.<seq>.json``.

Each file holds a resume position *and* the processor's partial state at that position, so any readable
file is a consistent place to resume from, whichever attempt wrote it (processing is deterministic). The
ledger names one of them; if that one cannot be read, a worker falls back to the newest readable one.

Workers call :meth:`CheckpointStore.save`, :meth:`load` and :meth:`newest`; only the operator and the
local-mode driver call :meth:`collect`, after the ledger that makes the files redundant is durable
(:mod:`datajob_core.data.checkpoint_gc` decides which).
"""

from __future__ import annotations

import json
import os
from typing import Any, NamedTuple

from datajob_core.data.checkpoint_gc import ALL, Watermark, parse_state_name, plan_collection, state_name
from datajob_core.shards.ledger import Ledger
from datajob_core.storage.stores import StorageError, Store

DIRECTORY = "_checkpoints"


class CheckpointUnreadableError(Exception):
    """The named checkpoint file is missing or corrupt."""


class Saved(NamedTuple):
    """One checkpoint: where to resume, the processor's state there, and the dead letters so far."""

    position: dict[str, Any]
    state: Any
    bad: list[Any]


class CheckpointStore:
    def __init__(self, output: Store | str | os.PathLike[str]) -> None:
        self.store = output if isinstance(output, Store) else Store(os.fspath(output))

    @staticmethod
    def shard_dir(shard: int) -> str:
        return f"{DIRECTORY}/{shard:06d}"

    def save(
        self,
        shard: int,
        attempt: int,
        seq: int,
        position: dict[str, Any],
        state: Any,
        *,
        bad: list[Any] | None = None,
    ) -> str:
        """Writes a new checkpoint atomically under a name no other attempt uses; returns that name."""
        name = state_name(attempt, seq)
        document = {"position": position, "state": state, "bad": bad or []}
        # Atomic per object (scratch + rename on POSIX, one PUT on S3): never read half-written.
        self.store.write(f"{self.shard_dir(shard)}/{name}.json", json.dumps(document, separators=(",", ":")))
        return name

    def load(self, shard: int, name: object) -> Saved:
        """The named checkpoint; CheckpointUnreadableError if it cannot be used."""
        if parse_state_name(name) is None:
            raise CheckpointUnreadableError(f"checkpoint name {name!r} is not <attempt>.<seq>")
        path = f"{self.shard_dir(shard)}/{name}.json"
        try:
            data = json.loads(self.store.read_bytes(path))
            saved = Saved(data["position"], data["state"], data.get("bad") or [])
        except (OSError, StorageError, ValueError, KeyError, TypeError) as error:
            raise CheckpointUnreadableError(
                f"{self.store.url_of(path)}: {type(error).__name__}: {error}"
            ) from None
        if not isinstance(saved.position, dict) or not isinstance(saved.bad, list):
            raise CheckpointUnreadableError(f"{self.store.url_of(path)}: not a checkpoint")
        return saved

    def newest(self, shard: int) -> tuple[str, Saved] | None:
        """The newest readable checkpoint of the shard, by (attempt, seq), with its name; or None."""
        for mark, _ in sorted(self._files(shard), reverse=True):
            name = state_name(*mark)
            try:
                return name, self.load(shard, name)
            except CheckpointUnreadableError:
                continue
        return None

    def collect(self, shard: int, below: Watermark) -> int:
        """Deletes the shard's files ordered before ``below`` (ALL: the whole directory); returns how many."""
        if below == ALL:
            count = len(self._files(shard))
            self.store.delete_tree(self.shard_dir(shard))
            return count
        removed = 0
        for mark, name in self._files(shard):
            if mark < below:
                self.store.delete(name)
                removed += 1
        return removed

    def remove_all(self) -> None:
        self.store.delete_tree(DIRECTORY)

    def _files(self, shard: int) -> list[tuple[Watermark, str]]:
        files = []
        for entry in self.store.list(self.shard_dir(shard)):
            mark = parse_state_name(entry.removesuffix(".json")) if entry.endswith(".json") else None
            if mark is not None:
                files.append((mark, f"{self.shard_dir(shard)}/{entry}"))
        return files


class CheckpointCollector:
    """Runs the garbage collection after each durable ledger write; never raises (it is housekeeping)."""

    def __init__(self, store: CheckpointStore) -> None:
        self.store = store
        self.snapshot: dict[int, Watermark | None] | None = None
        self.removed = 0

    def after_persist(self, ledger: Ledger) -> str | None:
        """Collects what the just-persisted ``ledger`` made redundant; returns an error text, or None."""
        collection = plan_collection(self.snapshot, ledger)
        try:
            for shard, below in collection.targets.items():
                self.removed += self.store.collect(shard, below)
        except (OSError, StorageError) as error:
            return f"checkpoint garbage collection failed: {error}"
        self.snapshot = collection.snapshot
        return None
