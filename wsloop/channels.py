"""Flags, audiences and Redis channel names: the naming half of the wire contract.

A websocket URL is ``<WSLOOP_URL><facility>?<flags>``. Flags are query-parameter names, matched
case-insensitively; unknown parameters are ignored (clients may add their own, for example a
cache-buster). An audience maps to one Redis channel per identity::

    broadcast -> {p}broadcast:{facility}
    user      -> {p}user:{username}:{facility}
    group     -> {p}group:{group}:{facility}
    session   -> {p}session:{session_key}:{facility}

where ``{p}`` is ``"<WSLOOP_PREFIX>:"`` or empty. These names are those of django-websocket-redis,
so Redis clients in any language keep publishing to the same channels.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import parse_qsl

# Facilities are path segments that end up inside Redis channel names. A colon would make
# "group:a:b:fac" ambiguous, whitespace and control characters have no business in a key.
FACILITY_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~@+/-]{0,127}")


class Audience(enum.Enum):
    """Who a channel reaches."""

    BROADCAST = "broadcast"
    USER = "user"
    GROUP = "group"
    SESSION = "session"


class Flag(enum.Enum):
    """The query flags of the wire contract (ws4redis names)."""

    SUBSCRIBE_BROADCAST = "subscribe-broadcast"
    SUBSCRIBE_USER = "subscribe-user"
    SUBSCRIBE_GROUP = "subscribe-group"
    SUBSCRIBE_SESSION = "subscribe-session"
    PUBLISH_BROADCAST = "publish-broadcast"
    PUBLISH_USER = "publish-user"
    PUBLISH_GROUP = "publish-group"
    PUBLISH_SESSION = "publish-session"
    ECHO = "echo"
    ENVELOPE = "envelope"  # JSON envelopes with message ids; needed for ``since=``
    PRESENCE = "presence"  # join and leave events of the facility (needs ``envelope``)

    @property
    def audience(self) -> Audience | None:
        """The audience a subscribe or publish flag names; None for the others."""
        if not (self.is_subscribe or self.is_publish):
            return None
        return Audience(self.value.split("-", 1)[1])

    @property
    def is_subscribe(self) -> bool:
        return self.value.startswith("subscribe-")

    @property
    def is_publish(self) -> bool:
        return self.value.startswith("publish-")


_FLAGS_BY_NAME = {flag.value: flag for flag in Flag}


def parse_flags(query_string: str) -> frozenset[Flag]:
    """The flags named in a URL query string; values and unknown names are ignored."""
    names = (name.strip().lower() for name, _ in parse_qsl(query_string, keep_blank_values=True))
    return frozenset(_FLAGS_BY_NAME[name] for name in names if name in _FLAGS_BY_NAME)


def parse_flag_names(names: Iterable[str]) -> frozenset[Flag]:
    """Flags from names as a hook returns them (``"subscribe-user"``...); unknown names ignored."""
    return frozenset(
        _FLAGS_BY_NAME[name.strip().lower()]
        for name in names
        if name.strip().lower() in _FLAGS_BY_NAME
    )


def is_valid_facility(facility: str) -> bool:
    return FACILITY_PATTERN.fullmatch(facility) is not None


@dataclass(frozen=True)
class Identity:
    """Who is on the other end of a socket, as far as channel naming is concerned.

    ``username`` is None for anonymous clients; ``session_key`` is None without a session.
    """

    username: str | None = None
    groups: frozenset[str] = frozenset()
    session_key: str | None = None

    @property
    def is_authenticated(self) -> bool:
        return self.username is not None


def presence_channel(prefix: str, facility: str) -> str:
    """The key of a facility's presence set, and the channel of its join/leave events."""
    return f"{prefix}presence:{facility}"


def facility_of_channel(channel: str) -> str:
    """The facility a channel belongs to: facilities contain no colon, so the last segment."""
    return channel.rpartition(":")[2]


def channel_name(prefix: str, audience: Audience, facility: str, member: str = "") -> str:
    """The Redis channel of one audience member (``member`` unused for broadcast)."""
    if audience is Audience.BROADCAST:
        return f"{prefix}broadcast:{facility}"
    return f"{prefix}{audience.value}:{member}:{facility}"


def audience_channels(
    prefix: str, audience: Audience, facility: str, identity: Identity
) -> list[str]:
    """The channels one audience of this identity maps to (empty if the identity lacks it)."""
    if audience is Audience.BROADCAST:
        return [channel_name(prefix, audience, facility)]
    if audience is Audience.USER:
        members = [identity.username] if identity.username is not None else []
    elif audience is Audience.GROUP:
        members = sorted(identity.groups) if identity.is_authenticated else []
    else:
        members = [identity.session_key] if identity.session_key else []
    return [channel_name(prefix, audience, facility, member) for member in members]


@dataclass(frozen=True)
class ChannelPlan:
    """What one socket subscribes to and publishes to, decided once at the handshake."""

    facility: str
    subscribe: tuple[str, ...]
    publish: tuple[str, ...]
    echo: bool
    envelope: bool = False
    user: str | None = None  # counted in the facility's presence when set
    presence: bool = False  # receives join/leave events


def plan_channels(
    prefix: str, facility: str, flags: frozenset[Flag], identity: Identity
) -> ChannelPlan:
    """Resolve flags into channel names for this identity, in a stable order.

    Publish channels are always the sender's own audience: a client can never name another
    user, group or session.
    """
    subscribe: list[str] = []
    publish: list[str] = []
    for flag in sorted(flags, key=lambda f: f.value):
        audience = flag.audience
        if audience is None:
            continue
        target = subscribe if flag.is_subscribe else publish
        target.extend(audience_channels(prefix, audience, facility, identity))
    if Flag.PRESENCE in flags:
        subscribe.append(presence_channel(prefix, facility))
    return ChannelPlan(
        facility=facility,
        subscribe=tuple(dict.fromkeys(subscribe)),
        publish=tuple(dict.fromkeys(publish)),
        echo=Flag.ECHO in flags,
        envelope=Flag.ENVELOPE in flags,
        user=identity.username,
        presence=Flag.PRESENCE in flags,
    )
