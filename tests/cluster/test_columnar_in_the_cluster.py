"""A columnar (Arrow) aggregate over Parquet in the cluster: a worker killed mid-shard, output identical to
the same manifest in local mode."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from datajob_testenv.datajobs import Jobs, committed, job_manifest, local_result

ROWS_PER_FILE = 3000


def test_a_parquet_aggregate_in_the_cluster_survives_a_worker_kill_identical_to_local_mode(
    jobs: Jobs, tmp_path: Path
) -> None:
    (tmp_path / "in").mkdir()
    for index in range(2):
        n = range(index * ROWS_PER_FILE, (index + 1) * ROWS_PER_FILE)
        table = pa.table(
            {
                "region": [["emea", "amer", "apac"][i % 3] for i in n],
                "amount": [round((i * 31 % 997) / 9, 4) for i in n],
            }
        )
        pq.write_table(table, tmp_path / "in" / f"orders-{index}.parquet", row_group_size=250)
    spec = {
        "input": {"uris": [f"{tmp_path / 'in'}/*.parquet"], "format": "parquet"},
        # 250-row batches at 2 ms a row: half a second a batch, so the kill lands mid-shard.
        "processor": {
            "builtin": "aggregate",
            "options": {"groupBy": "region", "value": "amount", "delayPerRecord": "0.002"},
        },
        "checkpoint": {"intervalSeconds": 1, "intervalRecords": 250},
    }
    jobs.create(job_manifest("columnar", tmp_path / "in", tmp_path / "out", **spec))
    jobs.kill_a_worker_mid_shard("columnar")
    status = jobs.wait_phase("columnar", "Succeeded", timeout=240)
    assert status["restarts"] >= 1
    results = committed(tmp_path / "out")
    resumed = [r for r in results.values() if r["attempt"] > 1]
    assert resumed and all((r["resumedFrom"] or {}).get("offset", 0) % 250 == 0 for r in resumed), results
    assert sum(r["records"] for r in results.values()) == 2 * ROWS_PER_FILE
    local = local_result(job_manifest("columnar", tmp_path / "in", tmp_path / "out", **spec), tmp_path)
    assert (tmp_path / "out" / "result").read_bytes() == local
