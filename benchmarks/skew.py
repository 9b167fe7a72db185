"""Uneven work in local mode: a job's time when one worker is slow, with and without speculation, against
the same job on even workers, in one run. Also one input file 10x the others.

(b) slow worker: 24 files of 500 records, 4 workers, a function processor that sleeps 2 ms a record (so
    the figures do not depend on the 2-core machine's CPU), 10 ms on slot 0's first worker (5x slower, as
    on a throttled node). Timed: even workers; slow worker, speculation off; slow worker, speculation on
    (Spark's quantile 0.75 and multiplier 1.5, minRuntimeSeconds 1 because these shards take 1-5 s).
(a) skewed input: 23 files of 500 records and one of 5,000, even workers: perFile (the big file is one
    long shard), and size partitioning (the big file cut into shards of the others' size).
Every variant's result is checked equal to the even run's. Best of ``--repeat``.

With splitting (spec.splitting, minRemainder 2Ki for these small shards) the straggling shard's rest is
split among idle workers: (b) and (a) are also timed with speculation and splitting both on.

Run: .venv/bin/python benchmarks/skew.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from dispatch_local import datajob_argv, manifest

SLEEPY = """
import os, time
SLOW = os.environ.get("DATAJOB_POD", "") in os.environ.get("SLOW_PODS", "").split(",")

def process(record):
    time.sleep(0.010 if SLOW else 0.002)
    return record
"""


def write_input(directory: Path, sizes: list[int]) -> None:
    directory.mkdir(parents=True)
    for n, lines in enumerate(sizes):
        (directory / f"f{n:02}.txt").write_text("".join(f"file {n} record {i}\n" for i in range(lines)))


def run(work: Path, name: str, data: Path, *, slow: str = "", **spec: Any) -> tuple[float, bytes, str]:
    output = work / f"out-{name}"
    # Every variant is job "skew", so slot 0's first pod is always skew-0-1.
    job = manifest(
        "skew",
        data,
        output,
        4,
        processor={"function": "sleepy:process"},
        checkpoint={"intervalSeconds": 1},
        **spec,
    )
    argv = datajob_argv(work, job)
    env = {
        **os.environ,
        "PYTHONPATH": f"{work}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "SLOW_PODS": slow,
    }
    started = time.monotonic()
    done = subprocess.run(
        argv,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    seconds = time.monotonic() - started
    lines = done.stderr.splitlines()
    summary = next((line for line in lines if line.startswith("speculation:")), "")
    splits = sum(1 for line in lines if line.startswith("ShardSplit:"))
    summary += f"{'; ' if summary else ''}{splits} split(s)" if splits else ""
    return seconds, (output / "result").read_bytes(), summary


def best(repeat: int, *args: Any, **kwargs: Any) -> tuple[float, bytes, str]:
    return min((run(*args, **kwargs) for _ in range(repeat)), key=lambda r: r[0])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="skew-") as tmp:
        work = Path(tmp)
        (work / "sleepy.py").write_text(SLEEPY)
        even, skewed = work / "even", work / "skewed"
        write_input(even, [500] * 24)
        write_input(skewed, [500] * 23 + [5000])
        speculation = {"enabled": True, "minRuntimeSeconds": 1}
        # These shards are ~10 KB (the default minRemainder, 8Mi, is for real shards of 64Mi or more).
        splitting = {"enabled": True, "minRemainder": "2Ki"}
        base = best(args.repeat, work, "even", even)
        rows = [
            ("(b) even workers", base),
            (
                "(b) slot 0 5x slower, speculation off",
                best(args.repeat, work, "slow-off", even, slow="skew-0-1"),
            ),
            (
                "(b) slot 0 5x slower, speculation on",
                best(args.repeat, work, "slow-on", even, slow="skew-0-1", speculation=speculation),
            ),
            (
                "(b) slot 0 5x slower, speculation and splitting",
                best(
                    args.repeat,
                    work,
                    "slow-both",
                    even,
                    slow="skew-0-1",
                    speculation=speculation,
                    splitting=splitting,
                ),
            ),
        ]
        (work / "even-33").mkdir()
        for n in range(33):  # the skewed input's records, in even files
            (work / "even-33" / f"f{n:02}.txt").write_text(
                "".join(f"file {n} record {i}\n" for i in range(500))
            )
        size = {"mode": "size", "targetShardSize": str((even / "f00.txt").stat().st_size)}
        skew_rows = [
            (
                "(a) 33 even files (the same number of records)",
                best(args.repeat, work, "even-33", work / "even-33"),
            ),
            ("(a) one file 10x, perFile", best(args.repeat, work, "skew-perfile", skewed)),
            (
                "(a) one file 10x, perFile, speculation and splitting",
                best(
                    args.repeat,
                    work,
                    "skew-split",
                    skewed,
                    speculation=speculation,
                    splitting=splitting,
                ),
            ),
            (
                "(a) one file 10x, size partitioning",
                best(
                    args.repeat,
                    work,
                    "skew-size",
                    skewed,
                    input={"uris": [f"{skewed}/*.txt"], "partitioning": size},
                ),
            ),
        ]
        print(f"4 workers, 2 ms a record, best of {args.repeat}")
        print(f"{'run':48} {'seconds':>8} {'vs even':>8}  equal  speculation")
        ok = True
        for label, (seconds, result, summary) in rows:
            equal = result == base[1]
            ok &= equal
            print(f"{label:48} {seconds:8.2f} {seconds / base[0]:7.2f}x  {equal!s:5}  {summary}")
        skew_base = skew_rows[0][1][0]
        expected = skew_rows[1][1][1]
        for label, (seconds, result, _) in skew_rows:
            equal = result == expected or label.startswith("(a) 33")
            ok &= equal
            print(f"{label:48} {seconds:8.2f} {seconds / skew_base:7.2f}x  {equal!s:5}")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
