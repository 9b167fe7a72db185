"""A continuous job between batches: when the next batch may begin, what beginning it does to the job's
state, and how many workers the backlog wants. Pure; the operator's adapter does the listing and writing
(datajob_operator.continuous_batches).

A continuous job keeps one JobState for its whole life. Its ledger is the current batch's: when the batch's
job commit is done the ledger is finished and the job is *idle* (reconciler.idle); the next batch replaces
the ledger and keeps the worker slots (pods, incarnations, acknowledged report numbers), so running
workers go straight on to the new batch's shards.

Shard numbers start again at 0 in every batch, so nothing a worker said about the last batch may be taken
for the new one: every task names its batch, and so does everything a worker reports about it (progress,
outcome, current shard); the reconciler drops what names another batch (reconciler._this_batch), and the
slots keep ``acked``, so no outcome is ever folded twice. An entry without a batch (a worker image from
before batches were tagged) holds the next batch back until it is gone (``quiescent``).
"""

from __future__ import annotations

import math
from typing import Any

from datajob_core.cluster.reconciler import JobState, ObservedReport
from datajob_core.shards.ledger import Ledger


def quiescent(state: JobState, reports: dict[int, ObservedReport]) -> bool:
    """Whether no worker of the job still reports a shard in progress (of the batch that just ended)."""
    if not state.ledger.is_finished():
        return False
    for number, slot in state.slots.items():
        observed = reports.get(number)
        for report in (observed.report if observed else None, observed.leaving if observed else None):
            if report is None or report.pod not in (slot.pod, slot.leaving):
                continue
            # Tagged with their batch, entries are fenced (reconciler._this_batch); only untagged ones (a
            # worker image from before batches were tagged) could be taken for the next batch's shards.
            untagged = [p for p in report.progress.values() if p.batch is None]
            if untagged or (report.current is not None and report.current.batch is None):
                return False
    return True


def begin_batch(state: JobState, number: int, ledger: Ledger, now: float) -> None:
    """The job's state for batch ``number``, whose fresh ledger is ``ledger`` (the batch's plan)."""
    state.ledger = ledger
    state.batch = number
    # status.processed and progress are the batch's (the log keeps the totals; a metric counter read
    # from them starts again from 0 without going down).
    state.records, state.bytes, state.skipped = 0, 0, 0
    state.progressed_at = now  # a new batch is progress; its stall clock starts now
    state.stalled = ""
    # What referred to the last batch's shards by number.
    state.samples, state.speculated, state.split_requests = [], [], []
    for slot in state.slots.values():
        slot.window = 0  # prefetch adapts again to the new batch's shards
        # maxWorkerRestarts is a crash loop's budget within a batch, not a limit on a stream's lifetime
        slot.restarts = 0


def desired_workers(autoscaling: dict[str, Any], backlog_objects: int, idle: bool) -> int:
    """Workers for the backlog: one per ``objectsPerWorker`` pending objects, within minWorkers and
    maxWorkers; minWorkers (0 allowed) while idle, and at least one while a batch runs."""
    low, high = int(autoscaling.get("minWorkers", 0)), int(autoscaling.get("maxWorkers", 1))
    if idle:
        return low
    per_worker = max(int(autoscaling.get("objectsPerWorker", 16)), 1)
    return min(max(math.ceil(backlog_objects / per_worker), low, 1), high)
