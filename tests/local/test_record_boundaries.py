"""Records out equal records in, for every format, wherever the shard boundaries fall.

Hypothesis writes random valid files (quotes, quoted newlines, CRLF, a byte-order mark, empty lines,
multi-byte characters at the boundaries), cuts them at random byte offsets into pieces, reads each piece
as a worker does, and compares with an independent parse of the whole file (Python's csv module in strict
mode, str.splitlines, json). Seeded and bounded in CI; DATAJOB_PROPERTY_EXAMPLES=2000 runs longer.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datajob_worker import runtime
from datajob_worker.runtime import PermanentShardError, Progress, RecordErrors

EXAMPLES = int(os.environ.get("DATAJOB_PROPERTY_EXAMPLES", "150"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
BOM = "\ufeff"
# Characters that make boundaries interesting: quotes, separators, both newlines, multi-byte UTF-8.
TEXT = st.text(alphabet=st.sampled_from(list('ab ,"\n\r\té€😀')), max_size=12)
PLAIN = st.text(alphabet=st.sampled_from(list("ab ,\té€😀")), max_size=12)


def read(path: Path, fmt: str, cuts: list[int], *, multi_line: bool = False) -> list[Any]:
    """Every piece's records, in order (None for a blank record, as the runtime yields it)."""
    size = path.stat().st_size
    bounds = [0, *sorted({c for c in cuts if 0 < c < size}), size]
    out: list[Any] = []
    for start, end in itertools.pairwise(bounds):
        source = runtime._Source(str(path), "utf-8", RecordErrors("Fail", Progress()))
        with open(path, "rb") as handle:
            if fmt == "csv":
                rows = runtime._csv_records(handle, (start, end), None, source, multi_line)
            else:
                rows = runtime._line_records(handle, fmt, (start, end), None, source)
            out += [record for _, _, record in rows]
    return out


def rfc4180(value: str, width: int, quote_anyway: bool) -> str:
    """A field as RFC 4180 writes it: quoted (quotes doubled) when it must be, or when asked to."""
    if quote_anyway or any(c in value for c in ',"\r\n') or (width == 1 and not value):
        return '"' + value.replace('"', '""') + '"'
    return value


@st.composite
def csv_file(draw: st.DrawFn, *, multi_line: bool) -> tuple[str, list[dict[str, str]]]:
    width = draw(st.integers(1, 4))
    header = [f"c{i}" for i in range(width)]
    rows = draw(
        st.lists(st.lists(TEXT if multi_line else PLAIN, min_size=width, max_size=width), max_size=25)
    )
    ending = draw(st.sampled_from(["\n", "\r\n"]))
    lines = [header, *rows]
    body = "".join(",".join(rfc4180(v, width, draw(st.booleans())) for v in line) + ending for line in lines)
    text = (BOM if draw(st.booleans()) else "") + body
    # An independent reference: the csv module over the whole file, strictly.
    parsed = list(csv.reader(io.StringIO(text.removeprefix(BOM), newline=""), strict=True))
    expected = [dict(zip(parsed[0], row, strict=True)) for row in parsed[1:] if row]
    return text, expected


def cuts_for(data: st.DataObject, size: int) -> list[int]:
    return data.draw(st.lists(st.integers(0, max(size, 1)), max_size=6))


def written(text: str) -> Path:
    handle = tempfile.NamedTemporaryFile("wb", suffix=".data", delete=False)  # noqa: SIM115
    with handle:
        handle.write(text.encode("utf-8"))
    return Path(handle.name)


@SETTINGS
@given(data=st.data())
def test_csv_with_quoted_newlines_splits_only_at_record_boundaries_in_multiline_mode(
    data: st.DataObject,
) -> None:
    text, expected = data.draw(csv_file(multi_line=True))
    path = written(text)
    try:
        cuts = cuts_for(data, path.stat().st_size)
        got = [r for r in read(path, "csv", cuts, multi_line=True) if r is not None]
        assert got == expected
    finally:
        path.unlink()


@SETTINGS
@given(data=st.data())
def test_csv_split_at_line_ends_is_exact_or_refused_never_wrong(data: st.DataObject) -> None:
    text, expected = data.draw(csv_file(multi_line=True))
    path = written(text)
    try:
        cuts = cuts_for(data, path.stat().st_size)
        try:
            got = [r for r in read(path, "csv", cuts) if r is not None]
        except PermanentShardError as refused:
            assert "spans several lines" in str(refused)
            spans = any("\n" in v or "\r" in v for row in expected for v in row.values())
            assert spans, "refused a file whose every record is one line"
            return
        assert got == expected
    finally:
        path.unlink()


@SETTINGS
@given(data=st.data())
def test_csv_with_one_record_per_line_splits_anywhere_by_default(data: st.DataObject) -> None:
    text, expected = data.draw(csv_file(multi_line=False))
    path = written(text)
    try:
        got = [r for r in read(path, "csv", cuts_for(data, path.stat().st_size)) if r is not None]
        assert got == expected
    finally:
        path.unlink()


@SETTINGS
@given(
    lines=st.lists(PLAIN, max_size=30),
    ending=st.sampled_from(["\n", "\r\n"]),
    bom=st.booleans(),
    final=st.booleans(),
    data=st.data(),
)
def test_text_and_jsonl_records_out_equal_records_in(
    lines: list[str], ending: str, bom: bool, final: bool, data: st.DataObject
) -> None:
    for fmt in ("text", "jsonl"):
        values = [json.dumps(line, ensure_ascii=False) if fmt == "jsonl" and line else line for line in lines]
        body = ending.join(values) + (ending if final and values else "")
        path = written((BOM if bom else "") + body)
        try:
            got = read(path, fmt, cuts_for(data, path.stat().st_size))
        finally:
            path.unlink()
        if fmt == "text":
            assert got == body.splitlines() if body else got == []
        else:
            assert [r for r in got if r is not None] == [line for line in lines if line]


def test_a_quoted_newline_in_the_header_is_one_header(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text('"first\nname",age\n"Ada",36\nBob,41\n')
    assert read(path, "csv", [5, 20], multi_line=True) == [
        {"first\nname": "Ada", "age": "36"},
        {"first\nname": "Bob", "age": "41"},
    ]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32-le", "cp037", "hz", "utf-7"])
def test_encodings_whose_newline_is_not_byte_0x0a_are_refused_naming_the_field(encoding: str) -> None:
    from datajob_core.api.models import DataJobSpec  # noqa: PLC0415

    with pytest.raises(ValueError, match=f"spec.input.encoding: '{encoding}' is not supported"):
        DataJobSpec.model_validate(
            {"image": "x", "input": {"uris": ["/d"], "encoding": encoding}, "output": {"uri": "/o"}}
        )


def test_an_undecodable_line_inside_a_multi_line_record_makes_the_whole_record_bad(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(b'a,b\n"x\n\xff\xfe bad\ny",z\n1,2\n')
    source = runtime._Source(str(path), "utf-8", RecordErrors("Skip", Progress()))
    with open(path, "rb") as handle:
        rows = list(runtime._csv_records(handle, (0, path.stat().st_size), None, source, False))
    assert [r for _, _, r in rows] == [None, {"a": "1", "b": "2"}]
    assert source.errors.progress.skipped == 1
    assert rows[0][1] == len(b'"x\n\xff\xfe bad\ny",z\n')  # its bytes counted once, as one record


def test_a_header_with_an_unclosed_quote_is_refused_not_read_to_the_end(tmp_path: Path) -> None:
    path = tmp_path / "open.csv"
    path.write_bytes(b'"a,b\n' + b"x,y\n" * 300_000)
    source = runtime._Source(str(path), "utf-8", RecordErrors("Skip", Progress()))
    with open(path, "rb") as handle, pytest.raises(PermanentShardError, match="header is longer than"):
        list(runtime._csv_records(handle, (0, path.stat().st_size), None, source, False))
