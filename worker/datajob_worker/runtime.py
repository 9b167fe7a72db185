"""Running one shard: read its records, process them, checkpoint, and commit the output exactly once.

Checkpoints hold the input position plus the processor's partial state, in a file next to the output
(:mod:`datajob_core.checkpoint_store`, named by attempt so no two attempts share one); the small position
record naming that file goes to the operator. A resumed attempt loads the file and continues, so a crash
loses at most one checkpoint interval. Workers never delete checkpoint files; the operator does, once they
are superseded in the durable ledger (docs/design.md, "Fencing attempts and checkpoints").

Commit protocol (after Hadoop's FileOutputCommitter): an attempt writes to a scratch file whose name is
unique to that writer and publishes it with ``os.link`` under the shard's deterministic name. ``link``
fails if the name exists, so whichever attempt publishes first wins and every later or concurrent attempt
(a zombie included) becomes a no-op. The data file is published before the ``part-N.json`` marker that says
the shard is committed.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from datajob_core.checkpoint_store import CheckpointStore, CheckpointUnreadableError
from datajob_core.protocol import ShardTask

from . import readers
from .lifeline import kill_child_with_parent
from .processors import Processor, State

CALLBACK_EVERY = 64


class ShardInterruptedError(Exception):
    """Processing stopped early (SIGTERM, shard taken away); the last checkpoint stands."""


class PermanentShardError(Exception):
    """A failure every attempt would repeat (a malformed record): the shard fails without retries."""


@dataclass
class Progress:
    piece: int = 0
    offset: int | None = None
    records: int = 0
    bytes: int = 0
    state_file: str | None = None  # the checkpoint file's name, "<attempt>.<seq>"

    def position(self) -> dict[str, Any]:
        return {"piece": self.piece, "offset": self.offset, "records": self.records, "bytes": self.bytes}

    def checkpoint(self) -> dict[str, Any]:
        return {**self.position(), "state": self.state_file}

    @classmethod
    def resume(cls, checkpoint: dict[str, Any] | None) -> Progress:
        if not checkpoint:
            return cls()
        offset = checkpoint.get("offset")
        return cls(
            piece=int(checkpoint.get("piece", 0)),
            offset=None if offset is None else int(offset),
            records=int(checkpoint.get("records", 0)),
            bytes=int(checkpoint.get("bytes", 0)),
            state_file=checkpoint.get("state"),
        )


def _unique(path: Path) -> Path:
    """A scratch name next to ``path`` that no other writer, process or attempt, can pick."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")


def _atomic_write(path: Path, text: str) -> None:
    scratch = _unique(path)
    scratch.write_text(text)
    os.replace(scratch, path)


class OutputDir:
    """The job's output directory: committed parts, scratch space, checkpoint files."""

    def __init__(self, root: str) -> None:
        self.root = Path(root.removeprefix("file://"))
        self.temporary = self.root / "_temporary"
        self.checkpoints = CheckpointStore(self.root)

    def committed(self, shard: int) -> dict[str, Any] | None:
        """The shard's commit marker, or None while it is not committed."""
        try:
            marker: dict[str, Any] = json.loads((self.root / f"part-{shard:06d}.json").read_text())
        except FileNotFoundError:
            return None
        return marker

    def commit(self, shard: int, attempt: int, data: str, meta: dict[str, Any]) -> bool:
        """Publishes the shard's output; False if another attempt's data was published first.

        Data is deterministic per shard, so whichever attempt wins, the bytes are the same. The marker is
        published after the data by whoever gets there first; a crash between the two is completed by the
        next attempt.
        """
        self.temporary.mkdir(parents=True, exist_ok=True)
        published = False
        for name, text in ((f"part-{shard:06d}", data), (f"part-{shard:06d}.json", json.dumps(meta) + "\n")):
            # Scoped by attempt and unique to this writer: two committers never share a scratch file.
            scratch = _unique(self.temporary / f"{name}.attempt-{attempt}")
            scratch.write_text(text)
            try:
                os.link(scratch, self.root / name)
                published = published or not name.endswith(".json")
            except FileExistsError:
                pass
            finally:
                scratch.unlink()
        # Checkpoint files stay: the operator collects them once the commit is durable in the ledger.
        return published

    def commit_job(self, shards: int, merge: Callable[[list[str]], str], summary: dict[str, Any]) -> Path:
        """The job commit, after every shard succeeded: the merged ``result``, then ``_SUCCESS``.

        Both are written atomically and derived only from committed parts, so running it twice (a crash in
        between) gives the same bytes. Scratch space goes last; nothing reads it once all shards committed.
        """
        parts = [(self.root / f"part-{shard:06d}").read_text() for shard in range(shards)]
        result = self.root / "result"
        _atomic_write(result, merge(parts))
        _atomic_write(self.root / "_SUCCESS", json.dumps(summary, sort_keys=True) + "\n")
        shutil.rmtree(self.temporary, ignore_errors=True)
        self.checkpoints.remove_all()
        return result


def _no_notice(reason: str, message: str) -> None:
    del reason, message


@dataclass
class ShardContext:
    fmt: str
    processor: Processor
    output: OutputDir
    # Called every CALLBACK_EVERY records with how many were read since the last call; may checkpoint and
    # may raise ShardInterruptedError.
    on_record: Callable[[Progress, State, int], None]
    # Tells the user something went wrong but was handled (reason, message): a Warning event.
    on_notice: Callable[[str, str], None] = _no_notice


def resume_point(
    task: ShardTask, output: OutputDir, on_notice: Callable[[str, str], None]
) -> tuple[Progress, Any]:
    """Where ``task`` starts: its named checkpoint; if that cannot be read, the newest readable checkpoint
    of the shard (any attempt's: each file is a consistent position + state); else the shard's start."""
    progress = Progress.resume(task.checkpoint)
    if not progress.state_file:
        return progress, None
    store = output.checkpoints
    try:
        position, state = store.load(task.shard, progress.state_file)
        return Progress.resume({**position, "state": progress.state_file}), state
    except CheckpointUnreadableError as error:
        fallback = store.newest(task.shard)
        if fallback is None:
            on_notice(
                "CheckpointUnreadable",
                f"shard {task.shard}: {error}; no readable checkpoint left, restarting at the shard's start",
            )
            return Progress(), None
        name, position, state = fallback
        on_notice(
            "CheckpointUnreadable",
            f"shard {task.shard}: {error}; resuming from checkpoint {name} "
            f"at record {position.get('records', 0)}",
        )
        return Progress.resume({**position, "state": name}), state


def run_shard(task: ShardTask, context: ShardContext) -> Progress:
    """Processes ``task`` from its checkpoint to the end and commits the result."""
    processor = context.processor
    progress, saved = resume_point(task, context.output, context.on_notice)
    state = processor.restore(saved) if saved is not None else processor.init()
    process, on_record = processor.batch(), context.on_record
    pieces = task.input.get("pieces") or []
    while progress.piece < len(pieces):
        piece = pieces[progress.piece]
        path, start, end = piece["path"], int(piece["start"]), int(piece["end"])
        if context.fmt == "parquet":
            # For parquet the offset counts rows of this piece rather than bytes.
            for row, record in readers.iter_parquet_rows(path, start, end, progress.offset or 0):
                progress.offset = row
                process([record], state)
                progress.records += 1
                if progress.records % CALLBACK_EVERY == 0:
                    on_record(progress, state, CALLBACK_EVERY)
            if progress.records % CALLBACK_EVERY:
                on_record(progress, state, progress.records % CALLBACK_EVERY)
            # Bytes are counted per finished piece: row groups are compressed, rows have no byte size.
            progress.bytes += end - start
            progress.piece += 1
            progress.offset = None
            continue
        header = readers.csv_header(path) if context.fmt == "csv" else None
        with readers.open_binary(path) as handle:
            # The hot loop: locals, and the callback only every CALLBACK_EVERY records.
            records, size, pending = progress.records, progress.bytes, 0
            if context.fmt == "csv":
                rows = _csv_records(handle, (start, end), progress.offset, header or [])
            else:
                rows = _line_records(handle, context.fmt, (start, end), progress.offset)
            batch: list[Any] = []
            for offset, length, record in rows:
                size += length
                if record is not None:
                    batch.append(record)
                pending += 1
                if pending == CALLBACK_EVERY:
                    process(batch, state)  # state covers every record up to `offset` before the callback
                    records += len(batch)
                    batch = []
                    progress.offset, progress.records, progress.bytes = offset, records, size
                    on_record(progress, state, pending)
                    pending = 0
            process(batch, state)
            records += len(batch)
            progress.records, progress.bytes = records, size
            if pending:
                # The tail batch gets its callback too: small shards must still honour a stop request.
                progress.offset = offset
                on_record(progress, state, pending)
        progress.piece += 1
        progress.offset = None
    meta = {
        "shard": task.shard,
        "records": progress.records,
        "bytes": progress.bytes,
        "attempt": task.attempt,
        "resumedFrom": task.checkpoint,
        "committedAt": time.time(),
    }
    context.output.commit(task.shard, task.attempt, context.processor.render(state), meta)
    return progress


def _line_records(
    handle: IO[bytes], fmt: str, piece: tuple[int, int], offset: int | None
) -> Iterator[tuple[int, int, Any]]:
    """Text and JSON Lines records, with the line splitting inlined: this is the per-record path."""
    start, end = piece
    offset = readers.align(handle, start, offset)
    text = fmt == "text"
    for line in handle:
        if offset >= end:
            return
        offset += len(line)
        if text:
            yield offset, len(line), line.decode("utf-8", errors="replace").rstrip("\r\n")
        else:
            yield offset, len(line), readers.parse(line, fmt, None)


def _csv_records(
    handle: IO[bytes], piece: tuple[int, int], offset: int | None, header: list[str]
) -> Iterator[tuple[int, int, Any]]:
    """CSV rows as dicts: one csv.reader over the piece's lines, line splitting inlined."""
    start, end = piece
    position = [readers.align(handle, start, offset), 0]

    def lines() -> Iterator[str]:
        at = position[0]
        for line in handle:
            if at >= end:
                return
            at += len(line)
            position[0], position[1] = at, len(line)
            if at == len(line):
                continue  # the header row
            yield line.decode("utf-8", errors="replace")

    for values in csv.reader(lines()):
        yield position[0], position[1], dict(zip(header, values, strict=False)) if values else None


EXEC_TICK_SECONDS = 1.0


@dataclass
class ExecHooks:
    """How command mode talks back while its child runs."""

    # About once a second: heartbeat; raises ShardInterruptedError to stop the child (SIGTERM, shard gone).
    tick: Callable[[], None]
    # The child wrote a new checkpoint (any JSON value) to $DATAJOB_CHECKPOINT_FILE.
    checkpoint: Callable[[Any], None]


def run_exec(
    task: ShardTask,
    argv: list[str],
    output: OutputDir,
    env: dict[str, str],
    *,
    hooks: ExecHooks,
    resume_state: Any = None,
) -> None:
    """Command mode: runs ``argv`` once for the shard; it writes its result to $DATAJOB_OUTPUT_FILE.

    The child may checkpoint by writing JSON to $DATAJOB_CHECKPOINT_FILE (write a temporary file and
    rename it over, so it is never read half-written); a later attempt gets the last one it wrote in
    $DATAJOB_RESUME_FILE. Each attempt starts with an empty output file, so a resuming child must rebuild
    the whole shard's output from its checkpoint (docs/worker-runtime.md).
    """
    output.temporary.mkdir(parents=True, exist_ok=True)
    scratch = _unique(output.temporary / f"exec-{task.shard:06d}.attempt-{task.attempt}")
    checkpoint_file = scratch.with_name(scratch.name + ".checkpoint")
    resume_file = scratch.with_name(scratch.name + ".resume")
    shard_env = {
        **env,
        "DATAJOB_SHARD": str(task.shard),
        "DATAJOB_ATTEMPT": str(task.attempt),
        "DATAJOB_SHARD_PIECES": json.dumps(task.input.get("pieces") or []),
        "DATAJOB_RESUME": json.dumps(task.checkpoint),
        "DATAJOB_OUTPUT_FILE": str(scratch),
        "DATAJOB_CHECKPOINT_FILE": str(checkpoint_file),
    }
    if resume_state is not None:
        resume_file.write_text(json.dumps(resume_state))
        shard_env["DATAJOB_RESUME_FILE"] = str(resume_file)
    # The child dies with its worker, however the worker dies: no orphan keeps writing.
    child = subprocess.Popen(argv, env=shard_env, preexec_fn=kill_child_with_parent)  # noqa: PLW1509
    seen: int | None = None
    try:
        while True:
            try:
                code = child.wait(timeout=EXEC_TICK_SECONDS)
                break
            except subprocess.TimeoutExpired:
                pass
            seen = _pick_up_checkpoint(checkpoint_file, seen, hooks)
            hooks.tick()
        _pick_up_checkpoint(checkpoint_file, seen, hooks)
    except BaseException:
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        raise
    finally:
        for leftover in (checkpoint_file, resume_file):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
    if code != 0:
        with contextlib.suppress(FileNotFoundError):
            scratch.unlink()
        raise subprocess.CalledProcessError(code, argv)
    data = scratch.read_text() if scratch.exists() else ""
    with contextlib.suppress(FileNotFoundError):
        scratch.unlink()
    output.commit(
        task.shard, task.attempt, data, {"shard": task.shard, "attempt": task.attempt, "exec": argv}
    )


def _pick_up_checkpoint(path: Path, seen: int | None, hooks: ExecHooks) -> int | None:
    try:
        mtime = path.stat().st_mtime_ns
        if mtime == seen:
            return seen
        value = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return seen  # none yet, or being rewritten in place: the next tick tries again
    hooks.checkpoint(value)
    return mtime
