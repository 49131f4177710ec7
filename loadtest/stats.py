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


def timeline(
    sent_ns: Sequence[int], latencies_ns: Sequence[int], bucket_s: float
) -> list[dict[str, float]]:
    """Deliveries per second and latency p50/p99 in buckets of ``bucket_s`` by time of receipt
    (sent + latency), from the first receipt; empty buckets are kept (a stall shows as zero)."""
    if not latencies_ns:
        return []
    received = [s + lat for s, lat in zip(sent_ns, latencies_ns, strict=True)]
    start, bucket_ns = min(received), int(bucket_s * 1e9)
    buckets: list[list[int]] = [[] for _ in range((max(received) - start) // bucket_ns + 1)]
    for when, latency in zip(received, latencies_ns, strict=True):
        buckets[(when - start) // bucket_ns].append(latency)
    series = []
    for index, latencies in enumerate(buckets):
        ordered = sorted(latencies)
        series.append(
            {
                "t_s": round(index * bucket_s, 3),
                "deliveries_per_s": round(len(ordered) / bucket_s),
                "p50_ms": round(percentile(ordered, 50.0) / 1e6, 2) if ordered else math.nan,
                "p99_ms": round(percentile(ordered, 99.0) / 1e6, 2) if ordered else math.nan,
            }
        )
    return series
