"""Processors: what a worker does with each record of a shard.

A processor keeps its partial result in a JSON-serialisable ``state`` (checkpointed next to the output, so
a resumed attempt continues from it) and renders the shard's final output deterministically, so a shard's
committed output is the same whichever attempt commits it.
"""

from __future__ import annotations

import importlib
import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from datajob_core.storage.output_format import json_line, json_row
from datajob_worker.aggregate import Aggregate
from datajob_worker.batch_functions import DEFAULT_BATCH_SIZE, BatchFunction, OnBad, is_batch_class
from datajob_worker.columnar import columnar_aggregate, columnar_word_count
from datajob_worker.sql_processor import RECORDS_PER_BATCH, SqlQueries
from datajob_worker.watchdog import Watchdog

Record = Any
State = dict[str, Any]


def _same(state: State) -> State:
    return state


def concatenate(parts: list[str]) -> str:
    return "".join(parts)


def _nothing() -> None:
    return None


@dataclass(frozen=True)
class Processor:
    name: str
    init: Callable[[], State]
    process: Callable[[Record, State], None]
    render: Callable[[State], str]
    restore: Callable[[State], State] = _same  # rebuilds in-memory structures from checkpointed JSON
    # Optional: processes a list of records at once, for processors where that is much faster.
    process_batch: Callable[[list[Record], State], None] | None = None
    # The reduce step: the job's result from its shards' rendered outputs, in shard order. Per-record
    # processors (grep, transform, functions) concatenate; wordcount and aggregate combine partial results.
    merge: Callable[[list[str]], str] = concatenate
    # The shuffle key of one rendered line, for the reduce stage (datajob_core.data.shuffle); None: the
    # processor has no keys (grep, transform, functions), so it cannot have a reduce stage.
    key: Callable[[str], str] | None = None
    # Optional: folds a whole pyarrow.RecordBatch (Parquet input) into the state with a columnar engine.
    process_arrow: Callable[[Any, State], None] | None = None
    # The only columns the processor reads (None: every column); Parquet readers read just these.
    columns: tuple[str, ...] | None = None
    # Optional: folds a chunk of whole text lines (raw bytes) into the state at once, if it can read them
    # exactly as the record path would; False: it cannot, and the rest of the piece takes the record path.
    process_text: Callable[[bytes, State], bool] | None = None
    # The batch form of user code (batch_functions): records per call, and the call itself, which is told
    # about records that fail alone (the bad-record policy).
    batch_size: int | None = None
    process_checked: Callable[[list[Record], State, OnBad], None] | None = None
    close: Callable[[], None] = _nothing  # when the worker process ends (the batch form's teardown())
    # One output line as a Parquet row and back (spec.output.format: parquet; output_format.py).
    to_row: Callable[[str], dict[str, Any]] = json_row
    from_row: Callable[[dict[str, Any]], str] = json_line

    def batch(self, on_bad: OnBad | None = None) -> Callable[[list[Record], State], None]:
        checked = self.process_checked
        if checked is not None:

            def run(records: list[Record], state: State) -> None:
                checked(records, state, on_bad or _raise)

            return run
        if self.process_batch is not None:
            return self.process_batch
        process = self.process

        def each(records: list[Record], state: State) -> None:
            for record in records:
                process(record, state)

        return each


def _wordcount() -> Processor:
    def process(record: Record, state: State) -> None:
        text = record if isinstance(record, str) else json.dumps(record, sort_keys=True)
        state["counts"].update(text.split())  # Counter.update counts in C

    def render(state: State) -> str:
        return "".join(f"{word}\t{n}\n" for word, n in sorted(state["counts"].items()))

    def restore(state: State) -> State:
        return {"counts": Counter(state["counts"])}

    def process_batch(records: list[Record], state: State) -> None:
        # One C-level join, split and count for the whole batch instead of three calls per record.
        texts = [r if isinstance(r, str) else json.dumps(r, sort_keys=True) for r in records]
        state["counts"].update(" ".join(texts).split())

    def merge(parts: list[str]) -> str:
        total: Counter[str] = Counter()
        for text in parts:
            for line in text.splitlines():
                word, _, count = line.rpartition("\t")
                total[word] += int(count)
        return render({"counts": total})

    return Processor(
        "wordcount",
        lambda: {"counts": Counter()},
        process,
        render,
        restore,
        process_batch,
        merge,
        key=lambda line: line.rpartition("\t")[0],
        process_text=columnar_word_count,
        to_row=_word_row,
        from_row=lambda row: f"{row['word']}\t{row['count']}",
    )


def _word_row(line: str) -> dict[str, Any]:
    word, _, count = line.rpartition("\t")
    return {"word": word, "count": int(count)}


def _grep(options: dict[str, str]) -> Processor:
    pattern = re.compile(options.get("pattern", ""))
    field = options.get("field")

    def process(record: Record, state: State) -> None:
        if record is None:
            return
        text = str(record.get(field, "")) if field and isinstance(record, dict) else _line(record)
        if pattern.search(text):
            state["lines"].append(_line(record))

    return Processor(
        "grep", lambda: {"lines": []}, process, lambda s: "".join(f"{line}\n" for line in s["lines"])
    )


def _aggregate(options: dict[str, str]) -> Processor:
    """Group by ``groupBy`` column(s) and count / sum / min / max / mean value columns (aggregate.py)."""
    aggregate = Aggregate.from_options(options)
    return Processor(
        "aggregate",
        lambda: {"groups": {}},
        lambda record, state: aggregate.fold_rows([record], state),
        aggregate.render,
        aggregate.restore,
        process_batch=aggregate.fold_rows,
        merge=aggregate.merge,
        key=aggregate.key,
        process_arrow=columnar_aggregate(aggregate, aggregate.fold_rows),
        columns=aggregate.columns,
    )


def _transform(options: dict[str, str]) -> Processor:
    """Keep (and optionally rename) fields of jsonl/csv records: ``select: a,b``, ``rename: a=x``."""
    select = [f.strip() for f in options.get("select", "").split(",") if f.strip()]
    rename = dict(pair.split("=", 1) for pair in options.get("rename", "").split(",") if "=" in pair)

    def process(record: Record, state: State) -> None:
        if not isinstance(record, dict):
            return
        kept = {k: record.get(k) for k in select} if select else dict(record)
        state["lines"].append(json.dumps({rename.get(k, k): v for k, v in kept.items()}, sort_keys=True))

    return Processor(
        "transform", lambda: {"lines": []}, process, lambda s: "".join(f"{x}\n" for x in s["lines"])
    )


def _load(spec: str) -> Callable[..., Any]:
    module_name, _, attribute = spec.partition(":")
    function: Callable[..., Any] = getattr(importlib.import_module(module_name), attribute)
    return function


def _timed(function: Callable[..., Any], watch: Watchdog | None) -> Callable[..., Any]:
    """``function``, telling ``watch`` when each call starts and ends (retryPolicy.recordTimeoutSeconds)."""
    if watch is None or watch.limits.record_seconds is None:
        return function

    def call(*args: Any) -> Any:
        watch.call()
        try:
            return function(*args)
        finally:
            watch.returned()

    return call


def _function(spec: str, watch: Watchdog | None = None) -> Processor:
    """User code, ``module:function``: called per record, returns a line (or None to drop the record)."""
    function = _timed(_load(spec), watch)

    def process(record: Record, state: State) -> None:
        result = function(record)
        if result is not None:
            state["lines"].append(result if isinstance(result, str) else json.dumps(result, sort_keys=True))

    return Processor(spec, lambda: {"lines": []}, process, lambda s: "".join(f"{x}\n" for x in s["lines"]))


def _batch_class(spec: str, processor: dict[str, Any], watch: Watchdog | None) -> Processor:
    """User code, ``module:Class``, run on batches (batch_functions)."""
    options = {str(k): str(v) for k, v in (processor.get("options") or {}).items()}
    function = BatchFunction(
        spec,
        _load(spec),  # type: ignore[arg-type]
        options,
        size=int(processor.get("batchSize") or DEFAULT_BATCH_SIZE),
        fmt=str(processor.get("batchFormat") or "records"),
        timed=lambda call: _timed(call, watch),
    )

    def process(records: list[Record], state: State, on_bad: OnBad) -> None:
        function.run(records, state["lines"], on_bad)

    return Processor(
        spec,
        lambda: {"lines": []},
        lambda record, state: process([record], state, _raise),
        lambda s: "".join(f"{x}\n" for x in s["lines"]),
        batch_size=function.size,
        process_checked=process,
        close=function.teardown,
    )


def _sql(map_sql: str, reduce_sql: str | None, partitions: int) -> Processor:
    """``processor.sql`` (and ``reduce.sql``) with DuckDB on Arrow batches (sql_processor)."""
    queries = SqlQueries(map_sql, reduce_sql, partitions)

    def process_arrow(batch: Any, state: State) -> None:
        queries.run_map(batch, state["lines"])

    def process_batch(records: list[Record], state: State) -> None:
        queries.run_records(records, state["lines"])

    return Processor(
        "sql",
        lambda: {"lines": []},
        lambda record, state: process_batch([record], state),
        lambda s: "".join(f"{x}\n" for x in s["lines"]),
        process_batch=process_batch,
        merge=queries.merge,
        key=queries.key if queries.reduce is not None and queries.reduce.group_columns else None,
        process_arrow=process_arrow,
        columns=queries.columns,
        batch_size=RECORDS_PER_BATCH,
    )


def _raise(record: Record, error: Exception) -> None:
    del record
    raise error


def _map_reduce(mapper_spec: str, reducer_spec: str, watch: Watchdog | None = None) -> Processor:
    """User MapReduce: ``mapper(record)`` returns (key, value) pairs; ``reducer(key, values)`` one result.

    A map shard keeps each key's values (as lines ``<key JSON>\t<values JSON list>``, sorted by key) and the
    shuffle splits them by key; a reducer concatenates the value lists of its keys in map-shard order and
    calls ``reducer`` once per key: ``<key JSON>\t<result JSON>``.
    """
    mapper, reducer = _timed(_load(mapper_spec), watch), _load(reducer_spec)

    def process(record: Record, state: State) -> None:
        pairs = state["pairs"]
        for key, value in mapper(record) or ():
            pairs.setdefault(json.dumps(key, sort_keys=True), []).append(value)

    def render(state: State) -> str:
        return "".join(f"{key}\t{json.dumps(values)}\n" for key, values in sorted(state["pairs"].items()))

    def merge(parts: list[str]) -> str:
        grouped: dict[str, list[Any]] = {}
        for text in parts:
            for line in text.splitlines():
                key, _, values = line.partition("\t")
                grouped.setdefault(key, []).extend(json.loads(values))
        return "".join(
            f"{key}\t{json.dumps(reducer(json.loads(key), values), sort_keys=True)}\n"
            for key, values in sorted(grouped.items())
        )

    return Processor(
        f"{mapper_spec} -> {reducer_spec}",
        lambda: {"pairs": {}},
        process,
        render,
        merge=merge,
        key=lambda line: line.partition("\t")[0],
        to_row=_key_value_row,
        from_row=lambda row: f"{row['key']}\t{row['value']}",
    )


def _key_value_row(line: str) -> dict[str, Any]:
    key, _, value = line.partition("\t")
    return {"key": key, "value": value}  # both as their JSON text: any type, one column type


def _line(record: Record) -> str:
    return record if isinstance(record, str) else json.dumps(record, sort_keys=True)


def build(
    processor: dict[str, Any] | None,
    reducer: str | None = None,
    *,
    reduce_sql: str | None = None,
    partitions: int = 0,
    watch: Watchdog | None = None,
) -> Processor:
    """The processor a DataJob's ``spec.processor`` describes (wordcount when none is given); with a user
    reducer (``spec.reduce.function``) the processor's function is its mapper, with ``spec.reduce.sql``
    its SQL merges the map SQL's results. ``watch`` times each call of a user function."""
    processor = processor or {"builtin": "wordcount"}
    if processor.get("sql"):
        return _sql(processor["sql"], reduce_sql, partitions)
    options = {str(k): str(v) for k, v in (processor.get("options") or {}).items()}
    function = processor.get("function")
    if function and is_batch_class(_load(function)):
        if reducer:
            raise ValueError(
                f"spec.processor.function {function} is a class (the batch form); a mapper for "
                "spec.reduce.function must be a function"
            )
        return _batch_class(function, processor, watch)
    if processor.get("batchSize") or processor.get("batchFormat"):
        raise ValueError(
            "spec.processor.batchSize and batchFormat are for a class with process_batch(batch) in "
            f"spec.processor.function; {function or processor.get('builtin')} is not one"
        )
    if reducer and function:
        return _map_reduce(function, reducer, watch)
    if function:
        return _function(function, watch)
    builtin = processor.get("builtin")
    if builtin == "wordcount":
        return _wordcount()
    if builtin == "grep":
        return _grep(options)
    if builtin == "aggregate":
        return _aggregate(options)
    if builtin == "transform":
        return _transform(options)
    raise ValueError(f"unsupported processor {processor!r}")
