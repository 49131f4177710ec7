from django.conf import settings as django_settings
from django.test import override_settings

from chat.permissions import allowed_channels
from wsloop import conf


def test_defaults_without_settings():
    with override_settings():
        settings = conf.load()
    assert settings.url == "/ws/"
    assert settings.max_message_bytes == 64 * 1024


@override_settings(
    WS4REDIS_PREFIX="legacy",
    WS4REDIS_EXPIRE=7,
    WEBSOCKET_URL="/sock/",
    WS4REDIS_HEARTBEAT="hb",
    WSLOOP_PREFIX=None,
)
def test_ws4redis_names_are_aliases():
    del django_settings.WSLOOP_PREFIX
    del django_settings.WSLOOP_EXPIRE
    del django_settings.WSLOOP_HEARTBEAT
    loaded = conf.load()
    assert (loaded.prefix, loaded.expire_s, loaded.url, loaded.heartbeat) == (
        "legacy",
        7,
        "/sock/",
        "hb",
    )
    assert loaded.channel_prefix == "legacy:"


@override_settings(WSLOOP_PREFIX="new", WS4REDIS_PREFIX="old")
def test_wsloop_name_wins():
    assert conf.load().prefix == "new"


@override_settings(WSLOOP_PREFIX="")
def test_empty_prefix_means_none():
    assert conf.load().channel_prefix == ""


def test_ws4redis_connection_dict_becomes_a_url():
    assert (
        conf.redis_url_from_ws4redis({"host": "r", "port": 6390, "db": 2, "password": "p@ss"})
        == "redis://:p%40ss@r:6390/2"
    )
    assert (
        conf.redis_url_from_ws4redis({"unix_socket_path": "/run/redis.sock", "db": 1})
        == "unix:///run/redis.sock?db=1"
    )


@override_settings(WSLOOP_ALLOWED_CHANNELS="chat.permissions.allowed_channels")
def test_hooks_are_dotted_paths():
    assert conf.load().allowed_channels is allowed_channels
