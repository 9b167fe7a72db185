"""CSV through Arrow chunks reads what the record path reads: the same groups, sums, counts, bytes and
bad records on clean, quoted, irregular and malformed files, for any split; clean files never touch the
record path; and a columnar CSV job killed mid-shard publishes the undisturbed result."""

from __future__ import annotations

import dataclasses
import io
import itertools
import json
import random
from pathlib import Path
from typing import Any

import pytest

from datajob_core.protocol import ShardTask
from datajob_testenv.localjobs import manifest, markers
from datajob_worker import csv_arrow, processors
from datajob_worker.cli import main as datajob
from datajob_worker.runtime import OutputDir, PermanentShardError, Progress, ShardContext, run_shard

OPTIONS = {"groupBy": "region", "value": "amount"}


def _run(path: Path, out: Path, processor: processors.Processor, piece: tuple[int, int], policy: str) -> Any:
    def on_record(progress: Progress, state: processors.State, count: int) -> None:
        del progress, state, count

    task = ShardTask(
        shard=0, attempt=1, input={"pieces": [{"path": str(path), "start": piece[0], "end": piece[1]}]}
    )
    output = OutputDir(str(out))
    try:
        progress = run_shard(task, ShardContext("csv", processor, output, on_record, bad_records=policy))
    except PermanentShardError as error:
        return ("failed", str(error).split(":")[0])
    except ValueError as error:  # the aggregate's float() on a value that is not a number
        return ("crashed", str(error))
    part = next((out / "_attempts").glob("*/*/part")).read_text()
    bad = list((out / "_attempts").glob("*/*/bad"))
    return part, progress.records, progress.bytes, progress.skipped, [b.read_text() for b in bad]


def _region(rng: random.Random, stray: bool = True) -> str:
    strays = ['x"y'] if stray else []
    return rng.choice(["emea", "amer", '"apac"', '"la,tam"', '"say ""hi"""', "", *strays])


FILES = {
    "clean": lambda rng: "".join(f"{_region(rng, False)},{rng.uniform(0, 99):.2f}\n" for _ in range(400)),
    "stray quotes": lambda rng: "".join(f"{_region(rng)},{rng.uniform(0, 99):.2f}\n" for _ in range(400)),
    # A quoted field opened on one line and closed on the next, wherever a chunk is cut.
    "quotes across lines": lambda rng: "".join(
        rng.choice(["emea,1\n", 'amer,"2\nx",3\n', 'a"b,"c\n', "apac,4\n"]) for _ in range(400)
    ),
    "byte-order marks": lambda rng: "".join(
        rng.choice(["emea,1\n", "\ufeffamer,2\n", "\ufeff\n"]) for _ in range(400)
    ),
    "blank lines and crlf": lambda rng: "".join(
        rng.choice([f"emea,{rng.randint(0, 9)}\r\n", "\n", f"amer,{rng.randint(0, 9)}\n"]) for _ in range(400)
    ),
    "field counts": lambda rng: "".join(
        rng.choice(["emea,1\n", "amer,2,3\n", "apac\n", "latam,4\n"]) for _ in range(400)
    ),
    "quoted newlines": lambda rng: "".join(
        rng.choice(["emea,1\n", '"am\ner",2\n', "apac,3\n"]) for _ in range(400)
    ),
    "carriage returns and nul": lambda rng: "".join(
        rng.choice(["emea,1\r\n", "am\rer,2\n", "apac,3\n", "la\x00tam,4\n"]) for _ in range(400)
    ),
    "bad utf-8 and values": lambda rng: "".join(
        rng.choice(["emea,1\n", "amer,\xff\n", "apac, 3\n", "latam,inf\n", "x,1_0\n"]) for _ in range(400)
    ),
}


@pytest.mark.parametrize("kind", sorted(FILES))
@pytest.mark.parametrize("header", ["region,amount", "region,amount,note", ""])
@pytest.mark.parametrize("policy", ["Fail", "Skip", "DeadLetter"])
def test_csv_through_arrow_reads_what_the_record_path_reads(
    tmp_path: Path, kind: str, policy: str, header: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(csv_arrow, "CHUNK_BYTES", 512)  # many chunks, so cuts land everywhere
    rng = random.Random(kind)
    body = FILES[kind](rng)
    path = tmp_path / "in.csv"
    if header.endswith("note"):  # a third column the job does not read, some of it not UTF-8
        body = "".join(
            f"{line},{chr(255) if n % 7 == 0 else 'ok'}\n" for n, line in enumerate(body.splitlines())
        )
    raw = (header + "\n" + body).encode("utf-8", errors="surrogateescape")
    path.write_bytes(raw.replace("\xff".encode(), b"\xff"))
    size = path.stat().st_size
    columnar = processors.build({"builtin": "aggregate", "options": OPTIONS})
    by_record = dataclasses.replace(columnar, process_arrow=None)
    cuts = [(0, size), *itertools.pairwise([0, size // 3, 2 * size // 3, size])]
    for number, piece in enumerate(cuts):
        arrow = _run(path, tmp_path / f"a{number}", columnar, piece, policy)
        record = _run(path, tmp_path / f"r{number}", by_record, piece, policy)
        assert arrow == record, (kind, policy, piece)


def test_a_clean_csv_never_takes_the_record_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(csv_arrow, "CHUNK_BYTES", 512)
    rng = random.Random(1)
    path = tmp_path / "in.csv"
    path.write_text("region,amount\n" + FILES["clean"](rng))

    def refuse(records: list[Any], state: processors.State) -> None:
        raise AssertionError("the record path was taken")

    processor = processors.build({"builtin": "aggregate", "options": OPTIONS})
    fast_only = dataclasses.replace(processor, process=refuse, process_batch=refuse)
    size = path.stat().st_size
    part, records, *_ = _run(path, tmp_path / "out", fast_only, (0, size), "Fail")
    assert records == 400
    assert sum(json.loads(line)["count"] for line in part.splitlines()) == 400


def test_a_columnar_csv_aggregate_survives_worker_kills_byte_identical(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    for index in range(4):
        rows = [f'"{["emea", "amer", "apac"][i % 3]}",{(i * 37 % 1009) / 7:.5f}' for i in range(3000)]
        (tmp_path / "data" / f"orders-{index}.csv").write_text("region,amount\n" + "\n".join(rows) + "\n")
    spec = {
        "input": {"uris": ["data/*.csv"], "format": "csv", "partitioning": {"mode": "count", "shards": 8}},
        "checkpoint": {"intervalSeconds": 1, "intervalRecords": 100},
    }
    aggregate = {"builtin": "aggregate", "options": OPTIONS}
    assert datajob(["run", str(manifest(tmp_path, "ref", processor=aggregate, **spec))]) == 0
    slow = {"builtin": "aggregate", "options": {**OPTIONS, "delayPerRecord": "0.0005"}}
    job = manifest(tmp_path, "chaos", processor=slow, **spec)
    assert datajob(["run", str(job), "--kill-every", "0.7", "--seed", "5"]) == 0
    retried = [m for m in markers(tmp_path / "chaos") if m["attempt"] > 1]
    assert retried, "no failure was injected mid-shard"
    assert (tmp_path / "chaos" / "result").read_bytes() == (tmp_path / "ref" / "result").read_bytes()
    assert sum(m["records"] for m in markers(tmp_path / "chaos")) == 4 * 3000


def test_a_carriage_return_inside_an_unquoted_field_fails_the_shard_saying_where(tmp_path: Path) -> None:
    """csv.reader cannot read past it: a permanent failure naming the byte, not a retried crash."""
    path = tmp_path / "in.csv"
    path.write_bytes(b"region,amount\nemea,1\nam\rer,2\n")
    for processor in (
        processors.build({"builtin": "aggregate", "options": OPTIONS}),
        processors.build({"builtin": "grep", "options": {"pattern": "e"}}),
    ):
        task = ShardTask(shard=0, attempt=1, input={"pieces": [{"path": str(path), "start": 0, "end": 30}]})
        context = ShardContext("csv", processor, OutputDir(str(tmp_path / processor.name)), lambda *_: None)
        with pytest.raises(PermanentShardError, match="record at byte 21 cannot be parsed"):
            run_shard(task, context)


def test_a_resumed_piece_is_cut_into_the_chunks_an_undisturbed_one_was_cut_into() -> None:
    """Where a chunk ends depends only on where it starts, so sums are added in the same order."""
    rng = random.Random(4)
    data = b"".join(b"x" * rng.randint(0, 90) + b"\n" for _ in range(3000)) + b"no newline at the end"
    for end in (len(data), len(data) // 2, 777):
        undisturbed = list(csv_arrow.chunks(io.BytesIO(data), 0, end, 300))
        assert b"".join(chunk for _, chunk in undisturbed) == data[: undisturbed[-1][0]]
        for index, (edge, _) in enumerate(undisturbed[:-1]):
            assert list(csv_arrow.chunks(io.BytesIO(data), edge, end, 300)) == undisturbed[index + 1 :]
