"""The sales-by-region aggregate over Parquet, end to end: `datajob run` (local mode, N workers) against
Polars and DuckDB with N threads, on the same files in the same run, outputs checked equal.

Every contender runs as its own process (start-up included, as for `datajob run`), rounds interleaved;
the figure is the median. Polars is not a dependency of datajob: install it to compare
(`.venv/bin/pip install polars`); a missing engine is reported and skipped.

Run: .venv/bin/python benchmarks/sales_engines.py [--mb 300] [--workers 2] [--rounds 3] [--format csv]
     [--processor sql]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import yaml

REGIONS = pa.array(["emea", "amer", "apac", "latam"])
PRODUCTS = pa.array([f"sku-{n:03d}" for n in range(40)])
CSV_ROWS_PER_MB = 25_000  # the same rows as CSV (200,000 rows make 8 MB)
ROWS_PER_MB = 61_000  # of this table as Parquet (measured: 15.6 M rows make 255 MB)

POLARS = """
import json, sys, polars as pl
scan = pl.scan_parquet if sys.argv[2] == "parquet" else pl.scan_csv
out = (scan(sys.argv[1]).group_by("region")
       .agg(pl.len().alias("count"), pl.col("amount").sum().alias("sum"),
            pl.col("amount").min().alias("min"), pl.col("amount").max().alias("max"))
       .sort("region").collect())
print(json.dumps(out.to_dicts()))
"""
DUCKDB = """
import json, sys, duckdb
con = duckdb.connect()
con.execute(f"SET threads = {int(sys.argv[2])}")
con.execute("SET enable_progress_bar = false")
rows = con.execute(
    f"SELECT region, count(*), sum(amount), min(amount), max(amount) FROM read_{sys.argv[3]}(?) "
    "GROUP BY region ORDER BY region", [sys.argv[1]]).fetchall()
print(json.dumps([dict(zip(["region", "count", "sum", "min", "max"], r)) for r in rows]))
"""


def make_orders(directory: Path, megabytes: float, files: int = 8, fmt: str = "parquet") -> int:
    """Sales orders like examples/sales/generate.py writes, generated with Arrow kernels (fast)."""
    directory.mkdir(parents=True)
    per_file = int(megabytes * (ROWS_PER_MB if fmt == "parquet" else CSV_ROWS_PER_MB)) // files
    for index in range(files):
        quantity = pc.add(
            pc.cast(pc.floor(pc.multiply(pc.random(per_file, initializer=index), 9)), pa.int64()), 1
        )
        price = pc.add(pc.multiply(pc.random(per_file, initializer=100 + index), 78.0), 2.0)
        table = pa.table(
            {
                "order_id": pc.cast(
                    pc.floor(pc.multiply(pc.random(per_file, initializer=200 + index), 2**48)), pa.int64()
                ),
                "region": pc.take(
                    REGIONS,
                    pc.cast(
                        pc.floor(pc.multiply(pc.random(per_file, initializer=300 + index), 4)), pa.int64()
                    ),
                ),
                "product": pc.take(
                    PRODUCTS,
                    pc.cast(
                        pc.floor(pc.multiply(pc.random(per_file, initializer=400 + index), 40)), pa.int64()
                    ),
                ),
                "quantity": quantity,
                "amount": pc.round(pc.multiply(pc.cast(quantity, pa.float64()), price), 2),
            }
        )
        if fmt == "csv":  # as the generator writes it: quoted strings
            pacsv.write_csv(table, directory / f"orders-{index:02d}.csv")
        else:
            pq.write_table(table, directory / f"orders-{index:02d}.parquet", row_group_size=50_000)
    return per_file * files


# --processor sql: the same aggregate as spec.processor.sql / spec.reduce.sql (DuckDB in every worker).
MAP_SQL = (
    "SELECT region, count(*) AS count, sum(amount::DOUBLE) AS sum, min(amount::DOUBLE) AS min, "
    "max(amount::DOUBLE) AS max FROM input GROUP BY region"
)
REDUCE_SQL = (
    "SELECT region, sum(count) AS count, sum(sum) AS sum, min(min) AS min, max(max) AS max "
    "FROM partials GROUP BY region ORDER BY region"
)


def manifest(
    work: Path,
    data: Path,
    workers: int,
    name: str = "sales",
    fmt: str = "parquet",
    *,
    processor: str = "builtin",
) -> Path:
    """examples/sales/datajob.yaml as it is (CSV) or switched to the Parquet copy, as its comment says;
    with ``processor="sql"`` the aggregate is written in SQL instead of the builtin."""
    example = yaml.safe_load((Path(__file__).parents[1] / "examples" / "sales" / "datajob.yaml").read_text())
    spec = example["spec"]
    if processor == "sql":
        spec["processor"] = {"sql": MAP_SQL}
        spec["reduce"] = {"sql": REDUCE_SQL}
    spec["input"].update(uris=[f"{data}/*.{fmt}"], format=fmt)
    spec["output"] = {"uri": str(work / f"{name}-out"), "overwrite": True}
    spec["workers"] = workers
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(example))
    return path


def timed(argv: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    return time.perf_counter() - started, done.stdout


def rows_of_result(path: Path) -> list[dict[str, object]]:
    return sorted(
        (json.loads(line) for line in path.read_text().splitlines()), key=lambda r: str(r["region"])
    )


def same(left: list[dict[str, object]], right: list[dict[str, object]]) -> bool:
    return len(left) == len(right) and all(
        (a["region"], a["count"], a["min"], a["max"]) == (b["region"], b["count"], b["min"], b["max"])
        and math.isclose(float(str(a["sum"])), float(str(b["sum"])), rel_tol=1e-9)
        for a, b in zip(left, right, strict=True)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--format", choices=["parquet", "csv"], default="parquet")
    parser.add_argument("--processor", choices=["builtin", "sql"], default="builtin")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="datajob-engines-") as directory:
        work = Path(directory)
        fmt = args.format
        rows = make_orders(work / "data", args.mb, fmt=fmt)
        size = sum(p.stat().st_size for p in (work / "data").iterdir())
        glob = str(work / "data" / f"*.{fmt}")
        job = manifest(work, work / "data", args.workers, fmt=fmt, processor=args.processor)
        datajob = [str(Path(sys.executable).with_name("datajob")), "run", str(job)]
        contenders: dict[str, list[str]] = {"datajob run": datajob}
        # The same job over 1,000 rows: what `datajob run` costs whatever the data (start, plan, commit).
        make_orders(work / "tiny", 1000 / ROWS_PER_MB, files=1, fmt=fmt)
        tiny = [
            datajob[0],
            "run",
            str(manifest(work, work / "tiny", args.workers, "tiny", fmt, processor=args.processor)),
        ]
        threads = {"POLARS_MAX_THREADS": str(args.workers)}
        if importlib.util.find_spec("polars"):
            contenders["Polars"] = [
                "env",
                *(f"{k}={v}" for k, v in threads.items()),
                sys.executable,
                "-c",
                POLARS,
                glob,
                fmt,
            ]
        if importlib.util.find_spec("duckdb"):
            contenders["DuckDB"] = [sys.executable, "-c", DUCKDB, glob, str(args.workers), fmt]
        times: dict[str, list[float]] = {name: [] for name in contenders}
        fixed = statistics.median(timed(tiny)[0] for _ in range(args.rounds))
        results: dict[str, list[dict[str, object]]] = {}
        for _ in range(args.rounds):
            for name, argv in contenders.items():
                seconds, stdout = timed(argv)
                times[name].append(seconds)
                results[name] = (
                    rows_of_result(work / "sales-out" / "result")
                    if name == "datajob run"
                    else json.loads(stdout)
                )
        print(
            f"sales by region ({args.processor}) over {size / 1e6:.0f} MB of {fmt} ({rows:,} rows, 8 files), "
            f"{args.workers} "
            f"workers / threads, median of {args.rounds} interleaved runs"
        )
        missing = [n for n in ("Polars", "DuckDB") if n not in contenders]
        if missing:
            print(f"not installed, skipped: {', '.join(missing)} (pip install polars duckdb)")
        best_engine = min(
            (statistics.median(times[n]) for n in contenders if n != "datajob run"), default=None
        )
        for name in contenders:
            median = statistics.median(times[name])
            agree = same(results[name], results["datajob run"])
            ratio = f"{median / best_engine:6.2f}x the faster engine" if best_engine else ""
            print(
                f"{name:12} {median:7.2f} s  {rows / median / args.workers:12,.0f} rows/s per core  {ratio}  "
                f"{'output equal' if agree else 'OUTPUT DIFFERS'}"
            )
        total = statistics.median(times["datajob run"])
        print(
            f"fixed cost of `datajob run` (the same job over 1,000 rows): {fixed:.2f} s, "
            f"{fixed / total:.0%} of its time here"
        )
        if any(not same(results[n], results["datajob run"]) for n in contenders):
            raise SystemExit("outputs differ")


if __name__ == "__main__":
    main()
