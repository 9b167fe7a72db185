"""CSV through Arrow: a piece read in chunks cut at line ends, each parsed by Arrow's CSV reader into one
record batch, for processors with a columnar form.

The record path (:mod:`datajob_worker.csv_records` + ``csv.reader``) stays the reference. A chunk goes to
Arrow only where both read the same records (Arrow parses quoting as ``csv.reader`` does, RFC 4180 with
the same leniency; checked in tests/unit/test_csv_arrow.py); anything else is ``None`` here, and the caller
reads the rest of the piece record by record: a parse error (a field count that differs from the header's,
bytes that are not UTF-8, a chunk that ends inside a quoted field), a carriage return that does not end a
line, a NUL byte, or, in a piece of a file split at line ends, a line with an odd number of quotes (which
the record path refuses with its own message).

Chunks are cut from the resume point at fixed sizes, always at a line end, so a resumed attempt reads the
chunks an undisturbed one read from there on.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import IO, Any

CHUNK_BYTES = 4 << 20


def chunks(handle: IO[bytes], at: int, end: int, size: int | None = None) -> Iterator[tuple[int, bytes]]:
    """``(offset after the chunk, chunk)`` for the lines that start in ``[at, end)``, ``size`` bytes or so a
    chunk, each ending at a line end (or the file's end)."""
    size = size or CHUNK_BYTES
    handle.seek(at)
    carry = b""
    while at < end:
        data = carry + handle.read(size)
        if not data:
            return
        limit = end - at  # lines starting before this index are the piece's
        cut = data.find(b"\n", max(limit - 1, 0)) if limit <= len(data) else data.rfind(b"\n")
        if cut == -1:
            more = handle.read(1)
            if more:  # a line longer than what was read: read on
                carry = data + more
                continue
            cut = len(data) - 1  # the file's last line, without a newline
        chunk, carry = data[: cut + 1], data[cut + 1 :]
        at += len(chunk)
        yield at, chunk
        if limit <= len(data):
            return


def utf8(encoding: str) -> bool:
    import codecs  # noqa: PLC0415

    try:
        return codecs.lookup(encoding).name == "utf-8"
    except LookupError:
        return False


def parse(chunk: bytes, header: list[str], columns: tuple[str, ...] | None, *, one_line: bool) -> Any:
    """The chunk as an Arrow table of strings (the record path's values are strings), only ``columns``
    of it; None where the record path must read it. ``one_line``: every record must be one line."""
    import pyarrow as pa  # noqa: PLC0415 - only columnar CSV jobs pay for importing pyarrow
    import pyarrow.compute as pc  # noqa: PLC0415
    import pyarrow.csv as pacsv  # noqa: PLC0415

    if b"\0" in chunk or chunk.count(b"\r") != chunk.count(b"\r\n"):
        return None  # a lone CR ends a row for Arrow, not for the line reader; NUL: leave it to csv
    if one_line and b'"' in chunk:
        lines = pc.split_pattern(pa.array([chunk], pa.binary()), b"\n")[0].values
        if pc.any(pc.bit_wise_and(pc.count_substring(lines, b'"'), 1).cast(pa.bool_())).as_py():
            return None
    wanted = [name for name in header if columns is None or name in columns]
    try:
        return pacsv.read_csv(
            io.BytesIO(chunk),
            read_options=pacsv.ReadOptions(column_names=header, use_threads=False, block_size=len(chunk) + 1),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(header, pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
                include_columns=wanted,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
