"""Many small files: 50,000 one-line files against the same bytes in 24 files, both with ``size``
partitioning (small files packed into shards up to the target, Hadoop's CombineFileInputFormat), in one run.

Word count over both inputs; counts checked equal; each timed end to end (``datajob run`` process start to
result written), best of ``--repeat``. ``--per-file`` also times the 50,000 files with one shard per file
(``perFile``, what a job got before packing; minutes).

Run: .venv/bin/python benchmarks/small_files.py [--files 50000] [--workers 4] [--repeat 3] [--per-file]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from dispatch_local import best, datajob_argv, manifest
from wordcount_reduce import Run, measured, parse_counts

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]


def generate(root: Path, files: int) -> tuple[Path, Path]:
    """``files`` one-line files, and their lines concatenated into 24 files (the same bytes)."""
    small, large = root / "small", root / "large"
    small.mkdir()
    large.mkdir()
    lines = [f"{WORDS[n % 8]} {WORDS[n * 7 % 8]} {n % 97}\n" for n in range(files)]
    for n, line in enumerate(lines):
        (small / f"f-{n:06d}.txt").write_text(line)
    per = -(-files // 24)
    for k in range(24):
        (large / f"f-{k:02d}.txt").write_text("".join(lines[k * per : (k + 1) * per]))
    return small, large


def timed(
    work: Path, name: str, data: Path, workers: int, repeat: int, *, partitioning: dict[str, Any]
) -> Run:
    output = work / f"out-{name}"
    job = manifest(
        name,
        data,
        output,
        workers,
        input={"uris": [f"{data}/*.txt"], "partitioning": partitioning},
        checkpoint={"intervalSeconds": 30},
    )
    return best(
        repeat, lambda: measured(name, datajob_argv(work, job), lambda: parse_counts(output / "result"))
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=50_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--per-file", action="store_true", help="also time one shard per file (slow)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="small-files-") as tmp:
        work = Path(tmp)
        small, large = generate(work, args.files)
        size = sum(p.stat().st_size for p in large.iterdir())
        packed = {"mode": "size", "targetShardSize": "64Mi"}
        print(
            f"{args.files:,} one-line files ({size / 1e3:.0f} KB) vs the same bytes in 24 files, word count,"
        )
        print(f"{args.workers} workers, partitioning {packed}, best of {args.repeat}")
        runs = [
            timed(work, "few-files", large, args.workers, args.repeat, partitioning=packed),
            timed(work, "small-files", small, args.workers, args.repeat, partitioning=packed),
        ]
        if args.per_file:
            runs.append(
                timed(work, "small-files-per-file", small, args.workers, 1, partitioning={"mode": "perFile"})
            )
        base = runs[0]
        print(f"{'input':28} {'seconds':>8} {'vs 24 files':>12} {'equal':>6}")
        for run in runs:
            equal = run.counts == base.counts
            print(f"{run.name:28} {run.seconds:8.2f} {run.seconds / base.seconds:11.2f}x {equal!s:>6}")
        return 0 if all(run.counts == base.counts for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
