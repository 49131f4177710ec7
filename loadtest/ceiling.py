"""``python -m loadtest.ceiling``: the load client's own ceiling, against a do-nothing server.

The same client processes as ``loadtest.bench`` connect straight to a stand-in websocket server
(asyncio protocol callbacks, in its own process, on 127.0.0.1 and a free port; no nginx, no
Redis, no Django). On command the stand-in writes K frames to each of S sockets, one
``transport.write`` (one ``send``) per socket per message, as wsloop does. Measured, as in the
bench: deliveries/s from the first write to the last delivery, lost/duplicate/out-of-order, and
the CPU microseconds per delivery of the clients and of the stand-in. The client's ceiling on
this machine is about ``1e6 / clients_us_per_delivery * cores available to the clients``
deliveries/s; if a bench phase comes near it, the client was the limit.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import multiprocessing
import signal
import struct
import sys
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from . import payload, probes
from .bench import BURST_BUCKET_S
from .clients import ClientPool
from .observe import with_cost_per_delivery
from .options import RESULTS_DIR
from .wsclient import HANDSHAKE_GUID

DEFAULT_SOCKETS = 10_000
DEFAULT_CLIENTS = 2
DEFAULT_RAMP_PER_S = 5000.0
DEFAULT_BURST_DELIVERIES = 200_000
PHASE_TIMEOUT_S = 30.0
BACKLOG = 4096


# The stand-in server (its own process)


class _StandInConnection(asyncio.Protocol):
    def __init__(self, conns: set[_StandInConnection]) -> None:
        self.conns = conns
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.open = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        if not self.open:
            head, found, rest = self.buffer.partition(b"\r\n\r\n")
            if not found:
                return
            key = b""
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"sec-websocket-key":
                    key = value.strip()
            accept = base64.b64encode(hashlib.sha1(key + HANDSHAKE_GUID).digest())
            self.transport.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
            )
            self.open = True
            self.conns.add(self)
            self.buffer = rest
        # Client frames: only a close matters (answer it and hang up); pongs are ignored.
        while len(self.buffer) >= 6:
            opcode, length = self.buffer[0] & 0x0F, self.buffer[1] & 0x7F
            header = 2 + {126: 2, 127: 8}.get(length, 0) + 4
            if length >= 126:
                size = 2 if length == 126 else 8
                length = int.from_bytes(self.buffer[2 : 2 + size], "big")
            if len(self.buffer) < header + length:
                return
            self.buffer = self.buffer[header + length :]
            if opcode == 0x8:
                self.conns.discard(self)
                self.transport.write(b"\x88\x02" + struct.pack("!H", 1000))
                self.transport.close()
                return

    def connection_lost(self, exc: Exception | None) -> None:
        self.conns.discard(self)


def _server_frame(data: bytes) -> bytes:
    length = len(data)
    if length < 126:
        return struct.pack("!BB", 0x81, length) + data
    if length < 65536:
        return struct.pack("!BBH", 0x81, 126, length) + data
    return struct.pack("!BBQ", 0x81, 127, length) + data


async def _stand_in(pipe: Connection) -> None:
    loop = asyncio.get_running_loop()
    conns: set[_StandInConnection] = set()
    server = await loop.create_server(
        lambda: _StandInConnection(conns), "127.0.0.1", 0, backlog=BACKLOG
    )
    port = server.sockets[0].getsockname()[1]
    pipe.send(port)
    stop = loop.create_future()

    async def burst(phase: int, messages: int, size_bytes: int) -> None:
        targets = [c.transport for c in conns if c.transport is not None]
        started = time.time_ns()
        for seq in range(messages):
            frame = _server_frame(payload.encode(phase, seq, time.time_ns(), size_bytes))
            for transport in targets:
                transport.write(frame)
            await asyncio.sleep(0)
        pipe.send((len(targets), started))

    tasks: set[asyncio.Task[None]] = set()

    def on_command() -> None:
        command = pipe.recv()
        if command[0] == "burst":
            task = loop.create_task(burst(*command[1:]))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        elif not stop.done():
            stop.set_result(None)

    loop.add_reader(pipe.fileno(), on_command)
    await stop
    server.close()


def _stand_in_main(pipe: Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    asyncio.run(_stand_in(pipe))


# The coordinator


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.ceiling", description=__doc__)
    parser.add_argument("--sockets", type=int, default=DEFAULT_SOCKETS)
    parser.add_argument("--clients", type=int, default=DEFAULT_CLIENTS)
    parser.add_argument("--subscribers", default="1000,10000")
    parser.add_argument("--burst-deliveries", type=int, default=DEFAULT_BURST_DELIVERIES)
    parser.add_argument("--payload-bytes", type=int, default=payload.DEFAULT_PAYLOAD_BYTES)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    sockets = min(args.sockets, 20_000)
    subscribers = sorted(
        {min(int(s), sockets) for s in args.subscribers.split(",") if s.strip()}, reverse=True
    )

    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    stand_in = context.Process(target=_stand_in_main, args=(theirs,), daemon=True)
    stand_in.start()
    port = ours.recv()
    pool = ClientPool(args.clients, "127.0.0.1", port)
    groups = {"stand_in": [stand_in.pid or 0], "clients": pool.pids}
    result: dict[str, Any] = {
        "tool": "loadtest.ceiling",
        "machine": probes.machine_info(),
        "parameters": vars(args) | {"out": str(args.out)},
        "phases": [],
    }
    try:
        result["open"] = pool.open("/ws/ceiling?subscribe-broadcast", sockets, DEFAULT_RAMP_PER_S)
        for phase, count in enumerate(subscribers, start=1):
            pool.close_down_to(count)
            time.sleep(0.5)
            messages = max(1, args.burst_deliveries // count)
            armed = pool.arm(phase, messages, PHASE_TIMEOUT_S)
            before = {k: sum(probes.cpu_s(p) for p in v) for k, v in groups.items()}
            wall = time.monotonic()
            ours.send(("burst", phase, messages, args.payload_bytes))
            gathered = pool.gather(PHASE_TIMEOUT_S, BURST_BUCKET_S)
            written_to, started_ns = ours.recv()
            wall = time.monotonic() - wall
            after = {k: sum(probes.cpu_s(p) for p in v) for k, v in groups.items()}
            cpu = with_cost_per_delivery(
                {
                    "wall_s": round(wall, 3),
                    "cpu_s": {k: round(after[k] - before[k], 3) for k in after},
                    "cpu_pct_of_one_core": {
                        k: round(100 * (after[k] - before[k]) / wall, 1) for k in after
                    },
                },
                gathered["deliveries"],
            )
            span_s = (gathered["last_ns"] - started_ns) / 1e9
            entry = {
                "subscribers": armed,
                "written_to": written_to,
                "messages": messages,
                "deliveries": gathered["deliveries"],
                "lost": gathered["lost"],
                "duplicates": gathered["duplicates"],
                "out_of_order": gathered["out_of_order"],
                "deliveries_per_s": round(gathered["deliveries"] / span_s) if span_s > 0 else None,
                "cpu": cpu,
            }
            result["phases"].append(entry)
            print(
                f"{armed:>6} subscribers x {messages:>4} messages: "
                f"{entry['deliveries_per_s']:,} deliveries/s, lost {entry['lost']}; "
                f"CPU % of one core: clients {cpu['cpu_pct_of_one_core']['clients']}, "
                f"stand-in {cpu['cpu_pct_of_one_core']['stand_in']}; us/delivery: clients "
                f"{cpu['cpu_us_per_delivery']['clients']}, stand-in "
                f"{cpu['cpu_us_per_delivery']['stand_in']}",
                flush=True,
            )
    finally:
        pool.shutdown()
        with contextlib.suppress(OSError):
            ours.send(("quit",))
        stand_in.join(10.0)
        if stand_in.is_alive():
            stand_in.terminate()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = args.out or RESULTS_DIR / f"{stamp}-ceiling.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
