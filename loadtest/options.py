"""The bench's options: defaults with their reasons, the command line, and the checks that
refuse a run that cannot work (a non-loopback address, a peer with a wsloop-only way to
publish, more slow consumers than subscribers)."""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import math
import os
import socket
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import payload, worker
from .clients import Protocol

RESULTS_DIR = Path(__file__).resolve().parent / "results"

MAX_SOCKETS = 20_000  # ephemeral ports (about 28k) are shared with nginx's upstream connections
DEFAULT_SOCKETS = 10_000
DEFAULT_RAMP_PER_S = 2000.0
# Two client processes measured best on the 2-core reference machine (4 cost about 30 % more CPU
# per delivery); on bigger machines raise --clients so that the clients are not the limit.
DEFAULT_CLIENTS = 2
DEFAULT_SUBSCRIBERS = (1000, 10_000)
DEFAULT_BURST_DELIVERIES = 200_000
DEFAULT_LATENCY_DELIVERIES_PER_S = 10_000.0
DEFAULT_LATENCY_SECONDS = 10.0
DEFAULT_IDLE_SECONDS = 3.0
DEFAULT_MAX_SECONDS = 600.0
# Reconnect storm: every held socket closes and comes back at once. The clients bound it to
# MAX_INFLIGHT_HANDSHAKES handshakes in flight each, so this rate means "as fast as they can".
DEFAULT_STORM_RAMP_PER_S = 20_000.0
# Slow consumers: this share of the sockets stall during the fan-out phases (1 %, at least 1).
DEFAULT_SLOW_CONSUMER_SHARE = 0.01
PUBLISH_WAYS = ("redis", "api", "socket", "command")

QUICK = {
    "sockets": 1000,
    "burst_deliveries": 50_000,
    "latency_seconds": 3.0,
    "idle_seconds": 1.0,
    "max_seconds": 60.0,
}

# Options


@dataclass(frozen=True)
class Options:
    base_url: str
    redis_url: str
    prefix: str
    ws_path: str
    facility: str
    sockets: int
    ramp_per_s: float
    clients: int
    subscribers: tuple[int, ...]
    burst_deliveries: int
    latency_deliveries_per_s: float
    latency_seconds: float
    idle_seconds: float
    payload_bytes: int
    max_seconds: float
    storm_ramp_per_s: float
    slow_consumers: int
    users: int  # 0: anonymous sockets; else logged in as this many users, round robin
    quick: bool
    out: Path
    peer: str  # empty: a wsloop stack; else the other server's name
    server_pids: tuple[int, ...]
    url_path: str  # where a socket subscribes to a facility: "{facility}" is replaced
    protocol: Protocol
    publish: str  # one of PUBLISH_WAYS
    publish_command: str
    publish_path: str  # the publishing socket's path
    channel_template: str  # the Redis channel of a facility

    @property
    def http_host(self) -> str:
        return urllib.parse.urlsplit(self.base_url).hostname or "127.0.0.1"

    @property
    def http_port(self) -> int:
        return urllib.parse.urlsplit(self.base_url).port or 80

    def channel(self, facility: str) -> str:
        return self.channel_template.format(facility=facility)

    def path(self, facility: str) -> str:
        return self.url_path.replace("{facility}", facility)


def _loopback_only(url: str, what: str) -> None:
    host = urllib.parse.urlsplit(url).hostname or ""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError as exc:
        raise SystemExit(f"{what}: cannot resolve {host!r}: {exc}") from exc
    if not addresses or not all(ipaddress.ip_address(a).is_loopback for a in addresses):
        raise SystemExit(f"{what} must be on this machine (127.0.0.1), not {host!r}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.bench",
        description="Measure a running wsloop stack: idle sockets, memory per socket, Redis "
        "connections per worker, broadcast fan-out throughput and latency.",
    )
    parser.add_argument("--base-url", default="http://127.0.0.1:8000", help="nginx (HTTP)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6380/0", help="the bus")
    parser.add_argument("--prefix", default="", help="WSLOOP_PREFIX of the stack (default none)")
    parser.add_argument("--ws-path", default="/ws/", help="WSLOOP_URL of the stack")
    parser.add_argument("--facility", default=None, help="default: loadtest-<time>-<pid>")
    parser.add_argument("--sockets", type=int, default=None, help="default 10000 (quick: 1000)")
    parser.add_argument(
        "--ramp", type=float, default=DEFAULT_RAMP_PER_S, help="new connections/s, all clients"
    )
    parser.add_argument(
        "--clients",
        type=int,
        default=None,
        help=f"client processes (default {DEFAULT_CLIENTS}, or 1 per "
        f"{worker.MAX_SOCKETS_PER_PROCESS} sockets if more)",
    )
    parser.add_argument(
        "--subscribers",
        default=None,
        help="comma-separated subscriber counts for fan-out (default 1000,10000; quick: 1000)",
    )
    parser.add_argument(
        "--burst-deliveries",
        type=int,
        default=None,
        help=f"deliveries per burst (default {DEFAULT_BURST_DELIVERIES}; quick 50000)",
    )
    parser.add_argument(
        "--latency-rate",
        type=float,
        default=DEFAULT_LATENCY_DELIVERIES_PER_S,
        help="deliveries/s during the latency phase (publish rate = this / subscribers)",
    )
    parser.add_argument("--latency-seconds", type=float, default=None, help="default 10 (quick 3)")
    parser.add_argument("--idle-seconds", type=float, default=None, help="default 3 (quick 1)")
    parser.add_argument("--payload-bytes", type=int, default=payload.DEFAULT_PAYLOAD_BYTES)
    parser.add_argument("--max-seconds", type=float, default=None, help="bound on the whole run")
    parser.add_argument(
        "--storm-ramp",
        type=float,
        default=DEFAULT_STORM_RAMP_PER_S,
        help="reconnects/s in the reconnect storm at the end (0: no storm)",
    )
    parser.add_argument(
        "--slow-consumers",
        type=int,
        default=None,
        help="sockets that stop reading during the fan-out phases (default 1 %% of --sockets)",
    )
    parser.add_argument(
        "--users",
        type=int,
        default=0,
        help="log the sockets in as this many users, round robin (sessions written into the "
        "stack's session store as Django's login does); default anonymous",
    )
    parser.add_argument("--quick", action="store_true", help="1000 sockets, short phases, < 30 s")
    parser.add_argument("--out", type=Path, default=None, help="JSON result file")
    way = parser.add_argument_group("how messages are published")
    way.add_argument("--publish", choices=PUBLISH_WAYS, default="redis")
    way.add_argument("--publish-command", default="", help="with --publish command: the program")
    way.add_argument(
        "--channel",
        default=None,
        help="with --publish redis: the channel of {facility} "
        "(default wsloop's: [<prefix>:]broadcast:{facility})",
    )
    peer = parser.add_argument_group("another server (--peer)")
    peer.add_argument("--peer", default="", metavar="LABEL", help="measure another server")
    peer.add_argument(
        "--url-path",
        default=None,
        help="where a socket subscribes, {facility} replaced "
        "(default <ws-path>{facility}?subscribe-broadcast)",
    )
    peer.add_argument(
        "--hello", action="append", default=[], help="a text frame sent on open ({room}: facility)"
    )
    peer.add_argument(
        "--answer",
        action="append",
        default=[],
        metavar="FRAME=REPLY",
        help="reply REPLY to a text frame FRAME (application-level ping)",
    )
    peer.add_argument(
        "--server-pid", type=int, action="append", default=[], help="the peer's processes"
    )
    return parser


def parse_options(argv: Sequence[str] | None = None) -> Options:
    parser = build_parser()
    args = parser.parse_args(argv)

    def pick(name: str, full: Any) -> Any:
        given = getattr(args, name)
        if given is not None:
            return given
        return QUICK[name] if args.quick and name in QUICK else full

    sockets = int(pick("sockets", DEFAULT_SOCKETS))
    if not 1 <= sockets <= MAX_SOCKETS:
        parser.error(f"--sockets must be between 1 and {MAX_SOCKETS}")
    min_clients = math.ceil(sockets / worker.MAX_SOCKETS_PER_PROCESS)
    clients = args.clients if args.clients is not None else max(DEFAULT_CLIENTS, min_clients)
    if clients < min_clients:
        parser.error(f"--clients must be at least {min_clients} for {sockets} sockets")
    wanted: tuple[int, ...] = (1000,) if args.quick else DEFAULT_SUBSCRIBERS
    if args.subscribers is not None:
        wanted = tuple(int(s) for s in args.subscribers.split(",") if s.strip())
    subscribers = tuple(sorted({min(s, sockets) for s in wanted if s > 0}, reverse=True))
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    facility = args.facility or f"loadtest-{stamp}-{os.getpid()}"
    out = args.out or RESULTS_DIR / f"{stamp}{'-quick' if args.quick else ''}.json"
    _loopback_only(args.base_url, "--base-url")
    _loopback_only(args.redis_url, "--redis-url")
    if args.ramp <= 0:
        parser.error("--ramp must be positive")
    if (args.publish == "command") != bool(args.publish_command):
        parser.error("--publish command and --publish-command go together")
    if args.peer and args.publish in ("api", "socket"):
        parser.error(f"--publish {args.publish} is wsloop's: a peer takes redis or command")
    if args.peer and args.users:
        parser.error("--users logs in through wsloop's session store: not for a peer")
    if not 0 <= args.users <= sockets:
        parser.error("--users must be between 0 and --sockets")
    slow = args.slow_consumers
    if slow is None:
        slow = max(1, round(sockets * DEFAULT_SLOW_CONSUMER_SHARE))
    if not 0 <= slow < min(subscribers):
        parser.error("--slow-consumers must be fewer than the smallest --subscribers")
    answers = []
    for pair in args.answer:
        frame, sep, reply = pair.partition("=")
        if not sep:
            parser.error(f"--answer {pair!r}: FRAME=REPLY")
        answers.append((frame.encode(), reply.encode()))
    ws_path = args.ws_path if args.ws_path.endswith("/") else args.ws_path + "/"
    default_channel = "broadcast:{facility}"
    return Options(
        base_url=args.base_url.rstrip("/"),
        redis_url=args.redis_url,
        prefix=args.prefix,
        ws_path=ws_path,
        facility=facility,
        sockets=sockets,
        ramp_per_s=args.ramp,
        clients=clients,
        subscribers=subscribers,
        burst_deliveries=int(pick("burst_deliveries", DEFAULT_BURST_DELIVERIES)),
        latency_deliveries_per_s=args.latency_rate,
        latency_seconds=float(pick("latency_seconds", DEFAULT_LATENCY_SECONDS)),
        idle_seconds=float(pick("idle_seconds", DEFAULT_IDLE_SECONDS)),
        payload_bytes=args.payload_bytes,
        max_seconds=float(pick("max_seconds", DEFAULT_MAX_SECONDS)),
        storm_ramp_per_s=args.storm_ramp,
        slow_consumers=slow,
        users=args.users,
        quick=args.quick,
        out=out,
        peer=args.peer,
        server_pids=tuple(args.server_pid),
        url_path=args.url_path or f"{ws_path}{{facility}}?subscribe-broadcast",
        protocol=Protocol(
            hello=tuple(frame.encode() for frame in args.hello), answers=tuple(answers)
        ),
        publish=args.publish,
        publish_command=args.publish_command,
        publish_path=f"{ws_path}{{facility}}?publish-broadcast",
        channel_template=args.channel
        or (f"{args.prefix}:{default_channel}" if args.prefix else default_channel),
    )
