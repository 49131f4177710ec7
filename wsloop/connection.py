"""One websocket on a gevent socket: the reader greenlet, non-blocking fan-out writes, closing.

A socket costs one greenlet while idle (the reader, parked in ``recv``). Frames from the hub are
written immediately with a non-blocking send; only when the kernel buffer is full does the rest
go to the bounded send queue and a writer greenlet start, to exit again once the queue is empty.
Only the reader greenlet closes the socket; everyone else shuts it down, which wakes the reader.
A socket that connects with ``since=`` first holds live messages, writes its replay page by page
(only its own greenlet writes meanwhile), then the held messages past the seam, then goes live.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import gevent

from .broker import BrokerUnavailable
from .channels import ChannelPlan
from .envelope import audience_of, message_frame, recovered_frame, resync_frame
from .history import Incoming, Position, Resync
from .history_redis import HistoryGap
from .protocol import CloseCode, Message, ProtocolCore, State, encode_data, encode_message
from .sendqueue import SendQueue

if TYPE_CHECKING:
    from .runtime import Runtime

logger = logging.getLogger(__name__)

RECV_BYTES = 64 * 1024  # one read; wsproto keeps partial frames, so any size is correct
WRITE_BATCH_BYTES = 64 * 1024  # queued frames joined per write when a socket has a backlog
# After our FIN, how long a closing socket waits for the peer's before closing anyway (a peer
# that vanished without a FIN holds its greenlet and descriptor this much longer).
LINGER_TIMEOUT_S = 2.0


class WebSocket:
    __slots__ = (
        "_close_sent",
        "_core",
        "_held",
        "_held_bytes",
        "_holding",
        "_queue",
        "_replaying",
        "_runtime",
        "_since",
        "_sock",
        "_writer",
        "last_seen",
        "plan",
        "recovering",
    )

    def __init__(
        self,
        sock: socket.socket,
        runtime: Runtime,
        plan: ChannelPlan,
        since: Position | None = None,
    ) -> None:
        settings = runtime.settings
        self._sock = sock
        self._runtime = runtime
        self._core = ProtocolCore(settings.max_message_bytes)
        self._queue = SendQueue(settings.send_queue_bytes)
        self._writer: gevent.Greenlet | None = None
        self._holding = True  # frames wait in the queue until replayed/persisted ones are sent
        self._since = since
        self.recovering = since is not None  # live messages are held until the replay is done
        self._held: list[tuple[str, Incoming]] = []
        self._held_bytes = 0
        self._replaying = False  # writing the replay straight to the socket
        self._close_sent = False
        self.plan = plan
        self.last_seen = time.monotonic()

    @property
    def state(self) -> State:
        return self._core.state

    @property
    def envelope(self) -> bool:
        return self.plan.envelope

    def run(self) -> None:
        """Serve the socket until it closes; runs in its own greenlet."""
        runtime = self._runtime
        try:
            runtime.attach(self)
            if self._since is not None:
                self._recover(self._since)
            elif self.plan.envelope:
                self._release([])
            else:
                self._send_persisted()
            self._read_until_closed()
        except OSError as exc:
            logger.debug("socket error: %s", exc)
        finally:
            runtime.detach(self)
            self._finish()

    @property
    def is_open(self) -> bool:
        """Not closing nor closed (a closing socket has its own close timeout)."""
        return self._core.state is State.OPEN

    def deliver(self, frame: bytes | memoryview) -> None:
        """Hub-facing: send a data frame while the socket is open; never blocks."""
        if self._core.state is State.OPEN:
            self._send(frame)

    def _send(self, frame: bytes | memoryview) -> None:
        """Write now if the socket takes it, else queue it, keeping order; never blocks."""
        if self._holding or self._writer is not None or self._queue:
            self._enqueue(frame)
            return
        try:
            sent = self._sock.send(frame, 0, timeout=0.0)  # type: ignore[call-arg]
        except BlockingIOError:
            sent = 0
        except OSError:
            self._abort()
            return
        if sent < len(frame):
            self._enqueue(memoryview(frame)[sent:])

    def close(self, code: CloseCode, reason: str = "") -> None:
        """Start the closing handshake from the server side."""
        frame = self._core.close(code, reason)
        if frame:
            self._close_sent = True
            if self._writer is None and self._holding and not self._replaying:
                # Still replaying or fetching: nothing is half-written, what waits is moot now,
                # and the close frame must not wait for it (it may be sent from atexit).
                self._queue.clear()
                self._holding = False
            self._send(frame)
            gevent.spawn_later(self._runtime.settings.close_timeout_s, self._abort_if_open)

    def _abort_if_open(self) -> None:
        """The peer did not complete the closing handshake in time."""
        if self._core.state is not State.CLOSED:
            self._abort()

    def _enqueue(self, frame: bytes | memoryview) -> None:
        if not self._queue.push(frame):
            self._drop_slow_consumer()
            return
        if self._writer is None and not self._holding:
            self._writer = gevent.spawn(self._flush)

    def _flush(self) -> None:
        try:
            while self._queue:
                self._sock.sendall(self._queue.pop_batch(WRITE_BATCH_BYTES))
        except OSError:
            self._abort()
        finally:
            self._writer = None

    def _drop_slow_consumer(self) -> None:
        """Close with SLOW_CONSUMER: the queue is dropped, the close frame sent best effort."""
        self._runtime.metrics.slow_consumers += 1
        self._runtime.metrics.dropped_frames += len(self._queue) + 1  # + the one that did not fit
        logger.info(
            "closing slow consumer on %s (%d bytes queued)",
            self.plan.facility,
            self._queue.queued_bytes,
        )
        self._queue.clear()
        self._held, self._held_bytes = [], 0
        frame = self._core.close(CloseCode.SLOW_CONSUMER, "send queue limit reached")
        if frame and self._writer is None and not self._replaying:
            with contextlib.suppress(OSError):
                self._sock.send(frame, 0, timeout=0.0)  # type: ignore[call-arg]
        self._abort()

    def _abort(self) -> None:
        """Stop the socket from any greenlet: the reader wakes up and cleans up."""
        self._core.receive_eof()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)

    def hold(self, channel: str, messages: Sequence[Incoming]) -> None:
        """Keep live messages while the replay runs; bounded like the send queue."""
        if self._core.state is not State.OPEN:
            return
        self._held.extend((channel, message) for message in messages)
        self._held_bytes += sum(len(message.payload) for message in messages)
        if self._held_bytes > self._queue.limit_bytes:
            self._drop_slow_consumer()

    def _send_persisted(self) -> None:
        """ws4redis' persisted message of each channel, before anything live."""
        try:
            persisted = self._runtime.broker.fetch_persisted(self.plan.subscribe)
        except BrokerUnavailable as exc:
            logger.warning("persisted messages not sent: %s", exc)
            persisted = []
        self._release([encode_message(payload) for payload in persisted])

    def _recover(self, since: Position) -> None:
        """Replay what the client missed, then the live messages held meanwhile, without a gap
        or a duplicate at the seam: the subscription is confirmed before history is read, and
        held messages already in the replay are dropped by position."""
        runtime = self._runtime
        runtime.metrics.recoveries += 1
        timeout_s = runtime.settings.recovery_timeout_s
        self._replaying = True  # from here only this greenlet writes, until _release
        try:
            # A worker replaying after a lost subscription goes first (its position may be
            # behind ours), and one that starts meanwhile finishes before this socket goes
            # live: what it replays is held here and filtered at the seam.
            runtime.live.wait(timeout_s)
            if self._core.state is State.OPEN:
                count, last, resync = self._replay(since, timeout_s)
                runtime.live.wait(timeout_s)
        finally:
            self._replaying = False
        if self._core.state is not State.OPEN:  # closed meanwhile: only the close frame goes
            self._held, self._held_bytes = [], 0
            self.recovering = False
            self._release([])
            return
        verdict = recovered_frame(count, last) if resync is None else resync_frame(resync)
        frames = [verdict]
        seam = last or (since if resync is None else None)
        frames += [
            self._envelope(channel, message)
            for channel, message in self._held
            if not (seam and message.position and message.position.not_after(seam))
        ]
        self._held, self._held_bytes = [], 0
        self.recovering = False
        self._release(frames)

    def _replay(
        self, since: Position, timeout_s: float
    ) -> tuple[int, Position | None, Resync | None]:
        """Write the replay page by page straight to the socket (only this greenlet writes while
        holding), so memory holds one page whatever the history size; (count, last, resync)."""
        runtime = self._runtime
        channels = frozenset(self.plan.subscribe)
        if not runtime.broker.wait_subscribed(channels, timeout_s):
            return 0, None, Resync.UNAVAILABLE
        count, last = 0, None
        try:
            replay = runtime.broker.replay(self.plan.facility, since, channels)
            if replay.resync is not None:
                return 0, None, replay.resync
            for page in replay.pages:
                if self._core.state is not State.OPEN:
                    break  # closed meanwhile: nothing may follow the close frame
                self._sock.sendall(b"".join(self._envelope(c, m) for c, m in page))
                count += len(page)
                last = page[-1][1].position
        except BrokerUnavailable as exc:
            logger.warning("replay on %s failed: %s", self.plan.facility, exc)
            return count, last, Resync.UNAVAILABLE
        except HistoryGap:
            return count, last, Resync.EXPIRED
        return count, last, None

    def _envelope(self, channel: str, message: Incoming) -> bytes:
        audience = audience_of(channel, self._runtime.settings.channel_prefix)
        if audience == "presence":  # join/leave events are JSON already
            return encode_message(message.payload)
        return message_frame(message.payload, message.position, audience)

    def _release(self, first: list[bytes]) -> None:
        """Send ``first`` ahead of everything queued while holding, then go live."""
        if not self._holding:
            return  # closed meanwhile: nothing may follow the close frame
        for frame in reversed(first):
            self._queue.push_front(frame)
        self._holding = False
        if self._queue and self._writer is None:
            self._writer = gevent.spawn(self._flush)

    def _read_until_closed(self) -> None:
        core = self._core
        settings = self._runtime.settings
        while core.state is not State.CLOSED:
            timeout = settings.close_timeout_s if core.state is State.CLOSING else None
            with gevent.Timeout(timeout, False):
                data = self._sock.recv(RECV_BYTES)
                if not data:
                    core.receive_eof()
                    return
                self.last_seen = time.monotonic()
                for action in core.receive(data).actions:
                    if isinstance(action, Message):
                        self._on_message(action)
                    elif action and not self._close_sent:  # close() may run while publishing
                        self._send(action)
                continue
            return  # the peer did not answer our close frame in time

    def _on_message(self, message: Message) -> None:
        runtime = self._runtime
        runtime.metrics.messages_in += 1
        heartbeat = runtime.heartbeat_bytes
        if heartbeat is not None and message.is_text and message.payload == heartbeat:
            return
        if not self.plan.publish:
            logger.debug("dropped a message from a socket without publish flags")
            return
        hub = runtime.hub
        own = [c for c in self.plan.publish if c in self.plan.subscribe]
        # Envelope sockets get their echo from the bus, in position order (ids must never go
        # backwards); bare sockets get it at once, as ws4redis did, even before their
        # subscription is confirmed.
        bus_echo = self.plan.echo and self.plan.envelope
        for channel in own:
            hub.expect_own_publish(
                self, channel, message.payload, is_text=message.is_text, echo=bus_echo
            )
        try:
            runtime.broker.publish(
                self.plan.facility, self.plan.publish, message.payload, runtime.settings.expire_s
            )
        except BrokerUnavailable as exc:
            for channel in own:
                hub.cancel_own_publish(self, channel, message.payload)
            logger.warning("message from a socket on %s not published: %s", self.plan.facility, exc)
            return
        if self.plan.echo and not bus_echo and not self._close_sent:
            frame = encode_data(message.payload, message.is_text)
            for _ in own:
                self._send(frame)

    def _finish(self) -> None:
        """Flush what is queued (bounded by the close timeout), send FIN, wait for the peer's
        (bounded by ``LINGER_TIMEOUT_S``), then close the socket.

        Closing while the peer's bytes sit unread (a ping behind the frame that failed the
        connection, say) makes the kernel send an RST, and an RST can destroy what was just
        sent (the close frame, an echo) before the peer or a proxy reads it: hence the
        half-close and the drain, as nginx's lingering close does."""
        writer = self._writer
        if writer is not None:
            writer.join(timeout=self._runtime.settings.close_timeout_s)
            writer.kill(block=False)
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_WR)
            with gevent.Timeout(LINGER_TIMEOUT_S, False):
                while self._sock.recv(RECV_BYTES):
                    pass  # discarded: the connection is closing
        self._sock.close()
