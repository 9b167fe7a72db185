"""The aggregate processor over Arrow batches gives what the per-record path gives, on every column shape."""

from __future__ import annotations

import json
import math
from typing import Any

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from datajob_worker import processors

REGIONS = st.sampled_from(["emea", "amer", "apac", "", None])
AMOUNTS = st.one_of(st.none(), st.integers(-1000, 1000), st.floats(-1e6, 1e6, allow_nan=False))


def _rows(draw: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = draw(
        st.lists(
            st.fixed_dictionaries({"region": REGIONS, "store": st.integers(0, 3), "amount": AMOUNTS}),
            max_size=60,
        )
    )
    return rows


def _by_record(options: dict[str, str], batches: list[list[dict[str, Any]]]) -> dict[str, Any]:
    processor = processors.build({"builtin": "aggregate", "options": options})
    state = processor.init()
    for rows in batches:
        processor.batch()(rows, state)
    return _parsed(processor.render(state))


def _by_batch(options: dict[str, str], batches: list[pa.RecordBatch]) -> dict[str, Any]:
    processor = processors.build({"builtin": "aggregate", "options": options})
    assert processor.process_arrow is not None
    state = processor.init()
    for batch in batches:
        processor.process_arrow(batch, state)
    return _parsed(processor.render(state))


def _parsed(rendered: str) -> dict[str, Any]:
    rows = [json.loads(line) for line in rendered.splitlines()]
    return {
        json.dumps({k: v for k, v in r.items() if k not in ("count", "sum", "min", "max")}): r for r in rows
    }


def _same(left: dict[str, Any], right: dict[str, Any]) -> None:
    assert left.keys() == right.keys()
    for group, row in left.items():
        other = right[group]
        assert (row["count"], row["min"], row["max"]) == (other["count"], other["min"], other["max"]), group
        assert math.isclose(row["sum"], other["sum"], rel_tol=1e-12, abs_tol=1e-6), group


@st.composite
def _batches(draw: Any) -> list[list[dict[str, Any]]]:
    return [_rows(draw) for _ in range(draw(st.integers(1, 4)))]


@settings(max_examples=150, deadline=None)
@given(_batches(), st.sampled_from(["region", "store", "region,store", "missing", "region,missing"]))
def test_a_grouped_aggregate_over_arrow_batches_equals_the_record_by_record_one(
    batches: list[list[dict[str, Any]]], group_by: str
) -> None:
    options = {"groupBy": group_by, "value": "amount"}
    schema = pa.schema([("region", pa.string()), ("store", pa.int64()), ("amount", pa.float64())])
    arrow = [pa.RecordBatch.from_pylist(rows, schema=schema) for rows in batches]
    records = [
        [dict(r, amount=None if r["amount"] is None else float(r["amount"])) for r in b] for b in batches
    ]
    _same(_by_batch(options, arrow), _by_record(options, records))


def test_a_count_without_a_value_column_and_a_missing_value_column_count_rows() -> None:
    rows: list[dict[str, Any]] = [{"region": "emea"}, {"region": "emea"}, {"region": None}]
    batch = pa.RecordBatch.from_pylist(rows)
    for options in ({"groupBy": "region"}, {"groupBy": "region", "value": "absent"}):
        _same(_by_batch(options, [batch]), _by_record(options, [rows]))
        assert _by_batch(options, [batch])[json.dumps({"region": "emea"})]["count"] == 2


def test_keys_arrow_would_print_differently_take_the_record_path() -> None:
    """A float key prints 1.0 in Python and 1 in Arrow; a boolean True and true: the record path decides."""
    rows = [{"ratio": 1.0, "flag": True, "amount": 2}, {"ratio": 2.5, "flag": False, "amount": 3}]
    batch = pa.RecordBatch.from_pylist(rows)
    for group_by in ("ratio", "flag"):
        options = {"groupBy": group_by, "value": "amount"}
        by_batch = _by_batch(options, [batch])
        assert by_batch == _by_record(options, [rows])
    assert json.dumps({"ratio": "1.0"}) in _by_batch({"groupBy": "ratio", "value": "amount"}, [batch])


def test_a_text_value_column_is_parsed_as_the_record_path_parses_it() -> None:
    rows = [{"region": "emea", "amount": "1.5"}, {"region": "emea", "amount": ""}]
    batch = pa.RecordBatch.from_pylist(rows)
    options = {"groupBy": "region", "value": "amount"}
    assert _by_batch(options, [batch]) == _by_record(options, [rows])
    assert _by_batch(options, [batch])[json.dumps({"region": "emea"})]["sum"] == 1.5


def test_dictionary_encoded_keys_group_like_plain_strings() -> None:
    plain = pa.RecordBatch.from_pylist([{"region": "emea", "amount": 1.0}, {"region": "apac", "amount": 2.0}])
    encoded = pa.RecordBatch.from_arrays(
        [plain.column("region").dictionary_encode(), plain.column("amount")], names=["region", "amount"]
    )
    options = {"groupBy": "region", "value": "amount"}
    assert _by_batch(options, [encoded]) == _by_batch(options, [plain])


OPTIONS_ONE = {"groupBy": "region", "value": "amount"}


def test_integers_beyond_2_to_the_53_nan_and_repeated_names_give_what_the_record_path_gives() -> None:
    big: list[dict[str, Any]] = [
        {"region": "emea", "amount": 2**53 + 1},
        {"region": "emea", "amount": 2**62 + 3},
    ]
    nan: list[dict[str, Any]] = [
        {"region": "emea", "amount": float("nan")},
        {"region": "emea", "amount": 1.0},
    ]
    for rows in (big, nan):
        batch = pa.RecordBatch.from_pylist(rows)
        by_batch, by_record = _by_batch(OPTIONS_ONE, [batch]), _by_record(OPTIONS_ONE, [rows])
        assert json.dumps(by_batch, sort_keys=True) == json.dumps(by_record, sort_keys=True)
    repeated = pa.RecordBatch.from_arrays(
        [pa.array(["emea", "amer"]), pa.array([1.0, 2.0]), pa.array([5.0, 7.0])],
        names=["region", "amount", "amount"],
    )
    last_wins: list[dict[str, Any]] = [{"region": "emea", "amount": 5.0}, {"region": "amer", "amount": 7.0}]
    assert _by_batch(OPTIONS_ONE, [repeated]) == _by_record(OPTIONS_ONE, [last_wins])


@settings(max_examples=100, deadline=None)
@given(_batches(), st.sampled_from(["region"]))
def test_several_value_columns_over_arrow_batches_equal_the_record_by_record_ones(
    batches: list[list[dict[str, Any]]], group_by: str
) -> None:
    options = {"groupBy": group_by, "values": "amount,store"}
    schema = pa.schema([("region", pa.string()), ("store", pa.int64()), ("amount", pa.float64())])
    arrow = [pa.RecordBatch.from_pylist(rows, schema=schema) for rows in batches]
    records = [
        [dict(r, amount=None if r["amount"] is None else float(r["amount"])) for r in b] for b in batches
    ]
    keys = group_by.split(",")

    def by_group(parsed: dict[str, Any]) -> dict[str, Any]:
        return {json.dumps([row[k] for k in keys]): row for row in parsed.values()}

    by_batch, by_record = by_group(_by_batch(options, arrow)), by_group(_by_record(options, records))
    assert by_batch.keys() == by_record.keys()
    for group, row in by_batch.items():
        other = by_record[group]
        assert row["count"] == other["count"], group
        for column in ("amount", "store"):
            mine, theirs = row[column], other[column]
            assert (mine["count"], mine["min"], mine["max"]) == (
                theirs["count"],
                theirs["min"],
                theirs["max"],
            )
            for stat in ("sum", "mean"):
                if mine[stat] is None or theirs[stat] is None:
                    assert mine[stat] == theirs[stat], group
                else:
                    assert math.isclose(mine[stat], theirs[stat], rel_tol=1e-12, abs_tol=1e-6), group
