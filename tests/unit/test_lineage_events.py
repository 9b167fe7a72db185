"""Which OpenLineage events a DataJob owes, and what they say (datajob_operator.lineage)."""

from __future__ import annotations

import datetime
import json
from typing import Any

from openlineage.client.serde import Serde

from datajob_operator.lineage import dataset, due, run_event, sent_of

JOB: dict[str, Any] = {
    "metadata": {"name": "wc", "namespace": "team-a", "uid": "0b6c4b53-4a8e-4c59-9a49-1f3a1c1e7d11"},
    "spec": {
        "input": {"uris": ["s3://corpus/logs/2026/*.txt", "/data/in/a.txt"]},
        "output": {"uri": "s3://out/wc"},
    },
    "status": {"phase": "Failed", "message": "2 shard(s) failed permanently"},
}


def test_a_job_owes_start_then_complete_or_fail_once_each() -> None:
    assert due("Pending", frozenset()) == []
    assert due("Running", frozenset()) == ["START"]
    assert due("Running", frozenset({"START"})) == []
    assert due("Succeeded", frozenset({"START"})) == ["COMPLETE"]
    assert due("Failed", frozenset()) == ["START", "FAIL"]  # failed before it ran: a run still starts
    assert due("Succeeded", frozenset({"START", "COMPLETE"})) == []


def test_what_was_sent_is_read_from_the_jobs_annotation() -> None:
    assert sent_of({"metadata": {"annotations": {"datajob.dev/lineage": "START,FAIL"}}}) == {"START", "FAIL"}
    assert sent_of({"metadata": {}}) == frozenset()


def test_datasets_follow_openlineage_naming_and_drop_the_glob() -> None:
    assert dataset("s3://corpus/logs/2026/*.txt") == ("s3://corpus", "logs/2026")
    assert dataset("s3://out/wc") == ("s3://out", "wc")
    assert dataset("/data/in/a.txt") == ("file", "/data/in/a.txt")
    assert dataset("/data/*/x") == ("file", "/data")


def test_a_fail_event_names_the_run_job_datasets_and_the_reason() -> None:
    event = json.loads(
        Serde.to_json(run_event(JOB, "FAIL", "datajob", datetime.datetime(2026, 12, 4, tzinfo=datetime.UTC)))
    )
    assert event["eventType"] == "FAIL"
    assert event["run"]["runId"] == JOB["metadata"]["uid"]  # stable across operator restarts
    assert event["job"] == {**event["job"], "namespace": "datajob", "name": "team-a.wc"}
    assert event["run"]["facets"]["errorMessage"]["message"] == "2 shard(s) failed permanently"
    assert {(d["namespace"], d["name"]) for d in event["inputs"]} == {
        ("s3://corpus", "logs/2026"),
        ("file", "/data/in/a.txt"),
    }
    assert [(d["namespace"], d["name"]) for d in event["outputs"]] == [("s3://out", "wc")]


def test_an_event_is_timed_when_it_happened_not_when_it_was_sent() -> None:
    job = {
        **JOB,
        "status": {
            **JOB["status"],
            "startTime": "2026-12-01T10:00:00Z",
            "completionTime": "2026-12-01T11:00:00Z",
        },
    }
    later = datetime.datetime(2026, 12, 4, tzinfo=datetime.UTC)
    assert (
        json.loads(Serde.to_json(run_event(job, "START", "d", later)))["eventTime"] == "2026-12-01T10:00:00Z"
    )
    assert (
        json.loads(Serde.to_json(run_event(job, "FAIL", "d", later)))["eventTime"] == "2026-12-01T11:00:00Z"
    )
