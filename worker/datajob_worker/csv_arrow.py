"""CSV through Arrow: a piece read in chunks cut at line ends, each parsed by Arrow's CSV reader into one
record batch, for processors with a columnar form.

The record path (:mod:`datajob_worker.csv_records` + ``csv.reader``) stays the reference. A chunk goes to
Arrow only where both must read the same records: valid UTF-8 throughout, no NUL, no BOM, no carriage
return but before a line end, and, where it has quotes, every line one record of whole-quoted or unquoted
fields (``ONE_LINE_RECORD``: no quoted newline, no stray quote). Anything else, or a parse error (a field
count that differs from the header's), is ``None`` here, and the caller reads the rest of the piece
record by record, where ``badRecordPolicy`` and the split checks apply as before.

Chunks are cut from the resume point at fixed sizes, always at a line end, so a resumed attempt reads the
chunks an undisturbed one read from there on.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import IO, Any

CHUNK_BYTES = 4 << 20


def chunks(
    handle: IO[bytes], at: int, end: int, size: int | None = None, lines: int | None = None
) -> Iterator[tuple[int, bytes]]:
    """``(offset after the chunk, chunk)`` for the lines that start in ``[at, end)``: each chunk is what
    ``size`` bytes read at its own start hold up to their last line end (more if one line is longer), and
    at most ``lines`` lines if given, so where a chunk ends depends only on where it starts: a resumed
    attempt cuts as an undisturbed one."""
    size = size or CHUNK_BYTES
    while at < end:
        handle.seek(at)
        data = handle.read(size)
        if not data:
            return
        limit = end - at  # lines starting before this index are the piece's
        while True:
            cut = data.find(b"\n", max(limit - 1, 0)) if limit <= len(data) else data.rfind(b"\n")
            more = b"" if cut != -1 else handle.read(size)
            if not more:
                break
            data += more
        last = limit <= len(data)
        chunk = data[: cut + 1] if cut != -1 else data  # no line end left: the file's last line
        if lines is not None and chunk.count(b"\n") > lines:
            cut, last = _line_end(chunk, lines), False
            chunk = chunk[: cut + 1]
        at += len(chunk)
        yield at, chunk
        if last or cut == -1:
            return


def _line_end(data: bytes, lines: int) -> int:
    """The index of the ``lines``-th line end in ``data`` (which has more than that many)."""
    cut = -1
    for _ in range(lines):
        cut = data.find(b"\n", cut + 1)
    return cut


def utf8(encoding: str) -> bool:
    import codecs  # noqa: PLC0415

    try:
        return codecs.lookup(encoding).name == "utf-8"
    except LookupError:
        return False


# A line of fields each either unquoted (no quote, comma or CR in it) or quoted whole with doubled inner
# quotes (RFC 4180), CR only before the line end: read alike by csv.reader and Arrow, one record per line.
ONE_LINE_RECORD = r'^(?:[^",\r]*|"(?:[^"]|"")*")(?:,(?:[^",\r]*|"(?:[^"]|"")*"))*\r?$'


def parse(chunk: bytes, header: list[str], columns: tuple[str, ...] | None) -> Any:
    """The chunk as an Arrow table of strings (the record path's values are strings), only ``columns``
    of it; None where the record path must read it."""
    import codecs  # noqa: PLC0415

    import pyarrow as pa  # noqa: PLC0415 - only columnar CSV jobs pay for importing pyarrow
    import pyarrow.compute as pc  # noqa: PLC0415
    import pyarrow.csv as pacsv  # noqa: PLC0415

    if b"\0" in chunk or codecs.BOM_UTF8 in chunk or chunk.count(b"\r") != chunk.count(b"\r\n"):
        return None  # a lone CR ends a row for Arrow only; Arrow drops a BOM; NUL: leave it to csv
    try:
        chunk.decode("utf-8")  # every column, not only those Arrow is asked for: a bad record is bad
    except UnicodeDecodeError:
        return None
    if b'"' in chunk:
        lines = pc.split_pattern(pa.array([chunk.removesuffix(b"\n")], pa.string()), "\n")[0].values
        if not pc.all(pc.match_substring_regex(lines, ONE_LINE_RECORD)).as_py():
            return None  # quoting csv.reader and Arrow might read differently, or a record over lines
    # Case-insensitive: SQL names columns so; a processor that reads fewer just gets a superset.
    lowered = None if columns is None else {c.lower() for c in columns}
    wanted = [name for name in header if lowered is None or name.lower() in lowered]
    try:
        return pacsv.read_csv(
            io.BytesIO(chunk),
            read_options=pacsv.ReadOptions(column_names=header, use_threads=False, block_size=len(chunk) + 1),
            parse_options=pacsv.ParseOptions(newlines_in_values=False),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(header, pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
                include_columns=wanted,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
