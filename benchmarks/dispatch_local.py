"""Local mode dispatch cost: the example word count against multiprocessing.Pool and PySpark with the same
number of processes, and a job of many tiny shards (coordination cost per shard), in one run.

1. The example corpus (examples/wordcount, 36 MB, 48 shards of 1 MiB): a plain single-process loop,
   ``multiprocessing.Pool(N)`` over the files, PySpark ``local[N]`` and ``datajob run`` with N workers.
   Every variant's counts are checked equal to the plain loop's; each is timed end to end (process start
   to output written), best of ``--repeat``.
2. 1,000 ten-line files (one shard each) on 4 workers: shards/s, end to end.
3. ``--failures``: the word count with a worker SIGKILLed every few seconds, with time-based and
   record-based checkpoint intervals: records read by all attempts / records in the input.

Run: .venv/bin/python benchmarks/dispatch_local.py [--workers 4] [--repeat 3] [--no-spark] [--failures]
(PySpark: .venv/bin/pip install pyspark; it needs a Java runtime, e.g. Debian's default-jre-headless.)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from wordcount_reduce import PLAIN, Run, measured, parse_counts

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "examples" / "wordcount" / "data"

POOL = """
import collections, glob, json, multiprocessing, sys

def count(path):
    counts = collections.Counter()
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            counts.update(line.split())
    return counts

if __name__ == "__main__":
    total = collections.Counter()
    with multiprocessing.Pool(int(sys.argv[3])) as pool:
        for counts in pool.imap_unordered(count, sorted(glob.glob(sys.argv[1] + "/*.txt"))):
            total.update(counts)
    json.dump(total, open(sys.argv[2], "w"))
"""

SPARK = """
import json, operator, sys
from pyspark import SparkConf, SparkContext
conf = SparkConf().setMaster(f"local[{sys.argv[3]}]").setAppName("wordcount")
sc = SparkContext(conf=conf)
sc.setLogLevel("ERROR")
pairs = sc.textFile(sys.argv[1]).flatMap(lambda line: line.split()).map(lambda w: (w, 1))
json.dump(dict(pairs.reduceByKey(operator.add).collect()), open(sys.argv[2], "w"))
sc.stop()
"""


def manifest(name: str, data: Path, output: Path, workers: int, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "image": "datajob-worker:dev",
        "input": {"uris": [f"{data}/*.txt"]},
        "output": {"uri": str(output)},
        "processor": {"builtin": "wordcount"},
        "workers": workers,
        **spec,
    }
    return {"apiVersion": "datajob.dev/v1alpha1", "kind": "DataJob", "metadata": {"name": name}, "spec": body}


def datajob_argv(work: Path, job: dict[str, Any], *extra: str) -> list[str]:
    path = work / f"{job['metadata']['name']}.yaml"
    path.write_text(yaml.safe_dump(job))
    shutil.rmtree(job["spec"]["output"]["uri"], ignore_errors=True)
    return [sys.executable, "-m", "datajob_worker.cli", "run", str(path), *extra]


def best(repeat: int, run: Callable[[], Run]) -> Run:
    return min((run() for _ in range(repeat)), key=lambda r: r.seconds)


def wordcount(work: Path, workers: int, repeat: int, spark: bool) -> bool:
    if not (CORPUS / "corpus-000.txt").exists():
        subprocess.run([sys.executable, str(REPO / "examples" / "wordcount" / "generate.py")], check=True)
    size = sum(p.stat().st_size for p in CORPUS.glob("*.txt"))
    print(f"word count: {size / 1e6:.0f} MB in {len(list(CORPUS.glob('*.txt')))} files, {workers} processes")

    def script(name: str, code: str, *args: str, env: dict[str, str] | None = None) -> Run:
        """A baseline: a Python script that writes its counts as JSON to ``work/<name>.json``."""
        out = work / f"{name}.json"
        argv = [sys.executable, "-c", code, str(CORPUS), str(out), *args]
        return measured(name, argv, lambda: json.loads(out.read_text()), env=env)

    plain = best(repeat, lambda: script("plain loop, 1 process", PLAIN))
    runs = [plain, best(repeat, lambda: script(f"multiprocessing.Pool({workers})", POOL, str(workers)))]
    if spark and importlib.util.find_spec("pyspark") and shutil.which("java"):
        env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
        runs.append(best(repeat, lambda: script(f"PySpark local[{workers}]", SPARK, str(workers), env=env)))
    else:
        print("  (PySpark or java not installed: skipped)")
    output = work / "out-wordcount"
    job = manifest(
        "wordcount",
        CORPUS,
        output,
        workers,
        input={"uris": [f"{CORPUS}/*.txt"], "partitioning": {"mode": "size", "targetShardSize": "1Mi"}},
        checkpoint={"intervalSeconds": 2},
    )
    runs.append(
        best(
            repeat,
            lambda: measured(
                f"datajob run, {workers} workers",
                datajob_argv(work, job),
                lambda: parse_counts(output / "result"),
            ),
        )
    )
    pool = runs[1].seconds
    print(f"{'run':30} {'seconds':>8} {'vs Pool':>8} {'equal':>6}")
    for run in runs:
        print(
            f"{run.name:30} {run.seconds:8.2f} {run.seconds / pool:7.2f}x {run.counts == plain.counts!s:>6}"
        )
    return all(run.counts == plain.counts for run in runs)


def tiny_shards(work: Path, shards: int, lines: int, workers: int, repeat: int) -> bool:
    data = work / "tiny"
    if not data.exists():
        data.mkdir()
        for index in range(shards):
            text = "".join(f"line {index} {k} of the tiny shard benchmark\n" for k in range(lines))
            (data / f"part-{index:05d}.txt").write_text(text)
    output = work / "out-tiny"
    job = manifest("tiny", data, output, workers, checkpoint={"intervalSeconds": 30})
    expected = shards * lines
    run = best(
        repeat,
        lambda: measured(
            f"{shards} shards x {lines} lines",
            datajob_argv(work, job),
            lambda: parse_counts(output / "result"),
        ),
    )
    ok = run.counts.get("line") == expected
    print(
        f"\n{shards:,} shards of {lines} lines on {workers} workers: {run.seconds:.2f} s end to end, "
        f"{shards / run.seconds:,.0f} shards/s (counts correct: {ok})"
    )
    return ok


SUMMARY = re.compile(r"([\d,]+) records read by all attempts")


def failures(work: Path, workers: int) -> bool:
    """Records read (by every attempt, redone work included) over the input's records, under kills."""
    records = sum(1 for p in CORPUS.glob("*.txt") for _ in p.open("rb"))
    print(f"\nfailure overhead: SIGKILL a worker about every second; {records:,} input records")
    print(f"{'checkpoint interval':28} {'seconds':>8} {'kills':>6} {'read/input':>11}")
    ok = True
    intervals: list[tuple[str, dict[str, Any]]] = [
        ("intervalRecords: 2000", {"intervalRecords": 2000, "intervalSeconds": 30}),
        ("intervalRecords: 5000", {"intervalRecords": 5000, "intervalSeconds": 30}),
        ("intervalRecords: 20000", {"intervalRecords": 20000, "intervalSeconds": 30}),
        ("intervalSeconds: 1", {"intervalSeconds": 1}),
        ("intervalSeconds: 2", {"intervalSeconds": 2}),
        ("intervalSeconds: 5", {"intervalSeconds": 5}),
    ]
    for label, checkpoint in intervals:
        output = work / "out-failures"
        job = manifest(
            "failures",
            CORPUS,
            output,
            workers,
            input={"uris": [f"{CORPUS}/*.txt"], "partitioning": {"mode": "size", "targetShardSize": "1Mi"}},
            checkpoint=checkpoint,
            retryPolicy={"maxShardAttempts": 20, "backoff": {"initialSeconds": 1, "maxSeconds": 1}},
            # Slow enough that kills land mid-shard, as they would in a long job.
            processor={"builtin": "wordcount", "options": {"delayPerRecord": "0.00005"}},
        )
        started = time.monotonic()
        done = subprocess.run(
            datajob_argv(work, job, "--kill-every", "1", "--seed", "1"),
            capture_output=True,
            text=True,
            check=False,
        )
        seconds = time.monotonic() - started
        found = SUMMARY.search(done.stderr)
        kills = re.search(r"(\d+) injected", done.stderr)
        if done.returncode != 0:
            print(f"{label}: failed\n{done.stderr[-2000:]}")
            ok = False
            continue
        read = int(found.group(1).replace(",", "")) if found else records  # no line: nothing read twice
        print(f"{label:28} {seconds:8.1f} {kills.group(1) if kills else '0':>6} {read / records:10.3f}x")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-spark", action="store_true")
    parser.add_argument("--failures", action="store_true", help="also measure the failure overhead")
    parser.add_argument("--only", choices=["wordcount", "tiny", "failures"], default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="datajob-bench-dispatch-"))
    ok = True
    try:
        if args.only in (None, "wordcount"):
            ok &= wordcount(work, args.workers, args.repeat, not args.no_spark)
        if args.only in (None, "tiny"):
            ok &= tiny_shards(work, 1000, 10, 4, args.repeat)
        if args.failures or args.only == "failures":
            ok &= failures(work, args.workers)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
