"""``processor.sql`` and ``reduce.sql``: DuckDB queries on Arrow batches.

The map query runs on each batch of a shard (a Parquet record batch, a CSV chunk, or RECORDS_PER_BATCH
JSON Lines / text records), registered as the table ``input``; the rows it returns are appended to the
shard's output as JSON Lines, columns in SELECT order. The reduce query runs over the table ``partials``
(every row of the parts it merges, in shard order): once in the job commit, or per partition in each
reducer. One DuckDB thread and batches cut at fixed places make every result the same on every attempt.

DuckDB runs with external access off: the SQL can read the batch and nothing else (no files, no network),
whatever the query says; the API's checks (datajob_core.api.sql_check) refuse such queries earlier still.

Columns keep the type their input gives them: Parquet's own, JSON's (one type per key: a key holding a
number in one record and a string in another fails the attempt, saying so; integers and fractions together
make it DOUBLE in that batch), and text for CSV, whose values are strings on every path, so a CSV query
casts (``sum(amount::DOUBLE)``, ``TRY_CAST`` for dirty columns). Text is never read as a number because a
batch's values look numeric: a guess could differ between batches (``01234`` a number in one, text in
another) and split one group in two.
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


class SqlInputError(ValueError):
    """Records the query cannot be given as one table (a JSON key with values of several types)."""


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
        lines.extend(self._query(self.map.sql, sql_check.INPUT_TABLE, batch))

    def run_records(self, records: list[Record], lines: list[str]) -> None:
        import pyarrow as pa  # noqa: PLC0415

        if not records:
            return
        if all(isinstance(r, str) for r in records):
            batch = pa.table({"line": records})
        elif all(isinstance(r, dict) for r in records):
            batch = table_of(records, "a JSON key", self.map.columns, self.map.aliases)
        else:
            batch = table_of([{"value": r} for r in records], "JSON values")
        self.run_map(batch, lines)

    def merge(self, parts: list[str]) -> str:
        """The reduce query over the rows of ``parts``; without one, the parts concatenated."""
        if self.reduce is None:
            return "".join(parts)

        rows = [json.loads(line) for text in parts for line in text.splitlines() if line]
        if not rows:
            return ""
        lines = self._query(self.reduce.sql, sql_check.PARTIALS_TABLE, table_of(rows, "a partial column"))
        return "".join(f"{line}\n" for line in lines)

    def key(self, line: str) -> str:
        """The shuffle key of a partial row: its values of the reduce query's GROUP BY columns."""
        assert self.reduce is not None and self.reduce.group_columns is not None
        row = {name.lower(): value for name, value in json.loads(line).items()}
        return json.dumps([_canonical(row.get(name.lower())) for name in self.reduce.group_columns])

    def _query(self, sql: str, table: str, data: Any) -> list[str]:
        connection = self.connection()
        connection.register(table, data)
        try:
            result = connection.sql(sql).to_arrow_table()
        finally:
            connection.unregister(table)
        names = result.schema.names
        if len(set(names)) != len(names):
            twice = sorted({name for name in names if names.count(name) > 1})
            raise SqlInputError(
                f"the query returns more than one column named {', '.join(twice)}: name them apart"
            )
        return [
            json.dumps(dict(zip(names, values, strict=True)), default=_plain)
            for values in zip(*(column.to_pylist() for column in result.columns), strict=True)
        ]


def _canonical(value: Any) -> Any:
    """A key value as the reduce query will group it: 1 and 1.0 (one batch's BIGINT, another's DOUBLE),
    0.0 and -0.0, are one group, so they must go to one reducer."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def table_of(
    rows: list[dict[str, Any]],
    what: str,
    wanted: tuple[str, ...] | None = None,
    aliases: frozenset[str] = frozenset(),
) -> Any:
    """Rows as an Arrow table, one type per column: with ``wanted`` (the names a query refers to, any
    case) just those keys, NULL where a row lacks one, so a key that appears only in later records or
    batches is still a column everywhere and a key the query never reads cannot fail it; else every key
    any row has. A name that no row has and the query gives to an expression (``AS x``) is the query's,
    not a missing key: filling it with NULL would shadow the alias (``WHERE x > 1``)."""
    import pyarrow as pa  # noqa: PLC0415

    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    if wanted is not None:
        spelled = {name.lower(): name for name in names}
        names = dict.fromkeys(
            spelled.get(name.lower(), name)
            for name in wanted
            if name.lower() in spelled or name.lower() not in aliases
        )
        if not names:  # count(*) and the like: the rows still count
            return pa.table({"value": [None] * len(rows)})
    columns = {}
    for name in names:
        values = [row.get(name) for row in rows]
        try:
            columns[name] = pa.array(values)
        except OverflowError:
            if not all(v is None or isinstance(v, int) for v in values):
                raise
            columns[name] = pa.array(values, pa.decimal128(38, 0))  # sums beyond BIGINT (DuckDB's HUGEINT)
        except pa.ArrowException as error:
            kinds = sorted({type(v).__name__ for v in values if v is not None})
            raise SqlInputError(
                f"{what} {name!r} holds values of several types in one batch ({', '.join(kinds)}): SQL needs "
                f"one type per column ({error})"
            ) from None
    return pa.table(columns) if columns else pa.table({"value": [None] * len(rows)})


def _plain(value: Any) -> Any:
    """What DuckDB returns beyond JSON's types: HUGEINT sums (Decimal), dates, times, bytes."""
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime.date | datetime.time | datetime.timedelta):
        return str(value) if isinstance(value, datetime.timedelta) else value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
