"""A job's tasks in the ledger: its map shards, then one job-commit task.

The job commit is a task like any shard (``0 .. M-1`` are the M map shards planned from the input, ``M``
is the commit), behind a ledger barrier, so it runs only after every map shard finished; a worker running it
that dies is replaced and the commit resumes, charged and retried under the same rules as a shard. It runs
in a worker pod because the workers, not the operator, hold the job's storage credentials, image and
resources (docs/design.md, "Committing output").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from datajob_core.ledger import Ledger

COMMIT = "commit"
TASK_KEY = "task"  # in a task's plan entry; absent for map shards


@dataclass(frozen=True)
class Layout:
    """Where each stage's tasks are in the ledger."""

    map_shards: int
    commit: int | None  # the job-commit task's shard number; None for a ledger written before it existed

    @classmethod
    def new(cls, map_shards: int) -> Layout:
        return cls(map_shards=map_shards, commit=map_shards)

    @classmethod
    def of(cls, ledger: Ledger) -> Layout:
        """Read back from a ledger: a barrier marks the commit task (the ledger's last shard)."""
        if ledger.barriers and ledger.barriers[-1] == ledger.total - 1:
            return cls(map_shards=ledger.total - 1, commit=ledger.total - 1)
        return cls(map_shards=ledger.total, commit=None)

    def ledger(self) -> Ledger:
        if self.commit is None:
            return Ledger.new(self.map_shards)
        return Ledger.new(self.map_shards + 1, barriers=(self.map_shards,) if self.map_shards else ())

    def name(self, shard: int) -> str:
        """How events and messages call the task."""
        return "the job commit" if shard == self.commit else f"shard {shard}"

    def entry(self, shard: int, plan: list[dict[str, Any]]) -> dict[str, Any]:
        """The task's plan entry: the map shard's input pieces, or what the commit needs to know."""
        if shard == self.commit:
            return {TASK_KEY: COMMIT, "shards": self.map_shards}
        return plan[shard] if shard < len(plan) else {}


def is_commit(entry: dict[str, Any]) -> bool:
    return entry.get(TASK_KEY) == COMMIT
