"""Prometheus metrics of the jobs this operator instance reconciles (served on --metrics-port)."""

from __future__ import annotations

import contextlib
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, start_http_server

PHASES = ("Pending", "Running", "Suspended", "Succeeded", "Failed")
SHARD_STATES = ("pending", "running", "succeeded", "failed")

JOB_PHASE = Gauge(
    "datajob_job_phase", "1 for the DataJob's current phase, 0 for the others", ["namespace", "job", "phase"]
)
SHARDS = Gauge("datajob_shards", "Shards of the DataJob by state", ["namespace", "job", "state"])
WORKERS_READY = Gauge("datajob_workers_ready", "Worker pods running", ["namespace", "job"])
RESTARTS = Gauge("datajob_worker_restarts", "Worker restarts of the DataJob so far", ["namespace", "job"])
RECORDS = Gauge("datajob_records_processed", "Input records in committed shards", ["namespace", "job"])
SKIPPED = Gauge(
    "datajob_records_skipped",
    "Malformed records dropped (badRecordPolicy Skip or DeadLetter)",
    ["namespace", "job"],
)
PASSES = Counter("datajob_reconcile_passes_total", "Reconcile passes", ["outcome"])
PASS_SECONDS = Histogram("datajob_reconcile_seconds", "Duration of one reconcile pass")


def serve(port: int) -> None:
    start_http_server(port)


def observe(namespace: str, job: str, status: dict[str, Any]) -> None:
    phase = status.get("phase")
    for candidate in PHASES:
        JOB_PHASE.labels(namespace, job, candidate).set(1 if candidate == phase else 0)
    shards = status.get("shards") or {}
    for state in SHARD_STATES:
        SHARDS.labels(namespace, job, state).set(int(shards.get(state, 0)))
    WORKERS_READY.labels(namespace, job).set(int((status.get("workers") or {}).get("ready", 0)))
    RESTARTS.labels(namespace, job).set(int(status.get("restarts", 0)))
    processed = status.get("processed") or {}
    RECORDS.labels(namespace, job).set(int(processed.get("records", 0)))
    SKIPPED.labels(namespace, job).set(int(processed.get("skippedRecords", 0)))


def forget(namespace: str, job: str) -> None:
    """Drops a deleted job's series, so dashboards do not show it forever."""
    for gauge, values in (
        (JOB_PHASE, PHASES),
        (SHARDS, SHARD_STATES),
    ):
        for value in values:
            with contextlib.suppress(KeyError):
                gauge.remove(namespace, job, value)
    for gauge in (WORKERS_READY, RESTARTS, RECORDS, SKIPPED):
        with contextlib.suppress(KeyError):
            gauge.remove(namespace, job)
