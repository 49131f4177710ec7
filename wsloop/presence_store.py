"""Presence: which users have sockets open on a facility, across every worker.

Each socket of an authenticated user is one entry of the sorted set ``{p}presence:{facility}``,
scored with the time it expires. The worker that holds the socket refreshes its entries every
third of ``WSLOOP_PRESENCE_TTL_S`` (default 60 s) and removes them when sockets close; the
entries of a worker that died (SIGKILL, lost host) expire by themselves one TTL after its last
refresh, without leave events. Anonymous sockets are not listed. Scores come from the workers'
clocks: keep hosts in sync (NTP) to within a small part of the TTL.

Sockets with the ``presence`` flag also receive join and leave events, one per socket, published
on the channel ``{p}presence:{facility}``:

    {"type": "join", "user": "alice", "client": "<socket id>"}
    {"type": "leave", "user": "alice", "client": "<socket id>"}
"""

from __future__ import annotations

import enum
import json
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import redis

from .channels import presence_channel

DEFAULT_TTL_S = 60  # an entry not refreshed for this long counts as gone (its worker died)
REFRESHES_PER_TTL = 3  # workers refresh every ttl/3 s: two refreshes may fail before expiry
_SEPARATOR = "\n"  # usernames cannot contain a newline (Django's username validators)


class Change(enum.Enum):
    JOIN = "join"
    LEAVE = "leave"


@dataclass(frozen=True)
class Entry:
    """One socket of one user on one facility."""

    facility: str
    user: str
    client: str

    @property
    def member(self) -> str:
        return f"{self.user}{_SEPARATOR}{self.client}"


def event(kind: str, entry: Entry) -> bytes:
    body = {"type": kind, "user": entry.user, "client": entry.client}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def users_of(members: Iterable[bytes | str]) -> dict[str, int]:
    """Sockets per user from sorted-set members."""
    counts: Counter[str] = Counter()
    for member in members:
        text = member.decode() if isinstance(member, bytes) else member
        counts[text.rpartition(_SEPARATOR)[0]] += 1
    return dict(counts)


class RedisPresence:
    def __init__(self, client: redis.Redis, prefix: str, ttl_s: float = DEFAULT_TTL_S) -> None:
        self._client = client
        self._prefix = prefix
        self.ttl_s = ttl_s

    def apply(self, changes: Sequence[tuple[Change, Entry]]) -> None:
        """Joins and leaves, in order, in one round trip; each publishes its event."""
        expires_at = time.time() + self.ttl_s
        with self._client.pipeline(transaction=False) as pipe:
            for change, entry in changes:
                key = presence_channel(self._prefix, entry.facility)
                if change is Change.JOIN:
                    pipe.zadd(key, {entry.member: expires_at})
                    pipe.expire(key, max(1, int(self.ttl_s)))
                else:
                    pipe.zrem(key, entry.member)
                pipe.publish(key, event(change.value, entry))
            pipe.execute()

    def refresh(self, entries: Sequence[Entry]) -> None:
        """Push back the expiry of live entries and drop expired ones, one round trip."""
        now = time.time()
        by_key: dict[str, dict[str, float]] = {}
        for entry in entries:
            key = presence_channel(self._prefix, entry.facility)
            by_key.setdefault(key, {})[entry.member] = now + self.ttl_s
        with self._client.pipeline(transaction=False) as pipe:
            for key, members in by_key.items():
                pipe.zadd(key, members)
                pipe.zremrangebyscore(key, "-inf", now)
                pipe.expire(key, max(1, int(self.ttl_s)))
            pipe.execute()

    def users(self, facility: str) -> dict[str, int]:
        """Users with sockets open on the facility, and how many each."""
        key = presence_channel(self._prefix, facility)
        members = self._client.zrangebyscore(key, time.time(), "+inf")
        return users_of(members)  # type: ignore[arg-type]
