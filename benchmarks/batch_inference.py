"""Batch inference: the inference example (examples/inference, a scikit-learn model scoring payments)
through `datajob run` with batchSize 1 against batchSize 256, in the same run on the same data, and the
model scoring everything in one call in this process (the ceiling: no framework, no parsing).

Each figure is the median of interleaved runs; the outputs are checked equal (scores to 1e-9 relative).

Run: .venv/bin/python benchmarks/batch_inference.py [--records 100000] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import joblib  # type: ignore[import-untyped]
import numpy as np
import yaml

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "inference"
FEATURES = ["amount", "hour", "items", "foreign", "new_device"]
ROUNDS = 3


def manifest(work: Path, batch: int, workers: int) -> Path:
    job = yaml.safe_load((EXAMPLE / "datajob.yaml").read_text())
    job["spec"]["input"]["uris"] = [str(work / "data" / "*.jsonl")]
    job["spec"]["output"]["uri"] = str(work / f"out-{batch}")
    job["spec"]["processor"]["batchSize"] = batch
    job["spec"]["processor"]["options"]["model"] = str(work / "data" / "model.joblib")
    job["spec"]["workers"] = workers
    path = work / f"batch-{batch}.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def run_job(path: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(EXAMPLE)}
    datajob = Path(sys.executable).parent / "datajob"
    started = time.perf_counter()
    subprocess.run(
        [str(datajob), "run", str(path)],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def in_process(work: Path) -> float:
    started = time.perf_counter()
    model = joblib.load(work / "data" / "model.joblib")
    rows = [json.loads(line) for f in sorted((work / "data").glob("*.jsonl")) for line in f.open()]
    model.predict_proba(np.array([[float(r[n]) for n in FEATURES] for r in rows]))
    return time.perf_counter() - started


def scores(output: Path) -> dict[int, float]:
    return {row["id"]: row["score"] for row in map(json.loads, (output / "result").open())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=100000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        files = 4
        subprocess.run(
            [
                *(sys.executable, str(EXAMPLE / "generate.py"), "--out", str(work / "data")),
                *("--files", str(files), "--records-per-file", str(args.records // files)),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        jobs = {batch: manifest(work, batch, args.workers) for batch in (1, 256)}
        times: dict[str, list[float]] = {"batch 1": [], "batch 256": [], "one call": []}
        for _ in range(ROUNDS):
            times["batch 1"].append(run_job(jobs[1]))
            times["batch 256"].append(run_job(jobs[256]))
            times["one call"].append(in_process(work))
        one, many = scores(work / "out-1"), scores(work / "out-256")
        assert one.keys() == many.keys() and len(one) == args.records
        assert all(math.isclose(one[k], many[k], rel_tol=1e-9, abs_tol=1e-12) for k in one)
        print(f"batch inference: {args.records:,} payments, {args.workers} workers, median of {ROUNDS}")
        print(f"{'':44} {'seconds':>8} {'records/s':>12} {'vs batch 1':>10}")
        base = statistics.median(times["batch 1"])
        labels = {
            "batch 1": "datajob run, batchSize 1",
            "batch 256": "datajob run, batchSize 256",
            "one call": "predict_proba on all rows in one call (ceiling)",
        }
        for key, label in labels.items():
            seconds = statistics.median(times[key])
            print(f"{label:44} {seconds:8.2f} {args.records / seconds:12,.0f} {base / seconds:9.1f}x")


if __name__ == "__main__":
    main()
