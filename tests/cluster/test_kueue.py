"""Queueing under the real Kueue: quota holds jobs back visibly, admission starts them, preemption
suspends one gracefully and it resumes from its checkpoints (docs/operations.md, "Queueing with Kueue")."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from datajob_testenv.datajobs import (
    Jobs,
    a_shard_checkpointed,
    committed,
    condition,
    data_digest,
    job_manifest,
    shards_ledger,
    write_inputs,
)
from datajob_testenv.kueue import GROUP, VERSION, Kueue, create_object
from datajob_testenv.nodes import AGENT_NODE_LABEL
from datajob_testenv.operator_process import OperatorProcess
from datajob_testenv.processes import wait_for
from datajob_worker.cli import main as datajob

QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
FLAVOR = "datajob-default"


@pytest.fixture
def queue(kueue: Kueue, jobs: Jobs, request: pytest.FixtureRequest) -> Any:
    """A LocalQueue in the test's namespace, feeding a ClusterQueue of its own; returns a function that
    creates it with a CPU quota and preemption policy."""
    custom = client.CustomObjectsApi(jobs.core.api_client)
    create_object(custom, "resourceflavors", {"kind": "ResourceFlavor", "metadata": {"name": FLAVOR}})
    cluster_queue = f"cq-{jobs.namespace}"[:63]

    def make(cpu: str, preemption: dict[str, Any] | None = None, flavor: str = FLAVOR) -> str:
        spec: dict[str, Any] = {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": jobs.namespace}},
            "queueingStrategy": "StrictFIFO",
            "resourceGroups": [
                {
                    "coveredResources": ["cpu", "memory"],
                    "flavors": [
                        {
                            "name": flavor,
                            "resources": [
                                {"name": "cpu", "nominalQuota": cpu},
                                {"name": "memory", "nominalQuota": "8Gi"},
                            ],
                        }
                    ],
                }
            ],
        }
        if preemption:
            spec["preemption"] = preemption
        create_object(
            custom,
            "clusterqueues",
            {"kind": "ClusterQueue", "metadata": {"name": cluster_queue}, "spec": spec},
        )
        create_object(
            custom,
            "localqueues",
            {"kind": "LocalQueue", "metadata": {"name": "lq"}, "spec": {"clusterQueue": cluster_queue}},
            jobs.namespace,
        )
        return "lq"

    yield make
    for name in [
        j["metadata"]["name"]
        for j in jobs.custom.list_namespaced_custom_object(
            "datajob.dev", "v1alpha1", jobs.namespace, "datajobs"
        )["items"]
    ]:
        jobs.custom.delete_namespaced_custom_object(
            "datajob.dev", "v1alpha1", jobs.namespace, "datajobs", name
        )
    try:
        custom.delete_cluster_custom_object(GROUP, VERSION, "clusterqueues", cluster_queue)
    except client.ApiException as error:
        if error.status != 404:
            raise


def queued_job(name: str, tmp_path: Path, queue: str, **spec: Any) -> dict[str, Any]:
    write_inputs(tmp_path / name / "in", files=2, lines=100)
    settings: dict[str, Any] = {
        "workers": 1,
        "processor": {"builtin": "wordcount", "options": {"delayPerRecord": "0.02"}},  # about 4 s of work
        **spec,
    }
    manifest = job_manifest(name, tmp_path / name / "in", tmp_path / name / "out", **settings)
    manifest["metadata"]["labels"] = {QUEUE_LABEL: queue}
    return manifest


def test_kueue_admits_jobs_within_quota_and_the_next_waits_with_a_visible_reason_then_runs(
    jobs: Jobs, tmp_path: Path, queue: Any, operator: OperatorProcess
) -> None:
    lq = queue(cpu="200m")  # two one-worker jobs of 100m each
    for name in ("q1", "q2", "q3"):
        jobs.create(queued_job(name, tmp_path, lq))
        time.sleep(0.5)  # StrictFIFO: admitted in submission order

    def queued_with_reason(status: dict[str, Any]) -> bool:
        # Until Kueue has tried to admit the Workload, the reason is the operator's generic one;
        # once Kueue has, its own reason (no quota left) must reach the condition.
        waiting = condition(status, "Queued")
        message = waiting.get("message", "")
        return (
            waiting.get("status") == "True"
            and "position" in message
            and ("insufficient" in message or "quota" in message)
        )

    third = jobs.wait(
        "q3", queued_with_reason, 60, "the third job queued with Kueue's reason and its position"
    )
    waiting = condition(third, "Queued")
    assert "position 1 of 1 in LocalQueue lq" in waiting["message"], waiting
    assert third["phase"] == "Pending" and third["queue"]["position"] == 1
    for name in ("q1", "q2"):  # Kueue admitted them before it found no quota left for the third
        jobs.wait(name, lambda s: condition(s, "Queued").get("status") == "False", 30, f"{name} admitted")
    assert jobs.pods("q3") == [], "a job held by Kueue has no workers"
    assert any(e.reason == "Queued" for e in jobs.events("q3", wait_for_reason="Queued"))

    # One finishes, its Workload is marked Finished, the quota frees up, and the third is admitted.
    jobs.wait_phase("q1", "Succeeded", timeout=120)
    admitted = jobs.wait("q3", lambda s: condition(s, "Queued").get("status") == "False", 60, "q3 admitted")
    admitted_at = time.monotonic()
    jobs.wait("q3", lambda s: s.get("phase") in ("Running", "Succeeded"), 60, "q3 running")
    print(f"admission to a running worker: {time.monotonic() - admitted_at:.1f}s")
    assert admitted["queue"]["clusterQueue"].startswith("cq-")
    for name in ("q2", "q3"):
        assert jobs.wait_phase(name, "Succeeded", timeout=120)["shards"]["failed"] == 0
    events = {e.reason for e in jobs.events("q3", wait_for_reason="Completed")}
    assert {"Queued", "Admitted", "Completed"} <= events, events
    # The wait is measured: the operator's queue-wait histogram has the third job's.
    with urllib.request.urlopen(operator.metrics_url, timeout=5) as page:
        scraped = page.read().decode()
    waits = [line for line in scraped.splitlines() if line.startswith("datajob_queue_wait_seconds_count")]
    assert waits and float(waits[0].split()[-1]) >= 1, waits


def test_a_higher_priority_job_preempts_a_lower_one_which_resumes_from_its_checkpoints_with_nothing_charged(
    jobs: Jobs, tmp_path: Path, queue: Any
) -> None:
    custom = client.CustomObjectsApi(jobs.core.api_client)
    for name, value in (("datajob-low", 10), ("datajob-high", 1000)):
        create_object(
            custom,
            "workloadpriorityclasses",
            {"kind": "WorkloadPriorityClass", "metadata": {"name": name}, "value": value},
        )
    lq = queue(cpu="200m", preemption={"withinClusterQueue": "LowerPriority"})
    total = write_inputs(tmp_path / "low-in", files=4, lines=300)
    low = job_manifest(
        "low",
        tmp_path / "low-in",
        tmp_path / "low-out",
        workers=2,
        processor={"builtin": "wordcount", "options": {"delayPerRecord": "0.01"}},
        checkpoint={"intervalSeconds": 1, "intervalRecords": 25},
        # One charge would fail a shard, and with it the job.
        retryPolicy={"maxShardAttempts": 1, "backoff": {"initialSeconds": 1, "maxSeconds": 2}},
    )
    low["metadata"]["labels"] = {QUEUE_LABEL: lq, "kueue.x-k8s.io/priority-class": "datajob-low"}
    jobs.create(low)
    jobs.wait("low", a_shard_checkpointed, 60, "the low-priority job checkpointed")

    high = queued_job("high", tmp_path, lq, workers=2)
    high["metadata"]["labels"]["kueue.x-k8s.io/priority-class"] = "datajob-high"
    preempted_at = time.monotonic()
    jobs.create(high)
    jobs.wait(
        "low", lambda s: condition(s, "Queued").get("status") == "True", 60, "low evicted and queued again"
    )
    wait_for(lambda: jobs.pods("low") == [], 60, "the low job's workers gone")
    stopped = time.monotonic() - preempted_at
    jobs.wait("high", lambda s: s.get("phase") in ("Running", "Succeeded"), 60, "high running")
    print(f"preemption: the low job's workers stopped {stopped:.1f}s after the high job was submitted")
    jobs.wait_phase("high", "Succeeded", timeout=120)

    status = jobs.wait_phase("low", "Succeeded", timeout=180)
    assert status["shards"]["failed"] == 0
    ledger = shards_ledger(status)
    assert all(entry.get("f", 0) == 0 for entry in (ledger.get("retry") or {}).values())
    events = jobs.events("low", wait_for_reason="Completed")
    reasons = [e.reason for e in events]
    assert "Evicted" in reasons and reasons.count("Admitted") >= 2, reasons
    assert not any(e.reason in ("WorkerFailed", "ShardFailed") for e in events)
    results = committed(tmp_path / "low-out")
    assert sum(r["records"] for r in results.values()) == total
    resumed = [r for r in results.values() if r["attempt"] > 1]
    # The shards being processed resumed from their checkpoints (prefetched ones had not started).
    assert any((r["resumedFrom"] or {}).get("records", 0) > 0 for r in resumed), results
    # Identical to the same job run undisturbed (local mode: the same plan, processor and committer).
    undisturbed = job_manifest("low", tmp_path / "low-in", tmp_path / "undisturbed", workers=2)
    undisturbed["spec"]["processor"] = low["spec"]["processor"]
    (tmp_path / "undisturbed.yaml").write_text(yaml.safe_dump(undisturbed))
    assert datajob(["run", str(tmp_path / "undisturbed.yaml")]) == 0
    assert data_digest(tmp_path / "low-out") == data_digest(tmp_path / "undisturbed")


def test_kueue_admits_fewer_workers_when_min_workers_allows_on_the_flavors_nodes(
    jobs: Jobs, tmp_path: Path, queue: Any
) -> None:
    custom = client.CustomObjectsApi(jobs.core.api_client)
    flavor = {"kind": "ResourceFlavor", "metadata": {"name": "datajob-agents"}}
    flavor["spec"] = {"nodeLabels": {AGENT_NODE_LABEL: "true"}}
    create_object(custom, "resourceflavors", flavor)
    lq = queue(cpu="100m", flavor="datajob-agents")  # room for one 100m worker of the two asked for
    job = queued_job("partial", tmp_path, lq, workers=2, minWorkers=1)
    jobs.create(job)
    wait_for(lambda: bool(jobs.pods("partial")), 60, "a worker of the admitted job")
    [pod] = jobs.pods("partial")
    assert pod.spec.node_selector[AGENT_NODE_LABEL] == "true", "the admitted flavor's node labels"
    status = jobs.wait_phase("partial", "Succeeded", timeout=120)
    assert status["queue"]["admittedWorkers"] == 1
    assert status["shards"]["failed"] == 0
    admitted = next(
        e.message for e in jobs.events("partial", wait_for_reason="Admitted") if e.reason == "Admitted"
    )
    assert "with 1 worker(s)" in admitted and "datajob-agents" in admitted, admitted
    events = jobs.events("partial")
    assert sum(1 for e in events if e.reason == "WorkerCreated") == 1, "one worker, as admitted"


def test_suspending_a_queued_job_gives_its_quota_to_the_next_one_and_resuming_queues_it_again(
    jobs: Jobs, tmp_path: Path, queue: Any
) -> None:
    lq = queue(cpu="100m")  # room for one one-worker job
    jobs.create(
        queued_job(
            "first", tmp_path, lq, processor={"builtin": "wordcount", "options": {"delayPerRecord": "0.05"}}
        )
    )
    jobs.wait("first", a_shard_checkpointed, 60, "the first job checkpointed")
    jobs.create(queued_job("second", tmp_path, lq))
    jobs.wait("second", lambda s: condition(s, "Queued").get("status") == "True", 60, "the second job queued")

    jobs.patch("first", {"suspend": True})
    jobs.wait_phase("second", "Succeeded", timeout=120)  # it got the quota the suspended job released
    first = jobs.status("first")
    assert first["phase"] == "Suspended" and jobs.pods("first") == []
    jobs.patch("first", {"suspend": False})
    status = jobs.wait_phase("first", "Succeeded", timeout=180)
    assert status["shards"]["failed"] == 0
    ledger = shards_ledger(status)
    assert all(entry.get("f", 0) == 0 for entry in (ledger.get("retry") or {}).values())
