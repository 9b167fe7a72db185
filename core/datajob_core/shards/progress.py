"""How far a job is, how fast it goes, when it will be done, and whether it has stalled (pure).

Progress is measured in input bytes read, as of the durable ledger: committed shards count in full, shards
in flight or waiting for a retry count up to their last checkpoint. The rates are over a recent window of
those positions; they change only when the position does, so a job at rest is not rewritten by them.
"""

from __future__ import annotations

import datetime
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from datajob_core.shards.ledger import Ledger

WINDOW_SECONDS = 60.0  # throughput is measured over about the last minute of progress


@dataclass(frozen=True)
class Position:
    """Input consumed so far: records and bytes, and the input's size in bytes (0: unknown)."""

    records: int
    bytes: int
    total_bytes: int

    @property
    def fraction(self) -> float | None:
        if self.total_bytes <= 0:
            return None
        return min(1.0, self.bytes / self.total_bytes)


def input_bytes(plan: Sequence[Mapping[str, Any]]) -> int:
    """The size of a shard plan's input: the sum of its byte ranges."""
    return sum(
        max(0, int(piece.get("end", 0)) - int(piece.get("start", 0)))
        for entry in plan
        for piece in entry.get("pieces") or []
    )


def position(
    ledger: Ledger, map_shards: int, *, committed_records: int, committed_bytes: int, total_bytes: int
) -> Position:
    """Committed counts plus what unfinished map shards have checkpointed."""
    records, size = committed_records, committed_bytes
    checkpoints: Iterable[Mapping[str, Any] | None] = [
        *(e.checkpoint for s, e in ledger.in_flight.items() if ledger.placed(s) < map_shards),
        *(e.checkpoint for s, e in ledger.retry.items() if ledger.placed(s) < map_shards),
    ]
    for checkpoint in checkpoints:
        if checkpoint:
            records += _count(checkpoint.get("records"))
            size += _count(checkpoint.get("bytes"))
    return Position(records, size, total_bytes)


def _count(value: Any) -> int:
    return value if isinstance(value, int) and value > 0 else 0


@dataclass(frozen=True)
class Rates:
    records_per_second: float
    bytes_per_second: float
    at: float  # the time of the newest position they include


class RateWindow:
    """Recent positions (time, records, bytes); the rate between the newest and one about a window older."""

    def __init__(self, window: float = WINDOW_SECONDS) -> None:
        self.window = window
        self.samples: deque[tuple[float, int, int]] = deque()

    def add(self, now: float, at: Position) -> None:
        """Records ``at`` if it differs from the newest sample (time alone is not a new sample)."""
        if self.samples and self.samples[-1][1:] == (at.records, at.bytes):
            return
        if self.samples and now - self.samples[-1][0] > self.window:
            self.samples.clear()  # after a pause (suspended, queued, stalled) the rate starts afresh
        self.samples.append((now, at.records, at.bytes))
        # Keep one sample at or before the window's start, as the base of the rate.
        while len(self.samples) > 2 and self.samples[1][0] <= now - self.window:
            self.samples.popleft()

    def rates(self) -> Rates | None:
        """None until two samples are known."""
        if len(self.samples) < 2:
            return None
        (t0, r0, b0), (t1, r1, b1) = self.samples[0], self.samples[-1]
        span = t1 - t0
        if span <= 0:
            return None
        return Rates(max(0, r1 - r0) / span, max(0, b1 - b0) / span, t1)


def eta_seconds(at: Position, rates: Rates | None) -> float | None:
    """Seconds until the input is consumed at the current rate; None if unknown."""
    if rates is None or rates.bytes_per_second <= 0 or at.total_bytes <= 0:
        return None
    return max(0.0, at.total_bytes - at.bytes) / rates.bytes_per_second


def human_duration(seconds: float) -> str:
    """Like kubectl's ages: 45s, 3m20s, 2h5m, 3d4h."""
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60}s" if s % 60 else f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60}m" if (s % 3600) // 60 else f"{s // 3600}h"
    return f"{s // 86400}d{(s % 86400) // 3600}h"


MAX_ETA_SECONDS = 10 * 365 * 86400  # beyond this an ETA means nothing (and dates overflow)


def progress_status(
    at: Position, rates: Rates | None, *, finished: bool, stalled: bool, running: bool = True
) -> dict[str, Any]:
    """status.progress: percent done, and while the job runs, throughput and an ETA, all as of the newest
    position (so they do not change, and the status is not rewritten, while nothing progresses)."""
    fraction = 1.0 if finished else at.fraction
    out: dict[str, Any] = {"records": at.records, "bytes": at.bytes}
    if at.total_bytes:
        out["totalBytes"] = at.total_bytes
    if fraction is not None:
        # Not 100 until the job has really finished (reduce and the job commit come after the input).
        percent = 100 if finished else min(99, int(fraction * 100))
        out["percent"] = percent
        out["summary"] = f"{percent}%"
    if finished or not running:
        return out
    if stalled:
        out.update(recordsPerSecond=0, bytesPerSecond=0)
        return out
    if rates is None:
        return out
    out["recordsPerSecond"] = round(rates.records_per_second)
    out["bytesPerSecond"] = round(rates.bytes_per_second)
    eta = eta_seconds(at, rates)
    if eta is not None and 0 < eta <= MAX_ETA_SECONDS:  # 0: the input is read; reduce or commit remain
        out["eta"] = human_duration(eta)
        done = datetime.datetime.fromtimestamp(rates.at + eta, datetime.UTC)
        out["estimatedCompletionTime"] = done.strftime("%Y-%m-%dT%H:%M:%SZ")
    return out


@dataclass(frozen=True)
class Picture:
    """What the workers are doing, for naming the likely cause of a stall."""

    running: int  # worker pods running
    pending: int  # worker pods not running yet
    unschedulable: str = ""  # the scheduler's message, if a worker cannot be placed
    blocked: str = ""  # why workers cannot be created or started (quota, image pull, ...)
    crash_looping: str = ""  # the last failure of a worker slot that keeps failing
    in_flight: int = 0  # shards assigned to workers
    waiting_retry: int = 0  # shards waiting for a retry backoff to end


@dataclass(frozen=True)
class Stall:
    reason: str  # machine-readable, for the Stalled condition
    message: str


def stall_cause(picture: Picture, deadline_seconds: float, since: float) -> Stall:
    """The likely reason no shard completed and no checkpoint advanced within the deadline since ``since``
    (an epoch time; the message names it rather than a growing duration, so it stays the same)."""
    last = datetime.datetime.fromtimestamp(since, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    idle = (
        f"no shard completed and no checkpoint advanced within progressDeadlineSeconds "
        f"({human_duration(deadline_seconds)}; last progress {last})"
    )
    p = picture
    if p.blocked:
        return Stall("WorkersBlocked", f"{idle}: workers cannot be created or started: {p.blocked}")
    if p.running == 0 and p.unschedulable:
        return Stall("WorkersUnschedulable", f"{idle}: all workers are pending: {p.unschedulable}")
    if p.running == 0 and p.crash_looping:
        return Stall("WorkersCrashLooping", f"{idle}: workers keep failing; last failure: {p.crash_looping}")
    if p.running == 0:
        return Stall("WorkersPending", f"{idle}: no worker is running ({p.pending} pending)")
    if p.in_flight == 0 and p.waiting_retry:
        return Stall("WaitingForRetry", f"{idle}: {p.waiting_retry} shard(s) are waiting for a retry backoff")
    return Stall(
        "NoProgress",
        f"{idle} with {p.running} worker(s) running and {p.in_flight} shard(s) assigned: processing is "
        "slower than the deadline or stuck (checkpoint.intervalSeconds bounds how often a healthy worker "
        "checkpoints)",
    )
