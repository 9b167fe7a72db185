"""spec.output.format: parquet through the operator: the workers get the format from the pod the operator
renders, reducers and the job commit write Parquet, and the result is byte-identical to local mode's."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from datajob_testenv.datajobs import Jobs, job_manifest, local_result, write_inputs


def test_a_word_count_with_reducers_writes_parquet_in_the_cluster_identical_to_local_mode(
    jobs: Jobs, tmp_path: Path
) -> None:
    lines = write_inputs(tmp_path / "in", files=3, lines=200)
    manifest = job_manifest("pq", tmp_path / "in", tmp_path / "out", reduce={"partitions": 2})
    manifest["spec"]["output"]["format"] = "parquet"
    jobs.create(manifest)
    jobs.wait_phase("pq", "Succeeded", timeout=180)
    table = pq.read_table(tmp_path / "out" / "result")
    counts = dict(zip(table.column("word").to_pylist(), table.column("count").to_pylist(), strict=True))
    assert counts["alpha"] == counts["beta"] == lines and counts["file"] == lines
    assert all(pq.read_metadata(part).num_rows > 0 for part in (tmp_path / "out").glob("part-r-*"))
    assert json.loads((tmp_path / "out" / "_SUCCESS").read_text())["format"] == "parquet"
    assert (tmp_path / "out" / "result").read_bytes() == local_result(manifest, tmp_path)
