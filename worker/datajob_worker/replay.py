"""``datajob run MANIFEST --shard N``: replay one shard of a job on this machine, for debugging.

The shard is planned exactly as the operator plans it (the same planner over the input as it is listed now:
if files were added or removed since the job started, shard numbers may differ), then run in
this process, so a debugger, ``print`` and tracebacks work, with the job's processor, format, encoding and
bad-record policy. Its output goes to a scratch directory, never into the job's output. ``--from-checkpoint``
starts where the job's newest checkpoint of that shard is (read from the job's output, which must be
reachable from here: a shared path, or s3:// with credentials in the environment).
"""

from __future__ import annotations

import sys
import time
import traceback
from pathlib import Path
from typing import Any, TextIO

from datajob_core.data.planning import plan_shards
from datajob_core.protocol import ShardTask
from datajob_core.storage.checkpoint_store import CheckpointStore
from datajob_core.storage.inputs import list_inputs
from datajob_core.storage.stores import Store

from . import processors, readers, runtime
from .local_runner import LocalRun


def replay_shard(
    manifest: dict[str, Any],
    base: Path,
    shard: int,
    *,
    output: Path | None = None,
    from_checkpoint: bool = False,
    out: TextIO | None = None,
) -> int:
    """Runs shard ``shard``; 0 if it committed in the scratch output, 1 if it failed (traceback printed)."""
    out = out or sys.stderr  # looked up now: a default bound at import would keep an old stream
    job = LocalRun(manifest, base, out=out)  # validates and resolves the manifest as `datajob run` does
    spec = job.spec
    if (spec.get("processor") or {}).get("exec"):
        raise ValueError("--shard replays builtin and function processors; processor.exec is not supported")
    readers.use_storage(job.storage)
    plan = plan_shards(
        list_inputs(spec["input"]["uris"], job.storage), spec["input"].get("partitioning") or {}
    )
    if not 0 <= shard < len(plan):
        raise ValueError(
            f"--shard {shard}: the job has {len(plan)} map shard(s), numbered 0 to {len(plan) - 1}"
        )
    entry = plan[shard]
    scratch = output or Path.cwd() / f"{job.name}-shard-{shard}"
    if not job.store.remote and scratch.resolve().is_relative_to(Path(job.store.root).resolve()):
        # Its commit record would be an ownerless one in the job's output, refused by the next real run.
        raise ValueError(f"--shard-output {scratch} is inside the job's output {job.output_url}; use another")
    scratch.mkdir(parents=True, exist_ok=True)
    checkpoint = None
    if from_checkpoint:
        newest = CheckpointStore(Store(job.output_url, job.storage)).newest(shard)
        if newest is None:
            print(
                f"shard {shard}: no checkpoint in {job.output_url}; starting at the shard's start", file=out
            )
        else:
            name, saved = newest
            # A copy in the scratch output, where the runtime reads it; the job's files are not touched.
            attempt, seq = (int(part) for part in name.split("."))
            CheckpointStore(str(scratch)).save(
                shard, attempt, seq, saved.position, saved.state, bad=saved.bad
            )
            checkpoint = {**saved.position, "state": name}
            print(f"shard {shard}: resuming from checkpoint {name} ({saved.position})", file=out)
    pieces = ", ".join(f"{p['path']} [{p['start']}, {p['end']})" for p in entry.get("pieces") or [])
    print(f"{job.name}: shard {shard} of {len(plan)}: {pieces}", file=out)
    reduce = spec.get("reduce") or {}
    processor = processors.build(
        spec.get("processor"),
        reduce.get("function"),
        reduce_sql=reduce.get("sql"),
        partitions=int(reduce.get("partitions") or 0),
    )

    def on_record(progress: runtime.Progress, state: Any, count: int) -> None:
        del progress, state, count

    def on_notice(reason: str, message: str) -> None:
        print(f"{reason}: {message}", file=out)

    context = runtime.ShardContext(
        spec["input"].get("format", "text"),
        processor,
        runtime.OutputDir(str(scratch)),
        on_record,
        on_notice,
        encoding=spec["input"].get("encoding", "utf-8"),
        bad_records=spec["input"].get("badRecordPolicy", "Fail"),
        partitions=int(reduce.get("partitions") or 0),
        multi_line=bool(spec["input"].get("multiLine")),
    )
    task = ShardTask(shard=shard, attempt=1, checkpoint=checkpoint, input=entry)
    started = time.monotonic()
    try:
        progress = runtime.run_shard(task, context)
    except Exception:  # noqa: BLE001 - the point of a replay: show the whole failure
        traceback.print_exc(file=out)
        print(f"shard {shard}: FAILED after {time.monotonic() - started:.1f}s", file=out)
        return 1
    finally:
        processor.close()
    print(
        f"shard {shard}: {progress.records:,} records, {progress.bytes:,} bytes, {progress.skipped} skipped, "
        f"in {time.monotonic() - started:.1f}s; output in {scratch}",
        file=out,
    )
    return 0
