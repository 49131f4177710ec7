"""Many small audiences on one worker, through nginx: chat rooms, or per-user notifications.

``python -m loadtest.rooms`` against a running stack (devstack defaults): 1,000 rooms x 10
sockets, 1 message/s per room for 10 s, so 1,000 publishes/s and 10,000 deliveries/s.
``--audience user``: the same shape as 1,000 logged-in users with 10 sockets (tabs) each, every
user getting a notification every second on ``[prefix:]user:<name>:<facility>``; the users'
sessions are written into the stack's session store the way Django's login does (cache
sessions in its Redis: ``--redis-url`` must be the stack's), one ``sessionid`` per user. It reports
publish-to-receive latency over every delivery, lost, duplicated and reordered messages, the
worker's channels (one Redis channel per room, all on its one subscription connection), the
server's own count of messages sent, and the CPU of wsloop, nginx, Redis and the clients.
A measurement, not a test: it prints a table, writes a JSON file, never fails a build.
"""

from __future__ import annotations

import datetime
import os
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import redis

from . import payload, probes
from .bench import STEADY_BUCKET_S
from .clients import ClientPool
from .observe import cpu_seconds, metrics_change
from .options import RESULTS_DIR
from .report import publish, stack_parser
from .stack_django import user_sessions

ROOMS = 1000
PER_ROOM = 10
ROOM_RATE_PER_S = 1.0
SECONDS = 10.0
RAMP_PER_S = 2000.0
CLIENTS = 2
SUBSCRIBE_TIMEOUT_S = 30.0
PHASE_TIMEOUT_S = 30.0
PHASE = 1


def parse(argv: Sequence[str] | None) -> Any:
    parser = stack_parser("python -m loadtest.rooms", __doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, default=ROOMS)
    parser.add_argument("--per-room", type=int, default=PER_ROOM, help="sockets per room")
    parser.add_argument("--room-rate", type=float, default=ROOM_RATE_PER_S, help="msg/s per room")
    parser.add_argument("--seconds", type=float, default=SECONDS)
    parser.add_argument("--ramp", type=float, default=RAMP_PER_S, help="connects/s")
    parser.add_argument("--clients", type=int, default=CLIENTS, help="client processes")
    parser.add_argument(
        "--audience",
        choices=("room", "user"),
        default="room",
        help="room: broadcast per room; user: per-user notifications (--rooms users)",
    )
    args = parser.parse_args(argv)
    if args.rooms * args.per_room > 20_000:
        parser.error("at most 20,000 sockets (ephemeral ports and open files)")
    return args


def wait_for_channels(base_url: str, rooms: int) -> int:
    """Poll the worker's health until it subscribes to every room's channel."""
    deadline = time.monotonic() + SUBSCRIBE_TIMEOUT_S
    while True:
        channels = int(probes.http_json(base_url, "/healthz/wsloop")["channels"])
        if channels >= rooms or time.monotonic() > deadline:
            return channels
        time.sleep(0.2)


def run(args: Any) -> dict[str, Any]:
    started_at = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    url = urlsplit(args.base_url)
    bus = redis.Redis.from_url(args.redis_url)
    wsloop_pid = int(probes.http_json(args.base_url, "/healthz/wsloop")["pid"])
    facility = f"rooms-{datetime.datetime.now():%H%M%S}-{os.getpid()}"
    if args.audience == "user":
        path, channel = f"/ws/{facility}?subscribe-user", f"{args.prefix}user:lt{{room}}:{facility}"
        cookies = user_sessions(args.redis_url, args.prefix.rstrip(":"), args.rooms)
    else:
        path = f"/ws/{facility}-{{room}}?subscribe-broadcast"
        channel, cookies = f"{args.prefix}broadcast:{facility}-{{room}}", ()
    sockets = args.rooms * args.per_room
    messages = max(1, round(args.room_rate * args.seconds))
    pool = ClientPool(args.clients, url.hostname or "127.0.0.1", url.port or 80)
    groups = {
        "wsloop": [wsloop_pid],
        "nginx": probes.nginx_worker_pids(url.port or 80),
        "redis": [int(probes.redis_info(bus)["pid"])],
        "clients": pool.pids,
    }
    try:
        opened = pool.open(path, sockets, args.ramp, rooms=args.rooms, cookies=cookies)
        channels = wait_for_channels(args.base_url, args.rooms)
        armed = pool.arm(PHASE, messages, args.seconds + PHASE_TIMEOUT_S)
        metrics_before, cpu_before = (
            probes.prometheus_samples(args.base_url, "/metrics/wsloop"),
            cpu_seconds(groups),
        )
        publish_rate = args.rooms * args.room_rate
        started, late_ms = time.monotonic(), 0.0
        for index in range(args.rooms * messages):
            seq, room = divmod(index, args.rooms)
            delay = started + index / publish_rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                late_ms = max(late_ms, -delay * 1000)
            bus.publish(channel.format(room=room), payload.encode(PHASE, seq, time.time_ns()))
        gathered = pool.gather(args.seconds + PHASE_TIMEOUT_S, STEADY_BUCKET_S)
        wall_s = time.monotonic() - started
        cpu_after = cpu_seconds(groups)
        metrics = metrics_change(
            metrics_before, probes.prometheus_samples(args.base_url, "/metrics/wsloop")
        )
    finally:
        pool.shutdown()
    return {
        "tool": "loadtest.rooms",
        "started_at": started_at,
        "machine": probes.machine_info(),
        "parameters": {k: v for k, v in vars(args).items() if k != "out"},
        "open": opened,
        "worker_channels": channels,
        "armed_sockets": armed,
        "messages_per_room": messages,
        "publisher_max_late_ms": round(late_ms, 2),
        "expected_deliveries": armed * messages,
        **{k: v for k, v in gathered.items() if k not in ("first_ns", "last_ns")},
        "deliveries_per_s": round(gathered["deliveries"] / wall_s),
        "server_metrics": metrics,
        "cpu_pct_of_one_core": {
            name: round(100 * (cpu_after[name] - cpu_before[name]) / wall_s, 1) for name in groups
        },
    }


def table(result: dict[str, Any]) -> str:
    params, latency = result["parameters"], result["latency"]
    cpu = result["cpu_pct_of_one_core"]
    return "\n".join(
        [
            f"{params['audience']}s: {params['rooms']:,} x {params['per_room']} sockets, "
            f"{params['room_rate']:g} msg/s each for {params['seconds']:g} s",
            f"  sockets opened / failures     {result['open']['opened']:,} / "
            f"{result['open']['failures']}",
            f"  worker channels               {result['worker_channels']:,}",
            f"  deliveries                    {result['deliveries']:,} of "
            f"{result['expected_deliveries']:,} ({result['deliveries_per_s']:,}/s)",
            f"  lost / duplicates / reordered {result['lost']} / {result['duplicates']} / "
            f"{result['out_of_order']}",
            f"  server counted sent           "
            f"{result['server_metrics'].get('wsloop_messages_sent_total', 0):,.0f}",
            f"  latency p50 / p99 / max       {latency.get('p50_ms')} / {latency.get('p99_ms')} / "
            f"{latency.get('max_ms')} ms",
            "  CPU, % of one core            "
            + ", ".join(f"{name} {value}" for name, value in cpu.items()),
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    # Named before the run: Django's setup (the user audience) switches the process's time zone.
    out = args.out or RESULTS_DIR / f"{args.audience}s-{time.strftime('%Y%m%d-%H%M%S')}.json"
    result = run(args)
    publish(result, f"{args.audience}s", out, table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
