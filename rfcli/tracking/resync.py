"""What an MLflow run lacks, or holds wrongly, beside the store's metric rows: pure logic, no MLflow.

MLflow's metric history only grows: a row logged twice is two points at one step, and no row can be
taken back. So bringing an MLflow run back to what the store holds has two outcomes:
1. MLflow holds only rows the store holds (each once, with the store's value): the rows it lacks
   are sent, and it then holds exactly the store's rows;
2. it holds anything else (a step logged twice, a value that differs, a row the store no longer
   has, such as a failed attempt's steps after a retry): no row sent can fix it, and the run is
   replaced by a fresh one that is sent every row.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

MetricRow = tuple[int, str, float]


@dataclass(frozen=True)
class Resync:
    missing: list[MetricRow]
    """The store's rows that MLflow lacks, by step then key: sent as they are (outcome 1)."""
    extra: list[MetricRow]
    """What MLflow holds beyond the store's rows: a second copy, another value, or a row the store
    does not have. Any of them means the run is replaced (outcome 2)."""

    @property
    def replace(self) -> bool:
        return bool(self.extra)


def compare(store_rows: Iterable[MetricRow], logged_rows: Iterable[MetricRow]) -> Resync:
    """Compare the store's rows with every row MLflow holds over the same steps and keys, duplicates
    included. NaN equals NaN; MLflow keeps an infinite value as the largest float, so that counts as it."""
    expected = {(step, key): value for step, key, value in store_rows}
    seen: Counter[tuple[int, str]] = Counter()
    extra = []
    for step, key, value in logged_rows:
        seen[(step, key)] += 1
        stored = expected.get((step, key))
        if stored is None or seen[(step, key)] > 1 or not same_value(stored, value):
            extra.append((step, key, value))
    missing = [(step, key, value) for (step, key), value in sorted(expected.items()) if not seen[(step, key)]]
    return Resync(missing=missing, extra=sorted(extra))


def same_value(stored: float, logged: float) -> bool:
    if math.isnan(stored) or math.isnan(logged):
        return math.isnan(stored) and math.isnan(logged)
    if math.isinf(stored):
        return abs(logged) >= 1.7e308 and math.copysign(1.0, logged) == math.copysign(1.0, stored)
    return stored == logged
