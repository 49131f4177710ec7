"""loadtest.worker against a real websocket server (the ``websockets`` library) that speaks a
protocol of its own, as a peer does: each socket must subscribe with a frame after the upgrade,
answer application-level pings, and finds its payload inside a JSON envelope."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from multiprocessing import Pipe

import pytest
from websockets.asyncio.server import serve

from devstack.stack import free_port
from loadtest import payload
from loadtest.messages import ArmCmd, Armed, CloseResult, OpenCmd, OpenResult, PhaseResult, QuitCmd
from loadtest.worker import Worker

SOCKETS = 2
TIMEOUT_S = 5.0


class PeerServer:
    """Records what each socket said; on ``go``, pings it at the application level and sends it
    one benchmark payload wrapped in JSON."""

    def __init__(self) -> None:
        self.port = free_port()
        self.hellos: list[tuple[str, str]] = []
        self.pongs: list[str] = []
        self.go = threading.Event()
        self.ready = threading.Event()
        self.stop: asyncio.Future[None] | None = None

    async def handler(self, websocket) -> None:
        self.hellos.append((websocket.request.path, await websocket.recv()))
        await asyncio.get_running_loop().run_in_executor(None, self.go.wait, TIMEOUT_S)
        await websocket.send("app-ping")
        self.pongs.append(await websocket.recv())
        data = payload.encode(1, 0, time.time_ns()).decode()
        await websocket.send(json.dumps({"push": {"data": data}}))
        await websocket.wait_closed()

    async def main(self) -> None:
        self.stop = asyncio.get_running_loop().create_future()
        async with serve(self.handler, "127.0.0.1", self.port):
            self.ready.set()
            await self.stop


@pytest.fixture
def peer() -> Iterator[PeerServer]:
    server = PeerServer()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(server.main(),))
    thread.start()
    assert server.ready.wait(TIMEOUT_S)
    try:
        yield server
    finally:
        loop.call_soon_threadsafe(lambda: server.stop and server.stop.set_result(None))
        thread.join(TIMEOUT_S)


def test_a_peer_gets_its_hello_its_pongs_and_its_enveloped_payloads_are_counted(peer):
    ours, theirs = Pipe()
    worker = Worker(theirs, 0, "127.0.0.1", peer.port)
    loop = threading.Thread(target=worker.run, daemon=True)
    loop.start()
    ours.send(
        OpenCmd(path="/room-{room}", count=SOCKETS, rate_per_s=1000.0, max_inflight=10,
                timeout_s=TIMEOUT_S, rooms=SOCKETS, hello=(b"subscribe {room}",),
                answers=((b"app-ping", b"app-pong"),))
    )  # fmt: skip
    assert ours.poll(TIMEOUT_S)
    opened = ours.recv()
    assert isinstance(opened, OpenResult) and (opened.opened, opened.failures) == (SOCKETS, {})
    ours.send(ArmCmd(phase=1, expected=1, timeout_s=TIMEOUT_S))
    assert ours.poll(TIMEOUT_S) and isinstance(ours.recv(), Armed)
    peer.go.set()
    assert ours.poll(TIMEOUT_S)
    result = ours.recv()
    assert isinstance(result, PhaseResult) and not result.timed_out
    assert (result.deliveries, result.lost, result.duplicates) == (SOCKETS, 0, 0)
    assert sorted(peer.hellos) == [("/room-0", "subscribe 0"), ("/room-1", "subscribe 1")]
    assert peer.pongs == ["app-pong"] * SOCKETS
    ours.send(QuitCmd(timeout_s=TIMEOUT_S))
    assert ours.poll(TIMEOUT_S) and isinstance(ours.recv(), CloseResult)
    loop.join(TIMEOUT_S)
    assert not loop.is_alive()
