"""Summaries of samples: nearest-rank percentiles over every sample (no sampling, no histogram)."""

from __future__ import annotations

import math
from collections.abc import Sequence

PERCENTILES = (50.0, 90.0, 99.0, 99.9)


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of already sorted values (NaN if there are none)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(pct / 100.0 * len(sorted_values)))
    return float(sorted_values[rank - 1])


def summarize_ms(values_ms: Sequence[float]) -> dict[str, float | int]:
    """count, mean, p50/p90/p99/p99.9 and max of values in milliseconds (rounded to 0.01 ms)."""
    ordered = sorted(values_ms)
    summary: dict[str, float | int] = {"count": len(ordered)}
    if not ordered:
        return summary
    summary["mean_ms"] = round(sum(ordered) / len(ordered), 2)
    for pct in PERCENTILES:
        summary[f"p{pct:g}_ms"] = round(percentile(ordered, pct), 2)
    summary["max_ms"] = round(ordered[-1], 2)
    return summary


def summarize_ns_as_ms(values_ns: Sequence[int]) -> dict[str, float | int]:
    return summarize_ms([value / 1e6 for value in values_ns])
