"""The run report's data: each attempt's outcome from the attempt log and the _SUCCESS manifest."""

from __future__ import annotations

from typing import Any

from datajob_core.report.history import build


def start(shard: int, attempt: int, at: float, pod: str = "p", slot: int = 0, **more: Any) -> dict[str, Any]:
    return {"shard": shard, "attempt": attempt, "startedAt": at, "pod": pod, "slot": slot, **more}


def manifest(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"shards": list(entries)}


def test_a_committed_attempt_ends_at_its_commit_with_the_committed_records() -> None:
    history = build(
        "j",
        [start(0, 1, 10.0)],
        manifest({"shard": 0, "attempt": 1, "committedAt": 12.5, "records": 7}),
        now=99,
    )
    (a,) = history.attempts
    assert (a.outcome, a.started, a.ended, a.records) == ("committed", 10.0, 12.5, 7)
    assert history.finished and not history.kills


def test_an_attempt_without_an_end_was_killed_when_the_next_attempt_began() -> None:
    records = [start(0, 1, 10.0, pod="a"), start(0, 2, 14.0, pod="b", slot=0)]
    history = build(
        "j", records, manifest({"shard": 0, "attempt": 2, "committedAt": 15.0, "records": 3}), now=99
    )
    killed, won = history.attempts
    assert (killed.outcome, killed.ended) == ("killed", 14.0)
    assert won.outcome == "committed" and not won.speculative
    assert history.kills == [killed]
    assert history.cost(wasted=True).worker_seconds == 4.0


def test_a_backup_that_starts_while_the_original_runs_is_speculative() -> None:
    records = [
        start(0, 1, 10.0, pod="slow"),
        start(0, 2, 12.0, pod="fast", slot=1),
        {**start(0, 1, 10.0, pod="slow"), "outcome": "lost", "endedAt": 16.0, "recordsRead": 50},
    ]
    # The end record replaces the start record (same object): only one record per attempt is read.
    history = build(
        "j", records[1:], manifest({"shard": 0, "attempt": 2, "committedAt": 14.0, "records": 9}), now=99
    )
    by_attempt = {a.attempt: a for a in history.attempts}
    assert by_attempt[1].outcome == "lost" and by_attempt[1].records == 50
    assert by_attempt[2].outcome == "committed" and by_attempt[2].speculative


def test_a_shard_whose_rest_was_split_off_shows_as_split() -> None:
    records = [start(0, 1, 1.0), start(5, 1, 3.0, slot=1)]
    done = manifest(
        {"shard": 0, "attempt": 1, "committedAt": 4.0, "records": 10},
        {"shard": 5, "attempt": 1, "committedAt": 6.0, "records": 10, "of": 0},
    )
    outcomes = {a.shard: a.outcome for a in build("j", records, done, now=99).attempts}
    assert outcomes == {0: "split", 5: "committed"}


def test_a_running_job_shows_its_open_attempts_as_running_until_now() -> None:
    history = build("j", [start(0, 1, 10.0)], None, now=20.0)
    (a,) = history.attempts
    assert (a.outcome, a.ended) == ("running", 20.0) and not history.finished


def test_gpu_seconds_count_the_gpus_of_each_attempt() -> None:
    records = [start(0, 1, 0.0, gpus=2)]
    history = build(
        "j", records, manifest({"shard": 0, "attempt": 1, "committedAt": 5.0, "records": 1}), now=9
    )
    assert history.cost(wasted=False).gpu_seconds == 10.0


def test_records_that_are_not_attempts_are_ignored() -> None:
    assert build("j", [{"shard": "x"}, {"attempt": 1}, {}], None, now=1.0).attempts == []


def test_throughput_spreads_each_committed_attempts_records_over_its_run() -> None:
    records = [start(0, 1, 0.0), start(1, 1, 5.0, slot=1)]
    done = manifest(
        {"shard": 0, "attempt": 1, "committedAt": 10.0, "records": 100},
        {"shard": 1, "attempt": 1, "committedAt": 10.0, "records": 50},
    )
    points = build("j", records, done, now=99).throughput(buckets=10)
    assert [round(rate, 6) for _, rate in points] == [10.0] * 5 + [20.0] * 5
    assert sum(rate * 1.0 for _, rate in points) == 150  # every committed record, once
