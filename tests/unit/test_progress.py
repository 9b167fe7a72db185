"""Progress, throughput, ETA and stall causes, as pure functions of the ledger and what workers do."""

from __future__ import annotations

from datajob_core.shards.ledger import Ledger
from datajob_core.shards.progress import (
    Picture,
    Position,
    RateWindow,
    human_duration,
    input_bytes,
    position,
    progress_status,
    stall_cause,
)


def test_progress_counts_committed_input_and_checkpoints_of_unfinished_shards() -> None:
    plan = [
        {"pieces": [{"path": "a", "start": 0, "end": 1000}]},
        {"pieces": [{"path": "b", "start": 0, "end": 500}]},
    ]
    assert input_bytes(plan) == 1500
    ledger = Ledger.new(2)
    first = ledger.assign("w", 0.0)
    assert first is not None
    ledger.record_checkpoint(first.shard, "w", first.attempt, {"records": 7, "bytes": 300}, 1.0)
    at = position(ledger, 2, committed_records=10, committed_bytes=500, total_bytes=1500)
    assert (at.records, at.bytes) == (17, 800)
    status = progress_status(at, None, finished=False, stalled=False)
    assert status["percent"] == 53 and status["summary"] == "53%"
    assert "eta" not in status  # no rate yet


def test_rates_and_eta_change_only_when_the_position_does() -> None:
    window = RateWindow(window=60)
    window.add(100.0, Position(0, 0, 10_000))
    window.add(110.0, Position(50, 1_000, 10_000))
    window.add(200.0, Position(50, 1_000, 10_000))  # time alone is no new sample
    rates = window.rates()
    assert rates is not None and rates.bytes_per_second == 100.0 and rates.records_per_second == 5.0
    status = progress_status(Position(50, 1_000, 10_000), rates, finished=False, stalled=False)
    assert status["eta"] == "1m30s" and status["bytesPerSecond"] == 100
    assert status["estimatedCompletionTime"] == "1970-01-01T00:03:20Z"  # 110 s + 90 s
    # Samples older than the window age out: the rate is over about the last minute.
    for t, b in ((130.0, 3_000), (150.0, 5_000), (170.0, 7_000), (190.0, 9_000)):
        window.add(t, Position(b // 20, b, 10_000))
    recent = window.rates()
    assert recent is not None and recent.bytes_per_second == 100.0
    assert window.samples[0][0] == 130.0  # the newest sample at least a window older than the last
    # After a pause longer than the window, the rate starts afresh instead of averaging over the pause.
    window.add(1_000.0, Position(460, 9_200, 10_000))
    assert window.rates() is None
    window.add(1_010.0, Position(470, 9_400, 10_000))
    recent = window.rates()
    assert recent is not None and recent.bytes_per_second == 20.0
    assert "eta" not in progress_status(
        Position(0, 9_400, 10_000), recent, finished=False, stalled=False, running=False
    )
    # The input read but the job not finished (reduce, commit): no ETA of 0s.
    assert "eta" not in progress_status(Position(0, 10_000, 10_000), recent, finished=False, stalled=False)
    stalled = progress_status(Position(70, 9_400, 10_000), recent, finished=False, stalled=True)
    assert stalled["bytesPerSecond"] == 0 and "eta" not in stalled
    done = progress_status(Position(70, 9_400, 10_000), recent, finished=True, stalled=False)
    assert done["percent"] == 100 and "eta" not in done


def test_a_stall_names_its_likely_cause() -> None:
    def cause(**picture: object) -> str:
        return stall_cause(Picture(**{"running": 0, "pending": 0, **picture}), 600, 0.0).reason  # type: ignore[arg-type]

    assert cause(blocked="exceeded quota") == "WorkersBlocked"
    assert cause(pending=2, unschedulable="0/3 nodes are available") == "WorkersUnschedulable"
    assert cause(crash_looping="Error (exit code 1)") == "WorkersCrashLooping"
    assert cause(pending=2) == "WorkersPending"
    assert cause(running=2, waiting_retry=3) == "WaitingForRetry"
    assert cause(running=2, in_flight=2) == "NoProgress"
    message = stall_cause(Picture(running=2, pending=0, in_flight=2), 600, 0.0).message
    assert "10m" in message and "1970-01-01T00:00:00Z" in message


def test_durations_read_like_kubectl_ages() -> None:
    assert [human_duration(s) for s in (4, 60, 200, 3600, 7500, 90000)] == [
        "4s",
        "1m",
        "3m20s",
        "1h",
        "2h5m",
        "1d1h",
    ]
