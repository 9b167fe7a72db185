"""When a job's next reconcile pass runs: at once for what cannot wait, coalesced for what can. Pure.

- A change to the DataJob or to one of its pods (a worker failed, was deleted, started) is *urgent*: the
  next pass starts as soon as the current one ends, so a failed worker is replaced in milliseconds.
- A pod that starts terminating is news *soon* (``TERMINATING_SECONDS``): most are gone a moment later,
  and that deletion (urgent) is then handled by the same pass, instead of one pass for each.
- A worker report (a Lease change) is *coalesced*: reports that arrive within ``report_interval`` of the
  last pass are folded together by one pass. The interval grows with the number of workers (5 ms each, at
  most 1 s), so a small job dispatches at once and a job of 1,000 workers writes its status about once a
  second, however many reports arrive.
- With no news, the pass runs at the earliest timer the last pass reported (a retry backoff ending, a
  heartbeat or start-up deadline), and at least every ``RESYNC_SECONDS`` as a safety net.

Events that arrive while a pass runs are not lost: they mark the job again, and the next pass sees them.
"""

from __future__ import annotations

from dataclasses import dataclass

RESYNC_SECONDS = 30.0
TERMINATING_SECONDS = 0.05
REPORT_SECONDS_PER_WORKER = 0.005
MAX_REPORT_INTERVAL = 1.0


def report_interval(workers: int) -> float:
    return min(MAX_REPORT_INTERVAL, REPORT_SECONDS_PER_WORKER * max(workers, 1))


@dataclass
class Pacer:
    """One job's pending news and timers; the caller owns the clock (``now`` is passed in)."""

    workers: int = 1
    urgent: bool = True  # the first pass runs at once
    reported: bool = False
    last_pass: float = float("-inf")
    timer: float | None = None  # the earliest time-based decision the last pass knows of
    soon: float | None = None  # a pass is due then (a pod started terminating)

    def news(self, *, urgent: bool) -> None:
        if urgent:
            self.urgent = True
        else:
            self.reported = True

    def terminating(self, now: float) -> None:
        due = now + TERMINATING_SECONDS
        self.soon = due if self.soon is None else min(self.soon, due)

    def passed(self, started: float, *, next_in: float | None, workers: int) -> None:
        """A pass that began at ``started`` has observed everything up to then."""
        self.last_pass = started
        self.workers = workers
        self.timer = None if next_in is None else started + max(next_in, 0.0)

    def taken(self) -> None:
        """A pass is starting: what was pending is being handled by it."""
        self.urgent = self.reported = False
        self.soon = None

    def due(self, now: float) -> float:
        """When the next pass should start (``<= now``: now)."""
        if self.urgent:
            return now
        candidates = [self.last_pass + RESYNC_SECONDS]
        if self.reported:
            candidates.append(self.last_pass + report_interval(self.workers))
        if self.timer is not None:
            candidates.append(self.timer)
        if self.soon is not None:
            candidates.append(self.soon)
        return min(candidates)
