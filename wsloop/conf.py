"""Settings of wsloop, read from Django settings.

Every setting is named ``WSLOOP_<NAME>``; the django-websocket-redis name of the same setting
(``WS4REDIS_<NAME>``, ``WEBSOCKET_URL``) is accepted as an alias so its users can move over
without editing their settings. When both are set, the ``WSLOOP_`` name wins.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from django.conf import settings as django_settings
from django.utils.module_loading import import_string

from .history import DEFAULT_POLICY, HistoryPolicy

DEFAULT_REDIS_URL = "redis://localhost:6379/0"

# ws4redis aliases: WSLOOP name -> ws4redis name.
ALIASES = {
    "WSLOOP_URL": "WEBSOCKET_URL",
    "WSLOOP_PREFIX": "WS4REDIS_PREFIX",
    "WSLOOP_EXPIRE": "WS4REDIS_EXPIRE",
    "WSLOOP_HEARTBEAT": "WS4REDIS_HEARTBEAT",
    "WSLOOP_ALLOWED_CHANNELS": "WS4REDIS_ALLOWED_CHANNELS",
    "WSLOOP_PROCESS_REQUEST": "WS4REDIS_PROCESS_REQUEST",
    "WSLOOP_REDIS": "WS4REDIS_CONNECTION",
}


def _read(name: str, default: Any) -> Any:
    if hasattr(django_settings, name):
        return getattr(django_settings, name)
    alias = ALIASES.get(name)
    if alias and hasattr(django_settings, alias):
        return getattr(django_settings, alias)
    return default


def redis_url_from_ws4redis(connection: dict[str, Any]) -> str:
    """A ``WS4REDIS_CONNECTION`` dict (host, port, db, password, unix_socket_path) as a URL."""
    password = connection.get("password")
    auth = f":{quote(str(password), safe='')}@" if password else ""
    db = int(connection.get("db", 0))
    if connection.get("unix_socket_path"):
        return f"unix://{auth}{connection['unix_socket_path']}?db={db}"
    host = connection.get("host", "localhost")
    port = int(connection.get("port", 6379))
    return f"redis://{auth}{host}:{port}/{db}"


def _hook(value: str | Callable[..., Any] | None) -> Callable[..., Any] | None:
    if value is None or callable(value):
        return value
    hook: Callable[..., Any] = import_string(value)
    return hook


@dataclass(frozen=True)
class Settings:
    """One snapshot of wsloop's settings; see docs/configuration.md."""

    url: str
    redis_url: str
    redis_pool_size: int
    prefix: str
    expire_s: int
    heartbeat: str | None
    heartbeat_interval_s: float
    ping_interval_s: float
    idle_timeout_s: float
    allowed_channels: Callable[..., Any] | None
    process_request: Callable[..., Any] | None
    allowed_origins: tuple[str, ...] | None
    subprotocols: tuple[str, ...]
    facilities: frozenset[str] | None
    max_message_bytes: int
    send_queue_bytes: int
    close_timeout_s: float
    history: Mapping[str, HistoryPolicy]
    recovery_timeout_s: float
    presence_ttl_s: float

    @property
    def channel_prefix(self) -> str:
        """``"<prefix>:"``, or the empty string when no prefix is configured."""
        return f"{self.prefix}:" if self.prefix else ""


def load() -> Settings:
    """Read the settings from Django's settings (call after ``django.setup()``)."""
    redis = _read("WSLOOP_REDIS", DEFAULT_REDIS_URL)
    if isinstance(redis, dict):
        redis = redis_url_from_ws4redis(redis)
    origins = _read("WSLOOP_ALLOWED_ORIGINS", None)
    facilities = _read("WSLOOP_FACILITIES", None)
    subprotocols: Sequence[str] = _read("WSLOOP_SUBPROTOCOLS", ())
    ping_interval_s = float(_read("WSLOOP_PING_INTERVAL_S", 20.0))
    return Settings(
        url=_read("WSLOOP_URL", "/ws/"),
        redis_url=redis,
        redis_pool_size=int(_read("WSLOOP_REDIS_POOL_SIZE", 1)),
        prefix=_read("WSLOOP_PREFIX", None) or "",
        expire_s=int(_read("WSLOOP_EXPIRE", 3600)),
        heartbeat=_read("WSLOOP_HEARTBEAT", None) or None,
        heartbeat_interval_s=float(_read("WSLOOP_HEARTBEAT_INTERVAL_S", 5.0)),
        ping_interval_s=ping_interval_s,
        idle_timeout_s=float(_read("WSLOOP_IDLE_TIMEOUT_S", 3 * ping_interval_s)),
        allowed_channels=_hook(_read("WSLOOP_ALLOWED_CHANNELS", None)),
        process_request=_hook(_read("WSLOOP_PROCESS_REQUEST", None)),
        allowed_origins=None if origins is None else tuple(origins),
        subprotocols=tuple(subprotocols),
        facilities=None if facilities is None else frozenset(facilities),
        max_message_bytes=int(_read("WSLOOP_MAX_MESSAGE_BYTES", 64 * 1024)),
        send_queue_bytes=int(_read("WSLOOP_SEND_QUEUE_BYTES", 1024 * 1024)),
        close_timeout_s=float(_read("WSLOOP_CLOSE_TIMEOUT_S", 5.0)),
        history=_history_policies(_read("WSLOOP_HISTORY", {})),
        recovery_timeout_s=float(_read("WSLOOP_RECOVERY_TIMEOUT_S", 5.0)),
        presence_ttl_s=float(_read("WSLOOP_PRESENCE_TTL_S", 60.0)),
    )


def _history_policies(value: Mapping[str, Mapping[str, int]]) -> dict[str, HistoryPolicy]:
    """``{"pattern": {"length": n, "age_s": s}}``, patterns in order, ``"*"`` the fallback."""
    policies = {
        pattern: HistoryPolicy(
            length=int(spec.get("length", DEFAULT_POLICY.length)),
            age_s=int(spec.get("age_s", DEFAULT_POLICY.age_s)),
        )
        for pattern, spec in value.items()
    }
    policies.setdefault("*", DEFAULT_POLICY)
    return policies
