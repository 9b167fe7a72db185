"""The run report's data: each attempt's outcome from the attempt log and the winners' commit records."""

from __future__ import annotations

from typing import Any

from datajob_core.report.history import build, winners_of


def start(shard: int, attempt: int, at: float, pod: str = "p", slot: int = 0, **more: Any) -> dict[str, Any]:
    return {"shard": shard, "attempt": attempt, "startedAt": at, "pod": pod, "slot": slot, **more}


def won(shard: int, attempt: int, at: float, records: int, **more: Any) -> dict[str, Any]:
    return {"shard": shard, "attempt": attempt, "committedAt": at, "records": records, **more}


def test_a_committed_attempt_ends_at_its_commit_with_the_committed_records() -> None:
    history = build("j", [start(0, 1, 10.0)], [won(0, 1, 12.5, 7)], finished=True, now=99)
    (a,) = history.attempts
    assert (a.outcome, a.started, a.ended, a.records) == ("committed", 10.0, 12.5, 7)
    assert history.finished and not history.kills


def test_a_failed_jobs_committed_shards_show_as_committed_not_running() -> None:
    # No _SUCCESS: the winners come from the commit records; the job is over.
    records = [
        start(0, 1, 1.0),
        start(1, 1, 1.0, slot=1),
        {**start(1, 1, 1.0, slot=1), "outcome": "failed", "endedAt": 2.0},
    ]
    history = build("j", records[::2], [won(0, 1, 3.0, 5)], finished=True, now=86_400.0)
    outcomes = {a.shard: (a.outcome, a.ended) for a in history.attempts}
    assert outcomes == {0: ("committed", 3.0), 1: ("failed", 2.0)}
    assert history.cost(wasted=False).records == 5


def test_an_attempt_without_an_end_was_killed_when_a_retry_of_its_shard_began() -> None:
    records = [start(0, 1, 10.0, pod="a"), start(0, 2, 14.0, pod="b", slot=0)]
    history = build("j", records, [won(0, 2, 15.0, 3)], finished=True, now=99)
    killed, winner = history.attempts
    assert (killed.outcome, killed.ended) == ("killed", 14.0)
    assert winner.outcome == "committed" and not winner.speculative
    assert history.kills == [killed]
    assert history.cost(wasted=True).worker_seconds == 4.0


def test_a_killed_attempt_ends_no_later_than_the_next_pod_in_its_slot() -> None:
    # Its shard was retried late (after a backoff) but its slot had a new pod at 12.
    records = [
        start(0, 1, 10.0, pod="a"),
        start(1, 1, 12.0, pod="b", slot=0),
        start(0, 2, 30.0, pod="c", slot=1),
    ]
    history = build("j", records, [won(1, 1, 13.0, 1), won(0, 2, 31.0, 1)], finished=True, now=99)
    killed = next(a for a in history.attempts if a.outcome == "killed")
    assert (killed.pod, killed.ended) == ("a", 12.0)


def test_a_backup_racing_its_original_is_speculative_and_does_not_make_the_original_a_kill() -> None:
    records = [start(0, 1, 10.0, pod="slow"), start(0, 2, 12.0, pod="fast", slot=1, speculative=True)]
    running = build("j", records, [], finished=False, now=13.0)
    assert {a.attempt: a.outcome for a in running.attempts} == {1: "running", 2: "running"}
    lost = {**records[0], "outcome": "lost", "endedAt": 16.0, "recordsRead": 50}
    done = build("j", [lost, records[1]], [won(0, 2, 14.0, 9)], finished=True, now=99)
    by_attempt = {a.attempt: a for a in done.attempts}
    assert by_attempt[1].outcome == "lost" and by_attempt[1].records == 50
    assert by_attempt[2].outcome == "committed" and by_attempt[2].speculative
    assert not done.kills


def test_a_shard_whose_rest_was_split_off_shows_as_split() -> None:
    records = [start(0, 1, 1.0), start(5, 1, 3.0, slot=1)]
    winners = [won(0, 1, 4.0, 10), won(5, 1, 6.0, 10, of=0)]
    outcomes = {a.shard: a.outcome for a in build("j", records, winners, finished=True, now=99).attempts}
    assert outcomes == {0: "split", 5: "committed"}


def test_reduce_partitions_are_the_tasks_after_every_map_shard_even_with_a_failed_one() -> None:
    manifest = {
        "shards": [won(0, 1, 2.0, 4), won(2, 1, 2.0, 4)],
        "missingShards": [1],
        "partitions": [{"partition": 0, "attempt": 1, "committedAt": 5.0}],
    }
    winners = {w["shard"]: w for w in winners_of(manifest)}
    assert sorted(winners) == [0, 2, 3]  # map shards 0-2, then partition 0 as task 3
    records = [start(2, 1, 1.0), start(3, 1, 4.0, stage="reduce")]
    outcomes = {
        a.shard: a.outcome for a in build("j", records, list(winners.values()), finished=True, now=9).attempts
    }
    assert outcomes == {2: "committed", 3: "committed"}


def test_a_running_job_shows_its_open_attempts_as_running_until_now() -> None:
    history = build("j", [start(0, 1, 10.0)], [], finished=False, now=20.0)
    (a,) = history.attempts
    assert (a.outcome, a.ended) == ("running", 20.0) and not history.finished


def test_gpu_seconds_count_the_gpus_each_attempt_held() -> None:
    history = build("j", [start(0, 1, 0.0, gpus=2)], [won(0, 1, 5.0, 1)], finished=True, now=9)
    assert history.cost(wasted=False).gpu_seconds == 10.0


def test_malformed_records_are_left_out_not_fatal() -> None:
    bad: list[Any] = [
        {"shard": "x"},
        {"attempt": 1},
        {},
        "text",
        {"shard": 0, "attempt": 1, "startedAt": "soon"},
        {**start(0, 1, 1.0), "recordsRead": "many", "gpus": "two", "slot": "zero"},
    ]
    history = build("j", bad, [{"shard": "0", "attempt": 1}], finished=True, now=2.0)
    (a,) = history.attempts  # only the last is an attempt, its bad fields read as unknown
    assert (a.records, a.gpus, a.slot) == (0, 0, None)


def test_throughput_spreads_each_committed_attempts_records_over_its_run() -> None:
    records = [start(0, 1, 0.0), start(1, 1, 5.0, slot=1)]
    points = build(
        "j", records, [won(0, 1, 10.0, 100), won(1, 1, 10.0, 50)], finished=True, now=99
    ).throughput(10)
    assert [round(rate, 6) for _, rate in points] == [10.0] * 5 + [20.0] * 5
    assert sum(rate * 1.0 for _, rate in points) == 150  # every committed record, once


def test_a_pods_rate_counts_only_records_it_read_itself() -> None:
    records = [start(0, 2, 0.0, pod="b", resumedRecords=80)]
    history = build("j", records, [won(0, 2, 2.0, 100)], finished=True, now=9)
    assert history.rates("pod") == [("b", 20, 2.0, 10.0)]
