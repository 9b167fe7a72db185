"""Record readers over byte ranges, splitting on record boundaries like Hadoop's input splits.

A record belongs to the piece in which it *starts*: a reader whose range begins mid-record skips to the next
record boundary, and reads past its end to finish the last record it started. So consecutive ranges never
lose or duplicate a record. Paths may be local or any fsspec URL (s3://, gs://, ...) when fsspec and the
matching backend are installed.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import IO, Any

FORMATS = ("text", "jsonl", "csv")


def open_binary(path: str) -> IO[bytes]:
    if "://" in path and not path.startswith("file://"):
        import fsspec  # noqa: PLC0415 - optional dependency, only for remote URLs

        handle: IO[bytes] = fsspec.open(path, "rb").open()
        return handle
    return open(path.removeprefix("file://"), "rb")


def csv_header(path: str) -> list[str]:
    with open_binary(path) as handle:
        return next(csv.reader([handle.readline().decode()]), [])


def iter_lines(handle: IO[bytes], start: int, end: int, offset: int | None) -> Iterator[tuple[int, bytes]]:
    """Yields (offset after the line, line) for lines starting in [start, end), from ``offset`` if given."""
    if offset is None:
        offset = start
        if start > 0:
            handle.seek(start - 1)
            offset = start - 1 + len(handle.readline())  # the straddling line is the previous piece's
    handle.seek(offset)
    while offset < end:
        line = handle.readline()
        if not line:
            return
        offset += len(line)
        yield offset, line


def parse(line: bytes, fmt: str, header: list[str] | None) -> Any:
    """One record: a str for text, a dict for jsonl and csv (None for blank lines)."""
    text = line.decode("utf-8", errors="replace").rstrip("\r\n")
    if fmt == "text":
        return text
    if not text.strip():
        return None
    if fmt == "jsonl":
        return json.loads(text)
    if fmt == "csv":
        values = next(csv.reader(io.StringIO(text)), [])
        return dict(zip(header or [], values, strict=False))
    raise ValueError(f"unsupported input format {fmt!r}")
