"""A small ``loadtest.bench`` result, shaped like a real one, for the report and compare tests."""

from __future__ import annotations

import copy
from typing import Any

LATENCY = {"count": 100, "p50_ms": 10.0, "p90_ms": 15.0, "p99_ms": 25.0, "p99.9_ms": 30.0,
           "max_ms": 31.0}  # fmt: skip
OVER_TIME = [
    {"t_s": 0.0, "deliveries_per_s": 9000, "p50_ms": 9.0, "p99_ms": 20.0},
    {"t_s": 0.5, "deliveries_per_s": 11000, "p50_ms": 11.0, "p99_ms": 26.0},
]
RESULT: dict[str, Any] = {
    "server": {"name": "wsloop", "pids": [4242]},
    "started_at": "2026-11-28T15:00:00+00:00",
    "elapsed_s": 40.0,
    "machine": {"nproc": 2, "cpu_model": "test <cpu>", "python": "3.11"},
    "warnings": [],
    "idle": {
        "server_sockets": 10_000,
        "ramp": {"requested": 10_000, "failures": 0, "connect_ms": dict(LATENCY)},
        "server_kib_per_socket": 12.8,
        "nginx_kib_per_socket": 21.7,
        "over_time": [
            {"t_s": 1.0, "sockets": 0, "server_rss_kib": 58_000, "nginx_rss_kib": 40_000,
             "redis_used_memory_kib": 1000, "redis_connections": 1},
            {"t_s": 1.5, "sockets": 1000, "server_rss_kib": 71_000, "nginx_rss_kib": 62_000,
             "redis_used_memory_kib": 1100, "redis_connections": 2},
        ],
    },
    "fanout": [
        {
            "subscribers": 1000,
            "burst": {"deliveries_per_s": 1_100_000, "lost": 0, "duplicates": 0,
                      "out_of_order": 0, "latency": dict(LATENCY), "over_time": OVER_TIME,
                      "cpu": {"cpu_us_per_delivery": {"server": 0.3}}},
            "latency": {"lost": 0, "latency": dict(LATENCY), "over_time": OVER_TIME},
        }
    ],
    "slow_consumers": {"sockets": 10, "messages_each": 300, "complete": 10, "drain_s": 0.2,
                       "closed_by_server": {}, "lost": 0, "duplicates": 0, "out_of_order": 0},
    "phases": [{"t_s": 0.1, "phase": "ramp"}, {"t_s": 0.9, "phase": "burst 1,000"}],
    "over_time": [
        {"t_s": 0.5, "phase": "ramp", "sockets": 0, "deliveries_per_s": 0, "server_rss_kib": 58_000,
         "nginx_rss_kib": 40_000, "redis_used_memory_kib": 1000,
         "redis_connected_clients": 3,
         "cpu_pct_of_one_core": {"server": 5.0, "nginx": 2.0, "redis": 0.5, "clients": 3.0}},
        {"t_s": 1.0, "phase": "burst 1,000", "sockets": 1000, "deliveries_per_s": 900_000,
         "server_rss_kib": 71_000, "nginx_rss_kib": 62_000, "redis_used_memory_kib": 1100,
         "redis_connected_clients": 4,
         "cpu_pct_of_one_core": {"server": 90.0, "nginx": 60.0, "redis": 0.5, "clients": 80.0}},
    ],
    "storm": {
        "sockets": 1000,
        "open": {"opened": 1000, "failures": 0, "elapsed_s": 0.8, "connect_ms": dict(LATENCY)},
        "server_cpu_us_per_handshake": 370.0,
    },
}  # fmt: skip


def result(**changes: Any) -> dict[str, Any]:
    """A copy of RESULT with top-level parts replaced (``storm=None`` drops the storm)."""
    copied = copy.deepcopy(RESULT)
    copied.update(changes)
    return {k: v for k, v in copied.items() if v is not None}
