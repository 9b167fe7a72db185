"""Processors over Arrow record batches: the same results as the per-record processors, computed by Arrow's
columnar kernels (group-by in C++) instead of a Python loop per record.

Results must equal the per-record path's, so a batch whose columns the record path would read differently
(a float or boolean group key, which Python prints as ``1.0`` / ``True`` where Arrow prints ``1`` /
``true``; a text value that is not a plain decimal number, which Python's float() may read where Arrow
cannot, or the other way round) is handed to that path.
Each batch is folded into the state with one addition per group, in batch order, so an attempt resumed at a
batch boundary adds exactly what an undisturbed one did (the readers cut batches at fixed rows).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from datajob_worker.aggregate import Aggregate, group_key

State = dict[str, Any]


def _key_column(batch: Any, name: str) -> Any:
    """A group-key column as the record path's ``str(record.get(name, ""))`` renders it; None if Arrow
    would render it differently (the batch then takes the record path)."""
    import pyarrow as pa  # noqa: PLC0415 - only columnar jobs pay for importing pyarrow
    import pyarrow.compute as pc  # noqa: PLC0415

    if name not in batch.schema.names:
        return pa.repeat(pa.scalar("", pa.string()), batch.num_rows)
    if len(batch.schema.get_all_field_indices(name)) > 1:
        return None  # a name twice: as a dict, the record path keeps the last
    column = batch.column(name)
    kind = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_integer(kind)):
        return None
    return pc.fill_null(column.cast(pa.string()), "None")  # str(None)


# A number as text that Python's float() and Arrow's cast read alike (no "inf", "1_000", blanks around).
DECIMAL = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"


def _value_column(batch: Any, name: str | None) -> tuple[bool, Any]:
    """(usable, the value column as float64 or None when there is none to add). Text (CSV) is usable when
    every value is blank (not added, as on the record path) or a plain decimal number."""
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.compute as pc  # noqa: PLC0415

    if name is None or name not in batch.schema.names:
        return True, None
    if len(batch.schema.get_all_field_indices(name)) > 1:
        return False, None
    column = batch.column(name)
    if pa.types.is_integer(column.type):
        # Unchecked: above 2**53 an integer becomes the nearest double, as Python's float() makes it.
        return True, column.cast(pa.float64(), safe=False)
    if pa.types.is_floating(column.type):
        values = column.cast(pa.float64())
        # NaN: Arrow's min/max skip it, Python's comparisons do not (a first NaN stays the minimum).
        return not pc.any(pc.is_nan(values)).as_py(), values
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return False, None
    blank = pc.equal(column, "")
    if not pc.all(pc.or_(blank, pc.match_substring_regex(column, DECIMAL))).as_py():
        return False, None
    return True, pc.if_else(blank, pa.scalar(None, column.type), column).cast(pa.float64())


def columnar_aggregate(
    aggregate: Aggregate, fold_rows: Callable[[list[Any], State], None]
) -> Callable[[Any, State], None]:
    """The aggregate processor over a record batch: rows, and count, sum, min and max of each value column
    per group, folded into the state the record path keeps (aggregate.Aggregate)."""
    keys, value_names = aggregate.keys, aggregate.values
    # The non-blank count of a value column is only shown (and merged) by options.values' means.
    kernels = ("count", "sum", "min", "max") if aggregate.nested else ("sum", "min", "max")

    def process_arrow(batch: Any, state: State) -> None:
        import pyarrow as pa  # noqa: PLC0415

        columns = [_key_column(batch, key) for key in keys]
        values = [_value_column(batch, name) for name in value_names]
        if not all(usable for usable, _ in values) or any(column is None for column in columns):
            fold_rows(batch.to_pylist(), state)
            return
        names = [f"k{index}" for index in range(len(keys))]
        data = dict(zip(names, columns, strict=True))
        aggregations: list[tuple[Any, str]] = [([], "count_all")]
        for index, (_, column) in enumerate(values):
            if column is not None:
                data[f"v{index}"] = column
                aggregations += [(f"v{index}", f) for f in kernels]
        # One thread: a threaded hash aggregate may add partial sums in a different order each run.
        table = pa.table(data).group_by(names, use_threads=False).aggregate(aggregations)
        groups = state["groups"]
        zeros = [0] * table.num_rows
        key_lists = [table.column(name).to_pylist() for name in names]
        counts = table.column("count_all").to_pylist()
        stats = [
            [
                table.column(f"v{index}_{f}").to_pylist() if f in kernels else zeros
                for f in ("count", "sum", "min", "max")
            ]
            for index, (_, column) in enumerate(values)
            if column is not None
        ]
        present = [index for index, (_, column) in enumerate(values) if column is not None]
        for row, count in enumerate(counts):
            group = key_lists[0][row] if len(keys) == 1 else group_key([k[row] for k in key_lists])
            entry = groups.get(group)
            if entry is None:
                entry = groups[group] = aggregate.empty()
            entry[0] += count
            for index, (n, sums, lows, highs) in zip(present, stats, strict=True):
                at, total, low, high = 1 + 4 * index, sums[row], lows[row], highs[row]
                entry[at] += n[row]
                if total is not None:
                    entry[at + 1] += total
                if low is not None and (entry[at + 2] is None or low < entry[at + 2]):
                    entry[at + 2] = low
                if high is not None and (entry[at + 3] is None or high > entry[at + 3]):
                    entry[at + 3] = high

    return process_arrow


# Bytes Python's str.split() takes for whitespace but Arrow's ascii_split_whitespace does not.
_PYTHON_ONLY_WHITESPACE = (b"\x1c", b"\x1d", b"\x1e", b"\x1f")


# Measured (2 cores): Arrow 84 us vs str.split 15 us at 1 KiB, 274 vs 281 us at 16 KiB, 624 vs 1266 at 64 KiB.
_ARROW_FROM_BYTES = 16 * 1024


def columnar_word_count(chunk: bytes, state: State) -> bool:
    """Word count over a chunk of whole text lines: Arrow splits and counts the words (in C++), the state
    gets one addition per distinct word. Only for ASCII text without the separators \\x1c-\\x1f: there,
    Arrow's whitespace is Python's, so the counts are the record path's (``str.split()`` per line)."""
    if not chunk.isascii() or any(separator in chunk for separator in _PYTHON_ONLY_WHITESPACE):
        return False
    if len(chunk) < _ARROW_FROM_BYTES:
        # Under ~16 KiB a call into Arrow costs more than splitting in Python (the end of a piece, or a
        # small file packed with thousands of others); the words are the same here, so are the counts.
        state["counts"].update(chunk.decode("ascii").split())
        return True
    import pyarrow as pa  # noqa: PLC0415 - only columnar jobs pay for importing pyarrow
    import pyarrow.compute as pc  # noqa: PLC0415

    words = pc.ascii_split_whitespace(pa.array([chunk.decode("ascii")], pa.string())).flatten()
    counted = pc.value_counts(words)
    counts = dict(zip(counted.field(0).to_pylist(), counted.field(1).to_pylist(), strict=True))
    counts.pop("", None)  # Arrow keeps an empty word before leading / after trailing whitespace; split() not
    state["counts"].update(counts)
    return True
