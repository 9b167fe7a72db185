"""The batch log of an incremental job: plan and commit entries, created exclusively, adopted by losers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from datajob_core.data import increments
from datajob_core.storage.batch_log import BatchLog, BatchLogError
from datajob_core.storage.committer import Committer
from datajob_core.storage.stores import Store

pytestmark = pytest.mark.unit


def _merge(parts: list[str]) -> str:
    counts: dict[str, int] = {}
    for text in parts:
        for line in text.splitlines():
            word, count = line.split("\t")
            counts[word] = counts.get(word, 0) + int(count)
    return "".join(f"{w}\t{c}\n" for w, c in sorted(counts.items()))


def _commit_batch(log: BatchLog, number: int, text: str) -> None:
    """Batch ``number``'s own job commit, as a worker would do it: one shard, then _SUCCESS."""
    committer = Committer(log.batch_store(number), log.owner)
    assert committer.commit_shard(0, 1, text.encode(), {"records": text.count("\n")})
    committer.commit_job(1, _merge, {"job": "j"}, failed=[])


def test_a_concurrent_planner_of_the_same_batch_adopts_the_first_plan(tmp_path: Path) -> None:
    one, two = BatchLog(Store(str(tmp_path)), "me"), BatchLog(Store(str(tmp_path)), "me")
    first = one.plan(0, [{"path": "/a", "size": 1, "version": "1"}], now=1.0)
    second = two.plan(0, [{"path": "/a", "size": 1, "version": "1"}, {"path": "/b", "size": 2}], now=2.0)
    assert second == first == [{"path": "/a", "size": 1, "version": "1"}]
    assert BatchLog(Store(str(tmp_path)), "me").read().plans == {0: first}


def test_each_batch_merges_with_the_previous_result_and_the_copy_follows(tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    log = BatchLog(store, "me")
    log.plan(0, [{"path": "/a", "size": 1}], now=1.0)
    _commit_batch(log, 0, "a\t1\nb\t2\n")
    entry = log.commit(0, _merge, now=5.0)
    assert store.read_text("result") == "a\t1\nb\t2\n"
    log.plan(1, [{"path": "/b", "size": 1}], now=6.0)
    _commit_batch(log, 1, "b\t3\nc\t1\n")
    entry = log.commit(1, _merge, now=9.0)
    assert store.read_text(entry["result"]["object"]) == "a\t1\nb\t5\nc\t1\n"
    assert store.read_text("result") == "a\t1\nb\t5\nc\t1\n"
    assert entry["totalRecords"] == 4 and entry["mode"] == "merge"
    # A second commit of the same batch (a zombie, a rerun) adopts the entry: nothing is merged twice.
    again = BatchLog(store, "me").commit(1, _merge, now=10.0)
    assert again == entry
    assert store.read_text("result") == "a\t1\nb\t5\nc\t1\n"


def test_appending_processors_publish_each_batch_on_its_own(tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    log = BatchLog(store, "me")
    log.plan(0, [{"path": "/a", "size": 1}], now=1.0)
    _commit_batch(log, 0, "x\t1\n")
    entry = log.commit(0, None, now=2.0)
    assert entry["mode"] == "append"
    assert entry["result"]["object"] == f"{increments.batch_root(0)}/result"
    assert not store.exists("result")


def test_a_batch_cannot_commit_before_its_job_commit_or_its_predecessor(tmp_path: Path) -> None:
    log = BatchLog(Store(str(tmp_path)), "me")
    log.plan(0, [{"path": "/a", "size": 1}], now=1.0)
    with pytest.raises(BatchLogError, match="has not committed"):
        log.commit(0, _merge, now=2.0)
    log.plan(1, [{"path": "/b", "size": 1}], now=1.0)
    _commit_batch(log, 1, "b\t1\n")
    with pytest.raises(BatchLogError, match="before batch 0"):
        log.commit(1, _merge, now=2.0)


def test_a_log_written_by_another_job_is_refused_naming_it(tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    BatchLog(store, "someone-else").plan(0, [{"path": "/a", "size": 1}], now=1.0)
    with pytest.raises(BatchLogError, match="someone-else"):
        BatchLog(store, "me").read()


def test_a_cumulative_result_that_no_longer_matches_its_entry_is_not_merged(tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    log = BatchLog(store, "me")
    log.plan(0, [{"path": "/a", "size": 1}], now=1.0)
    _commit_batch(log, 0, "a\t1\n")
    first = log.commit(0, _merge, now=2.0)
    store.write(first["result"]["object"], "a\t999\n")  # tampered with, or a torn copy
    log.plan(1, [{"path": "/b", "size": 1}], now=3.0)
    _commit_batch(log, 1, "b\t1\n")
    with pytest.raises(BatchLogError, match="does not match"):
        log.commit(1, _merge, now=4.0)
    assert not store.exists(increments.commit_entry(1))


def test_entries_are_json_naming_the_owner(tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    BatchLog(store, "me").plan(3, [], now=1.0)
    assert json.loads(store.read_text(increments.plan_entry(3)))["owner"] == "me"


def test_a_commit_killed_before_its_result_copy_is_repaired_by_the_next_commit_or_run(tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    log = BatchLog(store, "me")
    log.plan(0, [{"path": "/a", "size": 1}], now=1.0)
    _commit_batch(log, 0, "a\t1\n")
    log.commit(0, _merge, now=2.0)
    log.plan(1, [{"path": "/b", "size": 1}], now=3.0)
    _commit_batch(log, 1, "a\t2\n")
    entry = log.commit(1, _merge, now=4.0)
    store.write("result", "a\t1\n")  # as if killed after the entry, before the copy
    assert BatchLog(store, "me").commit(1, _merge, now=5.0) == entry  # the retried commit task adopts...
    assert store.read_text("result") == "a\t3\n"  # ...and makes the copy
    store.write("result", "a\t1\n")
    BatchLog(store, "me").refresh()  # a run with nothing new does the same
    assert store.read_text("result") == "a\t3\n"


def test_a_listed_entry_that_cannot_be_read_is_an_error_never_taken_for_an_absent_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(str(tmp_path))
    BatchLog(store, "me").plan(0, [{"path": "/a", "size": 1}], now=1.0)
    monkeypatch.setattr(Store, "read_many", lambda self, names, threads=16: dict.fromkeys(names))

    def refused(self: Store, name: str) -> bytes:
        raise OSError("SlowDown")

    monkeypatch.setattr(Store, "read_bytes", refused)
    with pytest.raises(OSError, match="SlowDown"):
        BatchLog(store, "me").read()  # not a log without batch 0, whose objects would be planned again
