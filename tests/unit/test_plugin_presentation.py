"""`kubectl datajob` presentation: why a job is not running, and which pod's logs to show (pure)."""

from __future__ import annotations

import datetime
from types import SimpleNamespace
from typing import Any

import pytest

from datajob_operator.kubectl_plugin import (
    EventView,
    PluginError,
    explain,
    format_status,
    pick_pods,
    status_report,
)


def job(phase: str, *conditions: tuple[str, str, str, str], **status: Any) -> dict[str, Any]:
    listed = [{"type": t, "status": s, "reason": r, "message": m} for t, s, r, m in conditions]
    return {
        "metadata": {"name": "j", "namespace": "ns"},
        "status": {"phase": phase, "conditions": listed, **status},
    }


def pod(name: str, slot: int, minute: int, waiting: str = "") -> Any:
    state = SimpleNamespace(
        waiting=SimpleNamespace(reason=waiting, message="no such image") if waiting else None
    )
    return SimpleNamespace(
        metadata=SimpleNamespace(
            name=name,
            labels={"datajob.dev/slot": str(slot)},
            deletion_timestamp=None,
            creation_timestamp=datetime.datetime(2026, 1, 1, 0, minute, tzinfo=datetime.UTC),
        ),
        status=SimpleNamespace(container_statuses=[SimpleNamespace(state=state)]),
    )


def test_why_names_the_failure_the_queue_the_stall_and_pods_that_cannot_start() -> None:
    failed = job("Failed", ("Failed", "True", "ShardsFailed", "1 shard failed"), message="1 shard failed")
    events = [
        EventView("ShardFailed", "shard 3 failed after 3 attempt(s): bad record", "2026-01-01T00:00:00Z")
    ]
    reasons = explain(failed, events, [])
    assert (
        reasons[0].startswith("It failed (ShardsFailed)")
        and "shard 3" in reasons[1]
        and "retry" in reasons[-1]
    )
    queued = job("Pending", ("Queued", "True", "Pending", "insufficient quota (position 2 of 3)"))
    assert "Kueue has not admitted it yet" in explain(queued, [], [])[0]
    stalled = job("Running", ("Stalled", "True", "NoProgress", "no checkpoint advanced"))
    assert "It is stalled (NoProgress)" in explain(stalled, [], [])[0]
    pulling = explain(job("Pending"), [], [pod("j-0-1", 0, 0, waiting="ImagePullBackOff")])
    assert pulling == ["Pod j-0-1: ImagePullBackOff: no such image"]
    assert explain(job("Succeeded", message="all 4 shards done"), [], []) == [
        "It succeeded: all 4 shards done"
    ]


def test_logs_pick_the_slots_newest_pod_and_refuse_what_does_not_exist() -> None:
    pods = [pod("j-0-1", 0, 0), pod("j-0-2", 0, 5), pod("j-1-1", 1, 1)]
    assert [p.metadata.name for p in pick_pods(job("Running"), pods, 0, None)] == ["j-0-2"]
    assert len(pick_pods(job("Running"), pods, None, None)) == 3
    with pytest.raises(PluginError, match="no worker pod for slot 7"):
        pick_pods(job("Running"), pods, 7, None)
    with pytest.raises(PluginError, match="no shard ledger"):
        pick_pods(job("Running"), pods, None, 2)


def test_status_shows_progress_shards_workers_queue_and_recent_failures() -> None:
    status = {
        "shards": {"summary": "2/4", "pending": 1, "running": 1, "succeeded": 2, "failed": 0},
        "workers": {"ready": 1, "desired": 2},
        "progress": {"summary": "55%", "eta": "3m", "recordsPerSecond": 1200, "bytesPerSecond": 2048},
        "queue": {"name": "lq", "clusterQueue": "cq"},
        "restarts": 1,
        "disruptions": 1,
    }
    events = [EventView("WorkerDisrupted", "worker j-0-1 moved: node n1 is cordoned", "2026-01-01T00:00:00Z")]
    text = format_status(status_report(job("Running", **status), events))
    assert "Progress:   55%  ETA 3m  1,200 records/s, 2.0 KiB/s" in text
    assert "Shards:     2/4 done" in text and "Workers:    1/2 ready; 1 replaced (1 disruption(s)" in text
    assert "Queue:      lq (Kueue), admitted by cq" in text and "node n1 is cordoned" in text


def test_status_shows_workers_per_hardware_profile_and_where_each_worker_runs() -> None:
    hardware = {
        "profiles": [
            {"name": "h100", "active": 2, "ready": 2, "shards": 9, "records": 900, "recordsPerSecond": 4000},
            {"name": "a100", "active": 1, "ready": 1, "shards": 3, "records": 300, "givenUp": ""},
            {"name": "l40s", "active": 0, "ready": 0, "shards": 0, "givenUp": "0/6 nodes are available"},
        ],
        "workers": [
            {"slot": 0, "pod": "j-0-1", "profile": "h100", "node": "n1", "recordsPerSecond": 4100},
            {
                "slot": 1,
                "pod": "j-1-1",
                "profile": "a100",
                "node": "n2",
                "devices": ["gpu.example.com/n2/a-0"],
            },
        ],
        "summary": "h100:2 a100:1",
    }
    text = format_status(status_report(job("Running", hardware=hardware), []))
    assert "            h100  2/2  9  4,000  -" in text
    assert "            l40s  0/0  0  -  0/6 nodes are available" in text
    assert "            j-0-1  h100  n1  4,100  -" in text
    assert "            j-1-1  a100  n2  -  gpu.example.com/n2/a-0" in text
    # One profile (spec.resources) and no workers: nothing to add.
    plain = {"profiles": [{"name": "default", "active": 0, "ready": 0}], "workers": [], "summary": "-"}
    assert "Hardware:" not in format_status(status_report(job("Pending", hardware=plain), []))


def test_status_shows_backup_attempts_and_who_won() -> None:
    speculation = {
        "launched": 3,
        "won": 2,
        "wasted": 1,
        "running": 0,
        "shards": [{"shard": 4, "winner": "backup"}, {"shard": 9, "winner": "original"}],
    }
    text = format_status(status_report(job("Running", speculation=speculation), []))
    assert "Backups:    3 launched, 2 won, 1 wasted, 0 running; shards: 4 (backup), 9 (original)" in text
    assert "Backups:" not in format_status(status_report(job("Running"), []))


def test_status_shows_split_shards_or_why_splitting_is_off() -> None:
    text = format_status(
        status_report(job("Running", splitting={"shards": 2, "made": 5, "requested": 1}), [])
    )
    assert "Splits:     2 shard(s) split into 5 more, 1 requested now" in text
    off = {"shards": 0, "made": 0, "requested": 0, "off": "input format parquet is not split"}
    assert "Splits:     off: input format parquet is not split" in format_status(
        status_report(job("Running", splitting=off), [])
    )
    assert "Splits:" not in format_status(status_report(job("Running"), []))
