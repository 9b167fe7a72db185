"""Running one shard: read its records, process them, checkpoint, and commit the output exactly once.

Checkpoints hold the input position plus the processor's partial state, in a file next to the output
(:mod:`datajob_core.storage.checkpoint_store`, named by attempt so no two attempts share one); the small
position record naming that file goes to the operator. A resumed attempt loads the file and continues, so a
crash loses at most one checkpoint interval. Workers never delete checkpoint files; the operator does, once
they are superseded in the durable ledger (docs/design.md, "Fencing attempts and checkpoints").

Commit protocol (:mod:`datajob_core.storage.committer`): an attempt writes its output under a prefix only it
uses, then creates the shard's commit record exclusively; whichever attempt creates it first wins, and every
later or concurrent attempt (a zombie included) becomes a no-op. The job commit later publishes the winners.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from datajob_core import protocol
from datajob_core.data import shuffle
from datajob_core.data.locations import StorageConfig
from datajob_core.protocol import ShardTask
from datajob_core.shards import splitting
from datajob_core.storage.checkpoint_store import CheckpointStore, CheckpointUnreadableError, Saved
from datajob_core.storage.committer import Committer, ForeignOutputError
from datajob_core.storage.output_format import OutputCodec
from datajob_core.storage.stores import Store

from . import csv_arrow, csv_records, readers
from .lifeline import kill_child_with_parent
from .processors import Processor, State

CALLBACK_EVERY = 64
# Rows of a Parquet record batch. Fixed: a resumed attempt must cut its batches where an undisturbed one did.
ARROW_BATCH_ROWS = 65536
MAX_DEAD_LETTER_CHARS = 4096


class ShardInterruptedError(Exception):
    """Processing stopped early (SIGTERM, shard taken away); the last checkpoint stands."""


class ShardSplitRequestedError(Exception):
    """The operator asked for the rest of this shard to be split off: stop here and commit what is read."""


class PermanentShardError(Exception):
    """A failure every attempt would repeat (a malformed record): the shard fails without retries."""


@dataclass
class Progress:
    piece: int = 0
    offset: int | None = None
    records: int = 0
    bytes: int = 0
    state_file: str | None = None  # the checkpoint file's name, "<attempt>.<seq>"
    skipped: int = 0  # malformed records dropped so far (badRecordPolicy Skip or DeadLetter)
    bad: list[dict[str, Any]] = field(default_factory=list)  # their dead letters (DeadLetter); checkpointed
    # The rest of this CSV piece is read record by record (a chunk Arrow could not read as csv.reader
    # would): kept in checkpoints, so a resumed attempt reads it the same way.
    record_path: bool = False
    # Set when the committed output stops early (a split): [piece, offset] of the first record not in it.
    end: list[int] | None = None
    won: bool = True  # False: another attempt's commit record stood (this one's output is garbage)

    def position(self) -> dict[str, Any]:
        position = {
            "piece": self.piece,
            "offset": self.offset,
            "records": self.records,
            "bytes": self.bytes,
            "skipped": self.skipped,
        }
        if self.record_path:
            position["recordPath"] = True
        return position

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
            skipped=int(checkpoint.get("skipped", 0)),
            record_path=bool(checkpoint.get("recordPath", False)),
        )


class OutputDir:
    """The job's output (a directory or an object prefix): the committer and the checkpoints in it."""

    def __init__(
        self,
        root: str,
        owner: str | None = None,
        config: StorageConfig | None = None,
        codec: OutputCodec | None = None,
    ) -> None:
        self.store = Store(root, config)
        self.owner = (
            owner  # the job that owns this output (datajob_core.storage.output_identity); records name it
        )
        self.committer = Committer(self.store, owner, codec)
        self.checkpoints = CheckpointStore(self.store)

    def committed(self, shard: int) -> dict[str, Any] | None:
        """The shard's commit record, or None while it is not committed."""
        try:
            return self.committer.committed(shard)
        except ForeignOutputError as error:
            raise PermanentShardError(str(error)) from None

    def commit(
        self,
        shard: int,
        attempt: int,
        data: str | None,
        meta: dict[str, Any],
        *,
        dead_letters: str | None = None,
        partitions: list[str] | None = None,
    ) -> bool:
        """Commits this attempt's output for the shard; False if another attempt committed it first."""
        return self.committer.commit_shard(
            shard,
            attempt,
            None if data is None else self.committer.codec.encode(data),
            meta,
            dead_letters=None if dead_letters is None else dead_letters.encode(),
            partitions=None if partitions is None else [p.encode() for p in partitions],
        )


def where_it_ran() -> dict[str, Any]:
    """The worker pod, its hardware profile and node, for the commit record (and so the _SUCCESS manifest:
    which shard ran on what hardware); empty in local mode."""
    names = {"pod": protocol.ENV_POD, "profile": protocol.ENV_PROFILE, "node": protocol.ENV_NODE}
    out: dict[str, Any] = {key: os.environ[env] for key, env in names.items() if os.environ.get(env)}
    if os.environ.get(protocol.ENV_DEVICES):
        out["devices"] = os.environ[protocol.ENV_DEVICES].split(",")
    if os.environ.get(protocol.ENV_GPUS, "").isdigit():
        out["gpus"] = int(os.environ[protocol.ENV_GPUS])
    return out


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
    encoding: str = "utf-8"
    bad_records: str = "Fail"  # spec.input.badRecordPolicy
    partitions: int = 0  # spec.reduce.partitions: split the output by key for the reducers
    multi_line: bool = False  # spec.input.multiLine: CSV records may span lines in a split file
    # spec.checkpoint.intervalRecords: text read in chunks (word count) cuts a chunk after that many lines,
    # so a position (where a checkpoint can be) comes at least that often, as on the record path.
    chunk_lines: int | None = None


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
        saved = store.load(task.shard, progress.state_file)
        return _resumed(saved, progress.state_file), saved.state
    except CheckpointUnreadableError as error:
        fallback = store.newest(task.shard)
        if fallback is None:
            on_notice(
                "CheckpointUnreadable",
                f"shard {task.shard}: {error}; no readable checkpoint left, restarting at the shard's start",
            )
            return Progress(), None
        name, saved = fallback
        on_notice(
            "CheckpointUnreadable",
            f"shard {task.shard}: {error}; resuming from checkpoint {name} "
            f"at record {saved.position.get('records', 0)}",
        )
        return _resumed(saved, name), saved.state


def _resumed(saved: Saved, name: str) -> Progress:
    progress = Progress.resume({**saved.position, "state": name})
    progress.bad = list(saved.bad)
    return progress


class RecordErrors:
    """Applies ``spec.input.badRecordPolicy`` to a malformed record (Spark's FAILFAST/DROPMALFORMED, plus a
    dead-letter file)."""

    def __init__(self, policy: str, progress: Progress) -> None:
        self.policy = policy
        self.progress = progress

    def bad(self, path: str, offset: int, raw: object, problem: str) -> None:
        if self.policy == "Fail":
            raise PermanentShardError(
                f"malformed record in {path} at byte {offset} (line {_line_number(path, offset)}): {problem}"
            )
        self.progress.skipped += 1
        if self.policy == "DeadLetter":
            text = raw.decode("utf-8", errors="backslashreplace") if isinstance(raw, bytes) else raw
            self.progress.bad.append(
                {"file": path, "offset": offset, "error": problem, "record": _clip(text)}
            )

    def failed(self, path: str, record: object, error: Exception) -> None:
        """User code failed on ``record`` alone (the batch form): Fail fails the attempt, naming the record
        (retried, like any user-code failure); Skip and DeadLetter drop it."""
        problem = f"{type(error).__name__}: {error}"
        if self.policy == "Fail":
            raise RecordFailedError(
                f"the user function failed on a record of {path}: {problem}; "
                f"the record: {_clip(_text(record))}"
            ) from error
        self.progress.skipped += 1
        if self.policy == "DeadLetter":
            # A record from Parquet may hold decimals, dates, bytes: kept as JSON can hold them.
            plain = json.loads(json.dumps(record, default=str))
            self.progress.bad.append({"file": path, "offset": None, "error": problem, "record": _clip(plain)})


class RecordFailedError(Exception):
    """User code failed on one record under ``badRecordPolicy: Fail``."""


def _text(record: object) -> str:
    return record if isinstance(record, str) else json.dumps(record, sort_keys=True, default=str)


def _clip(record: object) -> object:
    if isinstance(record, str) and len(record) > MAX_DEAD_LETTER_CHARS:
        return record[:MAX_DEAD_LETTER_CHARS] + "…"
    return record


def _line_number(path: str, offset: int) -> int:
    """1-based line at byte ``offset``; only computed on the failure path, so it may read the file."""
    count = 0
    with contextlib.suppress(OSError), readers.open_binary(path) as handle:
        remaining = offset
        while remaining > 0:
            chunk = handle.read(min(remaining, 1 << 20))
            if not chunk:
                break
            count += chunk.count(b"\n")
            remaining -= len(chunk)
    return count + 1


def run_shard(task: ShardTask, context: ShardContext) -> Progress:
    """Processes ``task`` from its checkpoint to the end and commits the result."""
    processor = context.processor
    cpu = time.process_time()
    progress, saved = resume_point(task, context.output, context.on_notice)
    resumed = progress.checkpoint() if progress.state_file else None  # after any fallback: the real one
    state = processor.restore(saved) if saved is not None else processor.init()
    errors = RecordErrors(context.bad_records, progress)
    pieces = task.input.get("pieces") or []

    def on_bad(record: object, error: Exception) -> None:
        errors.failed(pieces[progress.piece]["path"], record, error)

    process, every = processor.batch(on_bad), records_per_call(processor)
    try:
        _read_pieces(context, progress, state, pieces, errors, process=process, every=every)
    except ShardSplitRequestedError:
        # Every callback comes where the state covers exactly the records before progress.offset.
        at = (progress.piece, int(progress.offset or 0))
        if splitting.remainder(splitting.whole(task.shard, pieces), at, pieces) is not None:
            progress.end = list(at)  # else nothing is left: an ordinary commit of the whole shard
    meta: dict[str, Any] = {
        "shard": task.shard,
        "records": progress.records,
        "bytes": progress.bytes,
        "skipped": progress.skipped,
        "attempt": task.attempt,
        "resumedFrom": resumed,
        "committedAt": time.time(),
        "cpuSeconds": round(time.process_time() - cpu, 3),  # this attempt's (the run report's cost)
    }
    if progress.end is not None:
        meta["end"] = progress.end
    if task.input.get("cut") is not None:
        meta["cut"] = task.input["cut"]  # the range of its root shard this shard covers (a split)
    ran_on = where_it_ran()
    if ran_on:
        meta["hardware"] = ran_on
    dead = (
        "".join(json.dumps(entry, sort_keys=True) + "\n" for entry in progress.bad) if progress.bad else None
    )
    rendered = context.processor.render(state)
    if context.partitions and context.processor.key is not None:
        split = shuffle.split(rendered, context.partitions, context.processor.key)
        won = context.output.commit(task.shard, task.attempt, None, meta, dead_letters=dead, partitions=split)
    else:
        won = context.output.commit(task.shard, task.attempt, rendered, meta, dead_letters=dead)
    progress.won = won
    if not won:
        # Another attempt's record stands: where it ends is what the ledger must hear (it splits the rest),
        # and what it counted (the records it covers), as for a shard found already committed.
        winner = context.output.committed(task.shard) or {}
        progress.end = end_of(winner)
        progress.records = int(winner.get("records", progress.records))
        progress.bytes = int(winner.get("bytes", progress.bytes))
        progress.skipped = int(winner.get("skipped", progress.skipped))
    return progress


def end_of(record: dict[str, Any] | None) -> list[int] | None:
    """Where a commit record's output stops early ([piece, offset]); None: it covers its whole shard."""
    end = (record or {}).get("end")
    if isinstance(end, list) and len(end) == 2 and all(type(v) is int and v >= 0 for v in end):
        return list(end)
    return None


def _read_pieces(
    context: ShardContext,
    progress: Progress,
    state: State,
    pieces: list[dict[str, Any]],
    errors: RecordErrors,
    *,
    process: Callable[[list[Any], State], None],
    every: int,
) -> None:
    processor, on_record = context.processor, context.on_record
    while progress.piece < len(pieces):
        piece = pieces[progress.piece]
        path, start, end = piece["path"], int(piece["start"]), int(piece["end"])
        if progress.offset is None and piece.get("exact"):
            progress.offset = start  # a split off where a worker stopped: a record boundary, as a checkpoint
        if context.fmt == "parquet":
            # For parquet the offset counts rows of this piece rather than bytes.
            try:
                _parquet_piece(piece, progress, state, processor, on_record, process=process)
            except readers.MalformedFileError as error:  # the file, not a record: no retry helps
                raise PermanentShardError(str(error)) from None
            # Bytes are counted per finished piece: row groups are compressed, rows have no byte size.
            progress.bytes += end - start
            progress.piece += 1
            progress.offset = None
            continue
        if _columnar_text(context) and not progress.record_path:
            with readers.open_binary(path) as handle:
                if _text_arrow_piece(handle, piece, progress, state, context=context, on_record=on_record):
                    progress.piece += 1
                    progress.offset = None
                    continue
        if context.fmt == "csv" and _columnar_csv(context) and not progress.record_path:
            with readers.open_binary(path) as handle:
                if _csv_arrow_piece(handle, piece, progress, state, context=context, on_record=on_record):
                    progress.piece += 1
                    progress.offset = None
                    continue
        with readers.open_binary(path) as handle:
            # The hot loop: locals, and the callback only every CALLBACK_EVERY records.
            records, size, pending = progress.records, progress.bytes, 0
            source = _Source(path, context.encoding, errors)
            if context.fmt == "csv":
                rows = _csv_records(handle, (start, end), progress.offset, source, context.multi_line)
            else:
                rows = _line_records(handle, context.fmt, (start, end), progress.offset, source)
            batch: list[Any] = []
            for offset, length, record in rows:
                size += length
                if record is not None:
                    batch.append(record)
                pending += 1
                if pending == every:
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
        progress.offset, progress.record_path = None, False


def records_per_call(processor: Processor) -> int:
    """Records read between two positions (the only places a checkpoint can be): CALLBACK_EVERY, or for
    the batch form whole batches only, so a resumed attempt cuts the batches an undisturbed one did."""
    size = processor.batch_size
    return CALLBACK_EVERY if size is None else size * max(1, CALLBACK_EVERY // size)


def _parquet_piece(
    piece: dict[str, Any],
    progress: Progress,
    state: State,
    processor: Processor,
    on_record: Callable[[Progress, State, int], None],
    *,
    process: Callable[[list[Any], State], None],
) -> None:
    """One Parquet piece as Arrow record batches: a columnar processor folds each batch whole (a position
    after every batch, which is where a checkpoint can be); any other gets the rows, records_per_call at a
    time, as before."""
    path, start, end = piece["path"], int(piece["start"]), int(piece["end"])
    columnar, every = processor.process_arrow, records_per_call(processor)
    batches = readers.iter_parquet_batches(
        path, start, end, progress.offset or 0, batch_rows=ARROW_BATCH_ROWS, columns=processor.columns
    )
    for row, batch in batches:
        if columnar is not None:
            columnar(batch, state)
            progress.offset, progress.records = row, progress.records + batch.num_rows
            on_record(progress, state, batch.num_rows)
            continue
        first, records = row - batch.num_rows, batch.to_pylist()
        for at in range(0, len(records), every):
            chunk = records[at : at + every]
            process(chunk, state)
            progress.offset, progress.records = first + at + len(chunk), progress.records + len(chunk)
            on_record(progress, state, len(chunk))


def _columnar_csv(context: ShardContext) -> bool:
    """CSV through Arrow (csv_arrow): for a processor with a columnar form, UTF-8, one-line records."""
    return (
        context.processor.process_arrow is not None
        and not context.multi_line
        and csv_arrow.utf8(context.encoding)
    )


def _csv_arrow_piece(
    handle: IO[bytes],
    piece: dict[str, Any],
    progress: Progress,
    state: State,
    *,
    context: ShardContext,
    on_record: Callable[[Progress, State, int], None],
) -> bool:
    """A CSV piece in Arrow chunks; True when it is done, False when the rest must be read record by
    record from ``progress.offset`` (set, with ``progress.record_path``)."""
    start, end = int(piece["start"]), int(piece["end"])
    try:
        header, header_end = csv_records.read_header(handle, context.encoding)
    except csv_records.SplitRecordError:
        progress.record_path = True  # the record path fails the shard with its own message
        return False
    if not header or len(set(header)) != len(header):  # no names, or the last of a name wins: records
        progress.record_path = True
        return False
    at = progress.offset
    if at is None:
        at = csv_records.first_boundary(handle, start, header_end, multi_line=False)
    columnar, columns = context.processor.process_arrow, context.processor.columns
    assert columnar is not None
    for after, chunk in csv_arrow.chunks(handle, at, end):
        table = csv_arrow.parse(chunk, header, columns)
        if table is None:
            progress.offset, progress.record_path = at, True
            return False
        for batch in table.to_batches():
            columnar(batch, state)
        at = after
        progress.offset, progress.records = at, progress.records + table.num_rows
        progress.bytes += len(chunk)
        on_record(progress, state, table.num_rows)
    return True


def _columnar_text(context: ShardContext) -> bool:
    """Text in chunks for a processor that folds whole chunks (word count), where ASCII decodes alike."""
    return (
        context.fmt == "text"
        and context.processor.process_text is not None
        and codecs.lookup(context.encoding).name in ("utf-8", "ascii")
    )


def _text_arrow_piece(
    handle: IO[bytes],
    piece: dict[str, Any],
    progress: Progress,
    state: State,
    *,
    context: ShardContext,
    on_record: Callable[[Progress, State, int], None],
) -> bool:
    """A text piece in chunks of whole lines (cut as csv_arrow cuts them, so a resumed attempt reads the
    same chunks); True when it is done, False when the rest must be read record by record from
    ``progress.offset`` (set, with ``progress.record_path``). Records and bytes count as on the record
    path: one record per line, the file's byte-order mark not counted."""
    start, end = int(piece["start"]), int(piece["end"])
    fold = context.processor.process_text
    assert fold is not None
    at = readers.align(handle, start, progress.offset)
    for after, chunk in csv_arrow.chunks(handle, at, end, lines=context.chunk_lines):
        body = chunk.removeprefix(codecs.BOM_UTF8) if at == 0 else chunk
        if not fold(body, state):
            progress.offset, progress.record_path = at, True
            return False
        lines = body.count(b"\n") + (1 if body and not body.endswith(b"\n") else 0)
        at = after
        progress.offset, progress.records, progress.bytes = (
            at,
            progress.records + lines,
            progress.bytes + len(body),
        )
        on_record(progress, state, lines)
    return True


@dataclass(frozen=True)
class _Source:
    """What the record readers need besides the bytes: where they are from and how to decode them."""

    path: str
    encoding: str
    errors: RecordErrors


def _line_records(
    handle: IO[bytes], fmt: str, piece: tuple[int, int], offset: int | None, source: _Source
) -> Iterator[tuple[int, int, Any]]:
    """Text and JSON Lines records, with the line splitting inlined: this is the per-record path.

    A malformed record goes to the bad-record policy and is yielded as None (not processed).
    """
    start, end = piece
    offset = readers.align(handle, start, offset)
    text, encoding = fmt == "text", source.encoding
    record: Any
    for raw in handle:
        if offset >= end:
            return
        offset += len(raw)
        # The file's first line: a byte-order mark is not part of its record (nor, alone, a record).
        line = raw.removeprefix(codecs.BOM_UTF8) if offset == len(raw) else raw
        if not line:
            continue
        try:
            if text:
                record = line.decode(encoding).rstrip("\r\n")
            else:
                decoded = line.decode(encoding)
                record = json.loads(decoded) if decoded.strip() else None
        except ValueError as error:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            source.errors.bad(source.path, offset - len(line), line, f"{type(error).__name__}: {error}")
            record = None
        yield offset, len(line), record


def _csv_records(
    handle: IO[bytes], piece: tuple[int, int], offset: int | None, source: _Source, multi_line: bool
) -> Iterator[tuple[int, int, Any]]:
    """CSV rows as dicts, split only at true record boundaries (csv_records). A line that does not decode,
    or a row whose field count differs from the header's, goes to the bad-record policy as None; a header
    that does not decode or a record that makes the split untrustworthy fails the shard (not retried).
    Not a generator of its own: this is the per-record path."""

    def bad(at: int, text: bytes | str, problem: str) -> None:
        source.errors.bad(source.path, at, text, problem)

    return csv_records.records(
        handle,
        piece,
        offset,
        path=source.path,
        encoding=source.encoding,
        multi_line=multi_line,
        bad=bad,
        fail=PermanentShardError,
    )


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
) -> bool:
    """Command mode: runs ``argv`` once for the shard; it writes its result to $DATAJOB_OUTPUT_FILE. True if
    this attempt's commit won.

    The child may checkpoint by writing JSON to $DATAJOB_CHECKPOINT_FILE (write a temporary file and
    rename it over, so it is never read half-written); a later attempt gets the last one it wrote in
    $DATAJOB_RESUME_FILE. Each attempt starts with an empty output file, so a resuming child must rebuild
    the whole shard's output from its checkpoint (docs/worker-runtime.md).
    """
    # Local scratch, unique to this writer (the output may be an object store): removed whatever happens.
    with tempfile.TemporaryDirectory(prefix=f"datajob-exec-{task.shard:06d}-{task.attempt}-") as directory:
        return _exec_in(
            task, argv, output, env, hooks=hooks, resume_state=resume_state, directory=Path(directory)
        )


def _exec_in(
    task: ShardTask,
    argv: list[str],
    output: OutputDir,
    env: dict[str, str],
    *,
    hooks: ExecHooks,
    resume_state: Any,
    directory: Path,
) -> bool:
    scratch = directory / "output"
    checkpoint_file = directory / "checkpoint.json"
    resume_file = directory / "resume.json"
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
    if code != 0:
        raise subprocess.CalledProcessError(code, argv)
    data = scratch.read_text() if scratch.exists() else ""
    return output.commit(
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
