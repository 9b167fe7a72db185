"""Checkpoint files next to the output: ``_checkpoints/<shard>/<attempt>.<seq>.json``.

Each file holds a resume position *and* the processor's partial state at that position, so any readable
file is a consistent place to resume from, whichever attempt wrote it (processing is deterministic). The
ledger names one of them; if that one cannot be read, a worker falls back to the newest readable one.

Workers call :meth:`CheckpointStore.save`, :meth:`load` and :meth:`newest`; only the operator and the
local-mode driver call :meth:`collect`, after the ledger that makes the files redundant is durable
(:mod:`datajob_core.checkpoint_gc` decides which).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, NamedTuple

from datajob_core.checkpoint_gc import ALL, Watermark, parse_state_name, plan_collection, state_name
from datajob_core.ledger import Ledger

DIRECTORY = "_checkpoints"


class CheckpointUnreadableError(Exception):
    """The named checkpoint file is missing or corrupt."""


class Saved(NamedTuple):
    """One checkpoint: where to resume, the processor's state there, and the dead letters so far."""

    position: dict[str, Any]
    state: Any
    bad: list[Any]


class CheckpointStore:
    def __init__(self, output_root: str | Path) -> None:
        self.root = Path(str(output_root).removeprefix("file://")) / DIRECTORY

    def shard_dir(self, shard: int) -> Path:
        return self.root / f"{shard:06d}"

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
        directory = self.shard_dir(shard)
        directory.mkdir(parents=True, exist_ok=True)
        # The scratch name is unique per writer, so two processes can never interleave one file.
        scratch = directory / f".{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        document = {"position": position, "state": state, "bad": bad or []}
        scratch.write_text(json.dumps(document, separators=(",", ":")))
        os.replace(scratch, directory / f"{name}.json")
        return name

    def load(self, shard: int, name: object) -> Saved:
        """The named checkpoint; CheckpointUnreadableError if it cannot be used."""
        if parse_state_name(name) is None:
            raise CheckpointUnreadableError(f"checkpoint name {name!r} is not <attempt>.<seq>")
        path = self.shard_dir(shard) / f"{name}.json"
        try:
            data = json.loads(path.read_text())
            saved = Saved(data["position"], data["state"], data.get("bad") or [])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise CheckpointUnreadableError(f"{path}: {type(error).__name__}: {error}") from None
        if not isinstance(saved.position, dict) or not isinstance(saved.bad, list):
            raise CheckpointUnreadableError(f"{path}: not a checkpoint")
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
            directory = self.shard_dir(shard)
            count = len(self._files(shard))
            shutil.rmtree(directory, ignore_errors=True)
            return count
        removed = 0
        for mark, path in self._files(shard):
            if mark < below:
                try:
                    path.unlink()
                    removed += 1
                except FileNotFoundError:
                    pass
        return removed

    def remove_all(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def _files(self, shard: int) -> list[tuple[Watermark, Path]]:
        try:
            entries = list(self.shard_dir(shard).iterdir())
        except FileNotFoundError:
            return []
        files = []
        for path in entries:
            mark = parse_state_name(path.name.removesuffix(".json")) if path.name.endswith(".json") else None
            if mark is not None:
                files.append((mark, path))
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
        except OSError as error:
            return f"checkpoint garbage collection failed: {error}"
        self.snapshot = collection.snapshot
        return None
