"""spec.output.format: parquet: parts, reducer parts and the result are Parquet with the rows the JSON Lines
output has, the manifest keeps checksums and counts, and a job with kills writes identical bytes."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datajob_core.storage.output_format import OutputCodec
from datajob_testenv.localjobs import corpus, manifest, markers
from datajob_worker import processors
from datajob_worker.cli import main as datajob


def _rows(path: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = pq.read_table(path).to_pylist()
    return rows


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.open()]


def _orders(directory: Path) -> None:
    directory.mkdir(parents=True)
    for index in range(4):
        n = range(index * 2000, (index + 1) * 2000)
        table = pa.table(
            {
                "region": [["emea", "amer", "apac"][i % 3] for i in n],
                "amount": [round((i * 37 % 1009) / 7, 5) for i in n],
            }
        )
        pq.write_table(table, directory / f"orders-{index}.parquet", row_group_size=250)


JOBS: dict[str, dict[str, Any]] = {
    "aggregate values": {
        "processor": {"builtin": "aggregate", "options": {"groupBy": "region", "values": "amount"}}
    },
    "sql with reduce": {
        "processor": {"sql": "SELECT region, count(*) AS n, sum(amount) AS s FROM input GROUP BY region"},
        "reduce": {"sql": "SELECT region, sum(n) AS n, sum(s) AS s FROM partials GROUP BY region ORDER BY 1"},
    },
    "aggregate with reducers": {
        "processor": {"builtin": "aggregate", "options": {"groupBy": "region", "value": "amount"}},
        "reduce": {"partitions": 2},
    },
    "transform": {"processor": {"builtin": "transform", "options": {"select": "region,amount"}}},
}


@pytest.mark.parametrize("job", list(JOBS))
def test_parquet_output_holds_the_rows_the_jsonl_output_holds(tmp_path: Path, job: str) -> None:
    _orders(tmp_path / "data")
    spec = {"input": {"uris": ["data/*.parquet"], "format": "parquet"}, "workers": 2, **JOBS[job]}
    assert datajob(["run", str(manifest(tmp_path, "jsonl", **spec))]) == 0
    parquet_spec = {**spec, "output": {"uri": "parquet", "format": "parquet"}}
    assert datajob(["run", str(manifest(tmp_path, "parquet", **parquet_spec))]) == 0
    out = tmp_path / "parquet"
    assert _rows(out / "result") == _lines(tmp_path / "jsonl" / "result")
    parts = sorted(out.glob("part-*"))
    assert parts and all(pq.read_metadata(p).num_rows >= 0 for p in parts)  # every part is a Parquet file
    done = json.loads((out / "_SUCCESS").read_text())
    assert done["format"] == "parquet"
    assert done["result"]["checksum"].endswith(hashlib.sha256((out / "result").read_bytes()).hexdigest())
    assert done["records"] == 8000


def test_word_count_as_parquet_has_word_and_count_columns(tmp_path: Path) -> None:
    corpus(tmp_path / "data", files=3, lines=300)
    path = manifest(tmp_path, "out", output={"uri": "out", "format": "parquet"}, reduce={"partitions": 2})
    assert datajob(["run", str(path)]) == 0
    table = pq.read_table(tmp_path / "out" / "result")
    assert table.schema.names == ["word", "count"] and table.schema.field("count").type == pa.int64()
    counts = dict(zip(table.column("word").to_pylist(), table.column("count").to_pylist(), strict=True))
    assert counts["alpha"] == 900 and sum(counts.values()) == 900 * 4
    assert len(list((tmp_path / "out").glob("part-r-*"))) == 2


def test_a_parquet_output_job_survives_worker_kills_byte_identical(tmp_path: Path) -> None:
    _orders(tmp_path / "data")
    spec: dict[str, Any] = {
        "input": {
            "uris": ["data/*.parquet"],
            "format": "parquet",
            "partitioning": {"mode": "count", "shards": 4},
        },
        "processor": {"builtin": "aggregate", "options": {"groupBy": "region", "values": "amount"}},
        "checkpoint": {"intervalSeconds": 1, "intervalRecords": 250},
    }
    assert (
        datajob(["run", str(manifest(tmp_path, "ref", output={"uri": "ref", "format": "parquet"}, **spec))])
        == 0
    )
    slow = {
        "builtin": "aggregate",
        "options": {"groupBy": "region", "values": "amount", "delayPerRecord": "0.0005"},
    }
    chaos = manifest(
        tmp_path, "chaos", output={"uri": "chaos", "format": "parquet"}, **{**spec, "processor": slow}
    )
    assert datajob(["run", str(chaos), "--kill-every", "0.8", "--seed", "3"]) == 0
    assert [m for m in markers(tmp_path / "chaos") if m["attempt"] > 1], "no failure was injected"
    assert (tmp_path / "chaos" / "result").read_bytes() == (tmp_path / "ref" / "result").read_bytes()
    for part in sorted((tmp_path / "ref").glob("part-*")):
        assert (tmp_path / "chaos" / part.name).read_bytes() == part.read_bytes(), part.name


def test_lines_of_mixed_shapes_encode_and_decode_without_loss() -> None:
    codec = OutputCodec("parquet")
    text = '{"a": 1, "b": "x"}\nplain text\n{"a": "one"}\n{}\n[1, 2]\n'
    rows = pq.read_table(io.BytesIO(codec.encode(text))).to_pylist()
    assert [r["line"] for r in rows] == [None, "plain text", None, "{}", "[1, 2]"]
    assert [r["a"] for r in rows] == ["1", None, '"one"', None, None]  # mixed types: each as JSON text
    assert codec.encode(text) == codec.encode(text)  # deterministic bytes
    # Read back and written again (the job commit merges decoded parts): the same values, the same bytes.
    again = codec.decode(codec.encode(text))
    assert json.loads(again.splitlines()[0]) == {"a": 1, "b": "x", "line": None}
    assert codec.encode(again) == codec.encode(text)
    odd = '{"tags": {}}\n{"big": 18446744073709551616}\n'
    assert [json.loads(line) for line in codec.decode(codec.encode(odd)).splitlines()] == [
        {"tags": {}, "big": None},
        {"tags": None, "big": 18446744073709551616},
    ]
    word_count = processors.build({"builtin": "wordcount"})
    words = OutputCodec("parquet", word_count.to_row, word_count.from_row)
    assert words.decode(words.encode("alpha\t3\nbeta\t1\n")) == "alpha\t3\nbeta\t1\n"
