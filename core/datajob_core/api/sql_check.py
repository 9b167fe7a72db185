"""What a DataJob's SQL may be, decided from DuckDB's parse tree (``json_serialize_sql``) before anything
runs: at admission in the operator, and by ``datajob validate`` / ``datajob run``.

``spec.processor.sql`` runs on each batch of each shard, over the table ``input``; ``spec.reduce.sql``
merges what all of them returned, over the table ``partials``. So a map query may read only ``input`` (no
files, no other tables, no table functions), and one that needs the whole input at once (an aggregate,
GROUP BY, DISTINCT, ORDER BY, LIMIT, a window) must come with a reduce query. With
``spec.reduce.partitions`` the reduce query runs per partition of its keys, so it must GROUP BY plain
columns of ``partials`` (the shuffle keys) and must not order or limit the whole result.

Only parsing happens here (DuckDB's parser, no connection to data); the only catalog read is DuckDB's
built-in list of aggregate function names.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

INPUT_TABLE = "input"
PARTIALS_TABLE = "partials"
MAX_SQL_CHARS = 65536

# Parts of a SELECT that make its answer depend on all rows at once, not on each batch alone.
WHOLE_INPUT_MODIFIERS = {
    "ORDER_MODIFIER": "ORDER BY",
    "LIMIT_MODIFIER": "LIMIT",
    "LIMIT_PERCENT_MODIFIER": "LIMIT",
    "DISTINCT_MODIFIER": "DISTINCT",
}


# Functions whose answer can change when a batch is run again: a retried attempt would write other rows.
VOLATILE_FUNCTIONS = frozenset(
    {"random", "setseed", "uuid", "gen_random_uuid", "uuidv4", "uuidv7", "now", "today", "epoch_ms_now"}
    | {"nextval", "currval", "localtime", "localtimestamp"}
)
# So are these, and anything about the session: the time, the transaction, the query.
VOLATILE_PREFIXES = ("current_", "get_current_", "transaction_", "txid_")
# Functions that read the engine's configuration (paths on the worker, for one) rather than the data.
SETTINGS_FUNCTIONS = frozenset({"current_setting", "getvariable", "which_secret", "current_schemas"})


class SqlError(ValueError):
    """The SQL cannot run as the field asks; the message names the field (and the position, if known)."""


@dataclass(frozen=True)
class Query:
    sql: str
    columns: tuple[str, ...] | None  # every column name it refers to; None: it reads all (SELECT *)
    whole_input: str | None  # why it needs all rows at once (e.g. "GROUP BY"), or None
    group_columns: tuple[str, ...] | None  # the plain columns of its top-level GROUP BY, if it is that
    per_partition: bool  # a reduce query reducers can run on their own keys (see _per_partition)
    # Names it gives to expressions and tables (AS ...): a reference to one is not a column of the input.
    aliases: frozenset[str] = frozenset()


@functools.cache
def _connection() -> Any:
    import duckdb  # noqa: PLC0415 - only jobs with SQL pay for importing DuckDB

    return duckdb.connect(config={"enable_external_access": False, "threads": 1})


@functools.cache
def _aggregate_functions() -> frozenset[str]:
    """Aggregates, and the built-in macros that call one (weighted_avg, geomean, json_group_array, ...),
    however deep."""
    connection = _connection()
    rows = connection.execute(
        "SELECT DISTINCT function_name FROM duckdb_functions() WHERE function_type = 'aggregate'"
    ).fetchall()
    names = {str(row[0]).lower() for row in rows}
    macros = connection.execute(
        "SELECT function_name, macro_definition FROM duckdb_functions() "
        "WHERE function_type IN ('macro', 'table_macro') AND macro_definition IS NOT NULL"
    ).fetchall()
    calls = re.compile(r"([a-z_][a-z0-9_]*)\s*\(")
    grew = True
    while grew:
        grew = False
        for name, definition in macros:
            if str(name).lower() not in names and set(calls.findall(str(definition).lower())) & names:
                names.add(str(name).lower())
                grew = True
    return frozenset(names)


def parse(sql: str, field: str, table: str) -> Query:
    """``sql`` as ``field`` (e.g. ``spec.processor.sql``) over ``table``, or SqlError saying what is wrong."""
    if not sql.strip():
        raise SqlError(f"{field} is empty")
    if len(sql) > MAX_SQL_CHARS:
        raise SqlError(f"{field} is longer than {MAX_SQL_CHARS} characters")
    text = _connection().execute("SELECT json_serialize_sql(?)", [sql]).fetchone()[0]
    tree = json.loads(text)
    if tree.get("error"):
        message = tree.get("error_message", "cannot be parsed")
        if "Only SELECT" in message:
            raise SqlError(f"{field} must be one SELECT query (over the table {table})")
        where = _where(sql, tree.get("position"))
        raise SqlError(f"{field}: {message}{where}")
    statements = tree.get("statements") or []
    if len(statements) != 1:
        raise SqlError(f"{field} must be exactly one SELECT query, not {len(statements)} statements")
    node = statements[0]["node"]
    _only_table(node, field, table, sql)
    aliases = frozenset(
        str(part["alias"]).lower()
        for part in _walk(node)
        if isinstance(part.get("alias"), str) and part["alias"]
    )
    return Query(sql, _columns(node), _whole_input(node), _group_columns(node), _per_partition(node), aliases)


def check_map(sql: str, *, has_reduce: bool) -> Query:
    query = parse(sql, "spec.processor.sql", INPUT_TABLE)
    if query.whole_input and not has_reduce:
        raise SqlError(
            f"spec.processor.sql uses {query.whole_input}, which needs all rows at once, but it runs on each "
            f"batch of each shard: add spec.reduce.sql to merge the batches' results (over the table "
            f"{PARTIALS_TABLE}), e.g. sums of sums and counts"
        )
    return query


def check_reduce(sql: str, *, partitions: int) -> Query:
    query = parse(sql, "spec.reduce.sql", PARTIALS_TABLE)
    if partitions and not query.group_columns:
        raise SqlError(
            "spec.reduce.sql must GROUP BY plain columns of partials when spec.reduce.partitions is set: "
            "each reducer merges the groups of its keys (leave partitions out to merge in one place)"
        )
    if partitions and not query.per_partition:
        raise SqlError(
            "spec.reduce.sql needs more than one partition's rows (ORDER BY, LIMIT, DISTINCT, ROLLUP or "
            "grouping sets, a subquery, join or window), which reducers holding one partition each cannot "
            "give: leave spec.reduce.partitions out"
        )
    return query


def _where(sql: str, position: object) -> str:
    try:
        at = int(str(position))
    except ValueError:
        return ""
    if not 0 <= at <= len(sql):  # no position (DuckDB says 2**64 - 1)
        return ""
    line = sql.count("\n", 0, at) + 1
    column = at - (sql.rfind("\n", 0, at) + 1) + 1
    return f" (line {line}, column {column})"


def _walk(tree: Any) -> Iterator[dict[str, Any]]:
    if isinstance(tree, dict):
        yield tree
        for value in tree.values():
            yield from _walk(value)
    elif isinstance(tree, list):
        for value in tree:
            yield from _walk(value)


def _cte_names(node: dict[str, Any]) -> set[str]:
    names: set[str] = set()
    for part in _walk(node):
        for entry in (part.get("cte_map") or {}).get("map") or []:
            names.add(str(entry.get("key", "")).lower())
    return names


def _only_table(node: dict[str, Any], field: str, table: str, sql: str) -> None:
    allowed = {table} | _cte_names(node)
    for part in _walk(node):
        kind = part.get("type")
        if kind == "BASE_TABLE":
            name = str(part.get("table_name", ""))
            if name.lower() not in allowed or part.get("schema_name") or part.get("catalog_name"):
                where = _where(sql, part.get("query_location"))
                raise SqlError(f"{field} may read only the table {table}, not {name}{where}")
        elif kind in ("TABLE_FUNCTION", "SHOW_REF"):
            what = "a table function" if kind == "TABLE_FUNCTION" else "SHOW, DESCRIBE or SUMMARIZE"
            where = _where(sql, part.get("query_location"))
            raise SqlError(f"{field} may read only the table {table}, not {what}{where}")
        elif part.get("class") == "FUNCTION" or (
            # current_timestamp, localtime, ...: written without parentheses they parse as column names.
            part.get("class") == "COLUMN_REF" and len(part.get("column_names") or []) == 1
        ):
            name = str(part.get("function_name") or part["column_names"][0]).lower()
            if name in VOLATILE_FUNCTIONS or (
                name.startswith(VOLATILE_PREFIXES) and name not in SETTINGS_FUNCTIONS
            ):
                raise SqlError(
                    f"{field} calls {name}(), which can give another answer when a batch is run again "
                    "(after a kill): the output would not be the same on every attempt"
                )
            if part.get("class") == "FUNCTION" and (name in SETTINGS_FUNCTIONS or name.startswith("duckdb_")):
                raise SqlError(f"{field} may not read DuckDB's settings ({name})")
        if part.get("sample"):
            raise SqlError(
                f"{field} samples rows (USING SAMPLE / TABLESAMPLE): not the same on every attempt"
            )


def _columns(node: dict[str, Any]) -> tuple[str, ...] | None:
    """The names the query refers to, or None (read every column) where it may use a whole row: *, a
    positional reference, a table or alias name as a value (to_json(input))."""
    tables = {INPUT_TABLE, PARTIALS_TABLE} | _cte_names(node)
    for part in _walk(node):
        if isinstance(part.get("alias"), str) and part.get("type") in ("BASE_TABLE", "SUBQUERY", "JOIN"):
            tables.add(part["alias"].lower())
    names: set[str] = set()
    for part in _walk(node):
        if part.get("class") in ("STAR", "POSITIONAL_REFERENCE"):
            return None
        if part.get("class") == "COLUMN_REF":
            refs = [str(name) for name in part.get("column_names") or []]
            if len(refs) == 1 and refs[0].lower() in tables:
                return None
            names.update(refs)
    return tuple(sorted(names)) or None


def _whole_input(node: dict[str, Any]) -> str | None:
    """Why the query's answer on a batch is not simply its rows for that batch (None: it is: a query that
    maps, filters and unions rows one by one), e.g. "GROUP BY" or "a join"."""
    if node.get("type") == "SET_OPERATION_NODE":
        if node.get("setop_type") != "UNION" or not node.get("setop_all"):
            return str(node.get("setop_type", "a set operation")).replace("_", " ")
        if node.get("modifiers"):
            return _modifier(node["modifiers"])
        sides = node.get("children") or [node.get("left"), node.get("right")]
        return next((why for side in sides if side and (why := _whole_input(side))), None)
    if node.get("type") != "SELECT_NODE":
        return str(node.get("type", "this query")).replace("_", " ").lower()
    if node.get("modifiers"):
        return _modifier(node["modifiers"])
    if node.get("group_expressions") or node.get("aggregate_handling") != "STANDARD_HANDLING":
        return "GROUP BY"
    if node.get("having") or node.get("qualify"):
        return "HAVING" if node.get("having") else "QUALIFY"
    source = node.get("from_table") or {}
    if source.get("type") == "EMPTY":
        return "no FROM input (it would give its rows once per batch)"
    if source.get("type") != "BASE_TABLE":
        return "a join" if source.get("type") == "JOIN" else "a subquery in FROM"
    for entry in (node.get("cte_map") or {}).get("map") or []:
        inner = _whole_input(entry["value"]["query_node"])
        if inner:
            return inner
    expressions = [node.get("select_list"), node.get("where_clause")]
    for part in _walk(expressions):
        if part.get("class") == "SUBQUERY":
            return "a subquery"
        if part.get("class") == "WINDOW":
            return "a window function"
        if part.get("class") == "FUNCTION" and str(part.get("function_name", "")).lower() in (
            _aggregate_functions()
        ):
            return "an aggregate"
    return None


def _modifier(modifiers: list[dict[str, Any]]) -> str:
    return WHOLE_INPUT_MODIFIERS.get(str(modifiers[0].get("type")), "a modifier")


def _per_partition(node: dict[str, Any]) -> bool:
    """A reduce query each reducer can run on its own keys: one SELECT over partials with a plain GROUP BY
    (one grouping set), no ORDER BY / LIMIT / DISTINCT, no subquery, join or window anywhere."""
    if node.get("type") != "SELECT_NODE" or node.get("modifiers") or node.get("qualify"):
        return False
    if len(node.get("group_sets") or []) != 1 or node.get("aggregate_handling") != "STANDARD_HANDLING":
        return False
    if (node.get("from_table") or {}).get("type") != "BASE_TABLE" or (node.get("cte_map") or {}).get("map"):
        return False
    return not any(
        part.get("class") in ("SUBQUERY", "WINDOW")
        for part in _walk([node.get("select_list"), node.get("where_clause"), node.get("having")])
    )


def _group_columns(node: dict[str, Any]) -> tuple[str, ...] | None:
    groups = node.get("group_expressions") or []
    if not groups or any(g.get("class") != "COLUMN_REF" for g in groups):
        return None
    return tuple(str(g["column_names"][-1]) for g in groups)
