"""Incremental runs and continuous mode in local mode, on POSIX and on MinIO: each input object is counted
exactly once across reruns, kills, interrupted batches and files arriving while the job runs."""

from __future__ import annotations

import collections
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from datajob_core.data import increments
from datajob_core.storage import batch_log
from datajob_core.storage.stores import Store
from datajob_testenv.localjobs import manifest
from datajob_testenv.objectstore import ObjectStore
from datajob_worker.cli import main as datajob

pytestmark = pytest.mark.local


@dataclass
class Place:
    """Where a test's input arrives and its output goes: a directory, or a MinIO bucket."""

    input_glob: str
    output: str
    put: Callable[[str, bytes], None]
    output_store: Store
    storage: dict[str, Any] | None


@pytest.fixture(params=["posix", "s3"])
def place(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Place]:
    if request.param == "posix":
        (tmp_path / "data").mkdir()

        def put_file(name: str, data: bytes) -> None:
            scratch = tmp_path / f".{name}.tmp"
            scratch.write_bytes(data)
            scratch.rename(tmp_path / "data" / name)  # arrives whole, as an upload does

        yield Place("data/*.txt", "out", put_file, Store(str(tmp_path / "out")), None)
        return
    server: ObjectStore = request.getfixturevalue("object_store")
    bucket: str = request.getfixturevalue("bucket")
    # Local mode's run directory for an object-store output; set after the server started, since building
    # the server's binary looks in the same cache directory.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for key, value in server.credentials.items():
        monkeypatch.setenv(key, value)  # local mode: the user's own credentials
    fs = server.filesystem()
    from datajob_core.data.locations import StorageConfig  # noqa: PLC0415

    store = Store(f"{bucket}/out", StorageConfig.from_spec(server.storage_spec()), server.credentials)
    yield Place(
        f"{bucket}/in/*.txt",
        f"{bucket}/out",
        lambda name, data: fs.pipe(f"{bucket.removeprefix('s3://')}/in/{name}", data),
        store,
        server.storage_spec(),
    )


def _job(tmp_path: Path, place: Place, **spec: Any) -> Path:
    extra: dict[str, Any] = {"storage": place.storage} if place.storage else {}
    body = {
        "input": {"uris": [place.input_glob], "incremental": True},
        "workers": 2,
        **extra,
        **spec,
    }
    return manifest(tmp_path, place.output, **body)


def _words(number: int) -> bytes:
    return "".join(f"w{number % 7} common x{number}\n" for _ in range(3)).encode()


def _expected(numbers: list[int]) -> dict[str, int]:
    counts: collections.Counter[str] = collections.Counter()
    for n in numbers:
        counts.update(_words(n).decode().split())
    return dict(counts)


def _result(store: Store) -> dict[str, int]:
    return {
        word: int(count)
        for word, count in (line.split("\t") for line in store.read_text("result").splitlines())
    }


def _plans(store: Store) -> dict[int, list[str]]:
    state = batch_log.BatchLog(store, _owner(store)).read()
    return {n: [str(o["path"]) for o in objects] for n, objects in state.plans.items()}


def _owner(store: Store) -> str:
    return str(json.loads(store.read_text("_datajob/owner.json"))["id"])


def test_a_rerun_after_new_files_arrive_processes_only_them_and_merges_the_result(
    tmp_path: Path, place: Place, capsys: pytest.CaptureFixture[str]
) -> None:
    for n in range(4):
        place.put(f"f{n}.txt", _words(n))
    job = _job(tmp_path, place)
    assert datajob(["run", str(job)]) == 0
    assert _result(place.output_store) == _expected(list(range(4)))
    place.put("f4.txt", _words(4))
    assert datajob(["run", str(job)]) == 0
    assert _result(place.output_store) == _expected(list(range(5)))
    plans = _plans(place.output_store)
    assert [len(p) for p in plans.values()] == [4, 1] and plans[1][0].endswith("f4.txt")
    assert datajob(["run", str(job)]) == 0  # nothing new: nothing planned, the result stands
    assert "nothing new since batch 1" in capsys.readouterr().err + capsys.readouterr().out
    assert len(_plans(place.output_store)) == 2


def test_appending_processors_publish_each_runs_new_records_once(tmp_path: Path, place: Place) -> None:
    for n in range(3):
        place.put(f"f{n}.txt", _words(n))
    job = _job(tmp_path, place, processor={"builtin": "grep", "options": {"pattern": "x"}})
    assert datajob(["run", str(job)]) == 0
    place.put("f3.txt", _words(3))
    assert datajob(["run", str(job)]) == 0
    store = place.output_store
    lines = [
        line
        for number in range(2)
        for line in store.read_text(f"{increments.batch_root(number)}/result").splitlines()
    ]
    assert sorted(lines) == sorted(line for n in range(4) for line in _words(n).decode().splitlines())
    assert not store.exists("result")  # no merged copy: the batches' results, in order, are the result


def test_a_file_rewritten_after_a_run_took_it_is_reported_and_not_counted_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("one two\n")
    job = manifest(tmp_path, "out", input={"uris": ["data/*.txt"], "incremental": True}, workers=1)
    assert datajob(["run", str(job)]) == 0
    (data / "a.txt").write_text("one two three four\n")
    (data / "b.txt").write_text("five\n")
    assert datajob(["run", str(job)]) == 0
    said = capsys.readouterr()
    assert "InputChanged" in said.out + said.err and "a.txt" in said.out + said.err
    assert _result(Store(str(tmp_path / "out"))) == {"one": 1, "two": 1, "five": 1}


def test_a_batch_interrupted_before_its_log_commit_is_finished_once_by_the_next_run(
    tmp_path: Path, place: Place, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(3):
        place.put(f"f{n}.txt", _words(n))
    job = _job(tmp_path, place)
    real = batch_log.BatchLog.commit

    def crash(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt  # the driver dies after the batch's job commit, before its log entry

    monkeypatch.setattr(batch_log.BatchLog, "commit", crash)
    assert datajob(["run", str(job)]) == 130
    monkeypatch.setattr(batch_log.BatchLog, "commit", real)
    place.put("f3.txt", _words(3))  # arrives meanwhile: the next batch's, not the open one's
    assert datajob(["run", str(job)]) == 0
    assert _result(place.output_store) == _expected(list(range(4)))
    plans = _plans(place.output_store)
    assert [len(p) for p in plans.values()] == [3, 1]


def test_a_changed_processor_is_refused_rather_than_merged_into_the_old_log(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("a b\n")
    assert (
        datajob(["run", str(manifest(tmp_path, "out", input={"uris": ["data/*.txt"], "incremental": True}))])
        == 0
    )
    other = manifest(
        tmp_path,
        "out",
        input={"uris": ["data/*.txt"], "incremental": True},
        processor={"builtin": "grep", "options": {"pattern": "a"}},
    )
    assert datajob(["run", str(other)]) == 1


def test_continuous_ingestion_with_kills_counts_every_arriving_file_exactly_once(
    tmp_path: Path, place: Place
) -> None:
    """Files arrive steadily while workers are killed at random; the job stops once input stops. The
    merged result equals an independent count of every file written, and each file is in one batch."""
    written: list[int] = []
    stop = threading.Event()

    def arrive() -> None:
        number = 0
        while not stop.is_set() and number < 120:
            place.put(f"f{number:04d}.txt", _words(number))
            written.append(number)
            number += 1
            time.sleep(0.05)

    job = _job(
        tmp_path,
        place,
        mode="Continuous",
        continuous={"pollSeconds": 1, "maxBatchObjects": 40},
        input={"uris": [place.input_glob]},
        processor={"builtin": "wordcount", "options": {"delayPerRecord": "0.002"}},
    )
    place.put("first.txt", b"start here\n")
    feeder = threading.Thread(target=arrive)
    feeder.start()
    try:
        code = datajob(["run", str(job), "--kill-every", "0.7", "--seed", "3", "--stop-when-idle", "4"])
    finally:
        stop.set()
        feeder.join()
    assert code == 0
    expected = _expected(written)
    expected.update({"start": 1, "here": 1})
    assert _result(place.output_store) == expected
    paths = [p for plan in _plans(place.output_store).values() for p in plan]
    assert len(paths) == len(set(paths)) == len(written) + 1
    assert len(_plans(place.output_store)) >= 2  # it really ran in several batches
