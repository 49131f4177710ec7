"""Do 1,000 sockets keep their latency while a slow consumer on the same worker is cut?

``python -m loadtest.slow_consumer`` against a running stack (devstack defaults). 1,000 sockets
subscribe to one facility and receive 10 messages/s (10,000 deliveries/s). The run has two
phases of the same length, measured the same way:

1. **quiet**: nothing else happens;
2. **slow consumer**: a client with a 4 KiB receive buffer that never reads subscribes to
   another facility, which is flooded with 25 MiB; the worker must close it (4008) once its send
   queue passes the limit, without holding up the 1,000.

It reports publish-to-receive latency p50/p99/max of each phase and their ratio, deliveries
lost, and whether the slow consumer was cut (the worker's ``slow_consumers`` counter).
A measurement, not a test: it prints a table, writes a JSON file, never fails a build.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import time
import urllib.request
from collections.abc import Sequence
from typing import Any

import redis
from websockets.asyncio.client import ClientConnection, connect

from .report import publish, stack_parser
from .stats import summarize_ms

SOCKETS = 1000
RATE_PER_S = 10
PHASE_S = 5.0
FLOOD_MESSAGES = 400
FLOOD_MESSAGE_BYTES = 64 * 1024
SLOW_RECEIVE_BUFFER_BYTES = 4096
CONNECT_CONCURRENCY = 50


def health(base_url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{base_url}/healthz/wsloop", timeout=10) as response:
        data: dict[str, Any] = json.loads(response.read())
        return data


def open_slow_consumer(base_url: str, facility: str) -> socket.socket:
    """A raw websocket that will never read: the kernel buffer fills, then wsloop's queue."""
    host, port = base_url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SLOW_RECEIVE_BUFFER_BYTES)
    sock.connect((host, int(port)))
    sock.sendall(
        f"GET /ws/{facility}?subscribe-broadcast HTTP/1.1\r\nHost: {host}:{port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    if not sock.recv(4096).startswith(b"HTTP/1.1 101"):
        raise RuntimeError("slow consumer handshake refused")
    return sock


async def receive(ws: ClientConnection, latencies: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            message = await asyncio.wait_for(ws.recv(), 0.5)
        except TimeoutError:
            continue
        if isinstance(message, str) and message.startswith("t="):
            latencies.append((time.time() - float(message[2:])) * 1000)


async def phase(
    sockets: list[ClientConnection], client: redis.Redis, channel: str, flood: Any
) -> dict[str, Any]:
    latencies: list[float] = []
    stop = asyncio.Event()
    readers = [asyncio.create_task(receive(ws, latencies, stop)) for ws in sockets]
    sent = 0
    started = time.monotonic()
    flood_task = asyncio.create_task(asyncio.to_thread(flood)) if flood else None
    while time.monotonic() - started < PHASE_S:
        await asyncio.to_thread(client.publish, channel, f"t={time.time()}")
        sent += 1
        await asyncio.sleep(1 / RATE_PER_S)
    if flood_task is not None:
        await flood_task
    await asyncio.sleep(1.0)
    stop.set()
    await asyncio.gather(*readers)
    expected = sent * len(sockets)
    return {
        "published": sent,
        "expected_deliveries": expected,
        "deliveries": len(latencies),
        "lost": expected - len(latencies),
        "latency": summarize_ms(latencies),
    }


async def measure(options: argparse.Namespace) -> dict[str, Any]:
    stamp = time.time_ns()
    steady, flooded = f"slowbench-steady-{stamp}", f"slowbench-flood-{stamp}"
    ws_url = options.base_url.replace("http://", "ws://", 1)
    client = redis.Redis.from_url(options.redis_url)
    limit = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def open_one() -> ClientConnection:
        async with limit:
            return await connect(
                f"{ws_url}/ws/{steady}?subscribe-broadcast",
                max_size=None,
                ping_interval=None,
                compression=None,
            )

    sockets = await asyncio.gather(*(open_one() for _ in range(options.sockets)))
    try:
        await asyncio.sleep(0.5)
        channel = f"{options.prefix}broadcast:{steady}"
        quiet = await phase(sockets, client, channel, None)
        before = health(options.base_url)["slow_consumers"]
        slow = open_slow_consumer(options.base_url, flooded)

        def flood() -> None:
            with client.pipeline(transaction=False) as pipe:
                for _ in range(FLOOD_MESSAGES):
                    pipe.publish(
                        f"{options.prefix}broadcast:{flooded}", b"\xff" * FLOOD_MESSAGE_BYTES
                    )
                pipe.execute()

        noisy = await phase(sockets, client, channel, flood)
        cut = health(options.base_url)["slow_consumers"] - before
        slow.close()
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets))
    ratio = noisy["latency"].get("p99_ms", 0) / max(quiet["latency"].get("p99_ms", 1), 0.01)
    return {
        "tool": "loadtest.slow_consumer",
        "sockets": options.sockets,
        "rate_per_s": RATE_PER_S,
        "phase_s": PHASE_S,
        "quiet": quiet,
        "with_slow_consumer": noisy,
        "slow_consumers_closed": cut,
        "p99_ratio": round(ratio, 2),
    }


def render(result: dict[str, Any]) -> str:
    lines = [
        f"{result['sockets']} sockets, {result['rate_per_s']} msg/s, "
        f"{result['phase_s']:g} s per phase"
    ]
    for name in ("quiet", "with_slow_consumer"):
        phase_result = result[name]
        lat = phase_result["latency"]
        lines.append(
            f"  {name:<20} p50 {lat.get('p50_ms')} ms  p99 {lat.get('p99_ms')} ms  "
            f"max {lat.get('max_ms')} ms  lost {phase_result['lost']}"
        )
    lines.append(
        f"  p99 with / without the slow consumer: {result['p99_ratio']}x; "
        f"slow consumers closed: {result['slow_consumers_closed']}"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = stack_parser("python -m loadtest.slow_consumer", __doc__)
    parser.add_argument("--sockets", type=int, default=SOCKETS)
    options = parser.parse_args(argv)
    result = asyncio.run(measure(options))
    publish(result, "slow-consumer", options.out, render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
