"""The aggregate builtin's partial results: several value columns, means merged from sums and counts (never
averaged averages), blanks not counted, and the options it refuses."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from datajob_core.api.models import DataJob
from datajob_worker import processors

pytestmark = pytest.mark.unit

OPTIONS = {"groupBy": "region", "values": "amount,quantity"}


def _part(rows: list[dict[str, Any]], options: dict[str, str] = OPTIONS) -> str:
    processor = processors.build({"builtin": "aggregate", "options": options})
    state = processor.init()
    processor.batch()(rows, state)
    return processor.render(state)


def test_means_of_merged_parts_are_the_mean_of_all_values_not_the_mean_of_means() -> None:
    one = _part([{"region": "emea", "amount": "10", "quantity": 1}])
    three = _part([{"region": "emea", "amount": a, "quantity": 2} for a in ("1", "2", "3")])
    merged = json.loads(processors.build({"builtin": "aggregate", "options": OPTIONS}).merge([one, three]))
    assert merged["count"] == 4
    assert merged["amount"] == {"count": 4, "sum": 16.0, "min": 1.0, "max": 10.0, "mean": 4.0}
    assert merged["quantity"] == {"count": 4, "sum": 7.0, "min": 1.0, "max": 2.0, "mean": 1.75}


def test_blank_values_count_as_rows_but_not_as_values_of_their_column() -> None:
    row = json.loads(_part([{"region": "a", "amount": "", "quantity": 4}, {"region": "a", "amount": "6"}]))
    assert row["count"] == 2
    assert row["amount"] == {"count": 1, "sum": 6.0, "min": 6.0, "max": 6.0, "mean": 6.0}
    assert row["quantity"] == {"count": 1, "sum": 4.0, "min": 4.0, "max": 4.0, "mean": 4.0}


def test_a_column_with_no_values_has_no_mean() -> None:
    row = json.loads(_part([{"region": "a"}]))
    assert row["amount"] == {"count": 0, "sum": 0.0, "min": None, "max": None, "mean": None}


def test_one_value_keeps_the_flat_output_of_earlier_versions() -> None:
    options = {"groupBy": "region", "value": "amount"}
    row = json.loads(_part([{"region": "a", "amount": "2"}, {"region": "a", "amount": "5"}], options))
    assert row == {"region": "a", "count": 2, "sum": 7.0, "min": 2.0, "max": 5.0}


def test_a_checkpoint_written_before_per_column_counts_resumes() -> None:
    processor = processors.build({"builtin": "aggregate", "options": {"groupBy": "region", "value": "v"}})
    state = processor.restore({"groups": {"a": [2, 7.0, 2.0, 5.0]}})
    processor.batch()([{"region": "a", "v": 1}], state)
    assert json.loads(processor.render(state)) == {
        "region": "a",
        "count": 3,
        "sum": 8.0,
        "min": 1.0,
        "max": 5.0,
    }


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"groupBy": "r", "value": "a,b"}, "several go in options.values"),
        ({"groupBy": "r", "value": "a", "values": "b"}, "not both"),
        ({"groupBy": "r", "values": " , "}, "names no column"),
    ],
)
def test_aggregate_options_that_cannot_mean_anything_are_refused(
    options: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        processors.build({"builtin": "aggregate", "options": options})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"groupBy": "word", "values": "count"}, "count would be overwritten"),
        ({"groupBy": "region", "values": "region"}, "region would be overwritten"),
        ({"groupBy": "sum", "value": "amount"}, "sum would be overwritten"),
        ({"groupBy": "r", "value": "a,b"}, "several go in options.values"),
    ],
)
def test_aggregate_options_the_worker_would_refuse_are_refused_by_validation(
    options: dict[str, str], message: str
) -> None:
    spec = {"image": "i", "input": {"uris": ["/in/*.csv"], "format": "csv"}, "output": {"uri": "/out"}}
    job = {"apiVersion": "datajob.dev/v1alpha1", "kind": "DataJob", "metadata": {"name": "a"}}
    with pytest.raises(ValidationError, match=message):
        DataJob.model_validate(
            {**job, "spec": {**spec, "processor": {"builtin": "aggregate", "options": options}}}
        )


def test_group_values_holding_tabs_stay_separate_groups() -> None:
    options = {"groupBy": "a,b", "value": "v"}
    rows = [{"a": "p\tq", "b": "r", "v": 1}, {"a": "p", "b": "q\tr", "v": 2}]
    part = _part(rows, options)
    assert sorted(json.loads(line)["a"] for line in part.splitlines()) == ["p", "p\tq"]
    merged = processors.build({"builtin": "aggregate", "options": options}).merge([part, part])
    assert [json.loads(line)["count"] for line in merged.splitlines()] == [2, 2]


def test_a_checkpoint_with_tab_joined_group_keys_resumes_as_the_same_groups() -> None:
    processor = processors.build({"builtin": "aggregate", "options": {"groupBy": "a,b", "value": "v"}})
    state = processor.restore({"groups": {"x\ty": [1, 0, 5.0, 5.0, 5.0]}})
    processor.batch()([{"a": "x", "b": "y", "v": 1}], state)
    assert json.loads(processor.render(state)) == {
        "a": "x",
        "b": "y",
        "count": 2,
        "sum": 6.0,
        "min": 1.0,
        "max": 5.0,
    }


def test_a_nested_aggregate_may_group_by_columns_named_like_the_flat_outputs() -> None:
    row = json.loads(_part([{"sum": "s1", "x": "2"}], {"groupBy": "sum", "values": "x"}))
    assert row["sum"] == "s1" and row["x"]["sum"] == 2.0
