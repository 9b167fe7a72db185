"""Writes the sales example's input: synthetic orders as CSV (and the same rows as Parquet), no downloads.

python examples/sales/generate.py [--rows-per-file 200000] [--files 8]
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

REGIONS = ["emea", "amer", "apac", "latam"]
PRODUCTS = [f"sku-{n:03d}" for n in range(40)]


def rows(rng: random.Random, count: int) -> dict[str, list[object]]:
    columns: dict[str, list[object]] = {
        "order_id": [],
        "region": [],
        "product": [],
        "quantity": [],
        "amount": [],
    }
    for _ in range(count):
        quantity = rng.randint(1, 9)
        columns["order_id"].append(rng.getrandbits(48))
        columns["region"].append(rng.choice(REGIONS))
        columns["product"].append(rng.choice(PRODUCTS))
        columns["quantity"].append(quantity)
        columns["amount"].append(round(quantity * rng.uniform(2.0, 80.0), 2))
    return columns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--rows-per-file", type=int, default=200_000)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("data"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for index in range(args.files):
        table = pa.table(rows(random.Random(index), args.rows_per_file))
        pacsv.write_csv(table, args.out / f"orders-{index:02d}.csv")
        pq.write_table(table, args.out / f"orders-{index:02d}.parquet", row_group_size=50_000)
    print(f"wrote {args.files} CSV and Parquet files to {args.out}")


if __name__ == "__main__":
    main()
