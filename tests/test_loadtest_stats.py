"""loadtest.stats: nearest-rank percentiles and the time series of a phase."""

from __future__ import annotations

import math

from loadtest.stats import percentile, summarize_ms, timeline

MS = 1_000_000


def test_nearest_rank_percentiles():
    values = list(range(1, 101))
    assert percentile(values, 50) == 50 and percentile(values, 99) == 99
    assert math.isnan(percentile([], 50))
    assert summarize_ms([]) == {"count": 0}


def test_timeline_buckets_by_time_of_receipt_and_keeps_empty_buckets():
    sent = [0, 0, 100 * MS, 3_000 * MS]
    latencies = [10 * MS, 30 * MS, 10 * MS, 5 * MS]  # received at 10, 30, 110 and 3005 ms
    series = timeline(sent, latencies, bucket_s=1.0)
    assert [point["t_s"] for point in series] == [0.0, 1.0, 2.0]
    assert [point["deliveries_per_s"] for point in series] == [3, 0, 1]
    assert series[0]["p50_ms"] == 10.0 and series[0]["p99_ms"] == 30.0
    assert math.isnan(series[1]["p50_ms"])
    assert timeline([], [], 1.0) == []
