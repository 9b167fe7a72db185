"""A set of non-negative integers stored as sorted, disjoint, half-open intervals.

The shard ledger lives in the DataJob status, and etcd caps an object at 1.5 MiB, so "which of 100 000
shards have succeeded" must cost a few bytes per *run* of shards, not per shard. Shards finish roughly in
order, so the runs are long and few.

Internally the set is one flat sorted list of boundaries ``[s0, e0, s1, e1, ...]`` with
``s0 < e0 < s1 < e1 < ...``: intervals never overlap and never touch (adjacent intervals are always
coalesced), so the representation of a given set is unique, equality is list equality and the JSON form is
the list itself. ``bisect`` on that list tells membership: an integer is a member exactly when an odd number
of boundaries are <= it.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from typing import Any


class RangeSet:
    """Mutable set of non-negative ints; every mutation keeps the canonical interval form."""

    __slots__ = ("_b",)
    # Mutable, so not hashable (as with the built-in set).
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, intervals: Iterable[tuple[int, int]] = ()) -> None:
        self._b: list[int] = []
        for start, end in intervals:
            self.add_range(start, end)

    # -- construction / serialisation -------------------------------------------------------------

    @classmethod
    def from_list(cls, flat: Any) -> RangeSet:
        """Parse the compact JSON form ``[s0, e0, s1, e1, ...]``.

        Only the canonical form is accepted (sorted, non-empty, non-overlapping, non-adjacent intervals of
        non-negative ints): anything else means the document was corrupted or hand-edited, and guessing
        what it meant could silently mark work as done.
        """
        if not isinstance(flat, list):
            raise ValueError(f"range set must be a list of ints, got {type(flat).__name__}")
        if len(flat) % 2:
            raise ValueError(f"range set must have an even number of boundaries, got {len(flat)}")
        previous_end = -1
        for index, value in enumerate(flat):
            if not _is_int(value):
                raise ValueError(f"range set boundary #{index} is not an int: {value!r}")
            if value < 0:
                raise ValueError(f"range set boundary #{index} is negative: {value}")
        for index in range(0, len(flat), 2):
            start, end = flat[index], flat[index + 1]
            if start >= end:
                raise ValueError(f"range set interval [{start}, {end}) is empty or reversed")
            if start <= previous_end:
                raise ValueError(
                    f"range set interval [{start}, {end}) overlaps, touches or precedes the previous one"
                    f" ending at {previous_end} (intervals must be sorted and coalesced)"
                )
            previous_end = end
        result = cls()
        result._b = list(flat)
        return result

    def to_list(self) -> list[int]:
        """The compact JSON form ``[s0, e0, s1, e1, ...]`` (a fresh list; the set is not aliased)."""
        return list(self._b)

    def copy(self) -> RangeSet:
        result = RangeSet()
        result._b = list(self._b)
        return result

    # -- queries ----------------------------------------------------------------------------------

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, int) or isinstance(value, bool):
            return False
        return bisect_right(self._b, value) % 2 == 1

    def contains(self, value: int) -> bool:
        return value in self

    def __len__(self) -> int:
        """Number of members (not of intervals)."""
        b = self._b
        return sum(b[i + 1] - b[i] for i in range(0, len(b), 2))

    def __bool__(self) -> bool:
        return bool(self._b)

    def __iter__(self) -> Iterator[int]:
        """Members in ascending order (use :meth:`intervals` to walk runs instead)."""
        for start, end in self.intervals():
            yield from range(start, end)

    def intervals(self) -> Iterator[tuple[int, int]]:
        """The half-open intervals ``(start, end)`` in ascending order."""
        b = self._b
        for i in range(0, len(b), 2):
            yield b[i], b[i + 1]

    @property
    def interval_count(self) -> int:
        return len(self._b) // 2

    def first_gap_from(self, value: int) -> int:
        """The smallest non-member >= ``value``, e.g. the first shard at or after ``value`` not yet done."""
        _check_value(value)
        index = bisect_right(self._b, value)
        if index % 2 == 1:  # inside [b[index-1], b[index]): the gap starts at that interval's end
            return self._b[index]
        return value

    def max(self) -> int | None:
        """The largest member, or None when empty."""
        return self._b[-1] - 1 if self._b else None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RangeSet):
            return NotImplemented
        return self._b == other._b

    def __repr__(self) -> str:
        return f"RangeSet({list(self.intervals())!r})"

    # -- mutation ---------------------------------------------------------------------------------

    def add(self, value: int) -> None:
        _check_value(value)
        self.add_range(value, value + 1)

    def add_range(self, start: int, end: int) -> None:
        """Add every int in ``[start, end)``, merging with overlapping or adjacent intervals."""
        _check_value(start)
        _check_value(end)
        if start >= end:
            return
        b = self._b
        # Boundaries strictly inside or touching [start, end] get replaced. bisect_left for start so that
        # an interval ending exactly at `start` is merged; bisect_right for end so one starting at `end` is.
        lo = bisect_left(b, start)
        hi = bisect_right(b, end)
        new: list[int] = []
        if lo % 2 == 0:  # start falls in a gap (or on an interval's start): it opens the merged interval
            new.append(start)
        if hi % 2 == 0:  # end falls in a gap (or on an interval's end): it closes the merged interval
            new.append(end)
        b[lo:hi] = new

    def discard(self, value: int) -> None:
        _check_value(value)
        self.discard_range(value, value + 1)

    def discard_range(self, start: int, end: int) -> None:
        """Remove every int in ``[start, end)``; absent members are ignored."""
        _check_value(start)
        _check_value(end)
        if start >= end:
            return
        b = self._b
        # Boundaries in [start, end] are replaced; an interval straddling either edge is cut there.
        lo = bisect_left(b, start)
        hi = bisect_right(b, end)
        new: list[int] = []
        if lo % 2 == 1:  # an interval begins before start and reaches it: it now ends at start
            new.append(start)
        if hi % 2 == 1:  # an interval begins at or before end and runs past it: it now starts at end
            new.append(end)
        b[lo:hi] = new


def _is_int(value: object) -> bool:
    # bool is an int subclass, but True as a shard number is always a bug.
    return isinstance(value, int) and not isinstance(value, bool)


def _check_value(value: int) -> None:
    if not _is_int(value):
        raise TypeError(f"range set members must be ints, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"range set members must be non-negative, got {value}")
