"""``spec.output.format``: how published output is written (JSON Lines, or Parquet).

Processors render and merge text, one output record per line; this codec turns that text into the bytes of
a published object (each ``part-*``, ``part-r-*`` and ``result``) and back, at the committer's boundary.
JSON Lines is the text itself. Parquet holds one row per line: a processor with lines of its own shape
says how a line becomes a row (word count: ``word``, ``count``) and back; any other line that is a JSON
object is a row with its keys as columns, and a line that is not is a row with one column, ``line``.

A column whose values Arrow cannot hold in one type (a number here, a string there) is written as their
JSON text, so a part never fails to encode. Encoding is deterministic (same rows, same bytes), which
keeps a job's output byte-identical however many attempts it took. Shuffle objects between map shards and
reducers are never published and stay JSON Lines.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

FORMATS = ("jsonl", "parquet")
LINE_COLUMN = "line"

Row = dict[str, Any]


def json_row(line: str) -> Row:
    """The default line -> row: a (non-empty) JSON object's keys, or the whole line as the column ``line``."""
    try:
        value = json.loads(line)
    except ValueError:
        return {LINE_COLUMN: line}
    return value if isinstance(value, dict) and value else {LINE_COLUMN: line}


def json_line(row: Row) -> str:
    return json.dumps(row)


@dataclass(frozen=True)
class OutputCodec:
    format: str = "jsonl"
    to_row: Callable[[str], Row] = field(default=json_row)
    from_row: Callable[[Row], str] = field(default=json_line)

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"spec.output.format {self.format!r} is not one of {', '.join(FORMATS)}")

    def encode(self, text: str) -> bytes:
        if self.format == "jsonl":
            return text.encode()
        return _parquet([self.to_row(line) for line in text.splitlines()])

    def decode(self, data: bytes) -> str:
        if self.format == "jsonl":
            return data.decode()
        import pyarrow.parquet as pq  # noqa: PLC0415 - only Parquet output pays for importing pyarrow

        rows = pq.read_table(io.BytesIO(data)).to_pylist()
        return "".join(self.from_row(row) + "\n" for row in rows)


def _parquet(rows: list[Row]) -> bytes:
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    columns = {}
    for name in names:
        values = [row.get(name) for row in rows]
        try:
            columns[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            # Mixed types: each value as its JSON text, so the part still encodes (and decodes to text).
            columns[name] = pa.array([None if v is None else json.dumps(v) for v in values], pa.string())
    sink = io.BytesIO()
    pq.write_table(pa.table(columns) if columns else pa.table({}), sink, compression="zstd")
    return sink.getvalue()
