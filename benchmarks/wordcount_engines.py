"""Word count end to end: `datajob run` of examples/wordcount/datajob.yaml (local mode, N workers) against
Polars and DuckDB with N threads, on the same text files in the same run, outputs checked equal.

The corpus is the example's generator output (about 36 MB), copied until it reaches --mb (the counts just
scale). Every contender runs as its own process (start-up included, as for `datajob run`), rounds
interleaved; the figure is the median. Polars is not a dependency of datajob (`pip install polars`); a
missing engine is reported and skipped.

Run: .venv/bin/python benchmarks/wordcount_engines.py [--mb 300] [--workers 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "wordcount"

POLARS = """
import json, sys, polars as pl
words = (pl.scan_csv(sys.argv[1], has_header=False, new_columns=["line"], separator="\\x01",
                     quote_char=None)
         .select(pl.col("line").str.split(" ").explode().alias("word"))
         .filter(pl.col("word") != "").group_by("word").len().collect())
print(json.dumps(dict(zip(words["word"].to_list(), words["len"].to_list()))))
"""
DUCKDB = """
import json, sys, duckdb
con = duckdb.connect()
con.execute(f"SET threads = {int(sys.argv[2])}")
con.execute("SET enable_progress_bar = false")
rows = con.execute(
    "SELECT word, count(*) FROM (SELECT unnest(string_split(line, ' ')) AS word FROM read_csv(?, "
    "columns = {'line': 'VARCHAR'}, delim = '\\x01', quote = '', escape = '', header = false)) "
    "WHERE word <> '' GROUP BY word", [sys.argv[1]]).fetchall()
print(json.dumps(dict(rows)))
"""


def corpus(directory: Path, megabytes: int) -> int:
    seed = directory.parent / "seed"
    subprocess.run(
        [sys.executable, str(EXAMPLE / "generate.py"), "--out", str(seed)], check=True, capture_output=True
    )
    directory.mkdir()
    size, copy = 0, 0
    sources = sorted(seed.glob("*.txt"))
    while size < megabytes * 1e6:
        source = sources[copy % len(sources)]
        shutil.copy(source, directory / f"{copy:04d}-{source.name}")
        size += source.stat().st_size
        copy += 1
    return size


def manifest(work: Path, data: Path, workers: int, name: str) -> Path:
    job = yaml.safe_load((EXAMPLE / "datajob.yaml").read_text())
    job["spec"]["input"]["uris"] = [f"{data}/*.txt"]
    job["spec"]["output"] = {"uri": str(work / f"{name}-out"), "overwrite": True}
    job["spec"]["workers"] = workers
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def timed(argv: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    return time.perf_counter() - started, done.stdout


def counts_of_result(path: Path) -> dict[str, int]:
    counts = {}
    for line in path.read_text().splitlines():
        word, _, count = line.rpartition("\t")
        counts[word] = int(count)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="datajob-wordcount-") as directory:
        work = Path(directory)
        size = corpus(work / "data", args.mb)
        glob = str(work / "data" / "*.txt")
        datajob = [str(Path(sys.executable).with_name("datajob")), "run"]
        contenders: dict[str, list[str]] = {
            "datajob run": [*datajob, str(manifest(work, work / "data", args.workers, "wc"))]
        }
        (work / "tiny").mkdir()
        (work / "tiny" / "a.txt").write_text("alpha beta\n" * 100)
        tiny = [*datajob, str(manifest(work, work / "tiny", args.workers, "tiny"))]
        if importlib.util.find_spec("polars"):
            contenders["Polars"] = [
                "env",
                f"POLARS_MAX_THREADS={args.workers}",
                sys.executable,
                "-c",
                POLARS,
                glob,
            ]
        contenders["DuckDB"] = [sys.executable, "-c", DUCKDB, glob, str(args.workers)]
        times: dict[str, list[float]] = {name: [] for name in contenders}
        fixed = statistics.median(timed(tiny)[0] for _ in range(args.rounds))
        results: dict[str, dict[str, int]] = {}
        for _ in range(args.rounds):
            for name, argv in contenders.items():
                seconds, stdout = timed(argv)
                times[name].append(seconds)
                results[name] = (
                    counts_of_result(work / "wc-out" / "result")
                    if name == "datajob run"
                    else json.loads(stdout)
                )
        words = sum(results["datajob run"].values())
        print(
            f"word count over {size / 1e6:.0f} MB of text ({words:,} words), {args.workers} workers / "
            f"threads, median of {args.rounds} interleaved runs"
        )
        if "Polars" not in contenders:
            print("not installed, skipped: Polars (pip install polars)")
        best = min(statistics.median(times[n]) for n in contenders if n != "datajob run")
        for name in contenders:
            median = statistics.median(times[name])
            agree = results[name] == results["datajob run"]
            print(
                f"{name:12} {median:7.2f} s  {size / 1e6 / median / args.workers:8.1f} MB/s per core  "
                f"{median / best:6.2f}x the faster engine  {'output equal' if agree else 'OUTPUT DIFFERS'}"
            )
        total = statistics.median(times["datajob run"])
        print(
            f"fixed cost of `datajob run` (a 1 KB job): {fixed:.2f} s, {fixed / total:.0%} of its time here"
        )
        if any(results[n] != results["datajob run"] for n in contenders):
            raise SystemExit("outputs differ")


if __name__ == "__main__":
    main()
