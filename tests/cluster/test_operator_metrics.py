"""The operator's /metrics after a job with a crashed worker: what the dashboard and alerts are built on."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

from datajob_testenv.datajobs import Jobs, a_shard_checkpointed, job_manifest, write_inputs
from datajob_testenv.nodeagent import SIGNAL_ANNOTATION
from datajob_testenv.operator_process import OperatorProcess
from datajob_testenv.processes import wait_for


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as page:
        return str(page.read().decode())


def value(text: str, name: str, **labels: str) -> float:
    """The sample of ``name`` whose labels include ``labels`` (0 if there is none)."""
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
        if match and all(f'{k}="{v}"' in (match.group(1) or "") for k, v in labels.items()):
            return float(match.group(2))
    return 0.0


def test_metrics_count_records_failovers_by_cause_shard_durations_and_replacements(
    jobs: Jobs, tmp_path: Path, operator: OperatorProcess
) -> None:
    total = write_inputs(tmp_path / "in", files=3, lines=300)
    manifest = job_manifest(
        "metered",
        tmp_path / "in",
        tmp_path / "out",
        processor={"builtin": "wordcount", "options": {"delayPerRecord": "0.01"}},
        checkpoint={"intervalSeconds": 1, "intervalRecords": 25},
    )
    jobs.create(manifest)
    jobs.wait("metered", a_shard_checkpointed, 60, "a shard checkpointed")
    before = scrape(operator.metrics_url)
    victim = jobs.pods("metered")[0].metadata.name
    jobs.core.patch_namespaced_pod(
        victim, jobs.namespace, {"metadata": {"annotations": {SIGNAL_ANNOTATION: "KILL"}}}
    )
    jobs.wait_phase("metered", "Succeeded", timeout=180)
    job = {"namespace": jobs.namespace, "job": "metered"}

    def settled() -> bool:
        return value(scrape(operator.metrics_url), "datajob_job_phase", phase="Succeeded", **job) == 1

    wait_for(settled, 30, "the Succeeded phase in /metrics")
    after = scrape(operator.metrics_url)
    assert value(after, "datajob_records_processed_total", **job) == total
    assert value(after, "datajob_bytes_processed_total", **job) > 0
    assert value(after, "datajob_worker_failovers_total", cause="failure", **job) == 1
    assert value(after, "datajob_worker_failovers_total", cause="disruption", **job) == 0
    assert value(after, "datajob_shards", state="succeeded", **job) == 3
    assert value(after, "datajob_job_progress_ratio", **job) == 1
    # Operator-wide histograms: this job added its committed shards and one replacement.
    shards = value(after, "datajob_shard_duration_seconds_count") - value(
        before, "datajob_shard_duration_seconds_count"
    )
    assert shards >= 3, shards
    replaced = value(after, "datajob_worker_replacement_seconds_count") - value(
        before, "datajob_worker_replacement_seconds_count"
    )
    assert replaced >= 1, replaced
    assert value(after, "datajob_reconcile_passes_total", outcome="ok") > 0
