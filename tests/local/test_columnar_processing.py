"""Parquet through Arrow batches: a columnar aggregate survives worker kills with output identical to an
undisturbed run, and resumes at batch boundaries."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datajob_testenv.datajobs import data_digest
from datajob_testenv.localjobs import manifest, markers
from datajob_worker.cli import main as datajob

ROWS_PER_FILE = 2400


def _orders(directory: Path, files: int) -> None:
    directory.mkdir(parents=True)
    for index in range(files):
        n = range(index * ROWS_PER_FILE, (index + 1) * ROWS_PER_FILE)
        table = pa.table(
            {
                "region": [["emea", "amer", "apac", "latam"][i % 4] for i in n],
                "store": [i % 7 for i in n],
                # Fractions, so a sum added in another order or twice would show.
                "amount": [round((i * 37 % 1009) / 7, 5) for i in n],
            }
        )
        pq.write_table(table, directory / f"orders-{index}.parquet", row_group_size=300)


@pytest.mark.parametrize(
    "options",
    [
        {"groupBy": "region,store", "value": "amount"},
        {"groupBy": "region", "values": "amount,store"},  # several columns, and means merged across shards
    ],
    ids=["value", "values"],
)
def test_a_columnar_aggregate_over_parquet_survives_worker_kills_byte_identical(
    tmp_path: Path, options: dict[str, str]
) -> None:
    _orders(tmp_path / "data", 6)
    spec = {
        "input": {
            "uris": ["data/*.parquet"],
            "format": "parquet",
            "partitioning": {"mode": "count", "shards": 6},
        },
        "checkpoint": {"intervalSeconds": 1, "intervalRecords": 300},
    }
    aggregate = {"builtin": "aggregate", "options": options}
    assert datajob(["run", str(manifest(tmp_path, "ref", processor=aggregate, **spec))]) == 0
    # 300-row batches at 0.4 ms a row: 0.12 s a batch, ~1 s a shard, so the kills land mid-shard.
    slow = {"builtin": "aggregate", "options": {**options, "delayPerRecord": "0.0004"}}
    job = manifest(tmp_path, "chaos", processor=slow, **spec)
    assert datajob(["run", str(job), "--kill-every", "0.8", "--seed", "3"]) == 0
    retried = [m for m in markers(tmp_path / "chaos") if m["attempt"] > 1]
    assert retried, "no failure was injected mid-shard"
    assert any(m["resumedFrom"] for m in retried), "no retried shard resumed from a checkpoint"
    assert all(m["resumedFrom"]["offset"] % 300 == 0 for m in retried if m["resumedFrom"]), "not a batch edge"
    assert (tmp_path / "chaos" / "result").read_bytes() == (tmp_path / "ref" / "result").read_bytes()
    assert data_digest(tmp_path / "chaos") == data_digest(tmp_path / "ref")
    assert sum(m["records"] for m in markers(tmp_path / "chaos")) == 6 * ROWS_PER_FILE
