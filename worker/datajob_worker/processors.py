"""Processors: what a worker does with each record of a shard.

A processor keeps its partial result in a JSON-serialisable ``state`` (checkpointed next to the output, so
a resumed attempt continues from it) and renders the shard's final output deterministically, so a shard's
committed output is the same whichever attempt commits it.
"""

from __future__ import annotations

import importlib
import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Record = Any
State = dict[str, Any]


@dataclass(frozen=True)
class Processor:
    name: str
    init: Callable[[], State]
    process: Callable[[Record, State], None]
    render: Callable[[State], str]


def _wordcount() -> Processor:
    def process(record: Record, state: State) -> None:
        text = record if isinstance(record, str) else json.dumps(record, sort_keys=True)
        counts = state["counts"]
        for word in text.split():
            counts[word] = counts.get(word, 0) + 1

    def render(state: State) -> str:
        return "".join(f"{word}\t{n}\n" for word, n in sorted(state["counts"].items()))

    return Processor("wordcount", lambda: {"counts": {}}, process, render)


def _grep(options: dict[str, str]) -> Processor:
    pattern = re.compile(options.get("pattern", ""))
    field = options.get("field")

    def process(record: Record, state: State) -> None:
        if record is None:
            return
        text = str(record.get(field, "")) if field and isinstance(record, dict) else _line(record)
        if pattern.search(text):
            state["lines"].append(_line(record))

    return Processor(
        "grep", lambda: {"lines": []}, process, lambda s: "".join(f"{line}\n" for line in s["lines"])
    )


def _aggregate(options: dict[str, str]) -> Processor:
    """Group by ``groupBy`` column(s) (comma-separated) and count / sum / min / max ``value``."""
    keys = [k.strip() for k in options.get("groupBy", "").split(",") if k.strip()]
    value = options.get("value")
    if not keys:
        raise ValueError("processor aggregate needs options.groupBy")

    def process(record: Record, state: State) -> None:
        if not isinstance(record, dict):
            return
        group = "\t".join(str(record.get(k, "")) for k in keys)
        entry = state["groups"].setdefault(group, {"count": 0, "sum": 0.0, "min": None, "max": None})
        entry["count"] += 1
        if value is not None and record.get(value) not in (None, ""):
            number = float(record[value])
            entry["sum"] += number
            entry["min"] = number if entry["min"] is None else min(entry["min"], number)
            entry["max"] = number if entry["max"] is None else max(entry["max"], number)

    def render(state: State) -> str:
        lines = []
        for group, entry in sorted(state["groups"].items()):
            row = dict(zip(keys, group.split("\t"), strict=False))
            row.update(count=entry["count"], sum=round(entry["sum"], 9), min=entry["min"], max=entry["max"])
            lines.append(json.dumps(row, sort_keys=True) + "\n")
        return "".join(lines)

    return Processor("aggregate", lambda: {"groups": {}}, process, render)


def _transform(options: dict[str, str]) -> Processor:
    """Keep (and optionally rename) fields of jsonl/csv records: ``select: a,b``, ``rename: a=x``."""
    select = [f.strip() for f in options.get("select", "").split(",") if f.strip()]
    rename = dict(pair.split("=", 1) for pair in options.get("rename", "").split(",") if "=" in pair)

    def process(record: Record, state: State) -> None:
        if not isinstance(record, dict):
            return
        kept = {k: record.get(k) for k in select} if select else dict(record)
        state["lines"].append(json.dumps({rename.get(k, k): v for k, v in kept.items()}, sort_keys=True))

    return Processor(
        "transform", lambda: {"lines": []}, process, lambda s: "".join(f"{x}\n" for x in s["lines"])
    )


def _function(spec: str) -> Processor:
    """User code, ``module:function``: called per record, returns a line (or None to drop the record)."""
    module_name, _, attribute = spec.partition(":")
    function = getattr(importlib.import_module(module_name), attribute)

    def process(record: Record, state: State) -> None:
        result = function(record)
        if result is not None:
            state["lines"].append(result if isinstance(result, str) else json.dumps(result, sort_keys=True))

    return Processor(spec, lambda: {"lines": []}, process, lambda s: "".join(f"{x}\n" for x in s["lines"]))


def _line(record: Record) -> str:
    return record if isinstance(record, str) else json.dumps(record, sort_keys=True)


def build(processor: dict[str, Any] | None) -> Processor:
    """The processor a DataJob's ``spec.processor`` describes (wordcount when none is given)."""
    processor = processor or {"builtin": "wordcount"}
    options = {str(k): str(v) for k, v in (processor.get("options") or {}).items()}
    if processor.get("function"):
        return _function(processor["function"])
    builtin = processor.get("builtin")
    if builtin == "wordcount":
        return _wordcount()
    if builtin == "grep":
        return _grep(options)
    if builtin == "aggregate":
        return _aggregate(options)
    if builtin == "transform":
        return _transform(options)
    raise ValueError(f"unsupported processor {processor!r}")


def merge_wordcounts(parts: list[str]) -> Counter[str]:
    """Reduce step for wordcount outputs (used by local mode's summary)."""
    total: Counter[str] = Counter()
    for text in parts:
        for line in text.splitlines():
            word, _, count = line.rpartition("\t")
            total[word] += int(count)
    return total
