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
        ("SELECT a FROM input WHERE a > (SELECT avg(a) FROM input)", "an aggregate"),
        ("SELECT a FROM input UNION SELECT b FROM input", "UNION"),
    ],
)
def test_a_query_that_needs_all_rows_at_once_is_refused_without_a_reduce_query(sql: str, needs: str) -> None:
    with pytest.raises(SqlError, match=f"uses {needs}, which needs all rows at once.*spec.reduce.sql"):
        check_map(sql, has_reduce=False)
    assert check_map(sql, has_reduce=True).whole_input == needs


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
    with pytest.raises(SqlError, match="uses ORDER BY across all rows"):
        check_reduce("SELECT r, sum(s) FROM partials GROUP BY r ORDER BY 2 DESC", partitions=2)
    assert check_reduce("SELECT r, sum(s) FROM partials GROUP BY r ORDER BY 2 DESC", partitions=0)


def test_parse_takes_any_table_name() -> None:
    assert parse("SELECT x FROM t", "f", "t").columns == ("x",)
