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

from datajob_core.data.locations import StorageConfig, is_remote
from datajob_core.storage.stores import filesystem

from . import csv_records

FORMATS = ("text", "jsonl", "csv", "parquet")

# A worker process serves one job, so where its object store is (spec.storage) is set once for the process.
_storage = StorageConfig()


def use_storage(config: StorageConfig) -> None:
    global _storage  # noqa: PLW0603 - one job per process; see above
    _storage = config


def open_binary(path: str) -> IO[bytes]:
    """Opens a local path or an object URL for reading; remote reads are ranged GETs of what is read."""
    if is_remote(path):
        fs, inner = filesystem(path, _storage)
        # fsspec's own readline is pure Python over its block cache: about 80x slower per line than
        # BufferedReader's (measured: 60,000 CSV lines from MinIO in 2.5 s vs 0.03 s).
        return io.BufferedReader(fs.open(inner, "rb"), buffer_size=1 << 20)
    return open(path.removeprefix("file://"), "rb")


def csv_header(path: str, encoding: str = "utf-8") -> list[str]:
    with open_binary(path) as handle:
        return csv_records.read_header(handle, encoding)[0]


def align(handle: IO[bytes], start: int, offset: int | None) -> int:
    """Seeks to where reading a piece begins: ``offset`` when resuming, else the first record boundary at
    or after ``start`` (the line straddling ``start`` belongs to the previous piece)."""
    if offset is None:
        offset = start
        if start > 0:
            handle.seek(start - 1)
            offset = start - 1 + len(handle.readline())
    handle.seek(offset)
    return offset


def iter_lines(handle: IO[bytes], start: int, end: int, offset: int | None) -> Iterator[tuple[int, bytes]]:
    """Yields (offset after the line, line) for lines starting in [start, end), from ``offset`` if given."""
    offset = align(handle, start, offset)
    for line in handle:  # buffered iteration: much faster than readline() per line
        if offset >= end:
            return
        offset += len(line)
        yield offset, line


class MalformedFileError(ValueError):
    """A whole input file cannot be parsed in its format (not a record of it: the file)."""


def iter_parquet_batches(
    path: str,
    start: int,
    end: int,
    skip: int,
    *,
    batch_rows: int = 65536,
    columns: tuple[str, ...] | None = None,
) -> Iterator[tuple[int, Any]]:
    """Arrow record batches of the row groups that *start* in [start, end), as (rows read so far, batch).

    Parquet's unit of splitting is the row group, as in Spark and Hadoop: a group belongs to the byte range
    holding its first column chunk. ``skip`` resumes after that many rows of this piece. A group is read in
    batches of ``batch_rows``, always cut at the same rows, so a resumed attempt sees the same batches as an
    undisturbed one from there on (processors that fold a batch at a time stay deterministic). With
    ``columns``, only those of them the file has are read (a processor that reads two columns of fifty).
    """
    import pyarrow as pa  # noqa: PLC0415 - only parquet jobs pay for importing pyarrow
    import pyarrow.parquet as pq  # noqa: PLC0415

    with open_binary(path) as handle:
        try:
            parquet = pq.ParquetFile(handle)
        except pa.ArrowInvalid as error:  # not Parquet at all: every attempt would fail the same way
            raise MalformedFileError(f"{path} is not a readable Parquet file: {error}") from None
        metadata = parquet.metadata
        every = parquet.schema_arrow.names
        # Only the processor's columns (any case, as SQL names them); all where a name repeats (the record
        # path keeps the last).
        names = (
            None
            if columns is None or len(set(every)) != len(every)
            else [c for c in every if c.lower() in {name.lower() for name in columns}]
        )
        done = 0
        for group in range(metadata.num_row_groups):
            column = metadata.row_group(group).column(0)
            first = column.dictionary_page_offset or column.data_page_offset
            if not start <= first < end:
                continue
            rows = metadata.row_group(group).num_rows
            if done + rows <= skip:
                done += rows
                continue
            groups = parquet.iter_batches(
                batch_size=batch_rows, row_groups=[group], columns=names, use_threads=False
            )
            for batch in groups:
                if done + batch.num_rows <= skip:
                    done += batch.num_rows
                    continue
                if done < skip:  # a checkpoint inside a batch (written by an older worker, row by row)
                    batch = batch.slice(skip - done)  # noqa: PLW2901 - the rest of the same batch
                    done = skip
                done += batch.num_rows
                yield done, batch


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
