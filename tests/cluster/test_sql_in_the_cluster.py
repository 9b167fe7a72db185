"""processor.sql / reduce.sql through the operator: a worker killed mid-shard, output identical to the same
manifest in local mode; SQL that cannot run per shard fails the job before any worker starts."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from datajob_testenv.datajobs import (
    Jobs,
    committed,
    condition,
    job_manifest,
    local_result,
    write_inputs,
)

ROWS_PER_FILE = 3000


def test_a_sql_job_in_the_cluster_survives_a_worker_kill_identical_to_local_mode(
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
            "sql": "SELECT region, count(*) AS n, sum(amount) AS s FROM input GROUP BY region",
            "options": {"delayPerRecord": "0.002"},
        },
        "reduce": {
            "sql": "SELECT region, sum(n) AS n, round(sum(s), 4) AS s FROM partials "
            "GROUP BY region ORDER BY 1"
        },
        "checkpoint": {"intervalSeconds": 1, "intervalRecords": 250},
    }
    jobs.create(job_manifest("sql", tmp_path / "in", tmp_path / "out", **spec))
    jobs.kill_a_worker_mid_shard("sql")
    status = jobs.wait_phase("sql", "Succeeded", timeout=240)
    assert status["restarts"] >= 1
    results = committed(tmp_path / "out")
    resumed = [r for r in results.values() if r["attempt"] > 1]
    assert resumed and all((r["resumedFrom"] or {}).get("offset", 0) % 250 == 0 for r in resumed), results
    local = local_result(job_manifest("sql", tmp_path / "in", tmp_path / "out", **spec), tmp_path)
    assert (tmp_path / "out" / "result").read_bytes() == local
    assert b'"n": 2000' in (tmp_path / "out" / "result").read_bytes()  # 6000 rows, 3 regions


def test_sql_that_reads_beyond_its_batch_fails_the_job_before_any_worker_starts(
    jobs: Jobs, tmp_path: Path
) -> None:
    write_inputs(tmp_path / "in", files=1, lines=5)
    manifest = job_manifest(
        "badsql",
        tmp_path / "in",
        tmp_path / "out",
        processor={"sql": "SELECT * FROM read_text('/var/run/secrets/kubernetes.io/serviceaccount/token')"},
    )
    jobs.create(manifest)  # CEL cannot parse SQL: admission accepts it, the operator does not
    status = jobs.wait_phase("badsql", "Failed", timeout=60)
    failed = condition(status, "Failed")
    assert failed["reason"] == "InvalidSpec"
    assert "spec.processor.sql may read only the table input, not a table function" in failed["message"]
    assert not jobs.pods("badsql")
