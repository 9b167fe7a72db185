"""What the SQL fields may hold, decided from DuckDB's parse tree before anything runs."""

from __future__ import annotations

import pytest

from datajob_core.api.sql_check import SqlError, check_map, check_reduce, parse

pytestmark = pytest.mark.unit


def test_a_syntax_error_names_the_field_line_and_column() -> None:
    with pytest.raises(
        SqlError, match=r'spec.processor.sql: syntax error at or near "AND" \(line 2, column 18\)'
    ):
        check_map("SELECT a\nFROM input WHERE AND b", has_reduce=False)


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT * FROM read_csv('/etc/passwd')", "may read only the table input, not a table function"),
        ("SELECT * FROM '/etc/passwd'", "may read only the table input"),
        ("SELECT * FROM other_table", "may read only the table input, not other_table"),
        ("SELECT * FROM main.input", "may read only the table input"),
        ("SELECT a FROM input WHERE a IN (SELECT b FROM secrets)", "not secrets"),
        ("COPY (SELECT 1) TO '/tmp/x'", "must be one SELECT query"),
        ("ATTACH 'x.db'", "must be one SELECT query"),
        ("SELECT 1 FROM input; SELECT 2 FROM input", "exactly one SELECT query, not 2 statements"),
        ("   ", "is empty"),
    ],
)
def test_a_map_query_may_read_only_its_batch(sql: str, message: str) -> None:
    with pytest.raises(SqlError, match=message):
        check_map(sql, has_reduce=True)


@pytest.mark.parametrize(
    ("sql", "needs"),
    [
        ("SELECT count(*) FROM input", "an aggregate"),
        ("SELECT region FROM input GROUP BY region", "GROUP BY"),
        ("SELECT DISTINCT region FROM input", "DISTINCT"),
        ("SELECT a FROM input ORDER BY a", "ORDER BY"),
        ("SELECT a FROM input LIMIT 10", "LIMIT"),
        ("SELECT a, row_number() OVER () FROM input", "a window function"),
        ("SELECT a FROM input WHERE a > (SELECT avg(a) FROM input)", "a subquery"),
        ("SELECT a FROM input UNION SELECT b FROM input", "UNION"),
        ("SELECT region FROM input GROUP BY ALL", "GROUP BY"),
        ("SELECT x.a FROM input x JOIN input y ON x.a = y.b", "a join"),
        ("SELECT a FROM input WHERE a IN (SELECT b FROM input)", "a subquery"),
        ("SELECT a FROM input WHERE EXISTS (SELECT 1 FROM input)", "a subquery"),
        ("SELECT a FROM (SELECT a FROM input UNION SELECT b FROM input)", "a subquery in FROM"),
        ("WITH t AS (SELECT DISTINCT a FROM input) SELECT a FROM t", "DISTINCT"),
        ("SELECT a FROM input UNION ALL (SELECT b FROM input LIMIT 1)", "LIMIT"),
        ("SELECT weighted_avg(a, b) FROM input", "an aggregate"),
        ("SELECT geomean(a) FROM input", "an aggregate"),
        ("SELECT json_group_array(a) FROM input", "an aggregate"),
    ],
)
def test_a_query_that_needs_all_rows_at_once_is_refused_without_a_reduce_query(sql: str, needs: str) -> None:
    with pytest.raises(SqlError, match=f"uses {needs}, which needs all rows at once.*spec.reduce.sql"):
        check_map(sql, has_reduce=False)
    assert check_map(sql, has_reduce=True).whole_input == needs


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT a, random() FROM input", r"calls random\(\), which can give another answer"),
        ("SELECT a, now() FROM input", r"calls now\(\)"),
        ("SELECT * FROM input USING SAMPLE 10", "samples rows"),
        ("SELECT * FROM input TABLESAMPLE 10%", "samples rows"),
        ("SHOW TABLES", "not SHOW, DESCRIBE or SUMMARIZE"),
        ("SUMMARIZE input", "not SHOW, DESCRIBE or SUMMARIZE"),
        ("DESCRIBE input", "not SHOW, DESCRIBE or SUMMARIZE"),
        ("SELECT current_setting('home_directory') FROM input", "may not read DuckDB's settings"),
        ("SELECT a FROM input, duckdb_settings()", "not a table function"),
        ("SELECT a, localtimestamp FROM input", r"calls localtimestamp\(\)"),
        ("SELECT a, txid_current() FROM input", r"calls txid_current\(\)"),
        ("SELECT a, current_localtime() FROM input", r"calls current_localtime\(\)"),
    ],
)
def test_queries_that_would_differ_between_attempts_or_read_the_engine_are_refused(
    sql: str, message: str
) -> None:
    with pytest.raises(SqlError, match=message):
        check_map(sql, has_reduce=True)


def test_a_query_using_whole_rows_or_positions_reads_every_column() -> None:
    assert check_map("SELECT to_json(input) FROM input WHERE a > 0", has_reduce=False).columns is None
    assert check_map("SELECT to_json(t) FROM input AS t", has_reduce=False).columns is None
    assert check_map("SELECT #2 AS second, a FROM input", has_reduce=False).columns is None
    assert check_map("SELECT count(*) FROM input", has_reduce=True).columns is None


def test_a_query_without_from_input_is_not_per_row() -> None:
    with pytest.raises(SqlError, match=r"uses no FROM input \(it would give its rows once per batch\)"):
        check_map("SELECT 42 AS answer", has_reduce=False)


def test_per_row_queries_run_per_batch_and_name_the_columns_they_read() -> None:
    query = check_map(
        "SELECT upper(region) AS r, amount * 2 AS twice FROM input WHERE amount > 1", has_reduce=False
    )
    assert query.whole_input is None and query.columns == ("amount", "region")
    assert check_map("SELECT * FROM input WHERE x > 1", has_reduce=False).columns is None
    assert (
        check_map("SELECT a FROM input UNION ALL SELECT b FROM input", has_reduce=False).whole_input is None
    )
    with_cte = "WITH big AS (SELECT * FROM input WHERE amount > 100) SELECT region FROM big"
    assert check_map(with_cte, has_reduce=False).whole_input is None


def test_a_reduce_query_reads_partials_and_with_partitions_groups_by_plain_columns() -> None:
    assert check_reduce("SELECT r, sum(s) AS s FROM partials GROUP BY r", partitions=4).group_columns == (
        "r",
    )
    with pytest.raises(SqlError, match="may read only the table partials, not input"):
        check_reduce("SELECT sum(s) FROM input", partitions=0)
    with pytest.raises(SqlError, match="must GROUP BY plain columns of partials"):
        check_reduce("SELECT sum(s) FROM partials", partitions=2)
    with pytest.raises(SqlError, match="must GROUP BY plain columns of partials"):
        check_reduce("SELECT lower(r), sum(s) FROM partials GROUP BY lower(r)", partitions=2)
    for whole in (
        "SELECT r, sum(s) FROM partials GROUP BY r ORDER BY 2 DESC",
        "SELECT r, sum(s) FROM partials GROUP BY ROLLUP (r)",
        "SELECT r, sum(s) FROM partials GROUP BY GROUPING SETS ((r), ())",
        "SELECT r, sum(s) / (SELECT sum(s) FROM partials) FROM partials GROUP BY r",
        "SELECT r, rank() OVER (ORDER BY sum(s)) FROM partials GROUP BY r",
        "SELECT r, sum(s) FROM partials GROUP BY r HAVING sum(s) > (SELECT avg(s) FROM partials)",
    ):
        with pytest.raises(SqlError, match="needs more than one partition's rows"):
            check_reduce(whole, partitions=2)
        assert check_reduce(whole, partitions=0)
    assert check_reduce("SELECT r, sum(s) FROM partials GROUP BY r HAVING sum(s) > 1", partitions=2)


def test_parse_takes_any_table_name() -> None:
    assert parse("SELECT x FROM t", "f", "t").columns == ("x",)
