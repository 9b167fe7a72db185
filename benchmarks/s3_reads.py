"""Lines per second read from a real S3 server (MinIO on loopback): fsspec's file object against the
worker's reader (readers.open_binary, which puts io.BufferedReader in front of it), same object, same run.

Run: .venv/bin/python benchmarks/s3_reads.py [--lines 200000]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from datajob_core.data.locations import StorageConfig
from datajob_core.storage.stores import filesystem
from datajob_testenv.objectstore import REGION, ObjectStore
from datajob_worker import readers


def timed(open_: Callable[[], IO[bytes]]) -> tuple[int, float]:
    best = float("inf")
    count = 0
    for _ in range(3):
        started = time.perf_counter()
        with open_() as handle:
            count = sum(1 for _ in handle)
        best = min(best, time.perf_counter() - started)
    return count, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=200_000)
    args = parser.parse_args()
    server = ObjectStore(Path(tempfile.mkdtemp(prefix="datajob-s3-reads-")))
    server.start()
    try:
        data = b"".join(
            b"%d,emea,sku-%03d,%d,%.2f\n" % (n, n % 40, n % 9, n * 1.5) for n in range(args.lines)
        )
        server.filesystem().mkdir("bench")
        server.filesystem().pipe("bench/orders.csv", data)
        os.environ.update(server.credentials)
        config = StorageConfig(endpoint=server.endpoint, region=REGION)
        fs, path = filesystem("s3://bench/orders.csv", config)
        readers.use_storage(config)
        plain_count, plain = timed(lambda: fs.open(path, "rb"))
        ours_count, ours = timed(lambda: readers.open_binary("s3://bench/orders.csv"))
        assert plain_count == ours_count == args.lines
        print(f"{args.lines:,} lines, {len(data) / 1e6:.1f} MB from MinIO (best of 3)")
        speedup = plain / ours
        print(f"fsspec file object:   {plain:6.2f} s  {args.lines / plain:12,.0f} lines/s")
        print(f"readers.open_binary:  {ours:6.2f} s  {args.lines / ours:12,.0f} lines/s  ({speedup:.0f}x)")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
