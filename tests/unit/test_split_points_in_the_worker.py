"""Where the worker's own reader stops when asked to split, and where a shard split off there begins: with
the real run_shard and committer. A stop at a piece's last callback (its last line crossing the piece's
end) leaves nothing to split and must not claim an early end; a CSV shard split after a stray quote (which
csv.reader reads as a literal, leaving the quote parity odd) must begin exactly where its parent stopped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from datajob_core.protocol import ShardTask
from datajob_core.shards import splitting
from datajob_core.shards.ledger import Ledger
from datajob_worker import processors, runtime


def _run(
    output: runtime.OutputDir,
    fmt: str,
    processor: dict[str, Any],
    shard: int,
    entry: dict[str, Any],
    *,
    stop: Any = None,
    multi_line: bool = False,
) -> runtime.Progress:
    def on_record(progress: runtime.Progress, state: object, count: int) -> None:
        if stop is not None and stop(progress):
            raise runtime.ShardSplitRequestedError

    context = runtime.ShardContext(fmt, processors.build(processor), output, on_record, multi_line=multi_line)
    return runtime.run_shard(ShardTask(shard=shard, attempt=1, input=entry), context)


def test_a_shard_asked_to_split_at_its_last_callback_commits_the_whole_shard_and_the_job_commits(
    tmp_path: Path,
) -> None:
    data = tmp_path / "in.txt"
    lines = [f"line {i} {'x' * (i % 17)}\n" for i in range(2000)]
    data.write_text("".join(lines))
    pieces = [{"path": str(data), "start": 0, "end": data.stat().st_size}]
    output = runtime.OutputDir(str(tmp_path / "out"), owner="job")
    grep = {"builtin": "grep", "options": {"pattern": ""}}
    ledger = Ledger.new(2, barriers=[1])
    ledger.assign("w0", 0.0)
    calls = iter(range(10**6))
    root = _run(output, "text", grep, 0, {"pieces": pieces}, stop=lambda p: next(calls) == 1)
    assert root.end is not None
    ledger.complete(0, "w0", 1, 1.0)
    split = splitting.split_rest(0, None, root.end, pieces, workers=3, least=1)
    assert split is not None
    made = ledger.split(0, split[0], split[1], 1.0)
    for number, child in enumerate(made):
        task = ledger.assign(f"w{number + 1}", 2.0)
        assert task is not None and task.shard == child
        entry = splitting.entry(ledger.cuts[child], pieces)
        last_end = int(entry["pieces"][-1]["end"])
        # Asked at the callback after its last line, which ends past its cut (the cut is mid-line).
        done = _run(output, "text", grep, child, entry, stop=lambda p, end=last_end: (p.offset or 0) >= end)
        assert done.end is None, "nothing is left: no early end to claim"
        ledger.complete(child, f"w{number + 1}", 1, 3.0)
    output.committer.commit_job(1, "".join, {}, failed=[], segments=splitting.segments(ledger.cuts))
    assert (tmp_path / "out" / "result").read_text() == "".join(lines)


def test_a_csv_shard_split_after_a_stray_quote_begins_exactly_where_its_parent_stopped(
    tmp_path: Path,
) -> None:
    data = tmp_path / "in.csv"
    rows = [
        "k,v\n",
        *(f"{i},v{i}\n" for i in range(10)),
        '10,ab"c\n',
        *(f"{i},v{i}\n" for i in range(11, 300)),
    ]
    data.write_text("".join(rows))
    pieces = [{"path": str(data), "start": 0, "end": data.stat().st_size}]
    transform = {"builtin": "transform"}
    whole = _run(
        runtime.OutputDir(str(tmp_path / "plain")), "csv", transform, 0, {"pieces": pieces}, multi_line=True
    )
    output = runtime.OutputDir(str(tmp_path / "split"))
    calls = iter(range(10**6))
    parent = _run(
        output, "csv", transform, 0, {"pieces": pieces}, stop=lambda p: next(calls) == 0, multi_line=True
    )
    split = splitting.split_rest(0, None, parent.end, pieces, workers=1, least=1)
    assert split is not None
    child = _run(output, "csv", transform, 1, splitting.entry(split[1][0], pieces), multi_line=True)
    assert parent.records + child.records == whole.records == 300

    def part(out: runtime.OutputDir, shard: int) -> bytes:
        record = out.committer.committed(shard) or {}
        return out.committer.store.read_bytes(record["objects"]["part"]["object"])

    plain = runtime.OutputDir(str(tmp_path / "plain"))
    assert part(output, 0) + part(output, 1) == part(plain, 0)
