"""The batch form of user code, without a worker: batching, setup once, the hunt for a bad record, and the
shapes process_batch may return."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from datajob_worker.batch_functions import BatchFunction, BatchFunctionError, output_lines

pytestmark = pytest.mark.unit


class Doubler:
    def __init__(self) -> None:
        self.setups: list[dict[str, str]] = []
        self.batches: list[int] = []
        self.torn_down = 0

    def setup(self, options: dict[str, str]) -> None:
        self.setups.append(options)

    def process_batch(self, batch: list[Any]) -> list[Any]:
        self.batches.append(len(batch))
        if any(r == "bad" for r in batch):
            raise ValueError("bad record")
        return [r * 2 for r in batch]

    def teardown(self) -> None:
        self.torn_down += 1


def _function(size: int = 3) -> BatchFunction:
    return BatchFunction("m:Doubler", Doubler, {"k": "v"}, size=size)


def test_records_are_given_in_batches_of_batch_size_and_setup_runs_once() -> None:
    function, lines = _function(), list[str]()
    function.run(["a", "b", "c", "d"], lines, on_bad=lambda r, e: pytest.fail(f"{r}: {e}"))
    function.run(["e"], lines, on_bad=lambda r, e: pytest.fail(f"{r}: {e}"))
    assert lines == ["aa", "bb", "cc", "dd", "ee"]
    assert function.instance.batches == [3, 1, 1] and function.instance.setups == [{"k": "v"}]


def test_teardown_runs_once_and_only_after_a_setup() -> None:
    function = _function()
    function.teardown()
    assert function.instance.torn_down == 0
    function.run(["a"], [], on_bad=lambda r, e: None)
    function.teardown()
    function.teardown()
    assert function.instance.torn_down == 1


def test_a_failing_batch_is_retried_one_record_at_a_time_and_the_bad_one_reported() -> None:
    function, lines, bad = _function(), list[str](), list[tuple[str, str]]()
    function.run(["a", "bad", "c", "d"], lines, on_bad=lambda r, e: bad.append((r, str(e))))
    assert lines == ["aa", "cc", "dd"]
    assert bad == [("bad", "bad record")]


def test_a_batch_whose_every_record_fails_alone_raises_its_own_error() -> None:
    class Broken(Doubler):
        def process_batch(self, batch: list[Any]) -> list[Any]:
            raise ConnectionError(f"down ({len(batch)})")

    function = BatchFunction("m:Broken", Broken, {}, size=4)
    with pytest.raises(ConnectionError, match=r"down \(3\)"):
        function.run(["a", "b", "c"], [], on_bad=lambda r, e: pytest.fail("not a bad record"))


def test_a_generator_that_raises_while_consumed_is_rerun_record_by_record() -> None:
    class Lazy(Doubler):
        def process_batch(self, batch: list[Any]) -> Any:
            for record in batch:
                if record == "bad":
                    raise ValueError("bad record")
                yield record * 2

    lines, bad = list[str](), list[Any]()
    BatchFunction("m:Lazy", Lazy, {}, size=4).run(["a", "bad", "c"], lines, on_bad=lambda r, e: bad.append(r))
    assert lines == ["aa", "cc"] and bad == ["bad"]


def test_a_function_failing_on_every_record_of_a_hand_over_fails_even_with_batches_of_one() -> None:
    class Broken(Doubler):
        def process_batch(self, batch: list[Any]) -> list[Any]:
            raise ConnectionError("down")

    with pytest.raises(ConnectionError, match="down"):
        BatchFunction("m:Broken", Broken, {}, size=1).run(
            ["a", "b", "c"], [], on_bad=lambda r, e: pytest.fail("not a bad record")
        )


def test_setup_without_parameters_is_called_without_options() -> None:
    class Plain:
        ready = False

        def setup(self) -> None:
            self.ready = True

        def process_batch(self, batch: list[Any]) -> list[Any]:
            assert self.ready
            return batch

    lines: list[str] = []
    BatchFunction("m:Plain", Plain, {"k": "v"}).run(["x"], lines, on_bad=lambda r, e: None)
    assert lines == ["x"]


def test_the_arrow_format_gives_a_record_batch_and_text_is_one_column_named_line() -> None:
    seen: list[pa.RecordBatch] = []

    class Arrow:
        def process_batch(self, batch: pa.RecordBatch) -> pa.RecordBatch:
            seen.append(batch)
            return batch

    function = BatchFunction("m:Arrow", Arrow, {}, size=10, fmt="arrow")
    lines: list[str] = []
    function.run(["one", "two"], lines, on_bad=lambda r, e: None)
    function.run([{"a": 1, "b": "x"}], lines, on_bad=lambda r, e: None)
    function.run(
        [{"a": 2}, {"a": 3, "c": True}], lines, on_bad=lambda r, e: None
    )  # c: not only the first's keys
    assert seen[0].schema.names == ["line"] and seen[1].schema.names == ["a", "b"]
    assert lines == [
        '{"line": "one"}',
        '{"line": "two"}',
        '{"a": 1, "b": "x"}',
        '{"a": 2, "c": null}',
        '{"a": 3, "c": true}',
    ]


def test_what_process_batch_returns_becomes_lines_numpy_values_included() -> None:
    assert output_lines(None) == []
    assert output_lines(["as is", {"b": 1, "a": np.float32(0.5)}]) == ["as is", '{"a": 0.5, "b": 1}']
    assert output_lines(np.array([1, 2])) == ["1", "2"]
    assert output_lines(pa.table({"x": [1]})) == ['{"x": 1}']
    assert output_lines([{"v": np.array([1.5, 2.0])}]) == ['{"v": [1.5, 2.0]}']
    with pytest.raises(TypeError, match="return a list of output lines"):
        output_lines("one string")


def test_a_class_without_process_batch_or_with_a_bad_size_is_refused_before_any_record() -> None:
    class Nothing:
        pass

    with pytest.raises(BatchFunctionError, match="m:Nothing is a class without a process_batch"):
        BatchFunction("m:Nothing", Nothing, {})
    with pytest.raises(BatchFunctionError, match="batchSize 0"):
        BatchFunction("m:Doubler", Doubler, {}, size=0)


def test_a_batch_of_only_bad_records_is_skipped_when_the_function_still_works_on_an_earlier_record() -> None:
    """66 records in batches of 64, the last two bad: the tail batch fails whole, yet the function still
    works on the last record it processed, so those two are bad records, not a broken function."""
    records = [f"r{n}" for n in range(64)] + ["bad", "bad"]
    lines, bad = list[str](), list[Any]()
    function = BatchFunction("m:Doubler", Doubler, {}, size=64)
    function.run(records[:64], lines, on_bad=lambda r, e: bad.append(r))
    function.run(records[64:], lines, on_bad=lambda r, e: bad.append(r))
    assert len(lines) == 64 and bad == ["bad", "bad"]


def test_a_function_that_breaks_after_working_fails_the_attempt_even_with_batches_of_one() -> None:
    class Breaks(Doubler):
        broken = False

        def process_batch(self, batch: list[Any]) -> list[Any]:
            if self.broken:
                raise ConnectionError("the model server went away")
            return super().process_batch(batch)

    function = BatchFunction("m:Breaks", Breaks, {}, size=1)
    function.run(["a", "b"], [], on_bad=lambda r, e: pytest.fail("not a bad record"))
    function.instance.broken = True
    with pytest.raises(ConnectionError, match="went away"):
        function.run(["c"], [], on_bad=lambda r, e: pytest.fail("not a bad record"))
