"""Fencing of attempts and checkpoints, on real files: no kill, zombie or corrupt file loses a shard."""

from __future__ import annotations

import random
import threading
from pathlib import Path
from typing import Any

import pytest

from datajob_core.protocol import ShardTask
from datajob_core.shards.ledger import Ledger
from datajob_core.storage.checkpoint_store import CheckpointCollector, CheckpointStore
from datajob_testenv.localjobs import committed_text
from datajob_worker import processors
from datajob_worker.runtime import (
    CALLBACK_EVERY,
    OutputDir,
    Progress,
    ShardContext,
    ShardInterruptedError,
    run_shard,
)

LINES = 3000


def make_input(tmp_path: Path) -> tuple[Path, int]:
    rng = random.Random(4)
    data = b"".join(f"w{rng.randint(0, 30)} v{rng.randint(0, 7)}\n".encode() for _ in range(LINES))
    path = tmp_path / "in.txt"
    path.write_bytes(data)
    return path, len(data)


def task(path: Path, size: int, attempt: int, checkpoint: dict[str, Any] | None = None) -> ShardTask:
    return ShardTask(
        shard=0,
        attempt=attempt,
        checkpoint=checkpoint,
        input={"pieces": [{"path": str(path), "start": 0, "end": size}]},
    )


def reference(tmp_path: Path, path: Path, size: int) -> str:
    output = OutputDir(str(tmp_path / "reference"))
    run_shard(task(path, size, 1), ShardContext("text", processors.build(None), output, lambda *_: None))
    return committed_text(output, 0)


def checkpointing(
    output: OutputDir, attempt: int, saved: list[dict[str, Any]], stop_after: int | None = None
) -> ShardContext:
    """What a worker does: save a checkpoint file now and then; stop (as if killed) after ``stop_after``."""
    seq = [0]

    def on_record(progress: Progress, state: processors.State, count: int) -> None:
        seq[0] += 1
        progress.state_file = output.checkpoints.save(0, attempt, seq[0], progress.position(), state)
        saved.append(progress.checkpoint())
        if stop_after is not None and progress.records >= stop_after:
            raise ShardInterruptedError

    # A position every CALLBACK_EVERY lines, as a worker with checkpoint.intervalRecords set gets them.
    return ShardContext("text", processors.build(None), output, on_record, chunk_lines=CALLBACK_EVERY)


def test_a_kill_between_writing_a_checkpoint_and_reporting_it_loses_nothing(tmp_path: Path) -> None:
    path, size = make_input(tmp_path)
    output = OutputDir(str(tmp_path / "out"))
    saved: list[dict[str, Any]] = []
    with pytest.raises(ShardInterruptedError):
        run_shard(task(path, size, 1), checkpointing(output, 1, saved, stop_after=1500))
    # The ledger names the checkpoint before the last one: the last was written, its report never sent.
    named = saved[-2]
    run_shard(
        task(path, size, 2, named), ShardContext("text", processors.build(None), output, lambda *_: None)
    )
    assert committed_text(output, 0) == reference(tmp_path, path, size)
    # Workers only ever add checkpoint files; every one written is still there for the collector.
    assert len(list((tmp_path / "out" / CheckpointStore.shard_dir(0)).glob("*.json"))) == len(saved)


def test_a_zombie_attempt_cannot_delete_overwrite_or_commit_over_the_current_attempt(tmp_path: Path) -> None:
    path, size = make_input(tmp_path)
    output = OutputDir(str(tmp_path / "out"))
    first: list[dict[str, Any]] = []
    with pytest.raises(ShardInterruptedError):
        run_shard(task(path, size, 1), checkpointing(output, 1, first, stop_after=600))
    # Attempt 2 resumes from attempt 1's checkpoint while attempt 1, presumed dead, runs on from it too.
    current: list[dict[str, Any]] = []
    zombie: list[dict[str, Any]] = []
    results: dict[str, BaseException | None] = {}

    def run(name: str, attempt: int, log: list[dict[str, Any]]) -> None:
        try:
            run_shard(task(path, size, attempt, first[-1]), checkpointing(output, attempt, log))
            results[name] = None
        except BaseException as error:  # noqa: BLE001 - reported below
            results[name] = error

    threads = [
        threading.Thread(target=run, args=("zombie", 1, zombie)),
        threading.Thread(target=run, args=("current", 2, current)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {"zombie": None, "current": None}
    assert committed_text(output, 0) == reference(tmp_path, path, size)
    # Every checkpoint the current attempt wrote is intact: the zombie's names never collide with them.
    for checkpoint in current:
        saved = output.checkpoints.load(0, checkpoint["state"])
        assert saved.position["records"] == checkpoint["records"]
    # Each attempt wrote only under its own prefix; the commit record names the one that won.
    written = sorted(p.name.split("-")[0] for p in (tmp_path / "out" / "_attempts" / "000000").iterdir())
    assert written == ["1", "2"]
    assert (output.committed(0) or {}).get("attempt") in (1, 2)


@pytest.mark.parametrize("damage", ["delete", "truncate", "garbage"])
def test_an_unreadable_named_checkpoint_falls_back_to_the_newest_readable_one_with_a_warning(
    tmp_path: Path, damage: str
) -> None:
    path, size = make_input(tmp_path)
    output = OutputDir(str(tmp_path / "out"))
    saved: list[dict[str, Any]] = []
    with pytest.raises(ShardInterruptedError):
        run_shard(task(path, size, 1), checkpointing(output, 1, saved, stop_after=2000))
    named = saved[-1]
    file = tmp_path / "out" / CheckpointStore.shard_dir(0) / f"{named['state']}.json"
    if damage == "delete":
        file.unlink()
    elif damage == "truncate":
        file.write_text(file.read_text()[:10])
    else:
        file.write_bytes(b"\xff\x00not json")
    notices: list[tuple[str, str]] = []
    context = ShardContext(
        "text", processors.build(None), output, lambda *_: None, lambda r, m: notices.append((r, m))
    )
    run_shard(task(path, size, 2, named), context)
    assert committed_text(output, 0) == reference(tmp_path, path, size)
    [(reason, message)] = notices
    assert reason == "CheckpointUnreadable"
    assert f"resuming from checkpoint {saved[-2]['state']}" in message
    # The commit record says where this attempt really began: the fallback, not the unreadable one.
    assert (output.committed(0) or {})["resumedFrom"]["state"] == saved[-2]["state"]


@pytest.mark.parametrize("state", ["1.999", "../../../../etc/passwd", "/etc/passwd", "1.2/../../x"])
def test_with_no_usable_checkpoint_the_shard_restarts_from_its_start_and_never_leaves_its_directory(
    tmp_path: Path, state: str
) -> None:
    path, size = make_input(tmp_path)
    output = OutputDir(str(tmp_path / "out"))
    notices: list[str] = []
    context = ShardContext(
        "text", processors.build(None), output, lambda *_: None, lambda r, m: notices.append(m)
    )
    checkpoint = {"piece": 0, "offset": 999, "records": 50, "bytes": 999, "state": state}
    progress = run_shard(task(path, size, 2, checkpoint), context)
    assert progress.records == LINES  # from the start, not from the claimed position
    assert committed_text(output, 0) == reference(tmp_path, path, size)
    assert len(notices) == 1 and "restarting at the shard's start" in notices[0]


def test_the_collector_removes_only_what_the_durable_ledger_superseded(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    collector = CheckpointCollector(store)
    ledger = Ledger.new(2)
    ledger.assign("w1", 0.0)
    ledger.assign("w1", 0.0)
    for seq in (1, 2, 3):
        store.save(0, 1, seq, {"records": seq}, {"n": seq})
    store.save(1, 1, 1, {"records": 1}, {})
    ledger.record_checkpoint(0, "w1", 1, {"state": "1.2"}, 1.0)
    assert collector.after_persist(ledger) is None
    assert sorted(p.name for p in (tmp_path / store.shard_dir(0)).iterdir()) == ["1.2.json", "1.3.json"]
    # Attempt 2 takes over; a zombie of attempt 1 keeps writing.
    ledger.release_worker("w1", "crash", 2.0, max_attempts=3, charge=(0, 1))
    ledger.assign("w2", 3.0)
    store.save(0, 2, 1, {"records": 5}, {})
    store.save(0, 1, 4, {"records": 4}, {})  # the zombie's
    ledger.record_checkpoint(0, "w2", 2, {"state": "2.1"}, 4.0)
    collector.after_persist(ledger)
    assert sorted(p.name for p in (tmp_path / store.shard_dir(0)).iterdir()) == ["2.1.json"]
    ledger.complete(0, "w2", 2, 5.0)
    collector.after_persist(ledger)
    assert not (tmp_path / store.shard_dir(0)).exists()
    assert (tmp_path / store.shard_dir(1)).exists()  # another shard's files are untouched


def test_two_committers_of_the_same_shard_and_attempt_never_share_scratch_files(tmp_path: Path) -> None:
    output = OutputDir(str(tmp_path))
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []
    wins: list[bool] = []

    def commit() -> None:
        barrier.wait()
        try:
            for _ in range(20):
                wins.append(output.commit(3, 1, "same bytes\n", {"attempt": 1}))
        except BaseException as error:  # noqa: BLE001 - collected and asserted on
            errors.append(error)

    threads = [threading.Thread(target=commit) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert wins.count(True) == 1
    assert committed_text(output, 3) == "same bytes\n"
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")], "scratch files left behind"
