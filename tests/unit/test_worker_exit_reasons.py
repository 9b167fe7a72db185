"""A worker's end, as events and `kubectl datajob status` word it (datajob_core.cluster.worker_exit)."""

from __future__ import annotations

import json

from datajob_core.cluster.worker_exit import MAX_LAST_WORDS, describe_exit
from datajob_operator.pod_observation import observe_pod

LOG_TAIL = "\n".join(
    json.dumps({"event": event, "timestamp": "2026-12-04T10:00:00Z", "shard": 3})
    for event in ("assignment received", "shard started", "checkpoint written")
)


def test_a_worker_killed_by_sigkill_is_described_by_its_signal_not_its_log_tail() -> None:
    assert describe_exit(137, "Error", LOG_TAIL) == "killed by SIGKILL (exit code 137)"


def test_a_truncated_log_tail_is_still_recognised_as_a_log() -> None:
    # kubelet keeps the last 2 KiB: the first line is usually cut in the middle.
    assert describe_exit(137, "Error", LOG_TAIL[17:]) == "killed by SIGKILL (exit code 137)"


def test_an_oom_kill_says_the_memory_limit_was_reached() -> None:
    assert describe_exit(137, "OOMKilled", LOG_TAIL) == (
        "OOMKilled: out of memory, the container's memory limit was reached (exit code 137)"
    )


def test_the_workers_own_last_words_are_kept() -> None:
    words = "ValueError: could not parse record 12 of s3://in/a.csv"
    assert describe_exit(1, "Error", words) == f"Error (exit code 1): {words}"
    long = "ValueError: bad record\n" + "  File ...\n" * 200 + "the end"
    said = describe_exit(1, "Error", long).removeprefix("Error (exit code 1): ")
    assert len(said) <= MAX_LAST_WORDS
    assert said.startswith("ValueError: bad record") and said.endswith("the end"), said  # type and last words


def test_an_error_named_in_the_log_tail_is_kept_without_the_json() -> None:
    tail = (
        LOG_TAIL
        + "\n"
        + json.dumps(
            {
                "event": "shard failed",
                "exception": "Traceback (most recent call last):\n  ...\nKeyError: 'price'",
            }
        )
    )
    assert describe_exit(139, "Error", tail) == (
        "killed by SIGSEGV (exit code 139): last logged error: shard failed: KeyError: 'price'"
    )


def test_a_runtime_reason_other_than_error_is_kept_beside_the_signal() -> None:
    assert (
        describe_exit(143, "ContainerStatusUnknown")
        == "ContainerStatusUnknown: killed by SIGTERM (exit code 143)"
    )


def test_plain_exit_codes_keep_the_usual_form() -> None:
    assert describe_exit(3) == "Error (exit code 3)"
    assert describe_exit(200, "Error") == "Error (exit code 200)"  # 128+72: no such signal


def test_a_pod_killed_by_sigkill_reads_well_in_the_operators_observation() -> None:
    pod = {
        "metadata": {"name": "job-w-0", "labels": {"datajob.dev/slot": "0"}},
        "status": {
            "phase": "Failed",
            "containerStatuses": [
                {
                    "name": "worker",
                    "state": {"terminated": {"exitCode": 137, "reason": "Error", "message": LOG_TAIL}},
                }
            ],
        },
    }
    observed = observe_pod(pod)
    assert observed is not None
    assert observed.reason == "killed by SIGKILL (exit code 137)"
    assert observed.exit_code == 137


def test_an_error_handled_long_before_the_end_is_not_taken_for_why_the_worker_died() -> None:
    old = json.dumps({"event": "shard failed", "exception": "KeyError: 'price'"})
    tail = old + "\n" + LOG_TAIL + "\n" + LOG_TAIL  # six ordinary lines after it
    assert describe_exit(137, "Error", tail) == "killed by SIGKILL (exit code 137)"
