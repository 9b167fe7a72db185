"""``spec.output.format``: how published output is written (JSON Lines, or Parquet).

Processors render and merge text, one output record per line; this codec turns that text into the bytes of
a published object (each ``part-*``, ``part-r-*`` and ``result``) and back, at the committer's boundary.
JSON Lines is the text itself. Parquet holds one row per line: a processor with lines of its own shape
says how a line becomes a row (word count: ``word``, ``count``) and back; any other line that is a JSON
object is a row with its keys as columns, and a line that is not is a row with one column, ``line``.

A column whose values Arrow cannot hold in one type (a number here, a string there, an empty object, an
integer beyond 64 bits) is written as their JSON text, marked in the field's metadata, so a part never fails
to encode and reads back as the values it held. Encoding is deterministic (same rows, same bytes), which
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
JSON_TEXT = b"datajob.json"  # field metadata: this column holds JSON text, one value per row
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

        table = pq.read_table(io.BytesIO(data))
        as_json = [f.name for f in table.schema if (f.metadata or {}).get(JSON_TEXT) == b"true"]
        rows = table.to_pylist()
        for row in rows:  # columns written as JSON text: their values again, so a re-encode is the same
            for name in as_json:
                if row.get(name) is not None:
                    row[name] = json.loads(row[name])
        return "".join(self.from_row(row) + "\n" for row in rows)


def _parquet(rows: list[Row]) -> bytes:
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    arrays, fields = [], []
    for name in names:
        values = [row.get(name) for row in rows]
        try:
            array = pa.array(values)
            if not _writable(array.type):
                raise pa.ArrowNotImplementedError(f"{array.type} cannot be written to Parquet")
            fields.append(pa.field(name, array.type))
        except (pa.ArrowException, OverflowError):
            # Values Arrow cannot hold in one column (a number and a string, an empty object, an integer
            # beyond 64 bits): each as its JSON text, marked so reading the part gives the values back.
            array = pa.array([None if v is None else json.dumps(v) for v in values], pa.string())
            fields.append(pa.field(name, pa.string(), metadata={JSON_TEXT: b"true"}))
        arrays.append(array)
    sink = io.BytesIO()
    pq.write_table(pa.table(arrays, schema=pa.schema(fields)), sink, compression="zstd")
    return sink.getvalue()


def _writable(kind: Any) -> bool:
    """Whether Parquet can store the type: no empty struct (``{}``) at any depth."""
    import pyarrow as pa  # noqa: PLC0415

    if pa.types.is_struct(kind):
        return kind.num_fields > 0 and all(_writable(kind.field(i).type) for i in range(kind.num_fields))
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return _writable(kind.value_type)
    return True
