"""Rebuilding a job's ledger from what its output holds (spec.output.resume; docs/design.md, "Rebuilding
the ledger"), as a pure function of that evidence.

The ledger lives in the DataJob's status, in one cluster's etcd. The output holds the truth it summarises:
a shard's commit record is created exclusively once its attempt's objects are written (so a record means
the shard is done, whoever ran it), every checkpoint file is a consistent resume position, and checkpoint
names and attempt logs carry the attempt numbers already issued. From those, a new DataJob of the same job
(same namespace, name and computation: api.identity.output_owner) continues instead of starting over:

- a shard with a commit record is SUCCEEDED (never run again);
- after this job's ``_SUCCESS``, every map and reduce task is (their records were removed with the
  scratch): only the job-commit task runs, and it adopts the published result;
- any other shard with evidence (a checkpoint or an issued attempt) goes back to PENDING as a retry that
  resumes from its newest readable checkpoint, numbered after every attempt seen, so no attempt number or
  checkpoint name the earlier run issued is issued again (two runs working at once can still issue the same
  numbers to each other: each checkpoint file stays self-consistent, so that costs progress only);
- shards above every piece of evidence stay fresh, so the status holds only the exceptional entries, as
  always.

Evidence naming a shard the plan does not have (a split child of an earlier run, or another plan) is
refused: the output was made by a different plan and must not be adopted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from datajob_core.shards.ledger import Checkpoint, Ledger, Retry, checkpoint_problem
from datajob_core.shards.rangeset import RangeSet
from datajob_core.shards.stages import Layout

RESUMED_REASON = "resumed from storage"


class ResumeMismatchError(Exception):
    """The output holds work of a different plan of this job: it cannot be continued."""


@dataclass(frozen=True)
class Evidence:
    """What the output says about each task, by ledger shard number."""

    committed: frozenset[int] = frozenset()  # shards with a commit record
    job_committed: bool = False  # this job's _SUCCESS is published
    checkpoints: Mapping[int, Checkpoint] = field(default_factory=dict)  # newest readable, in ledger form
    attempts: Mapping[int, int] = field(default_factory=dict)  # highest attempt number seen per shard
    # What the committed shards counted (their records' records, bytes, skipped): the status goes on from it.
    records: int = 0
    bytes: int = 0
    skipped: int = 0

    def shards(self) -> set[int]:
        return set(self.committed) | set(self.checkpoints) | set(self.attempts)


@dataclass(frozen=True)
class Rebuilt:
    ledger: Ledger
    committed: int  # shards taken as done
    resumed: int  # shards resuming from a checkpoint
    restarted: int  # shards begun (or skipped over) by the earlier run with no checkpoint: from their start
    records: int = 0  # counted by the committed shards
    bytes: int = 0
    skipped: int = 0

    @property
    def found_work(self) -> bool:
        return bool(self.committed or self.resumed or self.restarted)

    def summary(self) -> str:
        return (
            f"continuing an earlier run found in the output: {self.committed} of {self.ledger.total} tasks "
            f"already committed, {self.resumed} resume from a checkpoint, {self.restarted} start again"
        )


def rebuild(layout: Layout, evidence: Evidence) -> Rebuilt:
    """The ledger of a job laid out as ``layout`` that continues the work ``evidence`` describes."""
    fresh = layout.ledger()
    total = fresh.total
    strangers = sorted(s for s in evidence.shards() if not 0 <= s < total)
    if strangers:
        raise ResumeMismatchError(
            f"the output holds work for task {strangers[0]}, which this job's plan of {total} tasks does not "
            "have (an earlier run planned or split its input differently): it cannot be continued; delete "
            "the output or use another"
        )
    commit = layout.commit
    committed = set(evidence.committed)
    if evidence.job_committed:
        # The job commit removed the shard records with the scratch; the commit task itself adopts _SUCCESS.
        committed |= {s for s in range(total) if s != commit}
    committed.discard(commit if commit is not None else -1)  # the commit task always runs (it is cheap)
    touched = committed | set(evidence.checkpoints) | set(evidence.attempts)
    counted = {"records": evidence.records, "bytes": evidence.bytes, "skipped": evidence.skipped}
    if not touched:
        return Rebuilt(fresh, 0, 0, 0, **counted)
    next_fresh = max(touched) + 1
    retry: dict[int, Retry] = {}
    resumed = restarted = 0
    for shard in range(next_fresh):
        if shard in committed:
            continue
        checkpoint = evidence.checkpoints.get(shard)
        if checkpoint is not None and checkpoint_problem(checkpoint) is not None:
            checkpoint = None  # too large or malformed for the status: the shard starts again
        if checkpoint is not None:
            resumed += 1
        else:
            restarted += 1
        # Numbered after every attempt seen (an entry counts at least one: it may have run unseen).
        seen = max(int(evidence.attempts.get(shard, 0)), 1)
        retry[shard] = Retry(seen, failures=0, checkpoint=checkpoint, reason=RESUMED_REASON, not_before=0.0)
    ledger = Ledger(
        total=total,
        next_fresh=next_fresh,
        succeeded=_ranges(committed),
        retry=retry,
        barriers=fresh.barriers,
    )
    return Rebuilt(ledger, len(committed), resumed, restarted, **counted)


def _ranges(values: set[int]) -> RangeSet:
    ranges = RangeSet()
    for value in values:
        ranges.add(value)
    return ranges
