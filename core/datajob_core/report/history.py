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
- ``killed``: it wrote its start and never its end (SIGKILL, OOM, a lost node). It is drawn up to the first
  later start of a retry of its shard or of another pod in its slot, the earliest moment known by which it
  had died;
- ``running``: the job has not finished, and neither has the attempt.

An attempt is ``speculative`` when it was a backup (the worker is told so by the operator, ShardTask.backup).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
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
        """Per ``pod`` or ``profile``: (name, records it read in attempts that committed, busy seconds, those
        records per busy second). Records an attempt resumed past (read by an earlier one) are not its."""
        records: dict[str, int] = defaultdict(int)
        busy: dict[str, float] = defaultdict(float)
        for a in self.attempts:
            name = a.pod if key == "pod" else (a.profile or "(local)")
            busy[name] += a.seconds
            if a.outcome in ("committed", "split"):
                records[name] += max(0, a.records - a.resumed_records)  # what it read itself
        return [
            (name, records[name], busy[name], records[name] / busy[name] if busy[name] else 0.0)
            for name in sorted(busy)
        ]


def winners_of(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The winning attempt of every task the ``_SUCCESS`` manifest lists: map shards (and split-off ones,
    with ``of``), then reduce partitions under their task numbers (after every map shard)."""
    shards = list(manifest.get("shards") or [])
    map_tasks = len(shards) + len(manifest.get("missingShards") or [])
    out = [dict(entry) for entry in shards]
    for entry in manifest.get("partitions") or []:
        task = entry.get("task", map_tasks + int(entry.get("partition", 0)))
        out.append({**entry, "shard": task, "records": entry.get("records", 0)})
    return out


def build(
    job: str,
    records: list[dict[str, Any]],
    winners: list[dict[str, Any]],
    *,
    finished: bool,
    now: float,
    summary: dict[str, Any] | None = None,
) -> RunHistory:
    """``records``: the attempt log; ``winners``: the commit record (or manifest entry) of every committed
    task (``winners_of``), so a failed or running job's committed shards show as committed too;
    ``finished``: the job is over (no attempt is still running)."""
    by_shard: dict[int, dict[str, Any]] = {}
    split_roots: set[int] = set()
    for entry in winners:
        if _int(entry.get("shard")) is None or _int(entry.get("attempt")) is None:
            continue
        by_shard[int(entry["shard"])] = entry
        if _int(entry.get("of")) is not None:
            split_roots.add(int(entry["of"]))
    valid = [r for r in records if _valid(r)]
    starts: dict[int, list[tuple[float, bool]]] = defaultdict(list)  # shard -> (start, a backup's)
    slots: dict[int, list[tuple[float, str]]] = defaultdict(list)  # slot -> (start, pod)
    for record in valid:
        starts[int(record["shard"])].append((float(record["startedAt"]), record.get("speculative") is True))
        if _int(record.get("slot")) is not None:
            slots[int(record["slot"])].append((float(record["startedAt"]), str(record.get("pod") or "")))
    attempts = [_attempt(r, by_shard, split_roots, starts, slots, finished=finished, now=now) for r in valid]
    attempts.sort(key=lambda a: (a.started, a.shard, a.attempt))
    begun = min((a.started for a in attempts), default=now)
    ended = max((a.ended for a in attempts), default=now)
    return RunHistory(job, begun, ended, attempts, finished, dict(summary or {}))


def _valid(record: Any) -> bool:
    """A record a worker of this project wrote: anything else in the log (torn, foreign) is left out."""
    return (
        isinstance(record, dict)
        and _int(record.get("shard")) is not None
        and _int(record.get("attempt")) is not None
        and _number(record.get("startedAt")) is not None
    )


def _attempt(
    record: dict[str, Any],
    winners: dict[int, dict[str, Any]],
    split_roots: set[int],
    starts: dict[int, list[tuple[float, bool]]],
    slots: dict[int, list[tuple[float, str]]],
    *,
    finished: bool,
    now: float,
) -> Attempt:
    started = float(record["startedAt"])
    shard, number = int(record["shard"]), int(record["attempt"])
    slot = _int(record.get("slot"))
    pod = str(record.get("pod") or "")
    winner = winners.get(shard)
    outcome = str(record.get("outcome") or "")
    ended = _number(record.get("endedAt"))
    records = _int(record.get("recordsRead")) or 0
    cpu = _number(record.get("cpuSeconds"))
    if winner is not None and _int(winner.get("attempt")) == number and outcome in ("", "committed"):
        outcome = "split" if shard in split_roots else "committed"
        ended = _number(winner.get("committedAt")) or ended or started
        records = _int(winner.get("records")) or 0
        cpu = _number(winner.get("cpuSeconds")) if cpu is None else cpu
    elif not outcome:
        # No end written. A retry of its shard, or a new pod in its slot, began after it: its worker died
        # (SIGKILL, OOM, a lost node) by then. A backup starting beside it proves nothing: it races it.
        after = [t for t, backup in starts.get(shard, []) if t > started and not backup]
        after += (
            [t for t, other in slots.get(slot, []) if t > started and other != pod]
            if slot is not None
            else []
        )
        if after:
            outcome, ended = "killed", min(after)
        elif finished:
            outcome, ended = "killed", started  # when, is not known
        else:
            outcome, ended = "running", now
    return Attempt(
        shard=shard,
        attempt=number,
        slot=slot,
        pod=pod,
        profile=str(record.get("profile") or ""),
        node=str(record.get("node") or ""),
        started=started,
        ended=max(started, ended if ended is not None else started),
        outcome=outcome,
        stage=str(record.get("stage") or "map"),
        speculative=record.get("speculative") is True,
        records=records,
        cpu_seconds=cpu,
        gpus=(_int(record.get("gpus")) or 0) or len(record.get("devices") or []),
        resumed_records=_int(record.get("resumedRecords")) or 0,
        reason=str(record.get("reason") or ""),
    )


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
