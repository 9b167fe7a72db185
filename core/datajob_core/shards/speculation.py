"""Which running shards deserve a backup attempt (speculation, as MapReduce's backup tasks and Spark's
``spark.speculation``). Pure: what the workers reported in, the stragglers out, slowest first.

A shard is judged only once ``quantile`` of the map shards have finished (Spark's meaning of the word), and
only by rates: its attempt's bytes per second since it began against the median of recently finished
attempts. It is a straggler when it has run at least ``min_runtime`` seconds and ``multiplier`` times as
long as its size needs at the median rate, *and* its own rate is below the median over ``multiplier``. A
shard that is merely large (one file ten times the others) reads at the usual rate and is not speculated;
a shard on a slow node (a noisy neighbour, an older GPU) is. A shard queued behind another on a busy
worker has read nothing, so it counts as a straggler once it has waited as long.

With a shard time limit (``spec.retryPolicy.shardTimeoutSeconds``) an attempt that has used half of it is
a straggler whatever the rates and the quantile say: its backup starts in time to finish within its own
limit, so the limit fails the shard only when the backup runs out too (a death with a backup running
hands the shard to the backup, datajob_core.shards.ledger).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

SAMPLES = 32  # finished attempts kept for the median (in the job's status)


@dataclass(frozen=True)
class SpeculationPolicy:
    enabled: bool = False
    quantile: float = 0.75
    multiplier: float = 1.5
    min_runtime: float = 10.0
    max_backups: int = 1  # backup attempts running at once
    time_limit: float = 0.0  # spec.retryPolicy.shardTimeoutSeconds; 0: none


@dataclass(frozen=True)
class Running:
    """An original attempt of a map shard, as the last report saw it."""

    shard: int
    worker: str
    elapsed: float  # seconds since it began (or was queued, if it has not begun)
    read: int  # bytes this attempt has read so far
    size: int  # the shard's bytes


@dataclass(frozen=True)
class Straggler:
    shard: int
    worker: str
    rate: float  # its bytes/s
    typical: float  # the median bytes/s of finished attempts (0: none yet)
    timed: bool = False  # judged by the shard time limit, not by rates


def typical_rate(samples: Sequence[tuple[float, int]]) -> float | None:
    """Median bytes/s of finished attempts ``(seconds, bytes)``; None before there are three."""
    rates = [size / seconds for seconds, size in samples if seconds > 0 and size > 0]
    return statistics.median(rates) if len(rates) >= 3 else None


def stragglers(
    running: Sequence[Running],
    samples: Sequence[tuple[float, int]],
    finished: float,
    policy: SpeculationPolicy,
) -> list[Straggler]:
    """The shards worth a backup, the one with the most time left first. ``finished``: the fraction of
    map shards done."""
    typical = typical_rate(samples)
    if not policy.enabled:
        return []
    judged = typical is not None and finished >= policy.quantile
    found: list[tuple[float, Straggler]] = []
    for shard in running:
        if shard.elapsed <= 0 or shard.read >= shard.size:
            continue
        rate = shard.read / shard.elapsed
        timed = policy.time_limit > 0 and shard.elapsed >= policy.time_limit / 2
        if not timed:
            if not judged or typical is None or shard.elapsed < policy.min_runtime:
                continue
            if (
                shard.elapsed < policy.multiplier * shard.size / typical
                or rate * policy.multiplier >= typical
            ):
                continue
        left = (shard.size - shard.read) / rate if rate > 0 else float("inf")
        found.append((left, Straggler(shard.shard, shard.worker, rate, typical or 0.0, timed)))
    found.sort(key=lambda item: (-item[0], item[1].shard))
    return [straggler for _, straggler in found]
