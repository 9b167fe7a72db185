"""The checkpoint garbage-collection decision: only what the durable ledger has made redundant."""

from __future__ import annotations

import pytest

from datajob_core.data.checkpoint_gc import ALL, parse_state_name, plan_collection
from datajob_core.shards.ledger import Ledger


def test_state_names_are_attempt_dot_seq_and_nothing_else() -> None:
    assert parse_state_name("3.17") == (3, 17)
    for bad in ("../../etc/passwd", "3.17/../x", "3", "a.b", "", None, 3.17, "1.2.json", " 1.2"):
        assert parse_state_name(bad) is None


def test_a_newer_named_checkpoint_supersedes_older_files_only() -> None:
    ledger = Ledger.new(3)
    ledger.assign("w", 0.0)
    first = plan_collection(None, ledger)
    assert first.targets == {}  # nothing named yet: nothing may go
    ledger.record_checkpoint(0, "w", 1, {"records": 10, "state": "1.4"}, 1.0)
    second = plan_collection(first.snapshot, ledger)
    assert second.targets == {0: (1, 4)}  # files before 1.4 go; 1.4 and anything newer stay
    assert plan_collection(second.snapshot, ledger).targets == {}  # unchanged: no work


def test_a_retry_keeps_the_checkpoint_it_resumes_from_until_the_new_attempt_names_one() -> None:
    ledger = Ledger.new(1)
    ledger.assign("w1", 0.0)
    ledger.record_checkpoint(0, "w1", 1, {"state": "1.9"}, 1.0)
    snapshot = plan_collection(None, ledger).snapshot
    ledger.release_worker("w1", "crash", 2.0, max_attempts=3, charge=(0, 1))
    ledger.assign("w2", 3.0)  # attempt 2 resumes from 1.9
    step = plan_collection(snapshot, ledger)
    assert step.targets == {}  # still (1, 9): the file attempt 2 is loading must stay
    ledger.record_checkpoint(0, "w2", 2, {"state": "2.1"}, 4.0)
    # Attempt 1's files, 1.9 and any a zombie of attempt 1 writes later (1.10, 1.11, ...), all sort first.
    assert plan_collection(step.snapshot, ledger).targets == {0: (2, 1)}
    assert (1, 10_000) < (2, 1)


def test_committed_and_failed_shards_are_collected_whole() -> None:
    ledger = Ledger.new(2)
    ledger.assign("w", 0.0)
    ledger.assign("w", 0.0)
    ledger.record_checkpoint(0, "w", 1, {"state": "1.1"}, 1.0)
    snapshot = plan_collection(None, ledger).snapshot
    ledger.complete(0, "w", 1, 2.0)
    ledger.fail_attempt(1, "w", 1, "bad", 2.0, max_attempts=1, backoff_seconds=0.0)
    step = plan_collection(snapshot, ledger)
    assert step.targets == {0: ALL, 1: ALL}
    assert plan_collection(step.snapshot, ledger).targets == {}


@pytest.mark.parametrize("checkpoint", [None, {"offset": 5}, {"state": "../../x"}])
def test_checkpoints_without_a_valid_state_name_collect_nothing(checkpoint: dict[str, str] | None) -> None:
    ledger = Ledger.new(1)
    ledger.assign("w", 0.0)
    if checkpoint:
        ledger.record_checkpoint(0, "w", 1, checkpoint, 1.0)
    assert plan_collection(None, ledger).targets == {}
