"""Disruption is not failure: a drained, cordoned or reclaimed node's workers checkpoint, move, and are
charged nothing (docs/operations.md, "Disruptions")."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from datajob_testenv.cluster import TestCluster
from datajob_testenv.datajobs import (
    Jobs,
    a_shard_checkpointed,
    committed,
    job_manifest,
    shards_ledger,
    write_inputs,
)
from datajob_testenv.nodes import AGENT_NODE, AGENT_NODE_LABEL
from datajob_testenv.processes import wait_for

DRAINED = "agent-drained"


@pytest.fixture
def second_agent(cluster: TestCluster) -> Iterator[str]:
    """A second node that runs real worker processes, for the duration of one test."""
    cluster.start_node_agent(DRAINED)
    try:
        yield DRAINED
    finally:
        cluster.stop_node_agent(DRAINED)


def test_draining_a_node_moves_its_workers_elsewhere_with_no_shard_charged(
    jobs: Jobs, tmp_path: Path, second_agent: str, core_v1: client.CoreV1Api
) -> None:
    total = write_inputs(tmp_path / "in", files=4, lines=300)
    manifest = job_manifest(
        "drain",
        tmp_path / "in",
        tmp_path / "out",
        workers=2,
        processor={"builtin": "wordcount", "options": {"delayPerRecord": "0.01"}},
        checkpoint={"intervalSeconds": 1, "intervalRecords": 25},
        # One charge would fail a shard, and with it the job.
        retryPolicy={"maxShardAttempts": 1, "backoff": {"initialSeconds": 1, "maxSeconds": 2}},
        nodeSelector={AGENT_NODE_LABEL: "true", "kubernetes.io/hostname": second_agent},
    )
    jobs.create(manifest)
    jobs.wait("drain", a_shard_checkpointed, 60, "a shard checkpointed")
    # Replacements may go to any agent node (a merge patch: null removes the key); running pods stay put.
    jobs.patch("drain", {"nodeSelector": {"kubernetes.io/hostname": None}})
    before = {p.metadata.name for p in jobs.pods("drain")}
    checkpoints_before = {
        int(shard): (entry.get("c") or {}).get("records", 0)
        for shard, entry in (shards_ledger(jobs.status("drain")).get("running") or {}).items()
    }

    # What `kubectl drain` does: cordon, then evict every pod on the node through the Eviction API.
    drained_at = time.monotonic()
    core_v1.patch_node(second_agent, {"spec": {"unschedulable": True}})
    for pod in before:
        try:
            core_v1.create_namespaced_pod_eviction(
                pod, jobs.namespace, {"metadata": {"name": pod, "namespace": jobs.namespace}}
            )
        except client.ApiException as error:
            assert error.status == 404, error  # already gone: the operator moved it first

    def replaced_elsewhere() -> bool:
        pods = jobs.pods("drain")
        fresh = [p for p in pods if p.metadata.name not in before and p.status.phase == "Running"]
        return len(fresh) == 2 and all(p.spec.node_name == AGENT_NODE for p in fresh)

    wait_for(replaced_elsewhere, 60, "both workers running again on the other node")
    replaced_seconds = time.monotonic() - drained_at

    status = jobs.wait_phase("drain", "Succeeded", timeout=180)
    assert status["shards"]["failed"] == 0
    assert status["disruptions"] >= 2
    ledger = shards_ledger(status)
    assert all(entry.get("f", 0) == 0 for entry in (ledger.get("retry") or {}).values())
    events = jobs.events("drain", wait_for_reason="Completed")
    moved = [e.message for e in events if e.reason == "WorkerDisrupted"]
    assert any("cordoned" in m for m in moved), moved
    assert not any(e.reason == "WorkerFailed" for e in events)
    results = committed(tmp_path / "out")
    assert sum(r["records"] for r in results.values()) == total
    # Resumed shards start from the checkpoint written when the worker was stopped, at or past the last
    # one the ledger had before the drain began: the work lost is at most what followed that checkpoint.
    resumed = {shard: r for shard, r in results.items() if r["attempt"] > 1}
    assert resumed, results
    for shard, result in resumed.items():
        assert (result["resumedFrom"] or {}).get("records", 0) >= checkpoints_before.get(shard, 0), result
    gained = sum(
        (r["resumedFrom"] or {}).get("records", 0) - checkpoints_before.get(s, 0) for s, r in resumed.items()
    )
    print(
        f"workers running on another node {replaced_seconds:.1f}s after the drain began; "
        f"{len(resumed)} shard(s) resumed; the final checkpoints saved {gained} records past the last "
        "periodic one"
    )
