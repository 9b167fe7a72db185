"""Continuous and incremental runs in local mode, on POSIX and on MinIO.

    python benchmarks/continuous.py                      # both stores, the defaults below
    python benchmarks/continuous.py --store posix --rate 20 --seconds 60 --kill-every 3

1. Lag: files of --size bytes arrive at --rate per second for --seconds while a continuous word count runs
   (with a worker SIGKILLed about every --kill-every seconds). Lag is the time from a file's arrival (its
   upload finished) to the commit entry of the batch that published it; p50/p99/max over every file. The
   merged result is checked against an independent count of what was written: no file lost or counted twice.
2. Incremental rerun: a full incremental run over --files files, then 1 % more files and a rerun, and a
   rerun with nothing new (the fixed start-up); the rerun's time as a fraction of the full run's.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import io
import os
import random
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from datajob_core.cluster.reconciler import Phase
from datajob_core.data import increments
from datajob_core.data.locations import StorageConfig
from datajob_core.storage.batch_log import BatchLog
from datajob_core.storage.stores import Store
from datajob_testenv.objectstore import ObjectStore
from datajob_worker.incremental_runner import IncrementalRun

WORDS = [f"w{n}" for n in range(500)]


def text(rng: random.Random, size: int) -> bytes:
    out, length = [], 0
    while length < size:
        line = " ".join(rng.choice(WORDS) for _ in range(8)) + "\n"
        out.append(line)
        length += len(line)
    return "".join(out).encode()


class Place:
    def __init__(self, kind: str, work: Path, server: ObjectStore | None) -> None:
        self.kind, self.work = kind, work
        if server is None:
            (work / "in").mkdir(parents=True)
            self.input, self.output, self.storage = str(work / "in/*.txt"), str(work / "out"), None
            self.store = Store(self.output)
        else:
            work.mkdir(parents=True)
            bucket = f"bench-{int(time.time() * 1000)}"
            server.filesystem().mkdir(bucket)
            self.server, self.bucket = server, bucket
            self.input, self.output = f"s3://{bucket}/in/*.txt", f"s3://{bucket}/out"
            self.storage = server.storage_spec()
            self.store = Store(self.output, StorageConfig.from_spec(self.storage), server.credentials)

    def put(self, name: str, data: bytes) -> None:
        if self.kind == "posix":
            scratch = self.work / f".{name}"
            scratch.write_bytes(data)
            scratch.rename(self.work / "in" / name)
        else:
            self.server.filesystem().pipe(f"{self.bucket}/in/{name}", data)

    def run(self, mode: str, **options: Any) -> tuple[IncrementalRun, float]:
        spec: dict[str, Any] = {
            "image": "local",
            "input": {
                "uris": [self.input],
                "incremental": True,
                "partitioning": {"mode": "size", "targetShardSize": "8Mi"},
            },
            "output": {"uri": self.output},
            "workers": 2,
            "checkpoint": {"intervalSeconds": 1},
            "retryPolicy": {"maxShardAttempts": 20, "backoff": {"initialSeconds": 1, "maxSeconds": 1}},
        }
        if mode == "Continuous":
            spec["mode"] = "Continuous"
            spec["continuous"] = {"pollSeconds": 1, "maxBatchObjects": 1000}
        if self.storage:
            spec["storage"] = self.storage
        manifest = {"apiVersion": "datajob.dev/v1alpha1", "kind": "DataJob", "metadata": {"name": "bench"}}
        manifest["spec"] = spec
        (self.work / "job.yaml").write_text(yaml.safe_dump(manifest))
        run = IncrementalRun(manifest, self.work, out=io.StringIO(), **options)
        started = time.monotonic()
        assert run.run() is Phase.SUCCEEDED
        return run, time.monotonic() - started


def counts(blobs: list[bytes]) -> dict[str, int]:
    found: collections.Counter[str] = collections.Counter()
    for blob in blobs:
        found.update(blob.decode().split())
    return dict(found)


def result(store: Store) -> dict[str, int]:
    return {w: int(c) for w, c in (line.split("\t") for line in store.read_text("result").splitlines())}


def lag(place: Place, rate: float, seconds: float, size: int, kill_every: float | None) -> None:
    rng = random.Random(5)
    blobs = [text(rng, size) for _ in range(int(rate * seconds))]  # made before: the rate is the uploads'
    arrived: dict[str, float] = {}

    def upload(number: int) -> None:
        name = f"f{number:06d}.txt"
        place.put(name, blobs[number])
        arrived[name] = time.time()  # its upload finished: from here it can be listed

    def arrive() -> None:
        start = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(4) as uploads:
            for number in range(len(blobs)):
                time.sleep(max(start + number / rate - time.monotonic(), 0.0))
                uploads.submit(upload, number)

    feeder = threading.Thread(target=arrive)
    feeder.start()
    run, _ = place.run("Continuous", kill_every=kill_every, seed=2, stop_when_idle=5.0)
    feeder.join()
    state = BatchLog(place.store, run.owner).read()
    lags = [
        entry["committedAt"] - arrived[Path(str(o["path"])).name]
        for entry in state.commits.values()
        for o in entry["objects"]
    ]
    taken = [str(o["path"]) for plan in state.plans.values() for o in plan]
    exact = result(place.store) == counts(blobs) and len(taken) == len(set(taken)) == len(blobs)
    p50, p99 = increments.percentile(lags, 0.5), increments.percentile(lags, 0.99)
    print(
        f"{place.kind:5} lag: {len(blobs)} files of {size // 1000} KB at {rate:g}/s, kills every "
        f"{kill_every or '-'} s: {len(state.commits)} batches, lag p50 {p50:.2f} s, p99 {p99:.2f} s, "
        f"max {max(lags):.2f} s; every file counted exactly once: {exact}",
        flush=True,
    )


def rerun(place: Place, files: int, size: int) -> None:
    rng = random.Random(9)
    for number in range(files):
        place.put(f"f{number:06d}.txt", text(rng, size))
    _, full = place.run("Batch")
    for number in range(files, files + max(files // 100, 1)):
        place.put(f"f{number:06d}.txt", text(rng, size))
    _, again = place.run("Batch")
    _, nothing = place.run("Batch")
    place.put("tiny.txt", b"w0\n")
    _, startup = place.run("Batch")  # a batch of one one-line file: the fixed cost of any batch
    print(
        f"{place.kind:5} incremental rerun: full run over {files} files {full:.2f} s; after adding 1 %: "
        f"{again:.2f} s = {again / full:.1%} of the full run; a batch of one tiny file (the fixed start-up) "
        f"{startup:.2f} s; rerun minus start-up {max(again - startup, 0) / full:.1%}; "
        f"nothing new {nothing:.2f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--store", choices=["posix", "s3", "both"], default="both")
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--kill-every", type=float, default=3.0)
    parser.add_argument("--files", type=int, default=400)
    parser.add_argument("--only", choices=["lag", "rerun"], help="run one of the two parts")
    args = parser.parse_args()
    kinds = ["posix", "s3"] if args.store == "both" else [args.store]
    for kind in kinds:
        work = Path(tempfile.mkdtemp(prefix=f"datajob-continuous-{kind}-"))
        server = None
        if kind == "s3":
            (work / "minio").mkdir()
            server = ObjectStore(work / "minio")
            server.start()
            os.environ.update(server.credentials)  # local mode: the user's own credentials
            os.environ["XDG_CACHE_HOME"] = str(work / "cache")
        try:
            if args.only != "rerun":
                place = Place(kind, work / "lag", server)
                lag(place, args.rate, args.seconds, args.size, args.kill_every or None)
            if args.only != "lag":
                rerun(Place(kind, work / "rerun", server), args.files, args.size)
        finally:
            if server is not None:
                server.stop()
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
