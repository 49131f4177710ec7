"""loadtest.wsclient's handshake request: what the load client sends before the upgrade."""

from __future__ import annotations

import base64
import hashlib

from loadtest.wsclient import HANDSHAKE_GUID, handshake_request


def test_the_request_and_the_accept_value_it_expects():
    request, accept = handshake_request("127.0.0.1:8000", "/ws/f?subscribe-broadcast")
    lines = request.decode().split("\r\n")
    assert lines[0] == "GET /ws/f?subscribe-broadcast HTTP/1.1"
    key = next(line.split(": ")[1] for line in lines if line.startswith("Sec-WebSocket-Key"))
    assert accept == base64.b64encode(hashlib.sha1(key.encode() + HANDSHAKE_GUID).digest())
    assert not [line for line in lines if line.startswith("Cookie")]
    assert request.endswith(b"\r\n\r\n")


def test_a_logged_in_socket_sends_its_session_cookie():
    request, _ = handshake_request("h:1", "/ws/f?subscribe-user", cookie="sessionid=abc")
    assert b"\r\nCookie: sessionid=abc\r\n\r\n" in request
