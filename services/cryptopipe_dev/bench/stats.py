"""Summary statistics the benchmarks report."""

from __future__ import annotations

import math
from collections.abc import Iterable


def nearest_rank(values: Iterable[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank: with few samples p99 is the largest but one or the
    largest, never interpolated. NaN without values."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else math.nan
