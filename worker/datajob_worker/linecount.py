"""Reference processor: counts lines and words of a shard (a byte range of a text file).

Small on purpose — it exists to exercise the protocol end to end: it resumes from a checkpoint, splits on
record boundaries the way Hadoop's input splits do, and commits its output exactly once.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Position:
    """Where processing stands: piece index and byte offset in it, and the counts so far."""

    piece: int = 0
    offset: int | None = None  # None: start of the piece
    lines: int = 0
    words: int = 0

    def checkpoint(self) -> dict[str, Any]:
        return {"piece": self.piece, "offset": self.offset, "lines": self.lines, "words": self.words}

    @classmethod
    def resume(cls, checkpoint: dict[str, Any] | None) -> Position:
        if not checkpoint:
            return cls()
        offset = checkpoint.get("offset")
        return cls(
            int(checkpoint.get("piece", 0)),
            None if offset is None else int(offset),
            int(checkpoint.get("lines", 0)),
            int(checkpoint.get("words", 0)),
        )


class ShardInterruptedError(Exception):
    """Processing stopped early (SIGTERM, shard taken away); the last checkpoint stands."""


def count(
    pieces: list[dict[str, Any]],
    checkpoint: dict[str, Any] | None,
    on_record: Callable[[Position], None],
) -> Position:
    """Counts the lines that *start* in each piece's [start, end).

    ``on_record`` may raise ShardInterruptedError to stop early.
    """
    position = Position.resume(checkpoint)
    while position.piece < len(pieces):
        piece = pieces[position.piece]
        start, end = int(piece["start"]), int(piece["end"])
        with open(piece["path"], "rb") as handle:
            if position.offset is None:
                position.offset = start
                if start > 0:
                    # The line that straddles `start` belongs to the previous piece.
                    handle.seek(start - 1)
                    position.offset = start - 1 + len(handle.readline())
            handle.seek(position.offset)
            while position.offset < end:
                line = handle.readline()
                if not line:
                    break
                position.offset += len(line)
                position.lines += 1
                position.words += len(line.split())
                on_record(position)
        position.piece += 1
        position.offset = None
    return position


def commit(
    output_dir: str, shard: int, attempt: int, result: Position, resumed_from: dict[str, Any] | None
) -> Path:
    """Writes the shard's result under an attempt-scoped name, then links it into place atomically.

    ``os.link`` fails if the final name exists, so of several attempts racing, exactly one commit wins and
    the others become no-ops: the committed output is written once.
    """
    out = Path(output_dir)
    temporary = out / "_temporary"
    temporary.mkdir(parents=True, exist_ok=True)
    scratch = temporary / f"part-{shard:06d}.attempt-{attempt}"
    # Attempt and resume point are recorded so a reader can see how the result came about.
    record = {
        "shard": shard,
        "lines": result.lines,
        "words": result.words,
        "attempt": attempt,
        "resumedFrom": resumed_from,
    }
    scratch.write_text(json.dumps(record) + "\n")
    final = out / f"part-{shard:06d}.json"
    with contextlib.suppress(FileExistsError):
        os.link(scratch, final)
    scratch.unlink()
    return final
