"""Prometheus metrics of the jobs this operator instance reconciles (served on --metrics-port).

Conventions: the ``datajob_`` prefix, base units (seconds, bytes, ratios), ``_total`` for counters. Per-job
series carry ``namespace`` and ``job`` labels and are dropped when the job is deleted; histograms are
operator-wide, so a cluster with thousands of jobs does not get thousands of bucket series.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, start_http_server

PHASES = ("Pending", "Running", "Suspended", "Succeeded", "Failed")
SHARD_STATES = ("pending", "running", "succeeded", "failed")
CAUSES = ("failure", "disruption")
BACKUP_OUTCOMES = ("launched", "won", "wasted")
JOB = ["namespace", "job"]

JOB_PHASE = Gauge("datajob_job_phase", "1 for the DataJob's current phase, 0 for the others", [*JOB, "phase"])
SHARDS = Gauge("datajob_shards", "Shards of the DataJob by state", [*JOB, "state"])
WORKERS_READY = Gauge("datajob_workers_ready", "Worker pods running", JOB)
WORKERS_DESIRED = Gauge("datajob_workers_desired", "Worker pods wanted now", JOB)
PROGRESS = Gauge("datajob_job_progress_ratio", "Input consumed, 0 to 1", JOB)
STALLED = Gauge("datajob_job_stalled", "1 while the job is Stalled (progressDeadlineSeconds)", JOB)
QUEUED = Gauge("datajob_job_queued", "1 while the job waits for Kueue to admit it", JOB)
RECORDS = Counter("datajob_records_processed_total", "Input records in committed shards", JOB)
BYTES = Counter("datajob_bytes_processed_total", "Input bytes in committed shards", JOB)
SKIPPED = Counter(
    "datajob_records_skipped_total", "Malformed records dropped (badRecordPolicy Skip or DeadLetter)", JOB
)
FAILOVERS = Counter(
    "datajob_worker_failovers_total",
    "Worker pods replaced, by cause: failure (charged to the worker) or disruption (eviction, drain, ...)",
    [*JOB, "cause"],
)
BACKUPS = Counter(
    "datajob_speculative_attempts_total",
    "Backup attempts of straggling shards (spec.speculation), by outcome: launched, won (committed before "
    "the original) or wasted (the original committed first)",
    [*JOB, "outcome"],
)
SPLITS = Counter(
    "datajob_shard_splits_total",
    "Running shards whose remainder was split off into new shards (spec.splitting)",
    JOB,
)
SPLIT_SHARDS = Counter(
    "datajob_split_shards_total", "Shards made from split-off remainders (spec.splitting)", JOB
)
SHARD_SECONDS = Histogram(
    "datajob_shard_duration_seconds",
    "Duration of shard attempts that committed (assignment to commit)",
    buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200),
)
QUEUE_WAIT = Histogram(
    "datajob_queue_wait_seconds",
    "Time a queued DataJob waited for Kueue to admit it",
    buckets=(0.5, 1, 5, 15, 30, 60, 300, 900, 1800, 3600, 14400),
)
REPLACEMENT_SECONDS = Histogram(
    "datajob_worker_replacement_seconds",
    "From creating a replacement worker pod (for a dead or moved one) to it running",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
# Incremental and continuous jobs (status.batches): what KEDA or an HPA on external metrics can scale by.
BACKLOG_OBJECTS = Gauge(
    "datajob_backlog_objects", "Input objects not in a committed batch yet (continuous jobs)", JOB
)
BACKLOG_BYTES = Gauge("datajob_backlog_bytes", "Bytes of those objects", JOB)
LAG = Gauge("datajob_lag_seconds", "Age of the oldest input object not in a committed batch", JOB)
BATCHES = Counter(
    "datajob_batches_committed_total", "Batches committed (incremental and continuous jobs)", JOB
)
PASSES = Counter("datajob_reconcile_passes_total", "Reconcile passes", ["outcome"])
PASS_SECONDS = Histogram("datajob_reconcile_seconds", "Duration of one reconcile pass")

_lock = threading.Lock()
_last: dict[tuple[str, str], dict[str, int]] = {}  # counter sources as last seen, per job


def serve(port: int) -> None:
    start_http_server(port)


def observe(namespace: str, job: str, status: dict[str, Any]) -> None:
    """Sets the job's series from the status a pass wrote."""
    phase = status.get("phase")
    for candidate in PHASES:
        JOB_PHASE.labels(namespace, job, candidate).set(1 if candidate == phase else 0)
    shards = status.get("shards") or {}
    for state in SHARD_STATES:
        SHARDS.labels(namespace, job, state).set(int(shards.get(state, 0)))
    workers = status.get("workers") or {}
    WORKERS_READY.labels(namespace, job).set(int(workers.get("ready", 0)))
    WORKERS_DESIRED.labels(namespace, job).set(int(workers.get("desired", 0)))
    percent = (status.get("progress") or {}).get("percent")
    if percent is not None:
        PROGRESS.labels(namespace, job).set(int(percent) / 100)
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    STALLED.labels(namespace, job).set(1 if conditions.get("Stalled") == "True" else 0)
    QUEUED.labels(namespace, job).set(1 if conditions.get("Queued") == "True" else 0)
    processed = status.get("processed") or {}
    restarts, disruptions = int(status.get("restarts", 0)), int(status.get("disruptions", 0))
    sources = {
        "records": int(processed.get("records", 0)),
        "bytes": int(processed.get("bytes", 0)),
        "skipped": int(processed.get("skippedRecords", 0)),
        "failure": max(0, restarts - disruptions),
        "disruption": disruptions,
    }
    batches = status.get("batches") or {}
    sources["batches"] = int(batches.get("committed", 0))
    if "pendingObjects" in batches:
        BACKLOG_OBJECTS.labels(namespace, job).set(int(batches["pendingObjects"]))
        BACKLOG_BYTES.labels(namespace, job).set(int(batches.get("pendingBytes", 0)))
        LAG.labels(namespace, job).set(float(batches.get("lagSeconds") or 0.0))
    splitting = status.get("splitting") or {}
    sources["splits"] = int(splitting.get("shards", 0))
    sources["split-shards"] = int(splitting.get("made", 0))
    speculation = status.get("speculation") or {}
    for outcome in BACKUP_OUTCOMES:
        sources[f"backup-{outcome}"] = int(speculation.get(outcome, 0))
    with _lock:
        last = _last.get((namespace, job), {})
        _last[(namespace, job)] = sources
    # A counter only goes up: a lower value (the job was recreated under the same name) counts from 0.
    for key, counter in (("records", RECORDS), ("bytes", BYTES), ("skipped", SKIPPED)):
        counter.labels(namespace, job).inc(_increase(sources[key], last.get(key)))
    if batches:
        BATCHES.labels(namespace, job).inc(_increase(sources["batches"], last.get("batches")))
    if splitting:
        SPLITS.labels(namespace, job).inc(_increase(sources["splits"], last.get("splits")))
        SPLIT_SHARDS.labels(namespace, job).inc(_increase(sources["split-shards"], last.get("split-shards")))
    for cause in CAUSES:
        FAILOVERS.labels(namespace, job, cause).inc(_increase(sources[cause], last.get(cause)))
    if speculation:
        for outcome in BACKUP_OUTCOMES:
            key = f"backup-{outcome}"
            BACKUPS.labels(namespace, job, outcome).inc(_increase(sources[key], last.get(key)))


def _increase(value: int, last: int | None) -> int:
    if last is None or value < last:
        return value
    return value - last


def observe_timings(
    shards: Iterable[float], replacements: Iterable[float], queue_waits: Iterable[float]
) -> None:
    for seconds in shards:
        SHARD_SECONDS.observe(seconds)
    for seconds in replacements:
        REPLACEMENT_SECONDS.observe(seconds)
    for seconds in queue_waits:
        QUEUE_WAIT.observe(seconds)


def forget(namespace: str, job: str) -> None:
    """Drops a deleted job's series, so dashboards do not show it forever."""
    for metric, values in (
        (JOB_PHASE, PHASES),
        (SHARDS, SHARD_STATES),
        (FAILOVERS, CAUSES),
        (BACKUPS, BACKUP_OUTCOMES),
    ):
        for value in values:
            with contextlib.suppress(KeyError):
                metric.remove(namespace, job, value)
    per_jobs = (WORKERS_READY, WORKERS_DESIRED, PROGRESS, STALLED, QUEUED, RECORDS, BYTES, SKIPPED)
    for per_job in (*per_jobs, BACKLOG_OBJECTS, BACKLOG_BYTES, LAG, BATCHES):
        with contextlib.suppress(KeyError):
            per_job.remove(namespace, job)
    with _lock:
        _last.pop((namespace, job), None)
