"""Running one shard: read its records, process them, checkpoint, and commit the output exactly once.

Checkpoints hold the input position plus the processor's partial state; the state goes to a file next to
the output (``_checkpoints/``) and the small position record, naming that file, goes to the operator. A
resumed attempt loads both and continues, so a crash loses at most one checkpoint interval.

Commit protocol (after Hadoop's FileOutputCommitter): an attempt writes to an attempt-scoped scratch file
and publishes it with ``os.link`` under the shard's deterministic name. ``link`` fails if the name exists,
so whichever attempt publishes first wins and every later or concurrent attempt becomes a no-op. The data
file is published before the ``part-N.json`` marker that says the shard is committed.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from datajob_core.protocol import ShardTask

from . import readers
from .processors import Processor, State

CALLBACK_EVERY = 64


class ShardInterruptedError(Exception):
    """Processing stopped early (SIGTERM, shard taken away); the last checkpoint stands."""


@dataclass
class Progress:
    piece: int = 0
    offset: int | None = None
    records: int = 0
    bytes: int = 0
    state_file: str | None = None

    def checkpoint(self) -> dict[str, Any]:
        return {
            "piece": self.piece,
            "offset": self.offset,
            "records": self.records,
            "bytes": self.bytes,
            "state": self.state_file,
        }

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


def _atomic_write(path: Path, text: str) -> None:
    scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    scratch.write_text(text)
    os.replace(scratch, path)


class OutputDir:
    """The job's output directory: committed parts, scratch space, checkpoint state."""

    def __init__(self, root: str) -> None:
        self.root = Path(root.removeprefix("file://"))
        self.temporary = self.root / "_temporary"
        self.checkpoints = self.root / "_checkpoints"

    def save_state(self, shard: int, attempt: int, seq: int, state: State) -> str:
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        name = f"part-{shard:06d}.attempt-{attempt}.{seq}.json"
        _atomic_write(self.checkpoints / name, json.dumps(state, separators=(",", ":")))
        # Older states of this attempt are superseded; the ledger only ever points at the newest.
        for old in self.checkpoints.glob(f"part-{shard:06d}.attempt-{attempt}.*.json"):
            if old.name != name:
                with contextlib.suppress(FileNotFoundError):
                    old.unlink()
        return name

    def load_state(self, name: str) -> State:
        state: State = json.loads((self.checkpoints / name).read_text())
        return state

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
            scratch = self.temporary / f"{name}.attempt-{attempt}"
            scratch.write_text(text)
            try:
                os.link(scratch, self.root / name)
                published = published or not name.endswith(".json")
            except FileExistsError:
                pass
            finally:
                scratch.unlink()
        for stale in self.checkpoints.glob(f"part-{shard:06d}.*"):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
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
        for scratch in (self.temporary, self.checkpoints):
            shutil.rmtree(scratch, ignore_errors=True)
        return result


@dataclass
class ShardContext:
    fmt: str
    processor: Processor
    output: OutputDir
    # Called every CALLBACK_EVERY records with how many were read since the last call; may checkpoint and
    # may raise ShardInterruptedError.
    on_record: Callable[[Progress, State, int], None]


def run_shard(task: ShardTask, context: ShardContext) -> Progress:
    """Processes ``task`` from its checkpoint to the end and commits the result."""
    progress = Progress.resume(task.checkpoint)
    processor = context.processor
    state = (
        processor.restore(context.output.load_state(progress.state_file))
        if progress.state_file
        else processor.init()
    )
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


def run_exec(task: ShardTask, argv: list[str], output: OutputDir, env: dict[str, str]) -> None:
    """Command mode: runs ``argv`` once for the shard; it writes its result to $DATAJOB_OUTPUT_FILE."""
    output.temporary.mkdir(parents=True, exist_ok=True)
    scratch = output.temporary / f"exec-{task.shard:06d}.attempt-{task.attempt}"
    shard_env = {
        **env,
        "DATAJOB_SHARD": str(task.shard),
        "DATAJOB_ATTEMPT": str(task.attempt),
        "DATAJOB_SHARD_PIECES": json.dumps(task.input.get("pieces") or []),
        "DATAJOB_RESUME": json.dumps(task.checkpoint),
        "DATAJOB_OUTPUT_FILE": str(scratch),
    }
    subprocess.run(argv, env=shard_env, check=True)
    data = scratch.read_text() if scratch.exists() else ""
    with contextlib.suppress(FileNotFoundError):
        scratch.unlink()
    output.commit(
        task.shard, task.attempt, data, {"shard": task.shard, "attempt": task.attempt, "exec": argv}
    )
