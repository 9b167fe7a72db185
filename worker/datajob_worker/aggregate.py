"""The aggregate builtin: group by columns, and count / sum / min / max / mean of value columns.

Options: ``groupBy`` (comma-separated columns), and either ``value`` (one column: the flat output
``count, sum, min, max`` of earlier versions) or ``values`` (one or more columns: per column an object
``{"count", "sum", "min", "max", "mean"}``, where ``count`` is its non-blank values). ``count`` at the top
level is the group's rows.

A group's state is ``[rows, n, sum, min, max, n, sum, min, max, ...]`` (one quadruple per value column):
what merging partial results needs, so a shard's output part carries its per-column counts and sums, and
the job's result (or a reducer's) recomputes each mean from the merged sum and count, never by averaging
averages.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from datajob_core.api import aggregate_options

Record = Any
State = dict[str, Any]


def group_key(values: list[str]) -> str:
    """The state key of a group of several columns: their values as a JSON list, which no value can
    confuse (a tab-joined key merged ("p\\tq", "r") with ("p", "q\\tr"))."""
    return json.dumps(values)


@dataclass(frozen=True)
class Aggregate:
    keys: list[str]
    values: list[str]
    nested: bool  # options.values: per-column objects with a mean; options.value: the flat format

    @classmethod
    def from_options(cls, options: dict[str, str]) -> Aggregate:
        read = aggregate_options.read(options)  # the API's checks: a spec validate accepts runs here
        return cls(read.keys, read.values, read.nested)

    @property
    def columns(self) -> tuple[str, ...]:
        return (*self.keys, *self.values)

    def empty(self) -> list[Any]:
        return [0, *([0, 0.0, None, None] * len(self.values))]

    def fold_rows(self, records: list[Record], state: State) -> None:
        groups = state["groups"]
        keys, values = self.keys, self.values
        single = keys[0] if len(keys) == 1 else None
        for record in records:
            if not isinstance(record, dict):
                continue
            group = (
                str(record.get(single, "")) if single else json.dumps([str(record.get(k, "")) for k in keys])
            )
            entry = groups.get(group)
            if entry is None:
                entry = groups[group] = self.empty()
            entry[0] += 1
            at = 1
            for value in values:
                raw = record.get(value)
                if raw is not None and raw != "":
                    number = float(raw)
                    entry[at] += 1
                    entry[at + 1] += number
                    if entry[at + 2] is None or number < entry[at + 2]:
                        entry[at + 2] = number
                    if entry[at + 3] is None or number > entry[at + 3]:
                        entry[at + 3] = number
                at += 4

    def render(self, state: State) -> str:
        lines = []
        for group, entry in sorted(state["groups"].items()):
            row: dict[str, Any] = dict(zip(self.keys, self.key_values(group), strict=False))
            row["count"] = entry[0]
            if not self.nested:
                _, total, low, high = entry[1:5] if self.values else (0, 0.0, None, None)
                row.update(sum=round(total, 9), min=low, max=high)
            for index, value in enumerate(self.values if self.nested else ()):
                n, total, low, high = entry[1 + 4 * index : 5 + 4 * index]
                mean = round(total / n, 9) if n else None
                row[value] = {"count": n, "sum": round(total, 9), "min": low, "max": high, "mean": mean}
            lines.append(json.dumps(row, sort_keys=True) + "\n")
        return "".join(lines)

    def restore(self, state: State) -> State:
        """A checkpointed state; one written before per-column counts (``[rows, sum, min, max]``) gets a
        zero count, which the flat format (the only one it can be) never shows; group keys written as
        tab-joined values (before a tab inside a value could merge two groups) become JSON lists."""
        groups = state["groups"]
        for old in list(groups):
            entry = groups.pop(old)
            if len(entry) == 4 and not self.nested:
                entry = [entry[0], 0, *entry[1:]]
            legacy = len(self.keys) > 1 and not old.startswith("[")
            groups[group_key(old.split("\t")) if legacy else old] = entry
        return state

    def merge(self, parts: list[str]) -> str:
        groups: dict[str, list[Any]] = {}
        for text in parts:
            for line in text.splitlines():
                row = json.loads(line)
                entry = groups.setdefault(self.key(line, row), self.empty())
                entry[0] += row["count"]
                for index, value in enumerate(self.values):
                    if self.nested:
                        stats = row[value]
                        n, total, low, high = stats["count"], stats["sum"], stats["min"], stats["max"]
                    else:
                        n, total, low, high = 0, row["sum"], row["min"], row["max"]
                    _add(entry, 1 + 4 * index, (n, total, low, high))
        return self.render({"groups": groups})

    def key(self, line: str, row: dict[str, Any] | None = None) -> str:
        row = json.loads(line) if row is None else row
        values = [str(row.get(k, "")) for k in self.keys]
        return values[0] if len(values) == 1 else group_key(values)

    def key_values(self, group: str) -> list[str]:
        """The group columns' values of a state key (``group_key``)."""
        if len(self.keys) == 1:
            return [group]
        values: list[str] = json.loads(group)
        return values


def _add(entry: list[Any], at: int, stats: tuple[int, float, float | None, float | None]) -> None:
    n, total, low, high = stats
    entry[at] += n
    entry[at + 1] += total
    if low is not None:
        entry[at + 2] = low if entry[at + 2] is None else min(entry[at + 2], low)
    if high is not None:
        entry[at + 3] = high if entry[at + 3] is None else max(entry[at + 3], high)
