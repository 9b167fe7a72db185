"""Work re-done after losing a cluster mid-job: MultiKueue dispatches a DataJob (spec.output.resume) to one
of two worker clusters, that cluster is lost whole (API server, Kueue, operator, node and worker processes)
once --committed shards are committed, and the job finishes in the other from the shared object store.

    python benchmarks/cluster_loss.py                  # 3 runs, 6 files x 300 lines, 2 workers
    python benchmarks/cluster_loss.py --runs 5 --files 12 --lines 500 --workers 4

Each run starts its own clusters (datajob_testenv.multikueue) and MinIO. Every record the user's function
reads is tallied, so "re-read" is exact: records read by both clusters minus the job's records. It is set
against the records the lost cluster had committed (what spec.output.resume keeps; without it the second
cluster starts over and reads all of them again).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from datajob_testenv.cluster_loss import ClusterLoss, lose_mid_job, submit
from datajob_testenv.multikueue import MultiKueueClusters
from datajob_testenv.objectstore import ObjectStore


def one_run(args: argparse.Namespace, work: Path, index: int) -> ClusterLoss:
    store = ObjectStore(work / "minio")
    store.start()
    env = MultiKueueClusters(work / "clusters", work)
    started = time.monotonic()
    env.start()
    print(f"run {index}: clusters up in {time.monotonic() - started:.0f} s", flush=True)
    try:
        job = submit(
            env,
            store,
            work,
            "bench",
            f"loss-{index}",
            files=args.files,
            lines=args.lines,
            workers=args.workers,
            record_delay=args.delay,
        )
        loss = lose_mid_job(env, store, job, committed=args.committed)
    finally:
        env.stop()
        store.stop()
    assert loss.rerun == set(), f"committed shards ran again: {sorted(loss.rerun)}"
    assert loss.final["processed"]["records"] == job.records, loss.final["processed"]
    return loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--files", type=int, default=6)
    parser.add_argument("--lines", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--delay", type=float, default=0.01, help="seconds the user's function takes a record"
    )
    parser.add_argument("--committed", type=int, default=4, help="lose the cluster after this many shards")
    args = parser.parse_args()
    losses = []
    for index in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="cluster-loss-") as work:
            loss = one_run(args, Path(work), index)
        losses.append(loss)
        print(
            f"run {index}: lost {loss.lost} with {len(loss.committed_before)}/{loss.shards} shards "
            f"({loss.committed_records} records) committed, {loss.running_at_loss} in flight, "
            f"{loss.read_at_loss} records read; re-read {loss.re_read} records "
            f"= {loss.re_read / max(loss.committed_records, 1):.3f} of the committed records "
            f"({loss.re_read / loss.records:.3f} of the job's {loss.records}); re-dispatched in "
            f"{loss.redispatch_seconds:.1f} s, Succeeded {loss.finish_seconds:.1f} s after the loss; "
            "committed shards run again: 0",
            flush=True,
        )
    ratios = [loss.re_read / max(loss.committed_records, 1) for loss in losses]
    kept = [loss.committed_records for loss in losses]
    print(
        f"\nwork re-done after losing a cluster mid-job ({args.runs} runs): records re-read / committed "
        f"records median {statistics.median(ratios):.3f} (max {max(ratios):.3f}); without resume the "
        f"second cluster would re-read every committed record: 1.000 plus the same in-flight loss "
        f"(median {statistics.median(kept):.0f} records); re-dispatch median "
        f"{statistics.median(loss.redispatch_seconds for loss in losses):.1f} s"
    )


if __name__ == "__main__":
    main()
