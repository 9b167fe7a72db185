"""What a job did, attempt by attempt: the run report's data, from the attempt log and ``_SUCCESS``.

Pure (its part, report, may do I/O; this module does none): the inputs are the records
(datajob_core.storage.attempt_log) and the manifest as read; the outputs are the attempts with their
outcomes, the kills, and the cost split into useful and wasted work.

Outcomes:
- ``committed``: the attempt whose commit record stands (the manifest names it); ``split`` when its shard's
  remainder was split off (the manifest lists shards ``of`` it);
- ``failed`` (an error charged to the shard), ``interrupted`` (SIGTERM: a deletion, a drain, a preemption),
  ``stopped`` (its slot moved on, or the job no longer needed it), ``lost`` (another attempt committed
  first: a speculative race): each wrote its end;
- ``killed``: it wrote its start and never its end (SIGKILL, OOM, a lost node). It is drawn up to the next
  attempt of its shard, the best moment known for its death;
- ``running``: the job has not finished, and neither has the attempt.

An attempt is ``speculative`` when another attempt of the same shard was already running when it began.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Any

WASTED = frozenset({"failed", "interrupted", "stopped", "lost", "killed"})


@dataclass(frozen=True)
class Attempt:
    shard: int
    attempt: int
    slot: int | None
    pod: str
    profile: str
    node: str
    started: float
    ended: float
    outcome: str
    stage: str = "map"
    speculative: bool = False
    records: int = 0  # committed (winners) or read (others, when they said)
    cpu_seconds: float | None = None  # None: not known (a killed attempt)
    gpus: int = 0
    resumed_records: int = 0
    reason: str = ""

    @property
    def seconds(self) -> float:
        return max(0.0, self.ended - self.started)

    @property
    def wasted(self) -> bool:
        return self.outcome in WASTED


@dataclass(frozen=True)
class Cost:
    worker_seconds: float = 0.0  # wall time of attempts
    cpu_seconds: float = 0.0
    gpu_seconds: float = 0.0
    records: int = 0


@dataclass(frozen=True)
class RunHistory:
    job: str
    started: float
    ended: float
    attempts: list[Attempt]
    finished: bool  # the job committed (its _SUCCESS manifest exists)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def kills(self) -> list[Attempt]:
        return [a for a in self.attempts if a.outcome == "killed"]

    def cost(self, *, wasted: bool) -> Cost:
        chosen = [a for a in self.attempts if a.wasted == wasted and a.outcome != "running"]
        return Cost(
            worker_seconds=sum(a.seconds for a in chosen),
            cpu_seconds=sum(a.cpu_seconds or 0.0 for a in chosen),
            gpu_seconds=sum(a.gpus * a.seconds for a in chosen),
            records=sum(a.records for a in chosen),
        )

    def throughput(self, buckets: int = 100) -> list[tuple[float, float]]:
        """(seconds since the start, records per second) over ``buckets`` equal steps. Each committed
        attempt's records (those it read itself, not those it resumed past) are spread over its own run,
        as they were read: a shard's records count while it runs, not all at its commit."""
        span = max(self.ended - self.started, 1e-3)
        width = span / buckets
        counts = [0.0] * buckets
        for a in self.attempts:
            if a.outcome not in ("committed", "split"):
                continue
            begin, end = (
                a.started - self.started,
                max(a.ended - self.started, a.started - self.started + 1e-6),
            )
            per_second = max(0, a.records - a.resumed_records) / (end - begin)
            first, last = int(begin / width), min(buckets - 1, int(end / width))
            for index in range(max(0, first), last + 1):
                overlap = min(end, (index + 1) * width) - max(begin, index * width)
                counts[index] += per_second * max(0.0, overlap)
        return [(round((i + 0.5) * width, 3), count / width) for i, count in enumerate(counts)]

    def rates(self, key: str) -> list[tuple[str, int, float, float]]:
        """Per ``pod`` or ``profile``: (name, records committed, busy seconds, records per busy second)."""
        records: dict[str, int] = defaultdict(int)
        busy: dict[str, float] = defaultdict(float)
        for a in self.attempts:
            name = a.pod if key == "pod" else (a.profile or "(local)")
            busy[name] += a.seconds
            if a.outcome in ("committed", "split"):
                records[name] += a.records
        return [
            (name, records[name], busy[name], records[name] / busy[name] if busy[name] else 0.0)
            for name in sorted(busy)
        ]


def build(
    job: str,
    records: list[dict[str, Any]],
    manifest: dict[str, Any] | None,
    *,
    now: float,
    summary: dict[str, Any] | None = None,
) -> RunHistory:
    winners: dict[int, dict[str, Any]] = {}
    split_roots: set[int] = set()
    for entry in (manifest or {}).get("shards") or []:
        winners[int(entry["shard"])] = entry
        if entry.get("of") is not None:
            split_roots.add(int(entry["of"]))
    for entry in (manifest or {}).get("partitions") or []:
        winners[len((manifest or {}).get("shards") or []) + int(entry["partition"])] = entry
    finished = manifest is not None
    starts: dict[int, list[float]] = defaultdict(list)
    for record in records:
        if _number(record.get("startedAt")) is not None:
            starts[int(record["shard"])].append(float(record["startedAt"]))
    read = [_attempt(r, winners, split_roots, starts, finished=finished, now=now) for r in records]
    attempts = _mark_speculative([a for a in read if a is not None])
    attempts.sort(key=lambda a: (a.started, a.shard, a.attempt))
    begun = min((a.started for a in attempts), default=now)
    ended = max((a.ended for a in attempts), default=now)
    return RunHistory(job, begun, ended, attempts, finished, dict(summary or {}))


def _attempt(
    record: dict[str, Any],
    winners: dict[int, dict[str, Any]],
    split_roots: set[int],
    starts: dict[int, list[float]],
    *,
    finished: bool,
    now: float,
) -> Attempt | None:
    started = _number(record.get("startedAt"))
    if started is None or not all(isinstance(record.get(key), int) for key in ("shard", "attempt")):
        return None
    shard, number = record["shard"], record["attempt"]
    winner = winners.get(shard)
    outcome = str(record.get("outcome") or "")
    ended = _number(record.get("endedAt"))
    records = int(record.get("recordsRead") or 0)
    cpu = _number(record.get("cpuSeconds"))
    if winner is not None and int(winner.get("attempt", 0)) == number and outcome in ("", "committed"):
        outcome = "split" if shard in split_roots else "committed"
        ended = _number(winner.get("committedAt")) or ended or started
        records = int(winner.get("records") or 0)
        cpu = _number(winner.get("cpuSeconds")) if cpu is None else cpu
    elif not outcome:
        later = [t for t in starts.get(shard, []) if t > started]
        if later:
            outcome, ended = "killed", min(later)
        elif finished:
            outcome, ended = "killed", started
        else:
            outcome, ended = "running", now
    return Attempt(
        shard=shard,
        attempt=number,
        slot=record.get("slot") if isinstance(record.get("slot"), int) else None,
        pod=str(record.get("pod") or ""),
        profile=str(record.get("profile") or ""),
        node=str(record.get("node") or ""),
        started=started,
        ended=max(started, ended if ended is not None else started),
        outcome=outcome,
        stage=str(record.get("stage") or "map"),
        records=records,
        cpu_seconds=cpu,
        gpus=int(record.get("gpus") or 0) or len(record.get("devices") or []),
        resumed_records=int(record.get("resumedRecords") or 0),
        reason=str(record.get("reason") or ""),
    )


def _mark_speculative(attempts: list[Attempt]) -> list[Attempt]:
    by_shard: dict[int, list[Attempt]] = defaultdict(list)
    for a in attempts:
        by_shard[a.shard].append(a)
    out = []
    for group in by_shard.values():
        for a in group:
            racing = any(o is not a and o.started < a.started < o.ended for o in group)
            out.append(replace(a, speculative=True) if racing else a)
    return out


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
