"""Rows/s of the worker's CSV reader (record boundaries by quote parity, bad-record tracking) against
Python's own csv.reader over the same file, in the same process: the ratio is the reader's overhead.

Three files: plain rows, rows with quoted fields, rows with quoted newlines (read whole, and split into
8 pieces with spec.input.multiLine, where each piece scans its file's prefix for the quote parity).

Run: .venv/bin/python benchmarks/csv_reader.py
"""

from __future__ import annotations

import csv
import functools
import itertools
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from datajob_worker import runtime
from datajob_worker.runtime import Progress, RecordErrors

ROWS = 300_000
ROUNDS = 5


def write(path: Path, quoted: bool, newlines: bool) -> None:
    rng = random.Random(3)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_NONNUMERIC if quoted else csv.QUOTE_MINIMAL)
        writer.writerow(["region", "note", "amount"])
        for n in range(ROWS):
            note = f"line one\nline {n}" if newlines and n % 10 == 0 else f"note {n}"
            writer.writerow([rng.choice(["emea", "amer", "apac"]), note, round(rng.uniform(1, 100), 2)])


def best(run: Callable[[], int]) -> tuple[float, int]:
    times, count = [], 0
    for _ in range(ROUNDS):
        started = time.perf_counter()
        count = run()
        times.append(time.perf_counter() - started)
    return min(times), count


def ours(path: Path, pieces: int, multi_line: bool) -> int:
    size = path.stat().st_size
    bounds = [size * i // pieces for i in range(pieces + 1)]
    rows = 0
    for start, end in itertools.pairwise(bounds):
        source = runtime._Source(str(path), "utf-8", RecordErrors("Fail", Progress()))
        with open(path, "rb") as handle:
            rows += sum(1 for _ in runtime._csv_records(handle, (start, end), None, source, multi_line))
    return rows


def plain(path: Path) -> int:
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        return sum(1 for row in reader if dict(zip(header, row, strict=True)))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{ROWS:,} rows per file, best of {ROUNDS} runs")
        print(f"{'file':<36}{'csv.reader rows/s':>20}{'datajob rows/s':>17}{'ratio':>8}")
        for name, quoted, newlines, pieces, multi_line in [
            ("plain, one piece", False, False, 1, False),
            ("plain, 8 pieces", False, False, 8, False),
            ("quoted fields, 8 pieces", True, False, 8, False),
            ("quoted newlines, one piece", True, True, 1, False),
            ("quoted newlines, 8 pieces, multiLine", True, True, 8, True),
        ]:
            path = Path(tmp) / f"{quoted}-{newlines}.csv"
            if not path.exists():
                write(path, quoted, newlines)
            base, expected = best(functools.partial(plain, path))
            mine, got = best(functools.partial(ours, path, pieces, multi_line))
            assert got == expected, (name, got, expected)
            print(f"{name:<36}{expected / base:>20,.0f}{got / mine:>17,.0f}{base / mine:>8.2f}")


if __name__ == "__main__":
    main()
