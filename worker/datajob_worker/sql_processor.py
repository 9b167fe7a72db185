"""``processor.sql`` and ``reduce.sql``: DuckDB queries on Arrow batches.

The map query runs on each batch of a shard (a Parquet record batch, a CSV chunk, or RECORDS_PER_BATCH
JSON Lines / text records), registered as the table ``input``; the rows it returns are appended to the
shard's output as JSON Lines, columns in SELECT order. The reduce query runs over the table ``partials``
(every row of the parts it merges, in shard order): once in the job commit, or per partition in each
reducer. One DuckDB thread and batches cut at fixed places make every result the same on every attempt.

DuckDB runs with external access off: the SQL can read the batch and nothing else (no files, no network),
whatever the query says; the API's checks (datajob_core.api.sql_check) refuse such queries earlier still.

CSV values are text; a text column whose non-blank values in a batch are all integers is given to the query
as BIGINT, all numbers as DOUBLE (blanks as NULL), anything else as VARCHAR, so ``sum(amount)`` works on CSV
as it does on Parquet. A dirty column is text in the batches where it is dirty: ``TRY_CAST`` handles that.
"""

from __future__ import annotations

import datetime
import decimal
import json
from typing import Any

from datajob_core.api import sql_check

Record = Any
State = dict[str, Any]

# Records per query on the record path (JSON Lines, text, CSV chunks Arrow could not read as csv would).
RECORDS_PER_BATCH = 16384
# A number as text, as the aggregate's columnar path reads it (no "inf", "nan", "1_000", blanks around).
DECIMAL = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"
INTEGER = r"^[+-]?[0-9]{1,18}$"


class SqlQueries:
    """One worker's DuckDB connection and the job's two queries."""

    def __init__(self, map_sql: str, reduce_sql: str | None, partitions: int = 0) -> None:
        self.map = sql_check.check_map(map_sql, has_reduce=reduce_sql is not None)
        self.reduce = (
            None if reduce_sql is None else sql_check.check_reduce(reduce_sql, partitions=partitions)
        )
        self._connection: Any = None

    @property
    def columns(self) -> tuple[str, ...] | None:
        """The input columns the map query can refer to (None: all); readers read only these."""
        return self.map.columns or None

    def connection(self) -> Any:
        if self._connection is None:
            import duckdb  # noqa: PLC0415 - only SQL jobs pay for importing DuckDB

            self._connection = duckdb.connect(config={"enable_external_access": False, "threads": 1})
        return self._connection

    def run_map(self, batch: Any, lines: list[str]) -> None:
        """The map query on one Arrow batch; its rows appended to ``lines``."""
        if batch.num_rows == 0:
            return
        lines.extend(self._query(self.map.sql, sql_check.INPUT_TABLE, _typed(batch)))

    def run_records(self, records: list[Record], lines: list[str]) -> None:
        import pyarrow as pa  # noqa: PLC0415

        if not records:
            return
        if all(isinstance(r, str) for r in records):
            batch = pa.table({"line": records})
        elif all(isinstance(r, dict) for r in records):
            batch = pa.Table.from_pylist(records)
        else:
            batch = pa.table({"value": records})
        self.run_map(batch, lines)

    def merge(self, parts: list[str]) -> str:
        """The reduce query over the rows of ``parts``; without one, the parts concatenated."""
        if self.reduce is None:
            return "".join(parts)
        import pyarrow as pa  # noqa: PLC0415

        rows = [json.loads(line) for text in parts for line in text.splitlines() if line]
        if not rows:
            return ""
        lines = self._query(self.reduce.sql, sql_check.PARTIALS_TABLE, pa.Table.from_pylist(rows))
        return "".join(f"{line}\n" for line in lines)

    def key(self, line: str) -> str:
        """The shuffle key of a partial row: its values of the reduce query's GROUP BY columns."""
        assert self.reduce is not None and self.reduce.group_columns is not None
        row = {name.lower(): value for name, value in json.loads(line).items()}
        return json.dumps([row.get(name.lower()) for name in self.reduce.group_columns])

    def _query(self, sql: str, table: str, data: Any) -> list[str]:
        connection = self.connection()
        connection.register(table, data)
        try:
            result = connection.sql(sql).to_arrow_table()
        finally:
            connection.unregister(table)
        names = result.schema.names
        return [
            json.dumps(dict(zip(names, values, strict=True)), default=_plain)
            for values in zip(*(column.to_pylist() for column in result.columns), strict=True)
        ]


def _typed(batch: Any) -> Any:
    """Text columns that hold only numbers (and blanks) as numbers; everything else as it is."""
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.compute as pc  # noqa: PLC0415

    columns, changed = [], False
    for column in batch.columns:
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            columns.append(column)
            continue
        blank = pc.equal(column, "")
        filled = pc.or_kleene(blank, pc.is_null(column))
        typed = column
        for pattern, kind in ((INTEGER, pa.int64()), (DECIMAL, pa.float64())):
            numbers = pc.match_substring_regex(column, pattern)
            if pc.all(pc.or_kleene(filled, numbers)).as_py() and not pc.all(filled).as_py():
                typed = pc.if_else(blank, pa.scalar(None, column.type), column).cast(kind)
                changed = True
                break
        columns.append(typed)
    if not changed:
        return batch
    return pa.table(columns, names=batch.schema.names)


def _plain(value: Any) -> Any:
    """What DuckDB returns beyond JSON's types: HUGEINT sums (Decimal), dates, times, bytes."""
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime.date | datetime.time | datetime.timedelta):
        return str(value) if isinstance(value, datetime.timedelta) else value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
