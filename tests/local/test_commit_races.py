"""Two writers of one output, with real concurrency, on POSIX and on S3 (MinIO): a published ``_SUCCESS``
is never replaced by a less complete one, a missing commit record is never a silent gap, attempt objects
are unique per writer, and a worker that died after committing does not fail its shard."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from datajob_core.protocol import AssignmentMessage, ShardTask
from datajob_core.storage.committer import SUCCESS, Committer, MissingOutputError, record_name
from datajob_core.storage.stores import Store
from datajob_worker import agent
from datajob_worker.processors import concatenate

SHARDS = 4
OWNER = "job-uid-1"


def committed(store: Store, shards: range = range(SHARDS)) -> None:
    for shard in shards:
        assert Committer(store, OWNER).commit_shard(shard, 1, f"shard {shard}\n".encode(), {"records": 1})


class PausingStore(Store):
    """The same store, but reading one commit record waits until the test says go."""

    def __init__(self, inner: Store, pause_at: str) -> None:
        self.__dict__.update(inner.__dict__)
        self.pause_at = pause_at
        self.paused, self.go = threading.Event(), threading.Event()

    def read_bytes(self, name: str) -> bytes:
        if name == self.pause_at and not self.go.is_set():
            self.paused.set()
            assert self.go.wait(60)
        return super().read_bytes(name)


def test_a_job_commit_that_loses_a_race_adopts_the_published_manifest_instead_of_publishing_gaps(
    store: Store,
) -> None:
    committed(store)
    slow = PausingStore(store, record_name(2))
    results: dict[str, Any] = {}

    def commit(name: str, where: Store) -> None:
        try:
            results[name] = Committer(where, OWNER).commit_job(SHARDS, concatenate, {}, failed=[])
        except Exception as error:  # noqa: BLE001 - the test reports it below
            results[name] = error

    paused = threading.Thread(target=commit, args=("paused", slow))
    paused.start()
    assert slow.paused.wait(30)
    commit("winner", store)  # publishes everything, then deletes the commit records the other still needs
    published = store.read_bytes(SUCCESS), store.read_bytes("result")
    slow.go.set()
    paused.join(60)
    assert not isinstance(results["paused"], Exception), results["paused"]
    assert results["paused"].missing == [] and results["winner"].missing == []
    assert (store.read_bytes(SUCCESS), store.read_bytes("result")) == published
    assert json.loads(published[0])["missingShards"] == []
    assert store.read_text("result") == "".join(f"shard {s}\n" for s in range(SHARDS))


def test_job_commits_racing_at_once_publish_one_complete_manifest(store: Store) -> None:
    committed(store)
    barrier = threading.Barrier(4)
    outcomes: list[Any] = []

    def commit() -> None:
        barrier.wait()
        try:
            outcomes.append(Committer(store, OWNER).commit_job(SHARDS, concatenate, {}, failed=[]).missing)
        except Exception as error:  # noqa: BLE001
            outcomes.append(error)

    threads = [threading.Thread(target=commit) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert outcomes == [[], [], [], []]
    manifest = json.loads(store.read_bytes(SUCCESS))
    assert [e["shard"] for e in manifest["shards"]] == list(range(SHARDS)) and manifest["missingShards"] == []


def test_a_missing_commit_record_of_a_shard_that_did_not_fail_is_an_error_not_a_gap(store: Store) -> None:
    committed(store, range(3))  # shard 3 has no record
    with pytest.raises(MissingOutputError, match="shard 3 has no commit record, although it did not fail"):
        Committer(store, OWNER).commit_job(SHARDS, concatenate, {}, failed=[])
    assert not store.exists(SUCCESS)
    # Told that shard 3 failed for good (within maxFailedShards), the commit publishes without it.
    done = Committer(store, OWNER).commit_job(SHARDS, concatenate, {}, failed=[3])
    assert done.missing == [3]


def test_a_published_success_is_never_replaced_by_a_later_commit(store: Store) -> None:
    committed(store)
    Committer(store, OWNER).commit_job(SHARDS, concatenate, {}, failed=[])
    first = store.read_bytes(SUCCESS)
    # A late zombie commit that believes shard 1 failed: it adopts the manifest, it does not rewrite it.
    done = Committer(store, OWNER).commit_job(SHARDS, concatenate, {"late": True}, failed=[1])
    assert done.missing == [] and store.read_bytes(SUCCESS) == first


def test_writers_of_the_same_attempt_number_never_overwrite_each_others_objects(
    stores: Callable[[str], Store],
) -> None:
    store = stores("same-attempt")
    barrier = threading.Barrier(6)
    wins: list[bool] = []

    def attempt(writer: int) -> None:
        barrier.wait()
        # Two local runs of one manifest both call their first attempt 1; a random processor differs.
        wins.append(Committer(store, OWNER).commit_shard(0, 1, f"writer {writer}\n".encode(), {}))

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert wins.count(True) == 1
    # The record's object is still the winner's bytes (its checksum holds), so the commit publishes it.
    done = Committer(store, OWNER).commit_job(1, concatenate, {}, failed=[])
    assert done.missing == [] and store.read_text("part-000000").startswith("writer ")


def _worker(output: str) -> agent.Worker:
    class Channel:
        message: AssignmentMessage | None = None

        def assignment(self) -> AssignmentMessage | None:
            return self.message

        def report(self, message: object) -> None:
            del message

        def plan(self) -> bytes:
            raise FileNotFoundError

        def wait(self, timeout: float) -> None:
            del timeout

    return agent.Worker(
        Channel(), pod="p", output=output, checkpoint_seconds=30, checkpoint_records=None, processor=None
    )


def test_a_verifying_attempt_reports_the_dead_workers_commit_and_never_reprocesses(tmp_path: Path) -> None:
    data = tmp_path / "in.txt"
    data.write_text("a b\n")
    entry = {"pieces": [{"path": str(data), "start": 0, "end": 4}]}
    worker = _worker(str(tmp_path / "out"))
    # The dead worker's attempt 1 committed, then it died before it could report.
    worker.process(ShardTask(shard=0, attempt=1, input=entry))
    worker.reporter.done.clear()
    data.write_text("changed\n")  # were it reprocessed, the count would differ
    worker.process(ShardTask(shard=0, attempt=2, input=entry, verify=True))
    (done,) = worker.reporter.message().done
    assert (done.shard, done.attempt, done.records) == (0, 2, 1)


def test_a_verifying_attempt_without_a_commit_record_fails_the_shard_without_processing(
    tmp_path: Path,
) -> None:
    data = tmp_path / "in.txt"
    data.write_text("a b\n")
    worker = _worker(str(tmp_path / "out"))
    entry = {"pieces": [{"path": str(data), "start": 0, "end": 4}]}
    worker.process(ShardTask(shard=0, attempt=2, input=entry, verify=True))
    (failed,) = worker.reporter.message().failed
    assert failed.permanent and "died without committing" in failed.reason
    assert not (tmp_path / "out" / "_datajob" / "commits").exists()


def test_another_jobs_result_left_in_an_unclaimed_output_is_never_published_as_this_jobs(
    store: Store,
) -> None:
    other = Committer(store, "job-uid-other")
    assert other.commit_shard(0, 1, b"other job's data\n", {"records": 1})
    other.commit_job(1, concatenate, {}, failed=[])
    # This job's commit into the same output (the operator could not claim it: a path it does not see).
    assert Committer(store, OWNER).commit_shard(0, 1, b"this job's data\n", {"records": 1})
    Committer(store, OWNER).commit_job(1, concatenate, {}, failed=[])
    manifest = json.loads(store.read_bytes(SUCCESS))
    assert manifest["owner"] == OWNER
    assert store.read_text("result") == "this job's data\n" == store.read_text("part-000000")


def test_a_late_attempt_after_the_job_commit_leaves_nothing_in_the_published_output(store: Store) -> None:
    # A speculation's loser (or a zombie) finishing after the job commit published and cleaned up.
    committed(store)
    Committer(store, OWNER).commit_job(SHARDS, concatenate, {}, failed=[])
    before = sorted(store.list(""))
    assert not Committer(store, OWNER).commit_shard(0, 7, b"late output\n", {"records": 1})
    assert sorted(store.list("")) == before
