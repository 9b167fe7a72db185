"""The aggregate builtin's options, read once for both the API (``datajob validate``, the operator) and the
worker, so a spec the worker would refuse is refused before any worker starts."""

from __future__ import annotations

from dataclasses import dataclass

# Keys every aggregate output row has besides the group columns and the value columns.
ROW_COUNT = "count"
FLAT_KEYS = ("count", "sum", "min", "max")


@dataclass(frozen=True)
class AggregateOptions:
    keys: list[str]
    values: list[str]
    nested: bool  # options.values: per-column objects with a mean; options.value: the flat format


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def read(options: dict[str, str]) -> AggregateOptions:
    """``spec.processor.options`` of builtin aggregate, or ValueError naming the option."""
    keys = _names(options.get("groupBy", ""))
    if not keys:
        raise ValueError("spec.processor.options.groupBy is required for builtin aggregate")
    if options.get("value") and options.get("values"):
        raise ValueError("spec.processor.options: set value (one column) or values, not both")
    if "," in options.get("value", ""):
        raise ValueError("spec.processor.options.value is one column; several go in options.values")
    nested = "values" in options
    values = _names(options["values"] if nested else options.get("value", ""))
    if nested and not values:
        raise ValueError("spec.processor.options.values names no column")
    if len(set(keys)) != len(keys) or len(set(values)) != len(values):
        raise ValueError("spec.processor.options: a column is named twice in groupBy or in values")
    # An output row holds the group columns, count and (nested) one object per value column, by name.
    if nested:  # group columns, count, one object per value column
        clash = sorted(set(values) & (set(keys) | {ROW_COUNT}) | set(keys) & {ROW_COUNT})
    else:  # group columns, count, sum, min, max
        clash = sorted(set(keys) & set(FLAT_KEYS))
    if clash:
        raise ValueError(
            f"spec.processor.options: {', '.join(clash)} would be overwritten in the output row (its keys "
            f"are the groupBy columns, {', '.join(FLAT_KEYS) if not nested else ROW_COUNT} and the values "
            "columns): group by or aggregate a column of another name"
        )
    return AggregateOptions(keys, values, nested)
