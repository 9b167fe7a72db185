"""CSV records of one piece of a file, split only at true record boundaries.

A quoted CSV field may hold newlines (RFC 4180), so a newline byte is a record boundary only where the
number of ``"`` bytes before it is even: an escaped quote is doubled and leaves the parity alone. That
holds in every encoding ``spec.input.encoding`` accepts (``"`` and newline are their ASCII bytes and never
occur inside another character; datajob_core.api.models refuses the others). Three cases:

- **The piece is the whole file** (``perFile``, or a file smaller than a shard): read from the header to
  the end; records may span lines freely.
- **A split file, ``spec.input.multiLine: false``** (the default, as Spark's): every record must be one line.
  A piece starts after the first newline at or after its start; a line with an odd number of quotes (a
  quoted newline, or a stray quote) fails the shard at once, not as a bad record, with a message saying
  what to do. This is exact: whichever piece owns the first such record starts at a true boundary and sees
  it, and any piece that started inside a quoted field sees the field's closing quote as an odd line.
- **A split file, ``multiLine: true``**: a piece counts the quotes before its start (it reads the file up
  to there once) and starts at the first newline with even parity after it. Exact for any boundary, at
  the cost of reading the file's prefix; every piece stops where the next one starts, by the same rule.

Checkpoints hold offsets of record boundaries, so a resumed piece needs no scan.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Callable, Iterator
from typing import IO, Any

QUOTE = b'"'
QUOTE_BYTE = QUOTE[0]  # `int in bytes` is a memchr; `bytes in bytes` costs ~15x more per line (callgrind)
SCAN_CHUNK = 1 << 20
MAX_HEADER_BYTES = 1 << 20  # an unclosed quote must not make the whole file the header


class SplitRecordError(Exception):
    """A record of a file split at line ends spans several lines: the split cannot be trusted."""


def read_header(
    handle: IO[bytes], encoding: str, fail: Callable[[str], Exception] = SplitRecordError
) -> tuple[list[str], int]:
    """The header's fields and the offset where the first data record starts (a header may hold quoted
    newlines too); a UTF-8 byte-order mark is not part of the first field's name."""
    handle.seek(0)
    lines: list[bytes] = []
    size, parity = 0, 0
    for line in handle:
        lines.append(line)
        size += len(line)
        parity ^= line.count(QUOTE) & 1
        if not parity:
            break
        if size > MAX_HEADER_BYTES:
            raise fail(f"the CSV header is longer than {MAX_HEADER_BYTES} bytes (an unclosed quote?)")
    raw = b"".join(lines)
    try:
        text = raw.removeprefix(codecs.BOM_UTF8).decode(encoding)
    except UnicodeDecodeError as error:
        # Without its header no row of the file can be read, whatever the bad-record policy says.
        raise fail(f"the CSV header (line 1) is not valid {encoding}: {error}") from None
    return next(csv.reader([text]), []), len(raw)


def first_boundary(handle: IO[bytes], start: int, header_end: int, *, multi_line: bool) -> int:
    """Where a piece starting at byte ``start`` reads its first record (the record a boundary splits
    belongs to the piece it starts in)."""
    if start <= header_end:
        return header_end
    if not multi_line:
        handle.seek(start - 1)
        return start - 1 + len(handle.readline())
    parity = _quote_parity(handle, start - 1)
    at = start - 1
    handle.seek(at)
    for line in handle:
        parity ^= line.count(QUOTE) & 1
        at += len(line)
        if not parity:
            break
    return at


def _quote_parity(handle: IO[bytes], end: int) -> int:
    handle.seek(0)
    parity, left = 0, end
    while left > 0:
        chunk = handle.read(min(SCAN_CHUNK, left))
        if not chunk:
            break
        parity ^= chunk.count(QUOTE) & 1
        left -= len(chunk)
    return parity


def records(
    handle: IO[bytes],
    piece: tuple[int, int],
    resume: int | None,
    *,
    path: str,
    encoding: str,
    multi_line: bool,
    bad: Callable[[int, bytes | str, str], None],
    fail: Callable[[str], Exception] = SplitRecordError,
) -> Iterator[tuple[int, int, Any]]:
    """``(offset after the record, its length in bytes, the row as a dict or None)`` for each record that
    starts in ``piece``; a malformed one goes to ``bad(offset, text, problem)`` and is yielded as None."""
    start, end = piece
    size = handle.seek(0, 2)
    header, header_end = read_header(handle, encoding, lambda problem: fail(f"{path}: {problem}"))
    whole = start == 0 and end >= size
    at = resume if resume is not None else first_boundary(handle, start, header_end, multi_line=multi_line)
    handle.seek(at)
    check = not whole and not multi_line
    # Shared with lines() as closure cells (the per-record path: cheaper than a list or an object):
    # where the current record started, where the last line read ended, why the record cannot be decoded.
    began = after = at
    problem = ""

    def lines() -> Iterator[str]:
        nonlocal began, after, problem
        offset, parity = at, 0
        for line in handle:
            if not parity:
                if offset >= end:
                    return
                began, problem = offset, ""
            if QUOTE_BYTE in line and line.count(QUOTE) & 1:
                if check:
                    raise fail(
                        f"{path}: the CSV record at byte {offset} spans several lines (a quoted newline) or "
                        "has an unbalanced quote, so the file cannot be split at line ends. Set "
                        "spec.input.multiLine: true (RFC 4180 quoting), or partitioning mode perFile"
                    )
                parity ^= 1
            offset += len(line)
            after = offset
            try:
                yield line.decode(encoding)
            except UnicodeDecodeError as error:
                # The whole record is bad, not just this line: it is still given to the parser (with
                # the bytes replaced), so that the record's boundaries stay where they are.
                problem = problem or f"UnicodeDecodeError: {error}"
                yield line.decode(encoding, errors="replace")

    width = len(header)
    # Lengths are what was read since the last record, not ``after - began``: a stray quote keeps the
    # parity odd (so ``began`` stays put) while csv.reader has already ended the record.
    last = at
    try:
        for values in csv.reader(lines()):
            length, last = after - last, after
            if problem:
                bad(began, ",".join(values), problem)
                yield after, length, None
            elif values and len(values) != width:
                bad(began, ",".join(values), f"{len(values)} field(s) where the header has {width}")
                yield after, length, None
            else:
                yield after, length, dict(zip(header, values, strict=True)) if values else None
    except csv.Error as error:
        # csv.reader cannot go on past this (e.g. a carriage return inside an unquoted field): every
        # attempt would stop here, so the shard fails now, saying where, instead of being retried.
        raise fail(f"{path}: the CSV record at byte {began} cannot be parsed: {error}") from None
