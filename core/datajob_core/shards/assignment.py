"""Deciding which worker gets which shard, on top of the ledger.

Workers prefetch: each holds up to ``per_worker`` shards so it never idles waiting for the operator's next
reconcile. Topping up is level by level (every worker gets its first shard before any gets a second) so
that, when pending shards run short near the end of a job, they are spread over the workers rather than
queued behind one of them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from datajob_core.shards.ledger import Assignment, Ledger


def plan_assignments(
    ledger: Ledger,
    workers: list[str],
    per_worker: int,
    now: float,
    *,
    limits: Mapping[str, int] | None = None,
) -> list[tuple[str, Assignment]]:
    """Top every listed worker up to ``per_worker`` in-flight shards (``limits`` may give a worker more or
    fewer: adaptive prefetch); mutates ``ledger``.

    Workers are served in the order given (duplicates ignored), one shard per worker per round, so the
    result is deterministic. Shards held by workers not listed are left alone: releasing them is the
    caller's decision (``Ledger.release_worker``). Returns the new assignments in the order made.
    """
    if isinstance(per_worker, bool) or not isinstance(per_worker, int) or per_worker < 0:
        raise ValueError(f"per_worker must be a non-negative int, got {per_worker!r}")
    order = list(dict.fromkeys(workers))
    limits = limits or {}
    held = Counter(entry.worker for entry in (*ledger.in_flight.values(), *ledger.backups.values()))
    made: list[tuple[str, Assignment]] = []
    for level in range(max([per_worker, *limits.values()])):
        for worker in order:
            if held[worker] > level or level >= limits.get(worker, per_worker):
                continue
            assignment = ledger.assign(worker, now)
            if assignment is None:
                return made
            held[worker] += 1
            made.append((worker, assignment))
    return made
