"""The batch form of user code: ``processor.function: mymod:Model`` naming a class.

The class is built once per worker process. ``setup()`` runs before its first batch (load a model, open a
connection: once per worker, not per record or per shard), ``process_batch(batch)`` runs on up to
``processor.batchSize`` records at a time, and ``teardown()``, if the class has one, when the worker ends.

A batch is a list of records (``batchFormat: records``) or a ``pyarrow.RecordBatch`` (``arrow``); text
input is one column, ``line``. ``process_batch`` returns the output lines: an iterable of strings or
JSON-able values (numpy scalars and arrays included), a pyarrow Table or RecordBatch, or None.

Batches are cut from the start of each input piece, every ``batchSize`` records read, so a resumed attempt
sees the batches an undisturbed one did (a model's float results may depend on the batch it ran in).

A batch that raises is run again one record at a time, to find the record(s) at fault: those go to
``spec.input.badRecordPolicy`` (``Fail``: the attempt fails naming the record, and is retried like any
user-code failure). When every record of a batch fails alone (whatever the batch size, 1 included), the
function is tried again on the last record it processed in this worker: if that fails too, or there is
none yet, the fault is not in the records (a model not loaded, a lost connection) and the batch's error
fails the attempt, so Skip never quietly drops the input; if it works, the batch's records are bad.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Iterable
from typing import Any

# Records given to the batch function per call when the spec does not say.
DEFAULT_BATCH_SIZE = 256
BATCH_FORMATS = ("records", "arrow")

Record = Any
# Told about a record the user code failed on alone, with the error: applies the bad-record policy.
OnBad = Callable[[Record, Exception], None]


class BatchFunctionError(ValueError):
    """The class does not have the batch form's shape; said before any record is read."""


def is_batch_class(target: object) -> bool:
    """A class with process_batch; any other class is a per-record callable, as before the batch form."""
    return inspect.isclass(target) and callable(getattr(target, "process_batch", None))


class BatchFunction:
    """One worker process's instance of the user's class, set up on first use."""

    def __init__(
        self,
        spec: str,
        cls: type,
        options: dict[str, str],
        *,
        size: int = DEFAULT_BATCH_SIZE,
        fmt: str = "records",
        timed: Callable[[Callable[..., Any]], Callable[..., Any]] = lambda f: f,
    ) -> None:
        if not callable(getattr(cls, "process_batch", None)):
            raise BatchFunctionError(
                f"spec.processor.function {spec} is a class without a process_batch(batch) method"
            )
        if fmt not in BATCH_FORMATS:
            raise BatchFunctionError(f"spec.processor.batchFormat {fmt!r} is not one of {BATCH_FORMATS}")
        if size < 1:
            raise BatchFunctionError(f"spec.processor.batchSize {size} is not a positive number")
        self.spec, self.size, self.fmt = spec, size, fmt
        self.options = options
        self.instance: Any = cls()
        self.call = timed(self.instance.process_batch)
        self.ready = False
        self.canary: Record | None = None  # a record the function processed in this worker (_still_works)

    def setup(self) -> None:
        if self.ready:
            return
        setup = getattr(self.instance, "setup", None)
        if callable(setup):
            # setup(options) gets spec.processor.options; a setup() without parameters is fine too.
            takes_options = bool(inspect.signature(setup).parameters)
            setup(self.options) if takes_options else setup()
        self.ready = True

    def teardown(self) -> None:
        if not self.ready:
            return
        self.ready = False
        teardown = getattr(self.instance, "teardown", None)
        if callable(teardown):
            teardown()

    def run(self, records: list[Record], lines: list[str], on_bad: OnBad) -> None:
        """Appends the output lines of ``records`` (whole batches, or a piece's tail) to ``lines``."""
        self.setup()
        produced: list[str] = []
        failures: list[tuple[Record, Exception]] = []
        for at in range(0, len(records), self.size):
            batch = records[at : at + self.size]
            try:
                # Inside the try: a generator raises while it is consumed, not when it is called.
                produced.extend(output_lines(self.call(self._batch(batch))))
                self.canary = batch[-1]
            except Exception as error:
                failed = self._one_by_one(batch, produced)
                if len(failed) == len(batch) and not self._still_works():
                    raise error from None  # not the records: the function (a model, a connection) is broken
                failures += failed
        for record, failure in failures:
            on_bad(record, failure)
        lines.extend(produced)

    def _still_works(self) -> bool:
        """Whether the function still processes a record it processed before in this worker (the last one
        that succeeded); with none yet, a batch whose every record fails is taken as the function's fault."""
        if self.canary is None:
            return False
        try:
            output_lines(self.call(self._batch([self.canary])))
        except Exception:  # noqa: BLE001 - any failure says the function, not the batch, is broken
            return False
        return True

    def _one_by_one(self, batch: list[Record], produced: list[str]) -> list[tuple[Record, Exception]]:
        failures: list[tuple[Record, Exception]] = []
        for record in batch:
            try:
                produced.extend(output_lines(self.call(self._batch([record]))))
                self.canary = record
            except Exception as alone:  # noqa: BLE001 - a bad record, or the whole function is broken
                failures.append((record, alone))
        return failures

    def _batch(self, records: list[Record]) -> Any:
        if self.fmt == "records":
            return records
        import pyarrow as pa  # noqa: PLC0415 - only the arrow batch format pays for importing pyarrow

        if all(isinstance(r, str) for r in records):
            return pa.RecordBatch.from_pydict({"line": records})
        if all(isinstance(r, dict) for r in records):
            # Every key any record has (from_pylist would take the first record's keys only).
            names = dict.fromkeys(key for record in records for key in record)
            return pa.RecordBatch.from_pydict({name: [r.get(name) for r in records] for name in names})
        return pa.RecordBatch.from_pydict({"value": records})  # JSON Lines of numbers, lists, ...


def output_lines(result: Any) -> list[str]:
    """The lines ``process_batch`` returned, one per item; a JSON value is written with sorted keys."""
    if result is None:
        return []
    if callable(getattr(result, "to_pylist", None)):  # a pyarrow Table or RecordBatch
        result = result.to_pylist()
    if isinstance(result, str | bytes | dict):
        raise TypeError(
            f"process_batch returned a {type(result).__name__}; return a list of output lines or records"
        )
    return [item if isinstance(item, str) else _json(item) for item in _iterate(result)]


def _iterate(result: Any) -> Iterable[Any]:
    tolist = getattr(result, "tolist", None)  # a numpy array: its items as Python values
    return tolist() if callable(tolist) else result  # type: ignore[no-any-return]


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=_plain)


def _plain(value: Any) -> Any:
    """numpy scalars and arrays (what a model returns) as the Python values JSON knows."""
    for method in ("item", "tolist"):
        convert = getattr(value, method, None)
        if callable(convert):
            try:
                return convert()
            except (TypeError, ValueError):
                continue
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
