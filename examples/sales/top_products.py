"""A user MapReduce job: the three best-selling products of each region, by revenue.

The mapper is called per order (a CSV row as a dict) and returns (key, value) pairs; the reducer is called
once per key with all its values, on the reduce task that owns the key. Used by top-products.yaml:

PYTHONPATH=examples/sales datajob run examples/sales/top-products.yaml
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any


def by_region(order: dict[str, Any]) -> list[tuple[str, tuple[str, float]]]:
    return [(order["region"], (order["product"], float(order["amount"])))]


def top3(region: str, sales: list[list[Any]]) -> list[list[Any]]:
    revenue: dict[str, float] = defaultdict(float)
    for product, amount in sales:
        revenue[product] += amount
    best = sorted(revenue.items(), key=lambda item: (-item[1], item[0]))[:3]
    return [[product, round(total, 2)] for product, total in best]
