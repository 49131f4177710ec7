"""Message history and recovery positions, without I/O.

Every message published through wsloop (``wsloop.publish``, a client's ``publish-*`` frame) is
appended to its facility's history, a Redis stream, and gets that stream's entry id. One stream
per facility gives every message of a facility one total order, so a socket (which lives on one
facility, whatever audiences it subscribes to) has a single position: the id of the last message
it received.

A position is ``"<epoch>:<ms>-<seq>"``. The epoch is a random token created with the stream; when
the stream is lost (expired, flushed, Redis restarted without persistence) a new stream gets a new
epoch, so a client holding a position of the old one is told to resync instead of being handed a
silent gap. Positions are opaque to clients: they store the last one and send it back.

Recovery is exact or refused: a client is replayed everything after its position only while that
position's own entry is still in the stream (trimming removes the oldest entries first, so nothing
after it can be missing); otherwise it gets a resync.

A message a socket published also carries that socket's origin (an id unique across workers), in
history and on the bus, so that the socket's own messages are told apart from identical payloads of
others, live and in any replay.

Messages PUBLISHed raw by other Redis clients bypass history: they are delivered live, without an
id, and cannot be recovered.
"""

from __future__ import annotations

import enum
import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

# Marks a live message that went through wsloop: TAG + header + b"\n" + payload, where the header
# is "<epoch>:<id>" (its place in history), "@<origin>" (the socket that published it) or both,
# "<epoch>:<id>@<origin>". The NUL bytes keep it apart from any text payload; a raw binary payload
# starting with exactly these 7 bytes would be misread (documented).
TAG = b"\x00wsl1\x00"
ORIGIN_MARK = "@"

_STREAM_ID = re.compile(r"(\d{1,20})-(\d{1,20})")
_EPOCH = re.compile(r"[0-9a-z]{1,32}")
_ORIGIN = re.compile(r"[0-9a-z.-]{1,64}")


# Value types are named tuples: made and compared on every message, live and replayed, where a
# frozen dataclass costs twice as much to make and three times as much to compare.


class StreamId(NamedTuple):
    """A Redis stream entry id, ordered as Redis orders them."""

    ms: int
    seq: int

    @classmethod
    def parse(cls, text: str) -> StreamId:
        """From text of unknown origin (a client's ``since``): checked."""
        match = _STREAM_ID.fullmatch(text)
        if match is None:
            raise ValueError(f"not a stream id: {text!r}")
        return cls(int(match.group(1)), int(match.group(2)))

    @classmethod
    def from_redis(cls, entry_id: bytes) -> StreamId:
        """From an id Redis returned (``<ms>-<seq>``, always well formed)."""
        ms, _, seq = entry_id.partition(b"-")
        return cls(int(ms), int(seq))

    def __str__(self) -> str:
        return f"{self.ms}-{self.seq}"


class Position(NamedTuple):
    """Where a client is in a facility's history."""

    epoch: str
    id: StreamId

    def not_after(self, other: Position) -> bool:
        """Same history, and not later than ``other``: already delivered if ``other`` was."""
        return self.epoch == other.epoch and self.id <= other.id

    @classmethod
    def parse(cls, text: str) -> Position:
        epoch, _, stream_id = text.partition(":")
        if _EPOCH.fullmatch(epoch) is None:
            raise ValueError(f"not a position: {text!r}")
        return cls(epoch, StreamId.parse(stream_id))

    def __str__(self) -> str:
        return f"{self.epoch}:{self.id}"


class Incoming(NamedTuple):
    """A message from the bus: the payload, its position if it went through history, and the
    origin of the socket that published it, if one did."""

    payload: bytes
    position: Position | None = None
    origin: str | None = None


def tag(position: Position | None, origin: str | None, payload: bytes) -> bytes:
    """The bus form of a message (``untag``'s inverse); raw when it has neither part."""
    if position is None and origin is None:
        return payload
    header = "" if position is None else str(position)
    if origin is not None:
        header += ORIGIN_MARK + origin
    return TAG + header.encode("ascii") + b"\n" + payload


def untag(data: bytes) -> Incoming:
    """Split a bus message into payload, position and origin; untagged (raw) messages have
    neither, and so does a malformed header (the message then stays as it came)."""
    if not data.startswith(TAG):
        return Incoming(data)
    header, newline, payload = data[len(TAG) :].partition(b"\n")
    if not newline:
        return Incoming(data)
    try:
        text = header.decode("ascii")
        where, mark, origin = text.partition(ORIGIN_MARK)
        if mark and _ORIGIN.fullmatch(origin) is None:
            raise ValueError(f"not an origin: {origin!r}")
        position = Position.parse(where) if where else None
    except (ValueError, UnicodeDecodeError):
        return Incoming(data)
    if position is None and not mark:
        return Incoming(data)
    return Incoming(payload, position, origin if mark else None)


@dataclass(frozen=True)
class HistoryPolicy:
    """How much history a facility keeps: at most ``length`` entries (approximately: Redis trims
    whole macro nodes) and none older than ``age_s``. ``length`` 0 disables history."""

    length: int
    age_s: int

    @property
    def enabled(self) -> bool:
        return self.length > 0 and self.age_s > 0


DEFAULT_POLICY = HistoryPolicy(length=1000, age_s=3600)

# Where a worker stands when it could not read history: matches no real epoch (those are hex),
# so everything after it counts as new and a replay from it is a resync.
UNKNOWN = Position("unknown", StreamId(0, 0))


def policy_for(facility: str, policies: Mapping[str, HistoryPolicy]) -> HistoryPolicy:
    """The policy of the first pattern (``fnmatch``, in setting order) matching the facility;
    ``"*"`` or the default otherwise."""
    for pattern, policy in policies.items():
        if pattern != "*" and fnmatch.fnmatchcase(facility, pattern):
            return policy
    return policies.get("*", DEFAULT_POLICY)


class Resync(enum.Enum):
    """Why a client cannot be replayed and must reload its state."""

    RESET = "reset"  # the history the position belongs to is gone (new epoch)
    EXPIRED = "expired"  # the position is older than what history still holds
    UNAVAILABLE = "unavailable"  # no history to read: disabled, or unreadable for too long


def recovery_verdict(
    since: Position, current_epoch: str | None, position_retained: bool
) -> Resync | None:
    """None if every message after ``since`` is still in history, else why not."""
    if current_epoch is None or current_epoch != since.epoch:
        return Resync.RESET
    if not position_retained:
        return Resync.EXPIRED
    return None
