"""History benchmark: Redis memory per 1,000 history messages, and replay throughput.

``python -m loadtest.history`` against a running stack (defaults: devstack's nginx on 8000 and
Redis on 6380). It measures, in one run:

* **Memory**: ``MEMORY USAGE`` of a facility's stream after 1,000 messages appended through
  wsloop's own publish script, for several payload sizes; the overhead per entry is what the
  stream costs beyond the payload bytes.
* **Replay throughput**: 1,000 messages are published on a facility, then N clients connect at
  once with ``since=`` the first one's position (so 999 are replayed to each) and read until
  the ``recovered`` control message. Messages recovered per second = N x 999 / (time from the
  first connect to the last ``recovered``), measured through nginx like every browser.

It is a measurement, not a test: it prints a table, writes a JSON file, and never fails a build.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import time
from collections.abc import Sequence
from typing import Any

import redis
from websockets.asyncio.client import connect

from wsloop.history import HistoryPolicy
from wsloop.history_redis import RedisHistory

from .report import publish, stack_parser
from .stats import summarize_ms

HISTORY_MESSAGES = 1000
PAYLOAD_SIZES_BYTES = (16, 100, 1000)
DEFAULT_CLIENTS = 100
CONNECT_CONCURRENCY = 50
REPLAY_TIMEOUT_S = 60.0


def memory_per_thousand(history: RedisHistory, client: redis.Redis, size: int) -> dict[str, Any]:
    facility = f"bench-memory-{size}-{time.time_ns()}"
    channel = f"broadcast:{facility}"
    payload = b"x" * size
    for _ in range(HISTORY_MESSAGES):
        history.publish(facility, [channel], payload, 0)
    key = history.stream_key(facility)
    used = int(client.memory_usage(key, samples=0) or 0)
    client.delete(key, f"{key}:epoch")
    return {
        "payload_bytes": size,
        "stream_bytes_per_1000": used,
        "overhead_bytes_per_entry": round(used / HISTORY_MESSAGES - size, 1),
    }


async def replay_one(url: str, limit: asyncio.Semaphore) -> tuple[int, float]:
    """Connect with since=, read until "recovered"; (messages replayed, ms to recovered)."""
    async with limit:
        started = time.perf_counter()
        websocket = await connect(url, max_size=None, ping_interval=None, compression=None)
    try:
        count = 0
        while True:
            body = json.loads(await asyncio.wait_for(websocket.recv(), REPLAY_TIMEOUT_S))
            if body.get("type") == "message":
                count += 1
            elif body.get("type") == "recovered":
                return count, (time.perf_counter() - started) * 1000
            elif body.get("type") == "resync":
                raise RuntimeError(f"resync instead of replay: {body}")
    finally:
        await websocket.close()


async def replay_throughput(ws_url: str, since: str, clients: int) -> dict[str, Any]:
    url = f"{ws_url}?subscribe-broadcast&envelope&since={since}"
    limit = asyncio.Semaphore(CONNECT_CONCURRENCY)
    started = time.perf_counter()
    results = await asyncio.gather(*(replay_one(url, limit) for _ in range(clients)))
    elapsed_s = time.perf_counter() - started
    recovered = sum(count for count, _ in results)
    return {
        "clients": clients,
        "messages_per_client": results[0][0],
        "messages_recovered": recovered,
        "elapsed_s": round(elapsed_s, 3),
        "messages_recovered_per_s": round(recovered / elapsed_s),
        "time_to_recovered": summarize_ms([ms for _, ms in results]),
    }


def run(options: argparse.Namespace) -> dict[str, Any]:
    client = redis.Redis.from_url(options.redis_url)
    policy = {"*": HistoryPolicy(length=HISTORY_MESSAGES * 2, age_s=3600)}
    history = RedisHistory(client, options.prefix, policy)
    memory = [memory_per_thousand(history, client, size) for size in PAYLOAD_SIZES_BYTES]
    facility = f"bench-replay-{time.time_ns()}"
    channel = f"{options.prefix}broadcast:{facility}"
    first = history.publish(facility, [channel], b"m" * 100, 0).positions[0]
    for _ in range(HISTORY_MESSAGES - 1):
        history.publish(facility, [channel], b"m" * 100, 0)
    ws_url = options.base_url.replace("http://", "ws://", 1) + f"/ws/{facility}"
    single = asyncio.run(replay_throughput(ws_url, str(first), 1))
    many = asyncio.run(replay_throughput(ws_url, str(first), options.clients))
    key = history.stream_key(facility)
    client.delete(key, f"{key}:epoch")
    return {
        "tool": "loadtest.history",
        "started_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "parameters": vars(options),
        "memory": memory,
        "replay_single_client": single,
        "replay_concurrent": many,
    }


def render(result: dict[str, Any]) -> str:
    lines = [
        "history memory (one facility stream, 1,000 messages)",
        "  payload B | stream bytes per 1,000 | overhead per entry B",
    ]
    for row in result["memory"]:
        lines.append(
            f"  {row['payload_bytes']:>9} | {row['stream_bytes_per_1000']:>22,} | "
            f"{row['overhead_bytes_per_entry']:>20}"
        )
    for name in ("replay_single_client", "replay_concurrent"):
        replay = result[name]
        lines.append(
            f"replay, {replay['clients']} client(s) x {replay['messages_per_client']} messages: "
            f"{replay['messages_recovered_per_s']:,} messages/s recovered, time to 'recovered' "
            f"p50/max {replay['time_to_recovered'].get('p50_ms')} / "
            f"{replay['time_to_recovered'].get('max_ms')} ms"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = stack_parser("python -m loadtest.history", __doc__)
    parser.add_argument("--clients", type=int, default=DEFAULT_CLIENTS)
    options = parser.parse_args(argv)
    result = run(options)
    publish(result, "history", options.out, render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
