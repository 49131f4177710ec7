"""Publishing from Django code: one call, any audience.

Blocking redis-py calls, meant for Django's own (sync) workers, management commands and task
queue workers; ``publish_on_commit`` waits for the surrounding transaction, the ``a``-prefixed
variants are for async code. Each message is PUBLISHed raw (any Redis client can do the same)
and, when ``expire`` > 0, also SET under the channel's name for that many seconds so sockets
that subscribe later receive it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

import redis
from asgiref.sync import sync_to_async
from django.db import transaction
from django.http import HttpRequest

from . import conf
from .channels import Audience, Identity, audience_channels, channel_name, is_valid_facility
from .history_redis import RedisHistory
from .identity import GROUPS_KEY, WS4REDIS_GROUPS_KEY
from .presence_store import RedisPresence
from .redis_pool import NotConnected, get_pool


class PublishError(Exception):
    """Redis did not confirm the message (never a silent drop). ``maybe_published`` is False
    when nothing was sent (no connection could be had: a retry is safe) and True when the
    command went out and its answer never came (a timeout, a connection lost: Redis may have
    applied it, so a retry can publish it twice)."""

    def __init__(self, message: str, *, maybe_published: bool) -> None:
        super().__init__(message)
        self.maybe_published = maybe_published


class _SelfMarker:
    """The current request's own user, groups or session (``users=[SELF]``)."""

    _instance: _SelfMarker | None = None

    def __new__(cls) -> _SelfMarker:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "SELF"


SELF: Final = _SelfMarker()

Audiences = Iterable[str | _SelfMarker]


def request_identity(request: HttpRequest | None) -> Identity:
    """The identity of a Django request (in the Django process, where the database is fine)."""
    if request is None:
        return Identity()
    user = getattr(request, "user", None)
    session = getattr(request, "session", None)
    username = user.get_username() if user is not None and user.is_authenticated else None
    groups: frozenset[str] = frozenset()
    if username is not None:
        stored = session.get(GROUPS_KEY, session.get(WS4REDIS_GROUPS_KEY)) if session else None
        if stored is None:
            stored = user.groups.values_list("name", flat=True)  # type: ignore[union-attr]
        groups = frozenset(stored)
    session_key = session.session_key if session is not None else None
    return Identity(username=username, groups=groups, session_key=session_key)


def target_channels(
    prefix: str,
    facility: str,
    *,
    broadcast: bool = False,
    users: Audiences = (),
    groups: Audiences = (),
    sessions: Audiences = (),
    identity: Identity | None = None,
) -> list[str]:
    """Channel names for an audience; SELF stands for ``identity``'s own user/groups/session.

    SELF without a matching identity (an anonymous request, no session) adds nothing.
    """
    if not is_valid_facility(facility):
        raise ValueError(f"invalid facility {facility!r}")
    if isinstance(users, str) or isinstance(groups, str) or isinstance(sessions, str):
        raise TypeError("users, groups and sessions take a list of names, not a string")
    me = identity or Identity()
    channels: list[str] = []
    if broadcast:
        channels.append(channel_name(prefix, Audience.BROADCAST, facility))
    for audience, members in (
        (Audience.USER, users),
        (Audience.GROUP, groups),
        (Audience.SESSION, sessions),
    ):
        for member in members:
            if member is SELF:
                channels.extend(audience_channels(prefix, audience, facility, me))
            else:
                channels.append(channel_name(prefix, audience, facility, str(member)))
    return list(dict.fromkeys(channels))


def requested_channels(
    facility: str,
    *,
    broadcast: bool,
    users: Audiences,
    groups: Audiences,
    sessions: Audiences,
    request: HttpRequest | None,
) -> list[str]:
    """``target_channels`` with this process's prefix and ``request``'s identity."""
    return target_channels(
        conf.load().channel_prefix,
        facility,
        broadcast=broadcast,
        users=users,
        groups=groups,
        sessions=sessions,
        identity=request_identity(request),
    )


def publish_to_channels(
    facility: str,
    channels: Sequence[str],
    message: str | bytes,
    expire: int | None = None,
    client: redis.Redis | None = None,
) -> int:
    """Append one message to the facility's history and publish it on channel names (keeping
    it as each channel's persisted message for ``expire`` seconds), through ``client`` or the
    process pool; returns the number of worker subscriptions that received it (one per worker
    process and channel, not sockets)."""
    settings = conf.load()
    payload = message.encode("utf-8") if isinstance(message, str) else bytes(message)
    expire_s = settings.expire_s if expire is None else int(expire)
    if client is None:
        pool = get_pool(settings.redis_url, settings.redis_pool_size)
        client = redis.Redis(connection_pool=pool)
    history = RedisHistory(client, settings.channel_prefix, settings.history)
    try:
        return history.publish(facility, list(channels), payload, expire_s).receivers
    except NotConnected as exc:
        raise PublishError(
            f"message not published, Redis unavailable: {exc}", maybe_published=False
        ) from exc
    except redis.ResponseError as exc:
        raise PublishError(
            f"message not published, Redis refused it: {exc}", maybe_published=False
        ) from exc
    except (redis.RedisError, OSError) as exc:
        raise PublishError(
            f"Redis did not answer, the message may or may not have been published: {exc}",
            maybe_published=True,
        ) from exc


def publish(
    facility: str,
    message: str | bytes,
    *,
    broadcast: bool = False,
    users: Audiences = (),
    groups: Audiences = (),
    sessions: Audiences = (),
    request: HttpRequest | None = None,
    expire: int | None = None,
) -> int:
    """Send ``message`` to every socket of ``facility`` that subscribed to one of the audiences.

    ``users``, ``groups`` and ``sessions`` list names (usernames, group names, session keys);
    ``SELF`` in a list stands for ``request``'s own. ``expire`` (seconds, default
    ``WSLOOP_EXPIRE``) keeps the message for sockets that subscribe later; 0 does not keep it.
    Returns the number of worker subscriptions that received it (one per worker process and
    channel). Raises PublishError when Redis is
    unreachable and ValueError for an invalid facility.
    """
    channels = requested_channels(
        facility,
        broadcast=broadcast,
        users=users,
        groups=groups,
        sessions=sessions,
        request=request,
    )
    return publish_to_channels(facility, channels, message, expire)


def publish_on_commit(
    facility: str,
    message: str | bytes,
    *,
    broadcast: bool = False,
    users: Audiences = (),
    groups: Audiences = (),
    sessions: Audiences = (),
    request: HttpRequest | None = None,
    expire: int | None = None,
    using: str | None = None,
    robust: bool = False,
) -> None:
    """``publish`` once the transaction open on ``using`` (the default database) commits,
    through Django's ``transaction.on_commit``: a message about a row that is rolled back,
    with its transaction or with a savepoint around the call, never goes out; those that do go
    out in the order of the calls. Outside a transaction it publishes at once.

    The audience is resolved at the call (the request may be gone at commit), the message is
    sent at commit. A PublishError at commit is raised where the transaction commits (the
    ``atomic`` block's exit), after the commit, and the callbacks registered after this one do
    not run; with ``robust=True`` Django logs it and runs them."""
    channels = requested_channels(
        facility,
        broadcast=broadcast,
        users=users,
        groups=groups,
        sessions=sessions,
        request=request,
    )

    def publish_committed() -> None:  # a function: Django's robust mode logs its name
        publish_to_channels(facility, channels, message, expire)

    transaction.on_commit(publish_committed, using=using, robust=robust)


async def apublish(
    facility: str,
    message: str | bytes,
    *,
    broadcast: bool = False,
    users: Audiences = (),
    groups: Audiences = (),
    sessions: Audiences = (),
    request: HttpRequest | None = None,
    expire: int | None = None,
) -> int:
    """``publish`` for async views and ASGI code: the same call in a worker thread (Django's
    ``sync_to_async``, thread-sensitive as Django's own async wrappers are, since the request's
    user may need the database), so the event loop goes on meanwhile."""
    send = sync_to_async(publish)
    return await send(
        facility,
        message,
        broadcast=broadcast,
        users=users,
        groups=groups,
        sessions=sessions,
        request=request,
        expire=expire,
    )


async def aposition(facility: str) -> str | None:
    """``position`` for async code, in a worker thread like ``apublish``."""
    return await sync_to_async(position)(facility)


def position(facility: str) -> str | None:
    """The facility's current position in history, for a page rendered now: a socket opened
    later with ``since=<position>`` receives every message published after it, the ones between
    the render and the connect included, as long as history still holds the position
    (``WSLOOP_HISTORY``); after that it gets a resync. A facility without messages yet has a
    position too. None when the facility keeps no history (``WSLOOP_HISTORY`` length 0).
    Raises PublishError when Redis is unreachable and ValueError for an invalid facility."""
    if not is_valid_facility(facility):
        raise ValueError(f"invalid facility {facility!r}")
    settings = conf.load()
    client = redis.Redis(connection_pool=get_pool(settings.redis_url, settings.redis_pool_size))
    history = RedisHistory(client, settings.channel_prefix, settings.history)
    try:
        current = history.current_position(facility)
    except (redis.RedisError, OSError) as exc:
        raise PublishError(
            f"position unavailable, Redis unreachable: {exc}", maybe_published=False
        ) from exc
    return None if current is None else str(current)


def presence(facility: str) -> dict[str, int]:
    """Users with sockets open on ``facility`` right now, with their socket counts (anonymous
    sockets are not counted). Raises PublishError when Redis is unreachable."""
    settings = conf.load()
    client = redis.Redis(connection_pool=get_pool(settings.redis_url, settings.redis_pool_size))
    try:
        return RedisPresence(client, settings.channel_prefix, settings.presence_ttl_s).users(
            facility
        )
    except (redis.RedisError, OSError) as exc:
        raise PublishError(
            f"presence unavailable, Redis unreachable: {exc}", maybe_published=False
        ) from exc
