"""Records/s of the word-count and aggregation processors (one worker) against plain Python doing the same.

Each figure is the best of several runs on the same generated file in the same process, so the ratio
measures the framework's overhead (reader, processor indirection, checkpoint bookkeeping), not the machine.
Also measures the cost of checkpointing at the default interval (30 s) and at a deliberately tight one.

Run: .venv/bin/python benchmarks/processor_throughput.py
"""

from __future__ import annotations

import csv
import random
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path

from datajob_core.protocol import ShardTask
from datajob_worker import processors
from datajob_worker.runtime import OutputDir, Progress, ShardContext, run_shard

ROUNDS = 5
WORDS = [f"w{n}" for n in range(500)]


def make_text(path: Path, lines: int) -> None:
    rng = random.Random(1)
    path.write_text("".join(" ".join(rng.choices(WORDS, k=10)) + "\n" for _ in range(lines)))


def make_csv(path: Path, lines: int) -> None:
    rng = random.Random(2)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["region", "amount"])
        for _ in range(lines):
            writer.writerow([rng.choice(["emea", "amer", "apac"]), f"{rng.uniform(1, 100):.2f}"])


def best(*fns: Callable[[], object]) -> list[float]:
    """Best time of each function; rounds are interleaved so machine noise hits all of them alike."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(ROUNDS):
        for fn, samples in zip(fns, times, strict=True):
            started = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - started)
    return [min(samples) for samples in times]


def checkpoint_seconds(text: Path) -> tuple[float, int]:
    """The time of one checkpoint of a whole file's word-count state, and how many keys it held."""
    state = processors.build({"builtin": "wordcount"}).init()
    for line in text.read_text().splitlines():
        state["counts"].update(line.split())
    with tempfile.TemporaryDirectory() as out:
        output = OutputDir(out)
        started = time.perf_counter()
        for seq in range(20):
            output.checkpoints.save(0, 1, seq, {"records": seq}, state)
        return (time.perf_counter() - started) / 20, len(state["counts"])


def framework(
    path: Path, fmt: str, spec: Mapping[str, object], checkpoint_every: float | None
) -> Callable[[], None]:
    size = path.stat().st_size

    def run() -> None:
        with tempfile.TemporaryDirectory() as out:
            output = OutputDir(out)
            last = [time.monotonic()]

            def on_record(progress: Progress, state: processors.State, count: int) -> None:
                # What the worker does per record: a clock read and an interval check; a save when due.
                now = time.monotonic()
                if checkpoint_every is not None and now - last[0] >= checkpoint_every:
                    progress.state_file = output.checkpoints.save(
                        0, 1, progress.records, progress.position(), state
                    )
                    last[0] = now

            task = ShardTask(
                shard=0, attempt=1, input={"pieces": [{"path": str(path), "start": 0, "end": size}]}
            )
            run_shard(task, ShardContext(fmt, processors.build(dict(spec)), output, on_record))

    return run


def baseline_wordcount(path: Path) -> Callable[[], None]:
    def run() -> None:
        counts: Counter[str] = Counter()
        with path.open() as handle:
            for line in handle:
                counts.update(line.split())
        "".join(f"{w}\t{n}\n" for w, n in sorted(counts.items()))

    return run


def baseline_aggregate(path: Path) -> Callable[[], None]:
    """Group by region: count, sum, min, max of amount, as the aggregate processor computes."""

    def run() -> None:
        groups: dict[str, list[float]] = {}
        with path.open(newline="") as handle:
            for row in csv.DictReader(handle):
                amount = float(row["amount"])
                entry = groups.setdefault(row["region"], [0, 0.0, amount, amount])
                entry[0] += 1
                entry[1] += amount
                entry[2] = min(entry[2], amount)
                entry[3] = max(entry[3], amount)

    return run


def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        text, table = Path(directory) / "words.txt", Path(directory) / "orders.csv"
        lines = 200_000
        make_text(text, lines)
        make_csv(table, lines)
        agg = {"builtin": "aggregate", "options": {"groupBy": "region", "value": "amount"}}
        cases = [
            ("wordcount", baseline_wordcount(text), framework(text, "text", {"builtin": "wordcount"}, 30.0)),
            ("aggregate (csv)", baseline_aggregate(table), framework(table, "csv", agg, 30.0)),
        ]
        print(f"{lines:,} records per file, best of {ROUNDS} runs, one worker")
        print(f"{'processor':18} {'baseline rec/s':>15} {'datajob rec/s':>15} {'datajob/baseline':>17}")
        for name, baseline, ours in cases:
            base_s, ours_s = best(baseline, ours)
            print(f"{name:18} {lines / base_s:15,.0f} {lines / ours_s:15,.0f} {base_s / ours_s:16.2f}x")
        wordcount = {"builtin": "wordcount"}
        no_ckpt, tight = best(
            framework(text, "text", wordcount, None), framework(text, "text", wordcount, 0.05)
        )
        one, keys = checkpoint_seconds(text)
        print(
            f"checkpoint cost, wordcount: one checkpoint ({keys:,} keys) {one * 1000:.2f} ms, i.e. "
            f"{one / 30:.4%} of worker time at the default 30 s interval; "
            f"every 50 ms end to end: {tight / no_ckpt - 1:+.1%} (vs no checkpoints)"
        )


if __name__ == "__main__":
    main()
