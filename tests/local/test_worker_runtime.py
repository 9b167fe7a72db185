"""Readers, processors and the exactly-once committer, on real files."""

from __future__ import annotations

import itertools
import json
import random
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datajob_core.data.planning import plan_shards
from datajob_core.protocol import ShardTask
from datajob_core.storage.inputs import list_inputs
from datajob_testenv.localjobs import committed_text
from datajob_worker import processors, readers
from datajob_worker.runtime import OutputDir, Progress, ShardContext, ShardInterruptedError, run_shard


def random_text(rng: random.Random, lines: int) -> bytes:
    out = []
    for _ in range(lines):
        length = rng.choice([0, 1, 2, 5, 30, 200])
        out.append("".join(rng.choice("ab cd\t") for _ in range(length)))
    text = "\n".join(out)
    return text.encode() + (b"\n" if rng.random() < 0.5 else b"")  # sometimes no final newline


def cut_points(rng: random.Random, size: int, pieces: int) -> list[int]:
    return [0, *sorted(rng.sample(range(1, max(size, 2)), min(pieces - 1, max(size - 1, 0)))), size]


@pytest.mark.parametrize("seed", range(25))
def test_byte_range_splits_never_lose_or_duplicate_a_record(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    data = random_text(rng, rng.randint(0, 300))
    path = tmp_path / "input.txt"
    path.write_bytes(data)
    expected = data.splitlines(keepends=True)
    cuts = cut_points(rng, len(data), rng.randint(1, 12))
    got: list[bytes] = []
    with path.open("rb") as handle:
        for start, end in itertools.pairwise(cuts):
            got.extend(line for _, line in readers.iter_lines(handle, start, end, None))
    assert got == expected


def test_jsonl_and_csv_records(tmp_path: Path) -> None:
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text('{"k": "x", "v": 1}\n\n{"k": "y", "v": 2}\n')
    with jsonl.open("rb") as handle:
        records = [readers.parse(line, "jsonl", None) for _, line in readers.iter_lines(handle, 0, 100, None)]
    assert records == [{"k": "x", "v": 1}, None, {"k": "y", "v": 2}]
    csv_path = tmp_path / "a.csv"
    csv_path.write_text('city,amount\n"Paris, FR",3\nOslo,4\n')
    header = readers.csv_header(str(csv_path))
    assert header == ["city", "amount"]
    assert readers.parse(b'"Paris, FR",3\n', "csv", header) == {"city": "Paris, FR", "amount": "3"}


def run_processor(spec: dict[str, Any], records: Sequence[object]) -> str:
    processor = processors.build(spec)
    state = processor.init()
    for record in records:
        processor.process(record, state)
    # The state survives a JSON round trip, as it must to be checkpointed.
    return processor.render(json.loads(json.dumps(state)))


def test_builtin_processors() -> None:
    assert run_processor({"builtin": "wordcount"}, ["a b a", "b c"]) == "a\t2\nb\t2\nc\t1\n"
    assert run_processor({"builtin": "grep", "options": {"pattern": "^err"}}, ["ok", "error 1", "err 2"]) == (
        "error 1\nerr 2\n"
    )
    rows = [
        {"city": "Oslo", "amount": "4"},
        {"city": "Paris", "amount": "3"},
        {"city": "Oslo", "amount": "1.5"},
    ]
    aggregated = [
        json.loads(line)
        for line in run_processor(
            {"builtin": "aggregate", "options": {"groupBy": "city", "value": "amount"}}, rows
        ).splitlines()
    ]
    assert aggregated == [
        {"city": "Oslo", "count": 2, "sum": 5.5, "min": 1.5, "max": 4.0},
        {"city": "Paris", "count": 1, "sum": 3.0, "min": 3.0, "max": 3.0},
    ]
    transformed = run_processor(
        {"builtin": "transform", "options": {"select": "city", "rename": "city=town"}}, rows[:1]
    )
    assert transformed == '{"town": "Oslo"}\n'
    # User functions return the output line (or a JSON-able value, or None to drop the record).
    assert run_processor({"function": "json:dumps"}, [{"a": 1}]) == '{"a": 1}\n'


@pytest.mark.parametrize(
    "spec",
    [
        {"builtin": "wordcount"},
        {"builtin": "aggregate", "options": {"groupBy": "city,kind", "value": "amount"}},
        {"builtin": "grep", "options": {"pattern": "Oslo"}},
    ],
)
def test_merging_shard_outputs_equals_processing_everything_at_once(spec: dict[str, Any]) -> None:
    rng = random.Random(3)
    rows: list[Any] = [
        {
            "city": rng.choice(["Oslo", "Paris", "Lima"]),
            "kind": rng.choice("ab"),
            "amount": str(rng.randint(0, 9)),
        }
        for _ in range(500)
    ]
    if spec["builtin"] == "wordcount":
        rows = [f"{r['city']} {r['kind']}" for r in rows]
    cuts = sorted(rng.sample(range(1, len(rows)), 7))
    shards = [rows[a:b] for a, b in zip([0, *cuts], [*cuts, len(rows)], strict=True)]
    merged = processors.build(spec).merge([run_processor(spec, shard) for shard in shards])
    assert merged == run_processor(spec, rows)


def test_processor_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="groupBy"):
        processors.build({"builtin": "aggregate"})


def shard_task(
    path: Path, size: int, checkpoint: dict[str, object] | None = None, attempt: int = 1
) -> ShardTask:
    return ShardTask(
        shard=0,
        attempt=attempt,
        checkpoint=checkpoint,
        input={"pieces": [{"path": str(path), "start": 0, "end": size}]},
    )


@pytest.mark.parametrize("seed", range(10))
def test_resume_from_any_checkpoint_gives_the_uninterrupted_result(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    data = b"".join(f"w{rng.randint(0, 20)} w{rng.randint(0, 5)}\n".encode() for _ in range(2000))
    path = tmp_path / "in.txt"
    path.write_bytes(data)
    reference = OutputDir(str(tmp_path / "ref"))
    run_shard(
        shard_task(path, len(data)),
        ShardContext("text", processors.build(None), reference, lambda p, s, n: None),
    )

    output = OutputDir(str(tmp_path / "out"))
    stop_after = rng.randint(1, 1999)
    saved: dict[str, object] = {}

    def crash_midway(progress: Progress, state: processors.State, count: int) -> None:
        if rng.random() < 0.5:  # checkpoint now and then, as the worker does
            progress.state_file = output.checkpoints.save(0, 1, progress.records, progress.position(), state)
            saved.update(progress.checkpoint())
        if progress.records >= stop_after:
            raise ShardInterruptedError

    with pytest.raises(ShardInterruptedError):
        run_shard(
            shard_task(path, len(data)), ShardContext("text", processors.build(None), output, crash_midway)
        )
    resume = dict(saved) or None
    run_shard(
        shard_task(path, len(data), resume, attempt=2),
        ShardContext("text", processors.build(None), output, lambda p, s, n: None),
    )
    assert committed_text(output, 0) == committed_text(reference, 0)


def test_racing_attempts_leave_exactly_one_committed_result(tmp_path: Path) -> None:
    output = OutputDir(str(tmp_path))
    barrier = threading.Barrier(8)
    wins: list[bool] = []

    def attempt(number: int) -> None:
        barrier.wait()
        # Every attempt of a shard computes the same bytes; only who publishes them differs.
        wins.append(output.commit(5, number, "the shard's result\n", {"attempt": number}))

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wins.count(True) == 1
    record = output.committed(5)
    assert record is not None and record["attempt"] in range(1, 9)
    assert committed_text(output, 5) == "the shard's result\n"
    # Each attempt wrote only under its own prefix; the job commit publishes the winner and removes the rest.
    written = sorted(int(p.name.split("-")[0]) for p in (tmp_path / "_attempts" / "000005").iterdir())
    assert written == list(range(1, 9))
    done = output.committer.commit_job(6, processors.concatenate, {"job": "race"}, failed=[0, 1, 2, 3, 4])
    assert done.missing == [0, 1, 2, 3, 4]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["_SUCCESS", "_datajob", "part-000005", "result"]
    assert not list((tmp_path / "_datajob").iterdir()), "commit records are removed with the scratch"
    manifest = json.loads((tmp_path / "_SUCCESS").read_text())
    assert [(e["shard"], e["attempt"]) for e in manifest["shards"]] == [(5, record["attempt"])]


def test_parquet_row_groups_split_by_byte_range_and_resume(tmp_path: Path) -> None:
    rows = [{"city": f"c{i % 4}", "amount": i} for i in range(1000)]
    path = tmp_path / "t.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=128)
    size = path.stat().st_size
    cuts = [0, size // 3, 2 * size // 3, size]

    def read(start: int, end: int, skip: int) -> list[dict[str, Any]]:
        return [
            row for _, b in readers.iter_parquet_batches(str(path), start, end, skip) for row in b.to_pylist()
        ]

    seen = [row for start, end in itertools.pairwise(cuts) for row in read(start, end, 0)]
    assert sorted(r["amount"] for r in seen) == list(range(1000))
    resumed = read(0, size, 300)
    assert [r["amount"] for r in resumed] == list(range(300, 1000))


def test_fsspec_urls_are_listed_split_and_read_like_local_files(tmp_path: Path) -> None:
    """memory:// stands in for s3://, gs://, ...: the same fsspec calls list, size and read them."""
    memory = fsspec.filesystem("memory")
    rng = random.Random(5)
    local = tmp_path / "local"
    local.mkdir()
    for index in range(3):
        data = random_text(rng, 400)
        memory.pipe(f"/datajob-test/in/part-{index}.txt", data)
        (local / f"part-{index}.txt").write_bytes(data)
    results = {}
    try:
        for name, uri in (("remote", "memory://datajob-test/in/*.txt"), ("local", f"{local}/*.txt")):
            files = list_inputs([uri])
            assert len(files) == 3
            plan = plan_shards(files, {"mode": "size", "targetShardSize": "700"})
            assert len(plan) > 3, "files were not split into byte ranges"
            output = OutputDir(str(tmp_path / name))
            spec = {"builtin": "wordcount"}
            for shard, entry in enumerate(plan):
                task = ShardTask(shard=shard, attempt=1, input=entry)
                run_shard(task, ShardContext("text", processors.build(spec), output, lambda *_: None))
            parts = [committed_text(output, s) for s in range(len(plan))]
            results[name] = processors.build(spec).merge(parts)
    finally:
        memory.rm("/datajob-test", recursive=True)
    assert results["remote"] == results["local"]
    assert results["local"]
