"""The headline figures of a ``loadtest.bench`` result, named and with their units: what the
compare mode puts side by side and the HTML report lists. Missing phases give no figure."""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


class Better(enum.Enum):
    HIGHER = "higher"
    LOWER = "lower"


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    unit: str
    better: Better


def key_figures(result: dict[str, Any]) -> list[Figure]:
    """The figures of a result of any of the tools (``tool`` in the result says which)."""
    tool = result.get("tool", "loadtest.bench")
    if tool == "loadtest.rooms":
        return list(_rooms(result))
    if tool == "loadtest.history":
        return list(_history(result))
    if tool == "loadtest.slow_consumer":
        return list(_slow_consumer(result))
    return [
        *_idle(result.get("idle")),
        *_fanout(result.get("fanout") or []),
        *_slow_consumers(result),
        *_storm(result),
    ]


def _rooms(result: dict[str, Any]) -> Iterator[Figure]:
    if "latency" not in result:
        return
    yield Figure("sockets", result["sockets"], "", Better.HIGHER)
    yield Figure("deliveries/s", result["deliveries_per_s"], "", Better.HIGHER)
    latency = result["latency"]
    yield Figure("latency p50", latency.get("p50_ms", 0.0), "ms", Better.LOWER)
    yield Figure("latency p99", latency.get("p99_ms", 0.0), "ms", Better.LOWER)
    yield Figure("latency max", latency.get("max_ms", 0.0), "ms", Better.LOWER)
    lost = result["lost"] + result["duplicates"] + result["out_of_order"]
    yield Figure("lost, duplicated or reordered", lost, "", Better.LOWER)


def _history(result: dict[str, Any]) -> Iterator[Figure]:
    for entry in result.get("memory", []):
        yield Figure(
            f"Redis memory per 1,000 messages of {entry['payload_bytes']} bytes",
            entry["stream_bytes_per_1000"] / 1024,
            "KiB",
            Better.LOWER,
        )
    for key in ("replay_single_client", "replay_concurrent"):
        replay = result.get(key)
        if replay:
            count = replay["clients"]
            name = f"replay to {count} client{'' if count == 1 else 's'} at once"
            yield Figure(name, replay["messages_recovered_per_s"], "messages/s", Better.HIGHER)


def _slow_consumer(result: dict[str, Any]) -> Iterator[Figure]:
    for key, label in (("quiet", "quiet"), ("with_slow_consumer", "with a slow consumer")):
        phase = result.get(key)
        if phase:
            yield Figure(f"p99, {label}", phase["latency"].get("p99_ms", 0.0), "ms", Better.LOWER)
            yield Figure(f"lost, {label}", phase["lost"], "", Better.LOWER)
    if "slow_consumers_closed" in result:
        yield Figure("slow consumers closed", result["slow_consumers_closed"], "", Better.HIGHER)


def _slow_consumers(result: dict[str, Any]) -> Iterator[Figure]:
    slow = result.get("slow_consumers")
    if slow:
        yield Figure("slow consumers: lost on open sockets", slow["lost"], "", Better.LOWER)
        yield Figure("slow consumers: seconds to drain", slow["drain_s"], "s", Better.LOWER)


def _idle(idle: dict[str, Any] | None) -> Iterator[Figure]:
    if not idle:
        return
    connect = idle["ramp"]["connect_ms"]
    yield Figure("sockets held", idle["server_sockets"], "", Better.HIGHER)
    yield Figure("connect failures", idle["ramp"]["failures"], "", Better.LOWER)
    yield Figure("connect p99", connect.get("p99_ms", 0.0), "ms", Better.LOWER)
    yield Figure("server RSS per socket", idle["server_kib_per_socket"], "KiB", Better.LOWER)
    yield Figure("nginx RSS per socket", idle["nginx_kib_per_socket"], "KiB", Better.LOWER)


def _fanout(fanout: list[dict[str, Any]]) -> Iterator[Figure]:
    for entry in sorted(fanout, key=lambda e: e["subscribers"]):
        to = f"{entry['subscribers']:,} subscribers"
        burst, steady = entry["burst"], entry["latency"]
        yield Figure(f"burst to {to}", burst["deliveries_per_s"], "deliveries/s", Better.HIGHER)
        latency = steady["latency"]
        yield Figure(f"latency p50, {to}", latency.get("p50_ms", 0.0), "ms", Better.LOWER)
        yield Figure(f"latency p99, {to}", latency.get("p99_ms", 0.0), "ms", Better.LOWER)
        lost = burst["lost"] + steady["lost"] + burst["duplicates"] + burst["out_of_order"]
        yield Figure(f"lost, duplicated or reordered, {to}", lost, "", Better.LOWER)
        cost = burst.get("cpu", {}).get("cpu_us_per_delivery", {}).get("server")
        if cost is not None:
            yield Figure(f"server CPU per burst delivery, {to}", cost, "us", Better.LOWER)


def _storm(result: dict[str, Any]) -> Iterator[Figure]:
    storm = result.get("storm")
    if not storm:
        return
    opened = storm["open"]
    yield Figure("storm: all back after", opened["elapsed_s"], "s", Better.LOWER)
    yield Figure("storm: connect p99", opened["connect_ms"].get("p99_ms", 0.0), "ms", Better.LOWER)
    yield Figure("storm: failures", opened["failures"], "", Better.LOWER)
    yield Figure(
        "storm: server CPU per handshake", storm["server_cpu_us_per_handshake"], "us", Better.LOWER
    )
