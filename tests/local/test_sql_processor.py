"""processor.sql / reduce.sql in local mode: the sales query gives what DuckDB gives over the whole input,
kills leave the result byte-identical, reducers with partitions give the same groups, per-row queries need
no reduce, and a query that reads anything but its batch is refused before anything runs."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import yaml

from datajob_core.cluster.reconciler import Phase
from datajob_testenv.localjobs import corpus, manifest, markers
from datajob_worker.cli import main as datajob
from datajob_worker.local_runner import LocalRun

ROWS_PER_FILE = 2400
MAP_SQL = (
    "SELECT region, count(*) AS n, sum(amount::DOUBLE) AS s, min(amount::DOUBLE) AS lo, "
    "max(quantity::BIGINT) AS hi FROM input WHERE amount::DOUBLE > 1 GROUP BY region"
)
REDUCE_SQL = (
    "SELECT region, sum(n) AS n, round(sum(s), 6) AS s, min(lo) AS lo, max(hi) AS hi "
    "FROM partials GROUP BY region ORDER BY region"
)
WHOLE_SQL = (
    "SELECT region, count(*) AS n, round(sum(amount), 6) AS s, min(amount) AS lo, max(quantity) AS hi "
    "FROM {source} WHERE amount > 1 GROUP BY region ORDER BY region"
)


def _orders(directory: Path, files: int, fmt: str) -> None:
    directory.mkdir(parents=True)
    for index in range(files):
        n = range(index * ROWS_PER_FILE, (index + 1) * ROWS_PER_FILE)
        table = pa.table(
            {
                "region": [["emea", "amer", "apac", "latam"][i % 4] for i in n],
                "quantity": [i % 9 + 1 for i in n],
                "amount": [round((i * 37 % 1009) / 7, 5) for i in n],
            }
        )
        if fmt == "parquet":
            pq.write_table(table, directory / f"orders-{index}.parquet", row_group_size=300)
        else:
            pacsv.write_csv(table, directory / f"orders-{index}.csv")


def _job(tmp_path: Path, out: str, fmt: str, **spec: Any) -> Path:
    defaults: dict[str, Any] = {
        "input": {"uris": [f"data/*.{fmt}"], "format": fmt, "partitioning": {"mode": "count", "shards": 6}},
        "processor": {"sql": MAP_SQL},
        "reduce": {"sql": REDUCE_SQL},
        "checkpoint": {"intervalSeconds": 1, "intervalRecords": 300},
    }
    return manifest(tmp_path, out, **{**defaults, **spec})


def _whole(tmp_path: Path, fmt: str) -> list[dict[str, Any]]:
    source = f"read_{fmt}('{tmp_path / 'data'}/*.{fmt}')"
    relation = duckdb.sql(WHOLE_SQL.format(source=source))
    assert relation is not None
    return [dict(zip(relation.columns, row, strict=True)) for row in relation.fetchall()]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_sql_job_gives_what_duckdb_gives_over_the_whole_input(tmp_path: Path, fmt: str) -> None:
    _orders(tmp_path / "data", 4, fmt)
    assert datajob(["run", str(_job(tmp_path, "out", fmt))]) == 0
    result = [json.loads(line) for line in (tmp_path / "out" / "result").open()]
    assert result == _whole(tmp_path, fmt)
    assert list(result[0]) == ["region", "n", "s", "lo", "hi"]  # columns in SELECT order


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_sql_job_survives_worker_kills_byte_identical(tmp_path: Path, fmt: str) -> None:
    _orders(tmp_path / "data", 6, fmt)
    assert datajob(["run", str(_job(tmp_path, "ref", fmt))]) == 0
    # Small CSV files are one chunk each; Parquet has 300-row batches: the delay makes kills land mid-shard.
    slow = {"sql": MAP_SQL, "options": {"delayPerRecord": "0.0004"}}
    chaos = _job(tmp_path, "chaos", fmt, processor=slow)
    assert datajob(["run", str(chaos), "--kill-every", "0.8", "--seed", "3"]) == 0
    assert [m for m in markers(tmp_path / "chaos") if m["attempt"] > 1], "no failure was injected"
    assert (tmp_path / "chaos" / "result").read_bytes() == (tmp_path / "ref" / "result").read_bytes()
    assert sum(m["records"] for m in markers(tmp_path / "chaos")) == 6 * ROWS_PER_FILE


def test_reducers_with_partitions_give_the_groups_one_merge_gives(tmp_path: Path) -> None:
    _orders(tmp_path / "data", 4, "parquet")
    grouped = REDUCE_SQL.removesuffix(" ORDER BY region")
    one = _job(tmp_path, "one", "parquet", reduce={"sql": grouped})
    split = _job(tmp_path, "split", "parquet", reduce={"sql": grouped, "partitions": 3})
    assert datajob(["run", str(one)]) == 0 and datajob(["run", str(split)]) == 0
    rows = {json.dumps(json.loads(line)) for line in (tmp_path / "one" / "result").open()}
    assert {json.dumps(json.loads(line)) for line in (tmp_path / "split" / "result").open()} == rows
    assert len(list((tmp_path / "split").glob("part-r-*"))) == 3


def test_a_per_row_query_needs_no_reduce_and_text_is_one_column_named_line(tmp_path: Path) -> None:
    corpus(tmp_path / "data", files=3, lines=400)
    sql = "SELECT upper(line) AS loud FROM input WHERE line LIKE '%gamma1%'"
    path = manifest(tmp_path, "out", processor={"sql": sql}, workers=2)
    assert datajob(["run", str(path)]) == 0
    expected = [
        {"loud": line.upper()}
        for f in sorted((tmp_path / "data").glob("*.txt"))
        for line in f.read_text().splitlines()
        if "gamma1" in line
    ]
    assert [json.loads(line) for line in (tmp_path / "out" / "result").open()] == expected


def test_json_lines_go_through_sql_with_their_own_types(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    rows: list[dict[str, Any]] = [{"user": f"u{n % 5}", "ms": n * 3, "ok": n % 4 != 0} for n in range(5000)]
    (tmp_path / "data" / "events.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = manifest(
        tmp_path,
        "out",
        input={"uris": ["data/*.jsonl"], "format": "jsonl"},
        processor={"sql": "SELECT user, count(*) AS calls, sum(ms) AS ms FROM input WHERE ok GROUP BY user"},
        reduce={
            "sql": "SELECT user, sum(calls) AS calls, sum(ms) AS ms FROM partials GROUP BY user ORDER BY user"
        },
    )
    assert datajob(["run", str(path)]) == 0
    result = [json.loads(line) for line in (tmp_path / "out" / "result").open()]
    expected = [
        {
            "user": u,
            "calls": sum(1 for r in rows if r["user"] == u and r["ok"]),
            "ms": sum(r["ms"] for r in rows if r["user"] == u and r["ok"]),
        }
        for u in sorted({r["user"] for r in rows})
    ]
    assert result == expected


@pytest.mark.parametrize(
    ("processor", "reduce", "message"),
    [
        ({"sql": "SELECT * FROM read_text('/etc/passwd')"}, None, "may read only the table input"),
        ({"sql": "SELECT region, count(*) FROM input GROUP BY region"}, None, "add spec.reduce.sql"),
        ({"sql": "SELECT region FROM input WHERE"}, None, "spec.processor.sql: syntax error"),
    ],
)
def test_sql_that_cannot_run_per_shard_is_refused_before_anything_runs(
    tmp_path: Path, processor: dict[str, str], reduce: dict[str, str] | None, message: str
) -> None:
    corpus(tmp_path / "data", files=1, lines=10)
    path = manifest(tmp_path, "out", processor=processor, **({"reduce": reduce} if reduce else {}))
    job = yaml.safe_load(path.read_text())
    with pytest.raises(ValueError, match=message):
        LocalRun(job, tmp_path, out=io.StringIO()).run()
    assert not (tmp_path / "out").exists()
    assert datajob(["validate", str(path)]) == 2


def test_a_failing_query_fails_the_job_with_duckdbs_reason(tmp_path: Path) -> None:
    corpus(tmp_path / "data", files=1, lines=50)
    path = manifest(
        tmp_path,
        "out",
        processor={"sql": "SELECT no_such_column FROM input"},
        retryPolicy={"maxShardAttempts": 1},
        workers=1,
    )
    state = LocalRun(yaml.safe_load(path.read_text()), tmp_path, out=io.StringIO(), grace_seconds=2).run()
    assert state.phase is Phase.FAILED
    assert "no_such_column" in state.message, state.message


def test_columns_keep_their_input_types_in_every_batch(tmp_path: Path) -> None:
    """CSV text stays text (a zip code keeps its leading zero), JSON keys missing from the first record
    are columns too, and a Parquet string column is never read as a number."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.csv").write_text("zip,n\n01234,1\n99999,2\n")
    csv_job = manifest(
        tmp_path,
        "csv",
        input={"uris": ["data/*.csv"], "format": "csv"},
        processor={"sql": "SELECT zip, typeof(zip) AS t, n::BIGINT * 2 AS twice FROM input"},
    )
    assert datajob(["run", str(csv_job)]) == 0
    assert [json.loads(line) for line in (tmp_path / "csv" / "result").open()] == [
        {"zip": "01234", "t": "VARCHAR", "twice": 2},
        {"zip": "99999", "t": "VARCHAR", "twice": 4},
    ]
    (tmp_path / "data" / "b.jsonl").write_text('{"a": 1}\n{"a": 2, "b": 5}\n')
    jsonl_job = manifest(
        tmp_path,
        "jsonl",
        input={"uris": ["data/*.jsonl"], "format": "jsonl"},
        processor={"sql": "SELECT a, b FROM input"},
    )
    assert datajob(["run", str(jsonl_job)]) == 0
    assert [json.loads(line) for line in (tmp_path / "jsonl" / "result").open()] == [
        {"a": 1, "b": None},
        {"a": 2, "b": 5},
    ]


def test_a_json_key_of_several_types_or_two_output_columns_of_one_name_fail_with_a_reason(
    tmp_path: Path,
) -> None:
    for name, lines, sql, reason in [
        (
            "types",
            '{"v": 1}\n{"v": "n/a"}\n',
            "SELECT v FROM input",
            "a JSON key 'v' holds values of several types",
        ),
        ("names", '{"v": 1}\n', "SELECT 1 AS x, 2 AS x FROM input", "more than one column named x"),
    ]:
        (tmp_path / f"data-{name}").mkdir()
        (tmp_path / f"data-{name}" / "a.jsonl").write_text(lines)
        path = manifest(
            tmp_path,
            name,
            input={"uris": [f"data-{name}/*.jsonl"], "format": "jsonl"},
            processor={"sql": sql},
            retryPolicy={"maxShardAttempts": 1},
            workers=1,
        )
        state = LocalRun(yaml.safe_load(path.read_text()), tmp_path, out=io.StringIO(), grace_seconds=2).run()
        assert state.phase is Phase.FAILED and reason in state.message, state.message


def test_json_keys_the_query_names_are_columns_in_every_batch_and_others_are_never_read(
    tmp_path: Path,
) -> None:
    """A key that appears only after the first batch is NULL before it; a key the query never reads (here
    of two types) cannot fail it; 1 in one batch and 1.0 in another go to one reducer, as one group."""
    (tmp_path / "data").mkdir()
    rows: list[dict[str, Any]] = []
    for n in range(40000):
        row: dict[str, Any] = {"id": n, "k": 2.5 if n == 5 else 1}
        if n >= 19000:
            row["late"] = n
        if n == 7:
            row["tags"] = [1, "b"]
        rows.append(row)
    (tmp_path / "data" / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = manifest(
        tmp_path,
        "out",
        input={"uris": ["data/*.jsonl"], "format": "jsonl"},
        processor={"sql": "SELECT k, count(*) AS n, count(late) AS l FROM input WHERE id >= 0 GROUP BY k"},
        reduce={"sql": "SELECT k, sum(n) AS n, sum(l) AS l FROM partials GROUP BY k", "partitions": 4},
    )
    assert datajob(["run", str(path)]) == 0
    result = sorted((json.loads(line) for line in (tmp_path / "out" / "result").open()), key=lambda r: r["k"])
    assert result == [{"k": 1.0, "n": 39999, "l": 21000}, {"k": 2.5, "n": 1, "l": 0}]
    aliased = manifest(
        tmp_path,
        "alias",
        input={"uris": ["data/*.jsonl"], "format": "jsonl"},
        processor={"sql": "SELECT id * 2 AS d FROM input WHERE d > 79994"},
    )
    assert datajob(["run", str(aliased)]) == 0  # an alias is not a missing key to fill with NULL
    assert [json.loads(line)["d"] for line in (tmp_path / "alias" / "result").open()] == [79996, 79998]
