from http import HTTPStatus

import pytest

from wsloop.handshake import (
    Accept,
    Reject,
    choose_subprotocol,
    headers_from_environ,
    negotiate,
    origin_allowed,
)

GOOD = {
    "host": "example.com:8000",
    "upgrade": "websocket",
    "connection": "keep-alive, Upgrade",
    "sec-websocket-version": "13",
    "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
}


def decide(method="GET", **changes):
    headers = {**GOOD, **changes}
    return negotiate(
        method,
        {k: v for k, v in headers.items() if v is not None},
        allowed_origins=None,
        subprotocols=("v2", "v1"),
    )


def test_accept_token_is_rfc_6455_example():
    result = decide()
    assert isinstance(result, Accept)
    assert ("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") in result.headers
    assert result.subprotocol is None


@pytest.mark.parametrize(
    ("method", "changes", "status"),
    [
        ("POST", {}, HTTPStatus.METHOD_NOT_ALLOWED),
        ("GET", {"upgrade": None}, HTTPStatus.UPGRADE_REQUIRED),
        ("GET", {"connection": "keep-alive"}, HTTPStatus.UPGRADE_REQUIRED),
        ("GET", {"sec-websocket-version": "8"}, HTTPStatus.UPGRADE_REQUIRED),
        ("GET", {"sec-websocket-key": None}, HTTPStatus.BAD_REQUEST),
        ("GET", {"sec-websocket-key": "c2hvcnQ="}, HTTPStatus.BAD_REQUEST),
        ("GET", {"sec-websocket-key": "not base64!!"}, HTTPStatus.BAD_REQUEST),
        ("GET", {"origin": "https://evil.example"}, HTTPStatus.FORBIDDEN),
    ],
)
def test_refusals(method, changes, status):
    result = decide(method, **changes)
    assert isinstance(result, Reject)
    assert result.status == status
    assert result.reason


def test_version_refusal_names_the_supported_version():
    result = decide(**{"sec-websocket-version": "8"})
    assert isinstance(result, Reject)
    assert ("Sec-WebSocket-Version", "13") in result.headers


def test_one_subprotocol_is_chosen_in_server_preference_order():
    result = decide(**{"sec-websocket-protocol": "v1, v2, other"})
    assert isinstance(result, Accept)
    assert result.subprotocol == "v2"
    assert ("Sec-WebSocket-Protocol", "v2") in result.headers
    assert choose_subprotocol("other", ("v1",)) is None
    assert choose_subprotocol(None, ("v1",)) is None


def test_origin_defaults_to_the_sites_own_host():
    assert origin_allowed(None, "example.com", None)
    assert origin_allowed("https://example.com:8000", "example.com:8000", None)
    assert not origin_allowed("https://example.com", "example.com:8000", None)
    assert not origin_allowed("null", "example.com", None)


def test_origin_allow_list():
    allowed = ["https://app.example.com", "other.example:8443"]
    assert origin_allowed("https://app.example.com", "ws.example.com", allowed)
    assert origin_allowed("http://other.example:8443", "ws.example.com", allowed)
    assert not origin_allowed("https://evil.example", "ws.example.com", allowed)
    assert origin_allowed("https://evil.example", "ws.example.com", ["*"])


def test_headers_from_environ():
    environ = {"HTTP_SEC_WEBSOCKET_KEY": "k", "HTTP_HOST": "h", "PATH_INFO": "/x"}
    assert headers_from_environ(environ) == {"sec-websocket-key": "k", "host": "h"}
