"""A job's tasks in the ledger: its map shards, optionally R reduce tasks, then one job-commit task.

``0 .. M-1`` are the M map shards planned from the input; with ``spec.reduce``, ``M .. M+R-1`` are the reduce
tasks (partition ``p`` is task ``M+p``); the last task is the job commit. Each stage sits behind a ledger
barrier, so it starts only after every task of the stages before it finished. Reduce tasks and the commit
are assigned, retried and charged like shards, so a dead reducer resumes exactly like a dead mapper. They
run in worker pods because the workers, not the operator, hold the job's storage credentials, image and
resources (docs/design.md, "Committing output" and "The reduce stage").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from datajob_core.shards.ledger import Ledger

COMMIT = "commit"
REDUCE = "reduce"
TASK_KEY = "task"  # in a task's plan entry; absent for map shards


@dataclass(frozen=True)
class Layout:
    """Where each stage's tasks are in the ledger."""

    map_shards: int
    commit: int | None  # the job-commit task's shard number; None for a ledger written before it existed
    partitions: int = 0  # reduce tasks; 0 = no reduce stage

    @classmethod
    def new(cls, map_shards: int, partitions: int = 0) -> Layout:
        return cls(map_shards=map_shards, commit=map_shards + partitions, partitions=partitions)

    @classmethod
    def for_spec(cls, map_shards: int, spec: dict[str, Any]) -> Layout:
        """A new job's layout: its planned map shards and ``spec.reduce.partitions`` reduce tasks."""
        return cls.new(map_shards, int((spec.get("reduce") or {}).get("partitions") or 0))

    @classmethod
    def of(cls, ledger: Ledger) -> Layout:
        """Read back from a ledger: its barriers are where the reduce stage and the commit task start."""
        barriers = ledger.barriers
        if not barriers or barriers[-1] != ledger.total - 1:
            return cls(map_shards=ledger.total, commit=None)
        if len(barriers) == 2:
            return cls(map_shards=barriers[0], commit=ledger.total - 1, partitions=barriers[1] - barriers[0])
        return cls(map_shards=ledger.total - 1, commit=ledger.total - 1)

    def ledger(self) -> Ledger:
        if self.commit is None:
            return Ledger.new(self.map_shards)
        barriers = [self.map_shards] if self.partitions else []
        barriers.append(self.commit)
        return Ledger.new(self.commit + 1, barriers=[b for b in barriers if b > 0])

    def is_reduce(self, shard: int) -> bool:
        return self.partitions > 0 and self.map_shards <= shard < self.map_shards + self.partitions

    def name(self, shard: int) -> str:
        """How events and messages call the task."""
        if shard == self.commit:
            return "the job commit"
        if self.is_reduce(shard):
            return f"reduce partition {shard - self.map_shards}"
        return f"shard {shard}"

    def entry(self, shard: int, plan: list[dict[str, Any]]) -> dict[str, Any]:
        """The task's plan entry: the map shard's input pieces, or what a reducer or the commit needs."""
        if shard == self.commit:
            return {TASK_KEY: COMMIT, "shards": self.map_shards, "partitions": self.partitions}
        if self.is_reduce(shard):
            return {TASK_KEY: REDUCE, "shards": self.map_shards, "partition": shard - self.map_shards}
        return plan[shard] if shard < len(plan) else {}


def is_commit(entry: dict[str, Any]) -> bool:
    return entry.get(TASK_KEY) == COMMIT


def is_reduce(entry: dict[str, Any]) -> bool:
    return entry.get(TASK_KEY) == REDUCE
