"""Splitting a straggling shard's remainder among idle workers (Dataflow's dynamic work rebalancing). Pure.

A *cut* is a contiguous range of one planned map shard (its *root*): from a position to a position, where a
position ``(piece, offset)`` is an index into the root's plan entry and a byte offset in that piece's file.
Readers give a record to the piece in which it starts, so any byte offset is a valid boundary: records
starting before it belong to the range on the left, the others to the right (csv_records applies the same
rule with quote parity for ``multiLine`` CSV).

How a shard is split (docs/design.md, "Splitting a straggler's remainder"): the operator asks the worker
running it to stop; at its next record boundary the worker commits what it has read, its commit record
naming where it stopped. That *end* is authoritative: whenever a completion reports an end short of the
shard's own, the rest becomes new shards, whoever asked. So exactly-once does not depend on the request
arriving, on the operator remembering it, or on which attempt's commit won: the winning record decides,
and every attempt reports the winner's end.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

# A position in a root shard's pieces: (piece index, byte offset in that piece's file).
Position = tuple[int, int]

# Formats whose records are byte ranges that a boundary anywhere splits exactly. Parquet positions count
# rows of a row group, which a piece cannot express; command processors read their pieces themselves.
SPLITTABLE_FORMATS = ("text", "jsonl")
DEFAULT_MIN_REMAINDER = "8Mi"
# Cuts the ledger may hold (each is a few numbers in the status): splitting is for a job's tail, not a
# second partitioning.
MAX_CUTS = 1000


@dataclass(frozen=True)
class SplittingPolicy:
    enabled: bool = False
    min_remainder: int = 8 << 20  # bytes: a remainder smaller than twice this is not worth a split


@dataclass(frozen=True)
class Cut:
    """Shard ``root``'s records that start in ``[start, end)``."""

    root: int
    start: Position
    end: Position
    # The start is where a worker stopped: a record boundary as its reader saw it, read from exactly there
    # (as a checkpoint's offset is) rather than aligned again (a CSV quote parity scan could disagree).
    exact: bool = False

    def to_list(self) -> list[int]:
        return [self.root, *self.start, *self.end, *([1] if self.exact else [])]

    @classmethod
    def from_list(cls, value: Any) -> Cut:
        if (
            not isinstance(value, list)
            or len(value) not in (5, 6)
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
        ):
            raise ValueError(
                "a cut must be 5 or 6 non-negative ints [root, piece, offset, piece, offset, exact], "
                f"got {value!r}"
            )
        cut = cls(value[0], (value[1], value[2]), (value[3], value[4]), len(value) == 6 and value[5] == 1)
        if cut.end < cut.start:
            raise ValueError(f"a cut must not end before it starts, got {value!r}")
        return cut


def splittable(spec: dict[str, Any]) -> str:
    """Why this job's shards cannot be split ("" when they can)."""
    source = spec.get("input") or {}
    fmt = source.get("format", "text")
    if (spec.get("reduce") or {}).get("partitions"):
        return "a job with a reduce stage is not split (its reducers read every map shard by number)"
    if fmt == "parquet":
        return "input format parquet is not split (its positions are rows, not bytes)"
    if fmt not in SPLITTABLE_FORMATS:
        # A record may span lines (quoted newlines), and after a stray quote whether a byte is a record
        # boundary depends on where reading began: a split could read records twice or not at all.
        return f"input format {fmt} is not split (where its records begin depends on quotes before them)"
    if (spec.get("processor") or {}).get("exec"):
        return "a command processor reads its pieces itself and is not split"
    return ""


def pieces_of(entry: dict[str, Any]) -> list[dict[str, Any]]:
    return list(entry.get("pieces") or [])


def whole(root: int, pieces: list[dict[str, Any]]) -> Cut:
    """The cut that is the whole root shard."""
    if not pieces:
        return Cut(root, (0, 0), (0, 0))
    return Cut(root, (0, int(pieces[0]["start"])), (len(pieces) - 1, int(pieces[-1]["end"])))


def _spans(cut: Cut, pieces: list[dict[str, Any]]) -> list[tuple[int, int, int]]:
    """(piece index, first byte, end byte) of each piece the cut touches, clipped to the cut."""
    spans = []
    last = min(cut.end[0], len(pieces) - 1)
    for index in range(cut.start[0], last + 1):
        first, end = int(pieces[index]["start"]), int(pieces[index]["end"])
        if index == cut.start[0]:
            first = max(first, cut.start[1])
        if index == cut.end[0]:
            end = min(end, cut.end[1])
        spans.append((index, first, max(first, end)))
    return spans


def size(cut: Cut, pieces: list[dict[str, Any]]) -> int:
    """Bytes of input in the cut."""
    return sum(end - first for _, first, end in _spans(cut, pieces))


def entry(cut: Cut, pieces: list[dict[str, Any]]) -> dict[str, Any]:
    """The plan entry of a cut: the root's pieces it touches, clipped, in order; piece ``i`` of it is the
    root's piece ``cut.start[0] + i`` (so a position it reports maps back: :func:`absolute`). The cut itself
    goes with it, for the commit record."""
    clipped = [{**pieces[index], "start": first, "end": end} for index, first, end in _spans(cut, pieces)]
    if cut.exact and clipped:
        clipped[0]["exact"] = True
    return {"pieces": clipped, "cut": cut.to_list()}


def absolute(cut: Cut, relative: Any) -> Position | None:
    """A worker's ``[piece, offset]`` in its cut's entry as a position in the root; None if malformed."""
    if (
        not isinstance(relative, list)
        or len(relative) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in relative)
    ):
        return None
    return (cut.start[0] + relative[0], relative[1])


def remainder(cut: Cut, at: Position, pieces: list[dict[str, Any]]) -> Cut | None:
    """What of ``cut`` lies at or after ``at`` (None when no input byte does)."""
    rest = Cut(cut.root, max(cut.start, at), cut.end)
    if rest.start >= rest.end or size(rest, pieces) == 0:
        return None
    return rest


def divide(cut: Cut, parts: int, pieces: list[dict[str, Any]]) -> list[Cut]:
    """``cut`` in ``parts`` consecutive cuts of about equal bytes (fewer if it has fewer bytes)."""
    total = size(cut, pieces)
    parts = max(1, min(parts, total))
    if parts == 1:
        return [cut]
    bounds: list[Position] = [cut.start]
    read, want = 0, 1
    for index, first, end in _spans(cut, pieces):
        while want < parts and read + (end - first) > total * want // parts:
            offset = first + total * want // parts - read
            if (index, offset) > bounds[-1]:
                bounds.append((index, offset))
            want += 1
        read += end - first
    bounds.append(cut.end)
    return [Cut(cut.root, a, b) for a, b in itertools.pairwise(bounds) if a < b]


def split_rest(
    root: int,
    cut: Cut | None,
    end: Any,
    pieces: list[dict[str, Any]],
    *,
    workers: int,
    least: int,
    made: int = 0,
) -> tuple[Cut, list[Cut]] | None:
    """A shard of ``root`` (covering ``cut``, None: the whole root) committed only up to ``end`` (its
    worker's ``[piece, offset]``): the cut it keeps, and its rest in at most ``workers`` parts of at least
    ``least`` bytes, and no more than leave ``made`` (children so far) within MAX_CUTS (one part at the
    least: a rest is never dropped). None when nothing is left past ``end``."""
    cut = cut or whole(root, pieces)
    at = absolute(cut, end)
    if at is None or not cut.start <= at <= cut.end:
        return None  # not a position in this shard: nothing is split (and the job commit refuses the record)
    rest = remainder(cut, at, pieces)
    if rest is None:
        return None
    parts = max(1, min(workers, size(rest, pieces) // max(least, 1), MAX_CUTS - made))
    first, *others = divide(rest, parts, pieces)
    return Cut(root, cut.start, at, cut.exact), [Cut(root, first.start, first.end, exact=True), *others]


def segments(cuts: dict[int, Cut]) -> dict[int, list[int]]:
    """For each split root shard, the shards that cover it, in input order (the root first)."""
    by_root: dict[int, list[int]] = {}
    for shard, cut in cuts.items():
        by_root.setdefault(cut.root, []).append(shard)
    return {
        root: sorted(shards, key=lambda s: cuts[s].start)
        for root, shards in sorted(by_root.items())
        if len(shards) > 1
    }
