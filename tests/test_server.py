"""The upgrade decision, without sockets: everything before the 101."""

import dataclasses
import io
from http import HTTPStatus

from django.core.exceptions import PermissionDenied

from wsloop import conf
from wsloop.handshake import Reject
from wsloop.identity import SessionUser
from wsloop.server import Upgrade, decide, is_wsloop_path

HANDSHAKE = {
    "REQUEST_METHOD": "GET",
    "HTTP_HOST": "testserver",
    "HTTP_UPGRADE": "websocket",
    "HTTP_CONNECTION": "Upgrade",
    "HTTP_SEC_WEBSOCKET_VERSION": "13",
    "HTTP_SEC_WEBSOCKET_KEY": "dGhlIHNhbXBsZSBub25jZQ==",
    "SERVER_NAME": "testserver",
    "SERVER_PORT": "80",
    "wsgi.input": io.BytesIO(),
}


def environ(path, query=""):
    return {**HANDSHAKE, "PATH_INFO": path, "QUERY_STRING": query}


def settings(**changes):
    return dataclasses.replace(conf.load(), **{"prefix": "", "allowed_channels": None, **changes})


def test_broadcast_socket_is_upgraded():
    result = decide(environ("/ws/news", "subscribe-broadcast&publish-broadcast&echo"), settings())
    assert isinstance(result, Upgrade)
    assert result.plan.subscribe == ("broadcast:news",)
    assert result.plan.publish == ("broadcast:news",)
    assert result.plan.echo


def test_unknown_path_or_facility_is_404():
    for path in ("/other/news", "/ws/", "/ws/bad:facility"):
        result = decide(environ(path), settings())
        assert isinstance(result, Reject) and result.status == HTTPStatus.NOT_FOUND, path


def test_facility_allow_list():
    allowed = settings(facilities=frozenset({"news"}))
    assert isinstance(decide(environ("/ws/news"), allowed), Upgrade)
    assert decide(environ("/ws/sport"), allowed).status == HTTPStatus.NOT_FOUND


def test_user_flag_without_login_is_403_before_upgrade():
    result = decide(environ("/ws/news", "subscribe-user"), settings())
    assert isinstance(result, Reject) and result.status == HTTPStatus.FORBIDDEN
    assert "subscribe-user requires an authenticated user" in result.reason


def test_allowed_channels_hook_narrows_flags():
    def hook(request, flags):
        assert request.path_info == "/ws/news"
        return [f for f in flags if f.startswith("subscribe-")]

    result = decide(
        environ("/ws/news", "subscribe-broadcast&publish-broadcast"),
        settings(allowed_channels=hook),
    )
    assert isinstance(result, Upgrade) and result.plan.publish == ()


def test_allowed_channels_hook_cannot_add_flags():
    result = decide(
        environ("/ws/news", "subscribe-broadcast"),
        settings(allowed_channels=lambda request, flags: ["publish-broadcast"]),
    )
    assert isinstance(result, Upgrade) and result.plan.publish == ()


def test_permission_denied_from_a_hook_is_403():
    def hook(request, flags):
        raise PermissionDenied("members only")

    result = decide(environ("/ws/news", "subscribe-broadcast"), settings(allowed_channels=hook))
    assert isinstance(result, Reject) and result.status == HTTPStatus.FORBIDDEN
    assert result.reason == "members only"


def test_process_request_hook_for_token_auth():
    def token_auth(request):
        request.session = None
        token = request.GET.get("token")
        request.user = SessionUser("carol" if token == "good" else None, frozenset({"green"}))

    result = decide(
        environ("/ws/news", "subscribe-user&subscribe-group&token=good"),
        settings(process_request=token_auth),
    )
    assert isinstance(result, Upgrade)
    assert set(result.plan.subscribe) == {"user:carol:news", "group:green:news"}
    refused = decide(
        environ("/ws/news", "subscribe-user&token=bad"), settings(process_request=token_auth)
    )
    assert isinstance(refused, Reject) and refused.status == HTTPStatus.FORBIDDEN


def test_handshake_errors_come_before_authorization():
    result = decide({**environ("/ws/news", "subscribe-user"), "REQUEST_METHOD": "POST"}, settings())
    assert isinstance(result, Reject) and result.status == HTTPStatus.METHOD_NOT_ALLOWED


def test_since_needs_the_envelope_and_a_well_formed_position():
    plain = decide(environ("/ws/news", "subscribe-broadcast&since=e1:5-0"), settings())
    assert isinstance(plain, Reject) and plain.status == HTTPStatus.BAD_REQUEST
    assert "envelope" in plain.reason
    bad = decide(environ("/ws/news", "subscribe-broadcast&envelope&since=yesterday"), settings())
    assert isinstance(bad, Reject) and bad.status == HTTPStatus.BAD_REQUEST
    good = decide(environ("/ws/news", "subscribe-broadcast&envelope&since=e1:5-0"), settings())
    assert isinstance(good, Upgrade)
    assert str(good.since) == "e1:5-0" and good.plan.envelope


def test_hook_sees_only_channel_flags_and_keeps_echo_and_envelope():
    seen = []

    def hook(request, flags):
        seen.extend(flags)
        return flags

    result = decide(
        environ("/ws/news", "subscribe-broadcast&echo&envelope"), settings(allowed_channels=hook)
    )
    assert seen == ["subscribe-broadcast"]
    assert isinstance(result, Upgrade) and result.plan.echo and result.plan.envelope


def test_presence_needs_the_envelope():
    result = decide(environ("/ws/news", "presence"), settings())
    assert isinstance(result, Reject) and result.status == HTTPStatus.BAD_REQUEST
    assert isinstance(decide(environ("/ws/news", "presence&envelope"), settings()), Upgrade)


def test_wsloop_paths_of_a_server_that_runs_django_too():
    current = settings()
    assert is_wsloop_path("/ws/news", current)
    assert is_wsloop_path("/healthz/wsloop", current)
    assert not is_wsloop_path("/healthz", current)  # Django's own
    assert not is_wsloop_path("/chat/ws/", current)
    assert is_wsloop_path("/live/news", settings(url="/live/"))
