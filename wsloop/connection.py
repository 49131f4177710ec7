"""One websocket on a gevent socket: its start, the reader greenlet, non-blocking writes, closing.

A socket costs one greenlet while idle (the reader, parked in ``recv``), and an envelope socket
one more while it starts. Frames are written immediately with a non-blocking send; only when the
kernel buffer is full does the rest go to the bounded send queue and a writer greenlet start, to
exit again once the queue is empty. Only the reader greenlet closes the socket; everyone else
shuts it down, which wakes the reader.

The start is ``wsloop.recovery.SocketRecovery``'s to decide and this module's to carry out: live
messages are held while a bare socket reads its persisted messages and waits for the live copies
of what they may repeat (before its reader starts), or while an envelope socket waits for the
worker and its subscription and then replays history after its start (``since``, or the
facility's position read before it joined), page by page through the send queue, beside its
reader; then the verdict and the held messages past the seam go out, and the socket is live.
Pings and heartbeats are not held.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections.abc import Sequence

import gevent

from .broker import BrokerUnavailable
from .channels import ChannelPlan
from .envelope import audience_of, message_frame, verdict_frame
from .history import Incoming, Position, Resync
from .history_redis import HistoryGap
from .protocol import CloseCode, Message, ProtocolCore, State, encode_data, encode_message
from .recovery import Page, SocketPhase, SocketRecovery, VerdictKind
from .runtime import Runtime
from .sendqueue import SendQueue

logger = logging.getLogger(__name__)

RECV_BYTES = 64 * 1024  # one read; wsproto keeps partial frames, so any size is correct
WRITE_BATCH_BYTES = 64 * 1024  # queued frames joined per write when a socket has a backlog
# After our FIN, how long a closing socket waits for the peer's before closing anyway (a peer
# that vanished without a FIN holds its greenlet and descriptor this much longer).
LINGER_TIMEOUT_S = 2.0
DELIVERED_RETRY_S = 0.05  # a bare socket's start, asking again while the subscription is down


class WebSocket:
    __slots__ = (
        "_core",
        "_queue",
        "_sock",
        "_starting",
        "_worker",
        "_writer",
        "client_id",
        "echo",
        "envelope",
        "last_seen",
        "origin",
        "plan",
        "recovery",
    )

    def __init__(
        self,
        sock: socket.socket,
        worker: Runtime,
        plan: ChannelPlan,
        since: Position | None = None,
    ) -> None:
        settings = worker.settings
        self._sock = sock
        self._worker = worker
        self._core = ProtocolCore(settings.max_message_bytes)
        self._queue = SendQueue(settings.send_queue_bytes)
        self._writer: gevent.Greenlet | None = None
        self._starting: gevent.Greenlet | None = None  # while the start runs
        self.plan = plan
        self.envelope = plan.envelope
        self.client_id = worker.new_client_id()
        self.origin = self.client_id if plan.publish else None
        # Envelope sockets get their echo from the bus, in history order (ids never go
        # backwards); bare ones answer themselves at once, as ws4redis did.
        self.echo = plan.echo and plan.envelope
        self.recovery = SocketRecovery(
            since,
            envelope=plan.envelope,
            hold_limit_bytes=settings.send_queue_bytes,
            origin=self.origin,
            echo=self.echo,
        )
        self.last_seen = time.monotonic()

    def run(self) -> None:
        """Serve the socket until it closes; runs in its own greenlet. An envelope socket's start
        runs in another beside it, so that a long replay still answers pings and a client that
        leaves during it stops it at the next page; a bare socket's start is short and comes
        first."""
        worker = self._worker
        try:
            if self.envelope and self.recovery.since is None:
                # Read before joining: whatever is published after it reaches this socket,
                # by its replay if before its subscription, live if after.
                self.recovery.start_at(self._current_position())
            worker.attach(self)
            if self.envelope:  # a replay may be long: it runs beside the reader
                self._starting = gevent.spawn(self._start_envelope)
            else:
                self._start_bare()
            self._read_until_closed()
        except OSError as exc:
            logger.debug("socket error: %s", exc)
        finally:
            self.recovery.close()  # a start still in a Redis call sends nothing when it returns
            worker.detach(self)
            self._finish()
            starting = self._starting
            if starting is not None:
                starting.join(timeout=worker.settings.close_timeout_s)
                starting.kill(timeout=worker.settings.close_timeout_s)

    @property
    def is_open(self) -> bool:
        """Not closing nor closed (a closing socket has its own close timeout)."""
        return self._core.state is State.OPEN

    def deliver(self, frame: bytes | memoryview) -> None:
        """Send a frame while the socket is open; never blocks."""
        if self._core.state is State.OPEN:
            self._send(frame)

    def hold(self, channel: str, messages: Sequence[Incoming]) -> None:
        """Hub-facing: keep live messages while the socket starts, bounded like the queue."""
        if self._core.state is State.OPEN and not self.recovery.hold(channel, messages):
            self._drop_slow_consumer()

    def close(self, code: CloseCode, reason: str = "") -> None:
        """Start the closing handshake from the server side. A start in progress stops; what
        is queued (whole frames) goes out first."""
        frame = self._core.close(code, reason)
        if frame:
            self.recovery.close()
            self._send(frame)
            gevent.spawn_later(self._worker.settings.close_timeout_s, self._abort_if_open)

    # the start

    def _start_envelope(self) -> None:
        try:
            self._replay_and_go_live()
        finally:
            self._starting = None  # an idle socket keeps no finished greenlet (about 1.7 KiB)

    def _replay_and_go_live(self) -> None:
        worker, recovery = self._worker, self.recovery
        timeout_s = worker.settings.recovery_timeout_s
        if recovery.since is not None:
            worker.metrics.recoveries += 1
        # A worker replaying after a lost subscription goes first: this socket then reads a
        # history that needs nothing of the worker's replay.
        if not recovery.retry_later:
            worker.wait_live(timeout_s)
            if not worker.broker.wait_subscribed(self.plan.subscribe, timeout_s):
                recovery.history_unreachable()
        start = recovery.replay_from
        if start is not None and not recovery.retry_later:
            self._replay(start)
        if recovery.phase is SocketPhase.CLOSED:
            return  # the client left meanwhile: nothing to read, send or count
        position = self._current_position() if recovery.needs_position else None
        if recovery.retry_later:
            worker.metrics.retries += 1
            self.close(CloseCode.TRY_AGAIN_LATER, "history unavailable, try again")
            return
        self._go_live(position)

    def _start_bare(self) -> None:
        """ws4redis' persisted messages, read once the subscription is confirmed; the socket
        goes live when the live copies of everything published before that read have reached
        it (``SocketRecovery.go_live`` sends each message once). It runs before the reader:
        a few round trips, bounded by the recovery timeout, during which the client's frames
        wait unread, so the persisted message it reads is never one the socket published."""
        worker = self._worker
        timeout_s = worker.settings.recovery_timeout_s
        worker.wait_live(timeout_s)
        worker.broker.wait_subscribed(self.plan.subscribe, timeout_s)
        persisted = self._persisted()
        if persisted and not self._wait_delivered(timeout_s):
            logger.info(
                "persisted messages on %s sent without their live copies confirmed in",
                self.plan.facility,
            )
        self._go_live(persisted=persisted)

    def _wait_delivered(self, timeout_s: float) -> bool:
        """Until the live copies of everything published before now have reached the socket:
        the bus has handed them on, and the worker is live. A subscription lost meanwhile
        loses what was on its way: the next one's answer counts, once the worker's recovery
        has replayed what was lost."""
        worker = self._worker
        deadline = time.monotonic() + timeout_s
        while not worker.broker.wait_delivered(max(0.0, deadline - time.monotonic())):
            if time.monotonic() >= deadline or self.recovery.phase is SocketPhase.CLOSED:
                return False
            gevent.sleep(DELIVERED_RETRY_S)
        return worker.wait_live(max(0.0, deadline - time.monotonic()))

    def _replay(self, start: Position) -> None:
        recovery = self.recovery
        try:
            replay = self._worker.broker.replay(
                self.plan.facility, start, frozenset(self.plan.subscribe)
            )
            if replay.resync is not None:
                recovery.replay_ended(replay.resync)
                return
            recovery.begin_replay()
            for page in replay.pages:
                if recovery.phase is SocketPhase.CLOSED:
                    return
                self._write_page(recovery.replayed(page))
        except BrokerUnavailable as exc:
            logger.warning("replay on %s failed: %s", self.plan.facility, exc)
            recovery.history_unreachable()
        except HistoryGap:
            recovery.replay_ended(Resync.EXPIRED)
        else:
            recovery.replay_ended(None)

    def _write_page(self, page: Page) -> None:
        """Through the send queue, in batches of a quarter of its limit (at most
        ``WRITE_BATCH_BYTES``), waiting while more than one batch is queued: a replaying socket
        holds about two batches of its replay, whatever the history size, and never passes the
        queue's limit by itself."""
        batch_bytes = min(WRITE_BATCH_BYTES, self._queue.limit_bytes // 4)
        batch: list[bytes] = []
        size = 0
        for channel, message in page:
            frame = self._envelope(channel, message)
            batch.append(frame)
            size += len(frame)
            if size >= batch_bytes:
                self._write_replayed(b"".join(batch), batch_bytes)
                batch, size = [], 0
        if batch:
            self._write_replayed(b"".join(batch), batch_bytes)
        self._worker.metrics.messages_out += len(page)

    def _write_replayed(self, data: bytes, backlog_bytes: int) -> None:
        writer = self._writer
        if writer is not None and self._queue.queued_bytes > backlog_bytes:
            writer.join()  # ends when the queue is empty, or with the connection
        self._send(data)

    def _current_position(self) -> Position | None:
        """The facility's position (None without history); None, and the start unreachable,
        when Redis does not answer."""
        try:
            return self._worker.broker.current_position(self.plan.facility)
        except BrokerUnavailable as exc:
            logger.warning("no history position for %s: %s", self.plan.facility, exc)
            self.recovery.history_unreachable()
            return None

    def _persisted(self) -> list[tuple[str, bytes]]:
        """ws4redis' persisted message of each channel that has one."""
        try:
            return self._worker.broker.fetch_persisted(self.plan.subscribe)
        except BrokerUnavailable as exc:
            logger.warning("persisted messages not sent: %s", exc)
            return []

    def _go_live(
        self, position: Position | None = None, persisted: Sequence[tuple[str, bytes]] = ()
    ) -> None:
        """Send what ``SocketRecovery.go_live`` releases, then go live."""
        release = self.recovery.go_live(position, persisted)
        if not self.recovery.live:
            return  # closed meanwhile: nothing may follow the close frame
        frames = [encode_message(payload) for _, payload in release.persisted]
        if release.verdict is not None:
            frames.append(verdict_frame(release.verdict))
            if release.verdict.kind is VerdictKind.RESYNC:
                self._worker.metrics.resyncs += 1
        encode = self._envelope if self.envelope else _bare
        frames += [encode(channel, message) for channel, message in release.held]
        self._worker.metrics.messages_out += len(release.held)
        if frames:
            self._send(b"".join(frames))

    def _envelope(self, channel: str, message: Incoming) -> bytes:
        audience = audience_of(channel, self._worker.settings.channel_prefix)
        if audience == "presence":  # join/leave events are JSON already
            return encode_message(message.payload)
        return message_frame(message.payload, message.position, audience)

    # writing

    def _send(self, frame: bytes | memoryview) -> None:
        """Write now if the socket takes it, else queue it, keeping order; never blocks."""
        if self._writer is not None or self._queue:
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

    def _enqueue(self, frame: bytes | memoryview) -> None:
        if not self._queue.push(frame):
            self._drop_slow_consumer()
            return
        if self._writer is None:
            self._writer = gevent.spawn(self._flush)

    def _flush(self) -> None:
        try:
            while self._queue:
                self._sock.sendall(self._queue.pop_batch(WRITE_BATCH_BYTES))
        except OSError:
            self._abort()
        finally:
            self._writer = None

    def _abort_if_open(self) -> None:
        """The peer did not complete the closing handshake in time."""
        if self._core.state is not State.CLOSED:
            self._abort()

    def _drop_slow_consumer(self) -> None:
        """Close with SLOW_CONSUMER: the queue is dropped, the close frame sent best effort."""
        metrics = self._worker.metrics
        metrics.slow_consumers += 1
        metrics.dropped_frames += len(self._queue) + 1  # + the one that did not fit
        logger.info(
            "closing slow consumer on %s (%d bytes queued)",
            self.plan.facility,
            self._queue.queued_bytes,
        )
        self._queue.clear()
        self.recovery.close()
        frame = self._core.close(CloseCode.SLOW_CONSUMER, "send queue limit reached")
        if frame and self._writer is None:
            with contextlib.suppress(OSError):
                self._sock.send(frame, 0, timeout=0.0)  # type: ignore[call-arg]
        self._abort()

    def _abort(self) -> None:
        """Stop the socket from any greenlet: the reader wakes up and cleans up."""
        self._core.receive_eof()
        self.recovery.close()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)

    # reading

    def _read_until_closed(self) -> None:
        core = self._core
        settings = self._worker.settings
        while core.state is not State.CLOSED:
            timeout = settings.close_timeout_s if core.state is State.CLOSING else None
            with gevent.Timeout(timeout, False):
                data = self._sock.recv(RECV_BYTES)
                if not data:
                    core.receive_eof()
                    return
                self.last_seen = time.monotonic()
                received = core.receive(data)
                # Everything a batch that closes the connection asks for goes out in order, its
                # close frame last (the echo of a message before a frame that fails the
                # connection, say); otherwise only while open (close() may run while a message
                # publishes, and nothing may follow its close frame).
                closing = core.state is not State.OPEN
                if closing:
                    self.recovery.close()  # a start in progress sends nothing more
                for action in received.actions:
                    answer = self._on_message(action) if isinstance(action, Message) else action
                    if answer and (closing or core.state is State.OPEN):
                        self._send(answer)
                continue
            return  # the peer did not answer our close frame in time

    def _on_message(self, message: Message) -> bytes:
        """Publish what the socket sent; return the bare echo to send back (b"" for none)."""
        worker = self._worker
        worker.metrics.messages_in += 1
        heartbeat = worker.heartbeat_bytes
        if heartbeat is not None and message.is_text and message.payload == heartbeat:
            return b""
        plan = self.plan
        if not plan.publish:
            logger.debug("dropped a message from a socket without publish flags")
            return b""
        try:
            worker.broker.publish(
                plan.facility, plan.publish, message.payload, worker.settings.expire_s, self.origin
            )
        except BrokerUnavailable as exc:
            logger.warning("message from a socket on %s not published: %s", plan.facility, exc)
            return b""
        if not plan.echo or self.echo:
            return b""
        heard = sum(channel in plan.subscribe for channel in plan.publish)
        return encode_data(message.payload, message.is_text) * heard  # once per channel heard

    def _finish(self) -> None:
        """Flush what is queued (bounded by the close timeout), send FIN, wait for the peer's
        (bounded by ``LINGER_TIMEOUT_S``), then close the socket.

        Closing while the peer's bytes sit unread (a ping behind the frame that failed the
        connection, say) makes the kernel send an RST, and an RST can destroy what was just
        sent (the close frame, an echo) before the peer or a proxy reads it: hence the
        half-close and the drain, as nginx's lingering close does."""
        writer = self._writer
        if writer is not None:
            writer.join(timeout=self._worker.settings.close_timeout_s)
            writer.kill(block=False)
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_WR)
            with gevent.Timeout(LINGER_TIMEOUT_S, False):
                while self._sock.recv(RECV_BYTES):
                    pass  # discarded: the connection is closing
        self._sock.close()


def _bare(channel: str, message: Incoming) -> bytes:
    return encode_message(message.payload)
