"""Word count over a generated corpus (default 10x the example's 36 MB): map-only + merge against map ->
shuffle -> reduce with R = 1, 4, 16, in local mode and (``--cluster``) on the test control plane, against a
plain single-process Python loop and PySpark ``local[2]`` (``textFile -> flatMap -> reduceByKey``) on the
same input in the same run. Every variant's counts are checked equal to the plain loop's.

Per run it prints wall seconds, records/s, bytes read per record (input), bytes written per record (what
the processes wrote to the filesystem: intermediate map output, parts, result, checkpoints) and the peak RSS
of the largest process (a worker, the driver or Spark's Python workers).

``--vocabulary N`` writes a corpus of N distinct words drawn uniformly instead of the example's Zipf-like
text (whose few thousand words fit any process): then the single-process merge must hold all N keys, which
is what the reduce stage is for, and the peak RSS column shows it.

Run: .venv/bin/python benchmarks/wordcount_reduce.py [--mb 360] [--workers 2] [--cluster] [--no-spark]
     [--vocabulary 2000000]
(PySpark: .venv/bin/pip install pyspark; it needs a Java runtime, e.g. Debian's default-jre-headless.)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
GENERATE = REPO / "examples" / "wordcount" / "generate.py"


@dataclass
class Run:
    name: str
    seconds: float
    written: int  # bytes written by the run's processes
    peak_rss: int  # bytes, the largest process
    counts: dict[str, int]


def children_usage() -> tuple[int, int]:
    """(bytes written, peak RSS) of all waited-for descendants so far (ru_oublock is in 512-byte blocks)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_oublock * 512, usage.ru_maxrss * 1024


def measured(name: str, argv: list[str], counts_of: Any, env: dict[str, str] | None = None) -> Run:
    """Runs ``argv`` in a fresh process tree. ru_maxrss of RUSAGE_CHILDREN is a maximum over all children
    ever waited for, so each run goes through its own short-lived parent that reports its own children."""
    probe = [
        sys.executable,
        "-c",
        "import json, resource, subprocess, sys, time; t = time.monotonic(); "
        "code = subprocess.call(sys.argv[1:]); s = time.monotonic() - t; "
        "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
        "print(json.dumps({'code': code, 'seconds': s, 'written': u.ru_oublock * 512, "
        "'rss': u.ru_maxrss * 1024}), file=sys.stderr)",
        *argv,
    ]
    done = subprocess.run(
        probe, check=False, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    report = json.loads(done.stderr.strip().splitlines()[-1])
    if report["code"] != 0:
        raise RuntimeError(f"{name} failed: {done.stderr[-2000:]}")
    return Run(name, report["seconds"], report["written"], report["rss"], counts_of())


def parse_counts(path: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in path.read_text().splitlines():
        word, _, n = line.rpartition("\t")
        counts[word] = int(n)
    return counts


PLAIN = """
import collections, glob, json, sys
counts = collections.Counter()
for path in sorted(glob.glob(sys.argv[1] + "/*.txt")):
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            counts.update(line.split())
json.dump(counts, open(sys.argv[2], "w"))
"""

SPARK = """
import json, operator, sys
from pyspark import SparkConf, SparkContext
sc = SparkContext(conf=SparkConf().setMaster("local[2]").setAppName("wordcount"))
sc.setLogLevel("ERROR")
pairs = sc.textFile(sys.argv[1]).flatMap(lambda line: line.split()).map(lambda w: (w, 1))
json.dump(dict(pairs.reduceByKey(operator.add).collect()), open(sys.argv[2], "w"))
sc.stop()
"""


def uniform_corpus(directory: Path, files: int, mb: float, vocabulary: int) -> None:
    """``files`` files of ``mb`` MB in total, 10 words per line drawn uniformly from ``vocabulary`` words."""
    rng = random.Random(7)
    directory.mkdir(parents=True)
    per_file = int(mb * 1e6 / files)
    for index in range(files):
        with (directory / f"corpus-{index:03d}.txt").open("w") as handle:
            written = 0
            while written < per_file:
                line = " ".join(f"k{rng.randrange(vocabulary)}" for _ in range(10)) + "\n"
                handle.write(line)
                written += len(line)


def job(data: Path, output: Path, workers: int, partitions: int) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "image": "datajob-worker:dev",
        "command": [sys.executable, "-m", "datajob_worker"],
        "input": {"uris": [f"{data}/*.txt"], "partitioning": {"mode": "size", "targetShardSize": "8Mi"}},
        "output": {"uri": str(output)},
        "processor": {"builtin": "wordcount"},
        "workers": workers,
        "checkpoint": {"intervalSeconds": 30},
    }
    if partitions:
        spec["reduce"] = {"partitions": partitions}
    name = f"wc-r{partitions}" if partitions else "wc-map-only"
    return {"apiVersion": "datajob.dev/v1alpha1", "kind": "DataJob", "metadata": {"name": name}, "spec": spec}


def local_runs(work: Path, data: Path, workers: int, variants: list[int]) -> list[Run]:
    runs = []
    for partitions in variants:
        output = work / f"out-local-r{partitions}"
        manifest = work / f"local-r{partitions}.yaml"
        manifest.write_text(yaml.safe_dump(job(data, output, workers, partitions)))
        label = f"local, R={partitions}" if partitions else "local, map-only + merge"
        argv = [sys.executable, "-m", "datajob_worker.cli", "run", str(manifest)]
        runs.append(measured(label, argv, lambda o=output: parse_counts(o / "result")))
        print(f"  {label}: {runs[-1].seconds:.1f} s", flush=True)
    return runs


def cluster_runs(work: Path, data: Path, workers: int, variants: list[int]) -> list[Run]:
    """The same jobs through the operator on the test control plane (workers are node-agent processes)."""
    from kubernetes import client  # noqa: PLC0415 - only --cluster needs the cluster stack

    from datajob_testenv.cluster import TestCluster  # noqa: PLC0415
    from datajob_testenv.datajobs import GROUP, PLURAL, VERSION  # noqa: PLC0415
    from datajob_testenv.kube import Kubectl  # noqa: PLC0415
    from datajob_testenv.nodes import AGENT_NODE  # noqa: PLC0415
    from datajob_testenv.operator_process import OperatorProcess, storage_access  # noqa: PLC0415
    from datajob_testenv.processes import wait_for  # noqa: PLC0415

    cluster = TestCluster(work / "cluster")
    cluster.start()
    operator = OperatorProcess(cluster.kubeconfig, cluster.directory / "logs", *storage_access(work))
    runs = []
    try:
        kubectl = Kubectl(cluster.kubeconfig)
        kubectl("apply", "--server-side", "-f", str(REPO / "crds" / "datajob.dev_datajobs.yaml"))
        kubectl.wait_established("datajobs.datajob.dev")
        operator.start()
        api = cluster.api_client()
        core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
        core.create_namespace({"metadata": {"name": "bench"}})
        wait_for(lambda: core.read_namespaced_service_account("default", "bench") is not None, 60, "SA")
        for partitions in variants:
            output = work / f"out-cluster-r{partitions}"
            manifest = job(data, output, workers, partitions)
            manifest["spec"]["nodeSelector"] = {"kubernetes.io/hostname": AGENT_NODE}
            manifest["spec"]["resources"] = {"cpu": "100m", "memory": "64Mi"}
            name = manifest["metadata"]["name"]
            started = time.monotonic()
            custom.create_namespaced_custom_object(GROUP, VERSION, "bench", PLURAL, manifest)

            def phase(name: str = name) -> str:
                job_: dict[str, Any] = custom.get_namespaced_custom_object(
                    GROUP, VERSION, "bench", PLURAL, name
                )
                return str((job_.get("status") or {}).get("phase"))

            wait_for(lambda: phase() in ("Succeeded", "Failed"), 3600, f"{name} to finish", interval=0.5)
            seconds = time.monotonic() - started
            if phase() != "Succeeded":
                raise RuntimeError(f"cluster run {name} failed")
            label = f"cluster, R={partitions}" if partitions else "cluster, map-only + merge"
            # Worker processes are the node agent's children: their I/O and RSS are not ours to read.
            runs.append(Run(label, seconds, 0, 0, parse_counts(output / "result")))
            print(f"  {label}: {seconds:.1f} s", flush=True)
    finally:
        operator.stop()
        cluster.stop()
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=360, help="corpus size (the example's is 36 MB)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--partitions", default="1,4,16", help="reduce partitions to try")
    parser.add_argument("--cluster", action="store_true", help="also run through the operator")
    parser.add_argument("--no-spark", action="store_true")
    parser.add_argument("--vocabulary", type=int, default=0, help="N distinct uniform words instead")
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="datajob-bench-reduce-"))
    data = work / "data"
    files = 24
    if not data.exists() and args.vocabulary:
        uniform_corpus(data, files, args.mb, args.vocabulary)
    if not data.exists():
        subprocess.run(
            [
                sys.executable,
                str(GENERATE),
                "--files",
                str(files),
                "--mb-per-file",
                str(args.mb / files),
                "--out",
                str(data),
            ],
            check=True,
        )
    size = sum(p.stat().st_size for p in data.glob("*.txt"))
    variants = [0] + [int(p) for p in args.partitions.split(",") if p]
    print(
        f"corpus: {size / 1e6:.0f} MB in {files} files; {args.workers} workers; work dir {work}", flush=True
    )

    runs = [
        measured(
            "plain Python loop",
            [sys.executable, "-c", PLAIN, str(data), str(work / "plain.json")],
            lambda: json.loads((work / "plain.json").read_text()),
        )
    ]
    print(f"  plain loop: {runs[0].seconds:.1f} s", flush=True)
    reference = runs[0].counts
    records = sum(1 for p in data.glob("*.txt") for _ in p.open("rb"))
    if not args.no_spark:
        env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
        runs.append(
            measured(
                "PySpark local[2]",
                [sys.executable, "-c", SPARK, str(data), str(work / "spark.json")],
                lambda: json.loads((work / "spark.json").read_text()),
                env=env,
            )
        )
        print(f"  spark: {runs[-1].seconds:.1f} s", flush=True)
    runs += local_runs(work, data, args.workers, variants)
    if args.cluster:
        runs += cluster_runs(work, data, args.workers, variants)

    base = runs[0].seconds
    print(f"\n{records:,} records, {size / records:.1f} input bytes/record")
    print(
        f"{'run':32} {'seconds':>8} {'vs plain':>9} {'records/s':>11} {'written B/rec':>14} {'peak RSS':>10} "
        f"{'equal':>6}"
    )
    for run in runs:
        written = f"{run.written / records:.2f}" if run.written else "-"
        rss = f"{run.peak_rss / 2**20:.0f} MiB" if run.peak_rss else "-"
        print(
            f"{run.name:32} {run.seconds:8.1f} {run.seconds / base:8.2f}x {records / run.seconds:11,.0f} "
            f"{written:>14} {rss:>10} {run.counts == reference!s:>6}"
        )
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if all(run.counts == reference for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
