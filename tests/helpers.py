"""Clients for the integration tests: websockets with timeouts, Django logins, raw Redis."""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import socket
import struct
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.protocol import State
from websockets.sync.client import ClientConnection, connect

import wsloop
from conftest import HEARTBEAT, PREFIX
from devstack.stack import Stack

RECV_TIMEOUT_S = 5.0
# The test clients read everything, so they queue without a bound: a client of websockets that
# holds more unread messages than its max_queue (16 by default) stops reading its socket, and
# the pong or close frame the test waits for stays unread behind the messages.
UNBOUNDED_QUEUE = None
DEMO_PASSWORD = os.environ.get("WSLOOP_DEMO_PASSWORD", "wsloop-demo")


def doc_blocks(page: Path) -> dict[str, str]:
    """A docs page's code blocks, by the name in the ``<!-- run: NAME -->`` line before each:
    the blocks a test runs as the page says."""
    found = re.findall(r"<!-- run: ([\w-]+) -->\n```\w+\n(.*?)```", page.read_text(), re.S)
    return dict(found)


def replaced(block: str, replacements: dict[str, str]) -> str:
    """``block`` with what must differ on a test machine replaced; each replaced text must be in
    it, so a changed page fails the test that runs it."""
    for old, new in replacements.items():
        assert old in block, f"{old!r} is no longer in the page's block:\n{block}"
        block = block.replace(old, new)
    return block


def place_an_order_and_hear_it(stack: Stack, item: str) -> None:
    """tests/projects/shop: an order placed through nginx reaches a socket of its facility."""
    with ws_connect(stack, "orders?subscribe-broadcast") as ws:
        status, _, body = http_request(
            stack,
            "POST",
            "/orders/",
            body=f"item={item}",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert status == 200, body
        order = json.loads(body)["order"]
        assert json.loads(recv(ws)) == {"order": order, "item": item}


def unique_facility(name: str = "t") -> str:
    return f"{name}-{uuid.uuid4().hex[:12]}"


def channel(audience: str, facility: str, member: str | None = None) -> str:
    middle = f"{audience}:{member}:" if member is not None else f"{audience}:"
    return f"{PREFIX}:{middle}{facility}"


def ws_connect(
    stack: Stack,
    path: str,
    *,
    session: str | None = None,
    origin: str | None = None,
    wait_served: bool = True,
    **kwargs: Any,
) -> ClientConnection:
    """A websocket client; with ``wait_served``, returned once the worker serves the socket
    (its ping was answered). The handshake's answer comes first, and behind the dev server the
    socket then joins the loop's fan-out from another thread: a message published before that
    is not the socket's."""
    headers = {"Cookie": f"sessionid={session}"} if session else {}
    ws = connect(
        f"{stack.config.ws_url}{path}",
        additional_headers=headers,
        origin=origin,
        open_timeout=RECV_TIMEOUT_S,
        close_timeout=2,
        max_size=None,
        max_queue=UNBOUNDED_QUEUE,
        legacy=True,  # the caller enters the connection (after the ping below)
        **kwargs,
    )
    if wait_served:
        _wait_served(ws)
    return ws


def _wait_served(ws: ClientConnection) -> None:
    """Until the socket's ping is answered, or the server closes it (the test reads why)."""
    try:
        pong = ws.ping()
    except ConnectionClosed:
        return
    deadline = time.monotonic() + RECV_TIMEOUT_S
    while not pong.wait(0.005):
        if ws.state is not State.OPEN:
            return
        if time.monotonic() > deadline:
            ws.close()
            raise TimeoutError("the worker did not answer the socket's ping")


def recv(ws: ClientConnection, timeout: float = RECV_TIMEOUT_S) -> str | bytes:
    """The next message that is not a heartbeat, or TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        message = ws.recv(timeout=max(0.0, deadline - time.monotonic()))
        if message != HEARTBEAT:
            return message


def assert_silent(ws: ClientConnection, seconds: float = 1.0) -> None:
    """Nothing but heartbeats arrives for ``seconds``."""
    try:
        message = recv(ws, timeout=seconds)
    except TimeoutError:
        return
    raise AssertionError(f"unexpected message {message!r}")


def close_code_of(ws: ClientConnection, timeout: float = RECV_TIMEOUT_S) -> int | None:
    """Read until the server closes; the close code it sent."""
    deadline = time.monotonic() + timeout
    try:
        while True:
            ws.recv(timeout=max(0.0, deadline - time.monotonic()))
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None


def redis_client(stack: Stack) -> redis.Redis:
    return redis.Redis.from_url(stack.config.redis_url, socket_timeout=5)


def wait_until(check: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what or check}")


def wait_subscribed(stack: Stack, name: str, count: int = 1) -> None:
    """Wait until ``count`` worker subscriptions exist on a Redis channel."""
    client = redis_client(stack)
    wait_until(
        lambda: dict(client.pubsub_numsub(name)).get(name.encode(), 0) >= count,
        what=f"subscription to {name}",
    )


def http_request(
    stack: Stack,
    method: str,
    path: str,
    *,
    body: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", stack.config.http_port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def health(stack: Stack) -> dict[str, Any]:
    """The websocket worker's health JSON (through nginx)."""
    _, _, body = http_request(stack, "GET", "/healthz/wsloop")
    data: dict[str, Any] = json.loads(body)
    return data


def serving_pid(stack: Stack) -> int | None:
    """The pid of the healthy process serving websockets now, or None (one that is going away
    may reset the connection, one that is starting may refuse it)."""
    try:
        status, _, body = http_request(stack, "GET", "/healthz/wsloop")
    except OSError:
        return None
    if status != 200:
        return None  # nginx's 502 while no worker listens, or a worker without Redis
    pid: int = json.loads(body)["pid"]
    return pid


def _cookies(headers: http.client.HTTPMessage | dict[str, str], raw: list[str]) -> dict[str, str]:
    jar = {}
    for line in raw:
        name, _, rest = line.partition("=")
        jar[name.strip()] = rest.split(";", 1)[0]
    return jar


def login(stack: Stack, username: str) -> str:
    """Log in through Django's login view; returns the session key (the sessionid cookie)."""
    conn = http.client.HTTPConnection("127.0.0.1", stack.config.http_port, timeout=10)
    try:
        conn.request("GET", "/accounts/login/")
        response = conn.getresponse()
        page = response.read().decode()
        csrf_cookie = _cookies({}, response.headers.get_all("Set-Cookie") or [])["csrftoken"]
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert token, "login page without CSRF token"
        form = urllib.parse.urlencode(
            {"username": username, "password": DEMO_PASSWORD, "csrfmiddlewaretoken": token.group(1)}
        )
        conn.request(
            "POST",
            "/accounts/login/",
            body=form,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Cookie": f"csrftoken={csrf_cookie}",
            },
        )
        response = conn.getresponse()
        response.read()
        assert response.status == 302, f"login of {username} failed: {response.status}"
        jar = _cookies({}, response.headers.get_all("Set-Cookie") or [])
        return jar["sessionid"]
    finally:
        conn.close()


def post_form(stack: Stack, path: str, session: str, fields: dict[str, str]) -> tuple[int, bytes]:
    """POST a form as a logged-in user (CSRF token from the login-free cookie dance)."""
    token = "t" * 32
    status, _, body = http_request(
        stack,
        "POST",
        path,
        body=urllib.parse.urlencode({**fields, "csrfmiddlewaretoken": token}),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": f"sessionid={session}; csrftoken={token}",
        },
    )
    return status, body


class RawWebSocket:
    """A hand-made client for frames a correct library refuses to send."""

    def __init__(self, stack: Stack, path: str, receive_buffer: int | None = None) -> None:
        self.sock = socket.socket()
        if receive_buffer is not None:  # a client that reads slowly, set before connecting
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(5)
        self.sock.connect(("127.0.0.1", stack.config.http_port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /ws/{path} HTTP/1.1\r\nHost: 127.0.0.1:{stack.config.http_port}\r\n"
                f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = self.sock.recv(4096)
            assert chunk, "connection closed during handshake"
            response += chunk
        head, _, self.buffer = response.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head

    def send_frame(self, first_byte: int, payload: bytes) -> None:
        mask = os.urandom(4)
        length = len(payload)
        if length < 126:
            header = struct.pack("!BB", first_byte, 0x80 | length)
        elif length < 65536:
            header = struct.pack("!BBH", first_byte, 0x80 | 126, length)
        else:
            header = struct.pack("!BBQ", first_byte, 0x80 | 127, length)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def read_close_code(self) -> int | None:
        """Read frames until a close frame (its code) or EOF (None)."""
        data = self.buffer
        while True:
            while len(data) >= 2:
                opcode, length = data[0] & 0x0F, data[1] & 0x7F
                offset = {126: 4, 127: 10}.get(length, 2)
                if len(data) < offset:
                    break  # the extended length has not arrived yet
                if length == 126:
                    length = struct.unpack("!H", data[2:4])[0]
                elif length == 127:
                    length = struct.unpack("!Q", data[2:10])[0]
                if len(data) < offset + length:
                    break
                payload, data = data[offset : offset + length], data[offset + length :]
                if opcode == 0x8:
                    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            data += chunk

    def close(self) -> None:
        self.sock.close()


class RecoveringClient:
    """A client as a browser library should be: envelope on, remembers the last id, reconnects
    with ``since=`` and exponential backoff whenever the connection closes."""

    def __init__(self, stack: Stack, facility: str, flags: str = "subscribe-broadcast") -> None:
        self.stack = stack
        self.path = f"{facility}?{flags}&envelope"
        self.last_id: str | None = None
        self.data: list[str] = []
        self.controls: list[dict[str, Any]] = []
        self.close_codes: list[int | None] = []
        self.connects = 0
        self.ws: ClientConnection | None = None

    def connect(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        delay = 0.05
        while True:
            since = f"&since={self.last_id}" if self.last_id else ""
            try:
                self.ws = connect(
                    f"{self.stack.config.ws_url}{self.path}{since}",
                    open_timeout=RECV_TIMEOUT_S,
                    max_size=None,
                    max_queue=UNBOUNDED_QUEUE,
                    legacy=True,
                )
                self.connects += 1
                return
            except (OSError, InvalidHandshake, TimeoutError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    def wait_started(self, timeout: float = RECV_TIMEOUT_S) -> dict[str, Any]:
        """Read until the control message that ends the socket's start (its position, its
        recovery or a resync); data messages before it are kept."""
        deadline = time.monotonic() + timeout
        controls = len(self.controls)
        while len(self.controls) == controls:
            assert self.ws is not None
            frame = self.ws.recv(timeout=max(0.0, deadline - time.monotonic()))
            if frame != HEARTBEAT:
                self._take(json.loads(frame))
        return self.controls[-1]

    def _take(self, body: dict[str, Any]) -> None:
        if body["type"] == "message":
            self.data.append(body["data"])
        else:
            self.controls.append(body)
        self.last_id = body.get("id", self.last_id)

    def receive(self, count: int, timeout: float = 30.0) -> list[str]:
        """Read until ``count`` data messages arrived in all, reconnecting as needed."""
        deadline = time.monotonic() + timeout
        while len(self.data) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{len(self.data)} of {count} messages")
            assert self.ws is not None
            try:
                frame = self.ws.recv(timeout=remaining)
            except ConnectionClosed as closed:
                self.close_codes.append(closed.rcvd.code if closed.rcvd else None)
                self.connect(timeout=remaining)
                continue
            if frame != HEARTBEAT:
                self._take(json.loads(frame))
        return self.data

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close()


class Publisher(threading.Thread):
    """Publishes "0", "1", ... through ``wsloop.publish`` at a steady pace, in the background."""

    def __init__(self, facility: str, count: int, interval_s: float = 0.01) -> None:
        super().__init__(daemon=True)
        self.facility, self.count, self.interval_s = facility, count, interval_s
        self.published = 0
        self.errors: list[Exception] = []

    def run(self) -> None:
        for number in range(self.count):
            try:
                wsloop.publish(self.facility, str(number), broadcast=True, expire=0)
            except wsloop.PublishError as exc:
                self.errors.append(exc)
                return
            self.published += 1
            time.sleep(self.interval_s)


def in_a_fresh_thread_hub(scenario: Callable[[], Any], timeout_s: float = 30.0) -> Any:
    """``scenario()`` run in a new thread of this unpatched process, where gevent gives it a
    hub of its own: the setting of the development server's wsloop thread."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = scenario()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout_s)
    assert not thread.is_alive(), f"scenario still running after {timeout_s} s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]
