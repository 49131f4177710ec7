"""History in Redis: one stream per facility, appended and published in one atomic script.

Keys (``{p}`` is the channel prefix): ``{p}history:{facility}`` (the stream; fields ``c``, the
channel, ``d``, the payload, and ``o``, the origin of a message a socket published) and
``{p}history:{facility}:epoch``. Both expire together ``age_s`` after the last message, and the
stream is trimmed to ``length`` entries (approximately) and ``age_s`` seconds on every append.
Memory: about 100 bytes of overhead per entry plus the payload and channel name (see
loadtest/README.md for the measured figure).

Publishing through the script is what puts the position in the live message (see
``history.TAG``), so that a socket knows the id of what it received and a replay can be joined to
live delivery without a gap or a duplicate. It also keeps ws4redis' persisted last message per
channel (``SET channel payload EX expire``) when ``expire_s`` > 0.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from .history import (
    TAG,
    HistoryPolicy,
    Incoming,
    Position,
    Resync,
    StreamId,
    policy_for,
    recovery_verdict,
    tag,
)

REPLAY_PAGE_ENTRIES = 1000  # entries read per XRANGE while replaying

# KEYS: stream, epoch key. ARGV: length, age_ms, new epoch, expire_s, tag, origin, payload,
# channels... Returns {receivers, epoch, one stream id per channel}.
PUBLISH_LUA = r"""
local stream, epoch_key = KEYS[1], KEYS[2]
local length, age_ms = tonumber(ARGV[1]), tonumber(ARGV[2])
local expire_s, tag, origin, payload = tonumber(ARGV[4]), ARGV[5], ARGV[6], ARGV[7]
local epoch = redis.call('GET', epoch_key)
if (not epoch) or redis.call('EXISTS', stream) == 0 then
  epoch = ARGV[3]
  redis.call('SET', epoch_key, epoch)
end
local mark = ''
if origin ~= '' then
  mark = '@' .. origin
end
local result = {0, epoch}
for i = 8, #ARGV do
  local channel = ARGV[i]
  local id
  if origin ~= '' then
    id = redis.call('XADD', stream, 'MAXLEN', '~', length, '*', 'c', channel, 'd', payload,
                    'o', origin)
  else
    id = redis.call('XADD', stream, 'MAXLEN', '~', length, '*', 'c', channel, 'd', payload)
  end
  local live = tag .. epoch .. ':' .. id .. mark .. '\n' .. payload
  result[1] = result[1] + redis.call('PUBLISH', channel, live)
  if expire_s > 0 then
    redis.call('SET', channel, payload, 'EX', expire_s)
  end
  table.insert(result, id)
end
local now = redis.call('TIME')
local min_id = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - age_ms
redis.call('XTRIM', stream, 'MINID', '~', tostring(min_id))
redis.call('PEXPIRE', stream, age_ms)
redis.call('PEXPIRE', epoch_key, age_ms)
return result
"""

# The facility's newest position; a history without one (none yet, expired, emptied) gets a
# marker entry (no channel, no payload: never replayed) so that the position is a real entry of
# the current epoch, recoverable like any other. KEYS: stream, epoch key. ARGV: length, age_ms,
# new epoch. Returns {epoch, stream id}.
POSITION_LUA = r"""
local stream, epoch_key = KEYS[1], KEYS[2]
local epoch = redis.call('GET', epoch_key)
local newest = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
if epoch and #newest > 0 then
  return {epoch, newest[1][1]}
end
if (not epoch) or redis.call('EXISTS', stream) == 0 then
  epoch = ARGV[3]
  redis.call('SET', epoch_key, epoch)
end
local id = redis.call('XADD', stream, 'MAXLEN', '~', tonumber(ARGV[1]), '*', 'c', '', 'd', '')
redis.call('PEXPIRE', stream, tonumber(ARGV[2]))
redis.call('PEXPIRE', epoch_key, tonumber(ARGV[2]))
return {epoch, id}
"""


@dataclass(frozen=True)
class Published:
    receivers: int  # worker subscriptions reached (one per worker and channel, not sockets)
    positions: tuple[Position, ...]  # one per channel, in the order given; empty without history


Page = list[tuple[str, Incoming]]
"""Replayed messages with their channels, oldest first."""


class HistoryGap(Exception):
    """History was trimmed past the reader, or reset, while it was being read."""


@dataclass
class Replay:
    """What a recovery produces: pages of the messages after the position (read lazily, one
    page in memory at a time; iterating may raise HistoryGap or a Redis error), or why there
    are none."""

    resync: Resync | None
    pages: Iterator[Page] = field(default_factory=lambda: iter(()))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisHistory:
    def __init__(
        self, client: redis.Redis, prefix: str, policies: Mapping[str, HistoryPolicy]
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._policies = policies
        self._script = client.register_script(PUBLISH_LUA)
        self._position_script = client.register_script(POSITION_LUA)
        # Replays parse XRANGE replies themselves: redis-py's parser makes a dict per entry,
        # which was most of a replay's cost.
        self._raw = redis.Redis(connection_pool=client.connection_pool)
        self._raw.set_response_callback("XRANGE", _unparsed)

    def stream_key(self, facility: str) -> str:
        return f"{self._prefix}history:{facility}"

    def policy(self, facility: str) -> HistoryPolicy:
        return policy_for(facility, self._policies)

    def publish(
        self,
        facility: str,
        channels: Sequence[str],
        payload: bytes,
        expire_s: int,
        origin: str | None = None,
    ) -> Published:
        """Append to history and publish, atomically; raw publish when history is disabled.
        ``origin``: the publishing socket's id, carried by the message (``history.tag``).

        Raises redis.RedisError or OSError when Redis cannot be reached.
        """
        policy = self.policy(facility)
        if not policy.enabled:
            receivers = self._publish_raw(channels, payload, tag(None, origin, payload), expire_s)
            return Published(receivers, ())
        stream = self.stream_key(facility)
        result = self._script(
            keys=[stream, f"{stream}:epoch"],
            args=[
                policy.length,
                policy.age_s * 1000,
                secrets.token_hex(5),
                expire_s,
                TAG,
                origin or "",
                payload,
                *channels,
            ],
        )
        epoch = _text(result[1])
        positions = tuple(Position(epoch, StreamId.parse(_text(i))) for i in result[2:])
        return Published(int(result[0]), positions)

    def _publish_raw(
        self, channels: Sequence[str], payload: bytes, message: bytes, expire_s: int
    ) -> int:
        # MULTI: a socket reading the persisted message sees the message both kept and
        # published, or neither (wsloop.recovery, a bare socket's start).
        with self._client.pipeline(transaction=True) as pipe:
            for channel in channels:
                pipe.publish(channel, message)
                if expire_s > 0:
                    pipe.set(channel, payload, ex=expire_s)
            replies = pipe.execute()
        return sum(int(reply) for reply in replies[:: 2 if expire_s > 0 else 1])

    def current_position(self, facility: str) -> Position | None:
        """Where the facility's history stands now, as a position a client can recover from
        later (a history that has none gets one); None when the facility keeps no history.

        Raises redis.RedisError or OSError when Redis cannot be reached.
        """
        policy = self.policy(facility)
        if not policy.enabled:
            return None
        stream = self.stream_key(facility)
        epoch, entry_id = self._position_script(
            keys=[stream, f"{stream}:epoch"],
            args=[policy.length, policy.age_s * 1000, secrets.token_hex(5)],
        )
        return Position(_text(epoch), StreamId.parse(_text(entry_id)))

    def last_position(self, facility: str) -> Position | None:
        """The position of the facility's newest message; None while it has no history."""
        stream = self.stream_key(facility)
        with self._client.pipeline(transaction=False) as pipe:
            pipe.get(f"{stream}:epoch")
            pipe.xrevrange(stream, count=1)
            epoch, newest = pipe.execute()
        if epoch is None or not newest:
            return None
        return Position(_text(epoch), StreamId.parse(_text(newest[0][0])))

    def replay(self, facility: str, since: Position | None, channels: frozenset[str]) -> Replay:
        """Every message of ``channels`` after ``since`` (``None``: all that history holds),
        oldest first, or a resync verdict.

        Raises redis.RedisError or OSError when Redis cannot be reached.
        """
        if not self.policy(facility).enabled:
            return Replay(Resync.UNAVAILABLE)
        stream = self.stream_key(facility)
        if since is None:
            epoch = self._client.get(f"{stream}:epoch")
            if epoch is None:
                return Replay(None)
            return Replay(
                None,
                self._pages_after(
                    stream, Position(_text(epoch), StreamId(0, 0)), channels, first=True
                ),
            )
        with self._client.pipeline(transaction=True) as pipe:
            pipe.get(f"{stream}:epoch")
            pipe.xrange(stream, min=str(since.id), max=str(since.id), count=1)
            epoch, retained = pipe.execute()
        verdict = recovery_verdict(since, _text(epoch) if epoch else None, bool(retained))
        if verdict is not None:
            return Replay(verdict)
        return Replay(None, self._pages_after(stream, since, channels, first=False))

    def _pages_after(
        self, stream: str, since: Position, channels: frozenset[str], first: bool
    ) -> Iterator[Page]:
        """Pages after ``since``. Each read also checks, atomically, that the epoch is the same
        and the cursor's own entry is still there (so nothing after it was trimmed)."""
        cursor = str(since.id)
        check_cursor = not first
        wanted = {channel.encode() for channel in channels}
        while True:
            with self._raw.pipeline(transaction=True) as pipe:  # MULTI: nothing in between
                pipe.get(f"{stream}:epoch")
                pipe.xrange(stream, min=cursor, max=cursor, count=1)
                pipe.xrange(stream, min=f"({cursor}", count=REPLAY_PAGE_ENTRIES)
                epoch, retained, entries = pipe.execute()
            if epoch is None or _text(epoch) != since.epoch or (check_cursor and not retained):
                raise HistoryGap(f"{stream} was trimmed or reset while being replayed")
            page: Page = []
            for entry_id, fields in entries:
                channel, payload, origin = _fields(fields)
                if channel in wanted:
                    position = Position(since.epoch, StreamId.from_redis(entry_id))
                    page.append(
                        (
                            channel.decode(),
                            Incoming(payload, position, origin.decode() if origin else None),
                        )
                    )
            if page:
                yield page
            if len(entries) < REPLAY_PAGE_ENTRIES:
                return
            cursor = entries[-1][0].decode()
            check_cursor = True


def _unparsed(response: Any, **options: Any) -> Any:
    return response


def _fields(fields: list[bytes]) -> tuple[bytes, bytes, bytes | None]:
    """An entry's channel, payload and origin (``c``, ``d``, ``o``). The publish script writes
    them in that order; any other order is read too."""
    if len(fields) >= 4 and fields[0] == b"c" and fields[2] == b"d":
        origin = fields[5] if len(fields) >= 6 and fields[4] == b"o" else None
        return fields[1], fields[3], origin
    named = dict(zip(fields[::2], fields[1::2], strict=False))
    return named.get(b"c", b""), named.get(b"d", b""), named.get(b"o")
