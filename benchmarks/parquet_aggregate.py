"""Rows/s per core of one worker's grouped aggregate over Parquet: Arrow batches with the columnar
aggregate, against the record path (the same batches handed to the per-record aggregate as Python rows,
which is what every Parquet job did before) and against Arrow's group-by alone (the engine's
ceiling on this machine), in the same run on the same file.

Each figure is the best of several interleaved runs in one process (one core), and the outputs are
checked equal (sums to 1e-9 relative: the two paths add in a different order).

Run: .venv/bin/python benchmarks/parquet_aggregate.py [--rows 4000000]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from datajob_core.protocol import ShardTask
from datajob_worker import processors
from datajob_worker.runtime import OutputDir, Progress, ShardContext, run_shard

ROUNDS = 3
REGIONS = ["emea", "amer", "apac", "latam", "anz", "nordics", "dach", "benelux"]
OPTIONS = {"groupBy": "region", "value": "amount"}


def make_orders(path: Path, rows: int) -> None:
    """Sales-like orders, as examples/sales/generate.py writes them (50,000-row row groups)."""
    rng = random.Random(7)
    table = pa.table(
        {
            "order_id": pa.array(range(rows), pa.int64()),
            "region": pa.array([REGIONS[rng.randrange(len(REGIONS))] for _ in range(rows)]),
            "amount": pa.array([round(rng.uniform(1, 500), 2) for _ in range(rows)]),
        }
    )
    pq.write_table(table, path, row_group_size=50_000)


def shard(path: Path, processor: processors.Processor, result: list[str]) -> Callable[[], None]:
    size = path.stat().st_size

    def run() -> None:
        with tempfile.TemporaryDirectory() as out:

            def on_record(progress: Progress, state: processors.State, count: int) -> None:
                time.monotonic()  # what the worker does per callback: a clock read, an interval check

            task = ShardTask(
                shard=0, attempt=1, input={"pieces": [{"path": str(path), "start": 0, "end": size}]}
            )
            run_shard(task, ShardContext("parquet", processor, OutputDir(out), on_record))
            result[:] = [(Path(out) / "_attempts").glob("*/*/part").__next__().read_text()]

    return run


def arrow_alone(path: Path, result: list[str]) -> Callable[[], None]:
    def run() -> None:
        table = pq.read_table(path, columns=["region", "amount"], use_threads=False)
        out = table.group_by("region", use_threads=False).aggregate(
            [([], "count_all"), ("amount", "sum"), ("amount", "min"), ("amount", "max")]
        )
        result[:] = [json.dumps(out.sort_by("region").to_pylist())]
        pc.sum(out.column("count_all"))

    return run


def best(*fns: Callable[[], object]) -> list[float]:
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(ROUNDS):
        for fn, samples in zip(fns, times, strict=True):
            started = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - started)
    return [min(samples) for samples in times]


def same(left: str, right: str) -> bool:
    a = [json.loads(line) for line in left.splitlines()]
    b = [json.loads(line) for line in right.splitlines()]
    return len(a) == len(b) and all(
        (x["region"], x["count"], x["min"], x["max"]) == (y["region"], y["count"], y["min"], y["max"])
        and math.isclose(x["sum"], y["sum"], rel_tol=1e-9)
        for x, y in zip(a, b, strict=True)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=4_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "orders.parquet"
        make_orders(path, args.rows)
        columnar = processors.build({"builtin": "aggregate", "options": OPTIONS})
        by_record = dataclasses.replace(columnar, process_arrow=None)
        fast, slow, ceiling = [""], [""], [""]
        fast_s, slow_s, arrow_s = best(
            shard(path, columnar, fast), shard(path, by_record, slow), arrow_alone(path, ceiling)
        )
        assert same(fast[0], slow[0]), "the columnar aggregate disagrees with the record path"
        rows = args.rows
        print(
            f"{rows:,} rows, {path.stat().st_size / 1e6:.0f} MB of Parquet, group by region (8 groups), "
            f"best of {ROUNDS}, one core"
        )
        print(f"{'path':34} {'rows/s':>13} {'vs record path':>15}")
        print(f"{'record path (rows to Python)':34} {rows / slow_s:13,.0f} {1.0:14.2f}x")
        print(f"{'Arrow batches, columnar aggregate':34} {rows / fast_s:13,.0f} {slow_s / fast_s:14.2f}x")
        print(f"{'Arrow group-by alone (ceiling)':34} {rows / arrow_s:13,.0f} {slow_s / arrow_s:14.2f}x")
        print(f"datajob columnar / Arrow alone: {arrow_s / fast_s:.2f} (1.00 = no framework overhead)")


if __name__ == "__main__":
    main()
