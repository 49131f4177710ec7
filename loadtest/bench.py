"""``python -m loadtest.bench``: measure a running wsloop stack through nginx (or, with
``--peer``, any websocket server).

Runs against a stack that is already up (``python -m devstack run``), never starts or stops one.
Everything is on 127.0.0.1, bounded in sockets (``--sockets``, at most ``MAX_SOCKETS``) and in
time (every wait has a timeout, ``--max-seconds`` bounds the whole run); all sockets are closed at
the end, also after an error or Ctrl-C.

Steps and what each one measures:

1. Server identity: ``GET /healthz/wsloop`` gives the worker pid; the nginx workers are the
   processes holding the HTTP port's listening socket; Redis's pid from ``INFO``.
   Redis connections of the worker (``CLIENT LIST`` names ``wsloop:<pid>...``) at 0 sockets.
2. Warm-up: a few sockets on a separate facility receive a short burst and close, so imports,
   first allocations and the hub's code paths are behind us. Then the baseline ``VmRSS``.
3. Ramp: ``--sockets`` websockets to ``/ws/<facility>?subscribe-broadcast`` from ``--clients``
   processes at ``--ramp`` connections/s in total. Counted: sockets opened, failures by kind,
   connect-to-101 time. Redis connections of the worker are sampled every 0.5 s (by the sampler).
4. Idle: after ``--idle-seconds`` with all sockets open and silent, ``VmRSS`` again:
   KiB per socket = (RSS at N - baseline RSS) / N, for the wsloop worker and the nginx workers.
   The server's own socket count (health JSON) and Redis connections at N are recorded.
5. Fan-out, for each subscriber count S (``--subscribers``, largest first; the idle sockets are
   reused, closing some to go from 10,000 down to 1,000), all S on one facility:
   a) burst: K messages PUBLISHed in one Redis pipeline (K = ``--burst-deliveries`` / S, at least
      ``BURST_MIN_MESSAGES``); deliveries/s = deliveries / (last delivery - first publish);
      lost, duplicate and out-of-order messages counted per socket;
   b) latency: R = ``--latency-rate`` / S messages/s for ``--latency-seconds``, one PUBLISH each
      at its scheduled time, so about ``--latency-rate`` deliveries/s; publish-to-receive latency
      percentiles over every delivery (clock: ``time.time_ns()`` on both sides, same machine).
   CPU used by the wsloop worker, nginx, Redis and the client processes during each phase is
   recorded (``/proc/<pid>/stat``), as a share of one core: 100 % = one core busy.
   ``--slow-consumers`` of the S sockets do not read at all during the fan-out phases (a stalled
   phone, a frozen tab): the S - K others are measured; afterwards the stalled ones read again
   and must get every message or have been closed by the server (never silent loss).
6. Close everything, RSS once more (is memory given back?), write the JSON and the table.

All along, a sampler thread records the whole run every 0.5 s (sockets, deliveries/s, RSS,
Redis memory, CPU of each part) and prints a progress line each second.

``--peer LABEL`` measures another server with the same phases: ``--url-path`` is where its
sockets subscribe, ``--hello``/``--answer`` speak its subscribe and keepalive frames,
``--publish command --publish-command CMD`` (or ``redis --channel``) reaches it; its processes
are ``--server-pid`` (default: what listens on the port). wsloop-only figures (the worker's own
counts, its Redis connections, health probe) are left out.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import signal
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import redis

from . import messages, payload, probes, worker
from .clients import CLOSE_TIMEOUT_S, BenchError, ClientPool
from .observe import (
    CpuMeter,
    HealthProbe,
    PeerServer,
    Sampler,
    Server,
    WsloopServer,
    metrics_change,
    with_cost_per_delivery,
)
from .options import Options, parse_options
from .publishers import (
    ApiPublisher,
    CommandPublisher,
    Publisher,
    PublishError,
    RedisPublisher,
    SocketPublisher,
)
from .render import render
from .stack_django import user_sessions, users_online

BURST_MIN_MESSAGES = 20
BURST_MAX_MESSAGES = 1000
RELEASE_TIMEOUT_S = 30.0  # for the stalled sockets to read their backlog once released
WARMUP_SOCKETS = 20
WARMUP_MESSAGES = 5
SETTLE_S = 1.0
PHASE_TIMEOUT_S = 30.0  # a phase gives up this long after it is armed (+ latency phase length)
# Time series resolution: a burst lasts a few hundred ms, a latency phase several seconds.
BURST_BUCKET_S = 0.02
STEADY_BUCKET_S = 0.5

# The run


def make_server(options: Options) -> Server:
    if options.peer:
        return PeerServer(
            options.base_url,
            options.http_port,
            options.redis_url,
            list(options.server_pids),
            options.peer,
        )
    return WsloopServer(options.base_url, options.http_port, options.redis_url)


def make_publisher(options: Options) -> Publisher:
    if options.publish == "api":
        return ApiPublisher(options.redis_url, options.prefix)
    if options.publish == "socket":
        return SocketPublisher(options.http_host, options.http_port, options.publish_path)
    if options.publish == "command":
        return CommandPublisher(options.publish_command)
    return RedisPublisher(options.redis_url, options.channel_template)


class Bench:
    def __init__(self, options: Options) -> None:
        self.options = options
        self.started = time.monotonic()
        self.warnings: list[str] = []
        self.result: dict[str, Any] = {}
        self.phase_counter = 0
        self.stalled_phases: list[tuple[int, int]] = []  # (phase, messages) while stalled
        self.sampler: Sampler | None = None
        self.cookies: tuple[str, ...] = ()

    def check_time(self, step: str) -> None:
        if time.monotonic() - self.started > self.options.max_seconds:
            raise BenchError(f"--max-seconds ({self.options.max_seconds:g} s) passed at {step}")

    def warn(self, text: str) -> None:
        self.warnings.append(text)
        print(f"warning: {text}", file=sys.stderr, flush=True)

    def log(self, text: str) -> None:
        elapsed = time.monotonic() - self.started
        print(f"[{elapsed:6.1f}s] {text}", file=sys.stderr, flush=True)

    def enter(self, phase: str) -> None:
        """Name what the run is doing now (the sampler tags its samples with it)."""
        if self.sampler is not None:
            self.sampler.enter(phase)

    def run(self) -> dict[str, Any]:
        options = self.options
        self.result = {
            "tool": "loadtest.bench",
            "started_at": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "machine": probes.machine_info(),
            "parameters": {
                k: (str(v) if isinstance(v, Path) else v) for k, v in vars(options).items()
            },
            "warnings": self.warnings,
        }
        pool: ClientPool | None = None
        publisher: Publisher | None = None
        try:
            server = make_server(options)
            self.result["server"] = {
                **server.describe(),
                "channel": options.channel(options.facility),
                "publish": options.publish,
            }
            if isinstance(server, WsloopServer):
                self.check_fresh(server)
            if options.users:
                self.log(f"logging {options.users} users in (sessions in the stack's store)")
                self.cookies = user_sessions(options.redis_url, options.prefix, options.users)
            publisher = make_publisher(options)
            pool = ClientPool(
                options.clients, options.http_host, options.http_port, options.protocol
            )
            self.measure(server, pool, publisher)
        except (BenchError, PublishError, redis.RedisError) as exc:
            self.result["error"] = str(exc)
            self.warn(f"run aborted: {exc}")
        except KeyboardInterrupt:
            self.result["error"] = "interrupted"
            self.warn("interrupted: closing sockets")
        finally:
            if self.sampler is not None and "over_time" not in self.result:
                self.result["over_time"] = self.sampler.samples
                self.result["phases"] = self.sampler.phases
            if publisher is not None:
                publisher.close()
            if pool is not None:
                closed = pool.shutdown()
                self.result["final_close"] = {
                    "closed": sum(r.closed for r in closed),
                    "aborted": sum(r.aborted for r in closed),
                }
        with contextlib.suppress(BenchError, OSError, KeyError, redis.RedisError):
            self.after_close(make_server(options))
        self.result["elapsed_s"] = round(time.monotonic() - self.started, 1)
        return self.result

    def measure(self, server: Server, pool: ClientPool, publisher: Publisher) -> None:
        """Every step, with the sampler running."""
        options = self.options
        redis_at_0 = server.redis_connections()
        self.log(f"{server.name} pids {server.pids}, redis connections at 0 sockets: {redis_at_0}")
        cpu = CpuMeter(server, pool.pids)
        with Sampler(server, pool.progress, pool.pids, self.log) as sampler:
            self.sampler = sampler
            self.warm_up(server, pool, publisher)
            self.measure_idle(server, pool, cpu, sampler, redis_at_0)
            if options.storm_ramp_per_s > 0:
                self.measure_storm(server, pool, cpu)
            self.measure_fanout(server, pool, cpu, publisher)
            self.result["client_status"] = [asdict(s) for s in pool.status()]
        self.result["over_time"] = sampler.samples
        self.result["phases"] = sampler.phases
        closes = Counter[str]()
        for status in self.result["client_status"]:
            closes.update(status["server_closes"])
        self.result["server_closed_sockets"] = dict(closes)
        if closes:
            self.warn(f"the server closed sockets during the run: {dict(closes)}")

    def check_fresh(self, server: WsloopServer) -> None:
        health = server.health()
        self.result["server"]["health_at_start"] = health
        if health["sockets"]:
            self.warn(f"the worker already holds {health['sockets']} sockets at the start")
        if health.get("sockets_opened", 0):
            self.warn(
                f"the worker is not fresh ({health['sockets_opened']} sockets served before): "
                "memory freed by earlier sockets is reused, so KiB per socket reads low; "
                "restart the wsloop pool for a clean figure"
            )

    # steps

    def open_sockets(
        self,
        pool: ClientPool,
        facility: str,
        total: int,
        ramp_per_s: float,
    ) -> dict[str, Any]:
        path = self.options.path(facility)
        return pool.open(path, total, ramp_per_s, cookies=self.cookies)

    def warm_up(self, server: Server, pool: ClientPool, publisher: Publisher) -> None:
        options = self.options
        facility = f"{options.facility}-warmup"
        count = max(WARMUP_SOCKETS, len(pool.clients))
        self.enter("warm-up")
        self.log(f"warm-up: {count} sockets on {facility}, publishing through {options.publish}")
        opened = self.open_sockets(pool, facility, count, options.ramp_per_s)
        if opened["opened"] == 0:
            raise BenchError(f"no websocket could be opened: {opened['failures_by_kind']}")
        self.wait_subscribed(server, facility)
        burst = self.burst(
            server,
            pool,
            publisher,
            facility,
            subscribers=opened["opened"],
            messages=WARMUP_MESSAGES,
            cpu=None,
        )
        closed = pool.ask(
            [messages.CloseCmd(count=worker.MAX_SOCKETS_PER_PROCESS, timeout_s=CLOSE_TIMEOUT_S)]
            * len(pool.clients),
            messages.CloseResult,
            CLOSE_TIMEOUT_S + 10.0,
        )
        publisher.done(facility)
        left = server.wait_sockets(0)
        self.result["warmup"] = {
            "facility": facility,
            "open": opened,
            "burst": {k: burst[k] for k in ("deliveries", "lost", "duplicates", "out_of_order")},
            "closed": sum(r.closed for r in closed),
            "server_sockets_after": left,
        }
        if burst["lost"] or burst["deliveries"] == 0:
            raise BenchError(
                f"warm-up burst on {facility} lost {burst['lost']} of "
                f"{burst['expected_deliveries']} deliveries (wrong --prefix, --channel or "
                "--url-path?)"
            )
        if left:
            self.warn(f"the worker still counts {left} sockets after the warm-up closed")
        time.sleep(SETTLE_S)

    def measure_idle(
        self,
        server: Server,
        pool: ClientPool,
        cpu: CpuMeter,
        sampler: Sampler,
        redis_at_0: list[str],
    ) -> None:
        options = self.options
        rss_0 = server.rss_kib()
        nginx_0 = server.nginx_rss_kib()
        fds_0 = server.open_fds()
        self.enter("ramp")
        self.log(
            f"baseline RSS {rss_0} KiB; ramp: {options.sockets} sockets at {options.ramp_per_s:g}/s"
        )
        self.check_time("ramp")
        cpu.start()
        ramp = self.open_sockets(pool, options.facility, options.sockets, options.ramp_per_s)
        ramp["cpu"] = cpu.stop()
        self.log(f"opened {ramp['opened']}, failures {ramp['failures_by_kind'] or 0}")
        self.enter("idle")
        held = server.wait_sockets(ramp["opened"])
        time.sleep(options.idle_seconds)
        held = server.sockets() or held
        rss_n = server.rss_kib()
        nginx_n = server.nginx_rss_kib()
        redis_at_n = server.redis_connections()
        sampled = [s["redis_connections"] for s in sampler.samples]
        client_open = sum(s.open for s in pool.status())
        per_socket = (rss_n - rss_0) / held if held else math.nan
        nginx_per_socket = (nginx_n - nginx_0) / held if held and server.nginx_pids else math.nan
        self.result["idle"] = {
            "ramp": ramp,
            "client_sockets_open": client_open,
            "server_sockets": held,
            "server_counts_sockets": server.counts_sockets,
            "server_open_fds": {"before": fds_0, "at_n": server.open_fds()},
            "nginx_worker_open_fds": {str(pid): probes.open_fds(pid) for pid in server.nginx_pids},
            "server_rss_kib": {"before": rss_0, "at_n": rss_n, "delta": rss_n - rss_0},
            "server_kib_per_socket": round(per_socket, 2),
            "over_time": sampler.series("ramp"),
            "nginx_rss_kib": {"before": nginx_0, "at_n": nginx_n, "delta": nginx_n - nginx_0},
            "nginx_kib_per_socket": round(nginx_per_socket, 2),
            "users_online": users_online(options.facility) if options.users else None,
            "redis_connections": {
                "at_0": len(redis_at_0),
                "at_n": len(redis_at_n),
                "max_sampled": max([len(redis_at_0), len(redis_at_n), *sampled]),
                "names_at_0": redis_at_0,
                "names_at_n": redis_at_n,
            },
        }
        if held != ramp["opened"]:
            self.warn(f"clients opened {ramp['opened']} sockets, the server counts {held}")
        self.log(
            f"held {held}; RSS {rss_0} -> {rss_n} KiB = {per_socket:.2f} KiB/socket; "
            f"redis connections {len(redis_at_0)} -> {len(redis_at_n)}"
        )

    def wait_subscribed(self, server: Server, facility: str) -> None:
        """A wsloop worker subscribes to a facility's channel with its first socket; wait for
        it on Redis (a peer cannot say: give it a moment)."""
        if not isinstance(server, WsloopServer):
            time.sleep(SETTLE_S)
            return
        channel = self.options.channel(facility)
        deadline = time.monotonic() + 5.0
        while server.numsub(channel) < 1:
            if time.monotonic() > deadline:
                raise BenchError(f"nobody subscribes to {channel} on Redis: wrong --prefix?")
            time.sleep(0.05)

    def reduce_to(
        self, server: Server, pool: ClientPool, publisher: Publisher, subscribers: int
    ) -> int:
        """Close reading sockets until ``subscribers`` are left on the facility (the stalled
        ones included); the server's count afterwards (a publishing socket not included)."""
        reading = subscribers - self.options.slow_consumers
        opened = sum(s.open for s in pool.status())
        if opened > reading:
            self.log(f"closing {opened - reading} sockets to keep {subscribers}")
            pool.close_down_to(reading)
        expected = min(reading, opened) + self.options.slow_consumers
        held = server.wait_sockets(expected + publisher.sockets) - publisher.sockets
        time.sleep(SETTLE_S)
        return held

    def next_phase(self) -> int:
        self.phase_counter += 1
        return self.phase_counter

    def payloads(self, phase: int, first: int, stop: int) -> list[bytes]:
        size = self.options.payload_bytes
        return [payload.encode(phase, seq, time.time_ns(), size) for seq in range(first, stop)]

    def burst(
        self,
        server: Server,
        pool: ClientPool,
        publisher: Publisher,
        facility: str,
        *,
        subscribers: int,
        messages: int,
        cpu: CpuMeter | None,
    ) -> dict[str, Any]:
        """K messages in one batch; deliveries/s = deliveries / (last delivery - first
        publish)."""
        phase = self.next_phase()
        armed = pool.arm(phase, messages, PHASE_TIMEOUT_S)
        if cpu is not None:
            cpu.start()
        with HealthProbe(server) as health_probe:
            first_publish_ns = time.time_ns()
            publisher.publish(facility, self.payloads(phase, 0, messages))
            published_ns = time.time_ns()
            gathered = pool.gather(PHASE_TIMEOUT_S, BURST_BUCKET_S)
        span_ns = gathered["last_ns"] - first_publish_ns
        result = {
            "kind": "burst",
            "phase": phase,
            "subscribers": subscribers,
            "armed_sockets": armed,
            "messages": messages,
            "expected_deliveries": messages * armed,
            "publish_ms": round((published_ns - first_publish_ns) / 1e6, 2),
            "first_publish_to_last_delivery_ms": round(span_ns / 1e6, 2),
            "deliveries_per_s": round(gathered["deliveries"] / (span_ns / 1e9))
            if span_ns > 0
            else None,
            **{k: v for k, v in gathered.items() if k not in ("first_ns", "last_ns")},
            "health_probe_during": health_probe.result(),
        }
        if cpu is not None:
            result["cpu"] = with_cost_per_delivery(cpu.stop(), gathered["deliveries"])
        return result

    def latency(
        self,
        pool: ClientPool,
        publisher: Publisher,
        subscribers: int,
        cpu: CpuMeter,
    ) -> dict[str, Any]:
        """R = rate / (S - K) messages/s for the phase's duration, each published at its
        scheduled time; latency = receive time - publish time, over every delivery."""
        options = self.options
        reading = subscribers - options.slow_consumers
        rate_per_s = options.latency_deliveries_per_s / reading
        messages = max(2, round(rate_per_s * options.latency_seconds))
        phase = self.next_phase()
        armed = pool.arm(phase, messages, options.latency_seconds + PHASE_TIMEOUT_S)
        cpu.start()
        first_publish_ns = time.time_ns()
        start = time.monotonic()
        late_ms = 0.0
        for seq in range(messages):
            due = start + seq / rate_per_s
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                late_ms = max(late_ms, -delay * 1000.0)
            publisher.publish(options.facility, self.payloads(phase, seq, seq + 1))
        gathered = pool.gather(options.latency_seconds + PHASE_TIMEOUT_S, STEADY_BUCKET_S)
        usage = with_cost_per_delivery(cpu.stop(), gathered["deliveries"])
        span_ns = gathered["last_ns"] - first_publish_ns
        return {
            "kind": "latency",
            "phase": phase,
            "subscribers": subscribers,
            "armed_sockets": armed,
            "publish_rate_per_s": round(rate_per_s, 3),
            "messages": messages,
            "expected_deliveries": messages * armed,
            "publisher_max_late_ms": round(late_ms, 2),
            "deliveries_per_s": round(gathered["deliveries"] / (span_ns / 1e9))
            if span_ns > 0
            else None,
            **{k: v for k, v in gathered.items() if k not in ("first_ns", "last_ns")},
            "cpu": usage,
        }

    def measure_fanout(
        self, server: Server, pool: ClientPool, cpu: CpuMeter, publisher: Publisher
    ) -> None:
        options = self.options
        self.wait_subscribed(server, options.facility)
        if options.slow_consumers:
            stalled = pool.stall(options.slow_consumers)
            self.log(f"{stalled} sockets stop reading (slow consumers) for the fan-out phases")
        fanout: list[dict[str, Any]] = []
        self.result["fanout"] = fanout
        for subscribers in options.subscribers:
            self.check_time(f"fan-out to {subscribers}")
            self.enter(f"reduce to {subscribers:,}")
            held = self.reduce_to(server, pool, publisher, subscribers)
            if held != subscribers:
                self.warn(f"fan-out to {subscribers}: the server holds {held} sockets")
            reading = subscribers - options.slow_consumers
            messages = min(
                BURST_MAX_MESSAGES, max(BURST_MIN_MESSAGES, options.burst_deliveries // reading)
            )
            self.enter(f"burst {subscribers:,}")
            self.log(f"burst: {messages} messages to {subscribers} subscribers ({reading} reading)")
            before = server.metrics()
            burst = self.burst(
                server,
                pool,
                publisher,
                options.facility,
                subscribers=subscribers,
                messages=messages,
                cpu=cpu,
            )
            burst["server_metrics"] = metrics_change(before, server.metrics())
            burst["server_sockets"] = held
            self.log(
                f"  {burst['deliveries']} deliveries in "
                f"{burst['first_publish_to_last_delivery_ms']} ms = "
                f"{burst['deliveries_per_s']}/s; lost {burst['lost']}, dup "
                f"{burst['duplicates']}, out of order {burst['out_of_order']}"
            )
            time.sleep(SETTLE_S)
            self.check_time(f"latency at {subscribers}")
            self.enter(f"steady {subscribers:,}")
            self.log(
                f"latency: {options.latency_deliveries_per_s / reading:g} msg/s to "
                f"{subscribers} subscribers for {options.latency_seconds:g} s"
            )
            before = server.metrics()
            steady = self.latency(pool, publisher, subscribers, cpu)
            steady["server_metrics"] = metrics_change(before, server.metrics())
            steady["server_sockets"] = held
            lat = steady["latency"]
            self.log(
                f"  p50 {lat.get('p50_ms')} ms, p99 {lat.get('p99_ms')} ms, max "
                f"{lat.get('max_ms')} ms; lost {steady['lost']}"
            )
            fanout.append({"subscribers": subscribers, "burst": burst, "latency": steady})
            self.stalled_phases += [(p["phase"], p["messages"]) for p in (burst, steady)]
            for phase in (burst, steady):
                if phase["timed_out_clients"]:
                    self.warn(
                        f"{phase['kind']} to {subscribers}: clients {phase['timed_out_clients']} "
                        "timed out waiting for messages"
                    )
        if options.slow_consumers:
            self.release_slow_consumers(pool)
        self.result["after_fanout"] = {
            "server_rss_kib": server.rss_kib(),
            "redis_connections": server.redis_connections(),
        }

    def release_slow_consumers(self, pool: ClientPool) -> None:
        """The stalled sockets read again: each must get everything published while it was
        stalled, or have been closed by the server (the slow-consumer contract)."""
        self.enter("slow consumers drain")
        released = pool.release(self.stalled_phases, RELEASE_TIMEOUT_S)
        self.result["slow_consumers"] = released
        self.log(
            f"slow consumers: {released['complete']} of {released['sockets']} got all "
            f"{released['messages_each']} messages after {released['drain_s']} s, closed by the "
            f"server {released['closed_by_server'] or 0}, lost {released['lost']}"
        )
        if released["lost"] or released["duplicates"]:
            self.warn(
                f"slow consumers lost {released['lost']} and got {released['duplicates']} "
                "duplicate messages on sockets the server kept open"
            )

    def measure_storm(self, server: Server, pool: ClientPool, cpu: CpuMeter) -> None:
        """Every held socket closes and reconnects at once (a deploy, a network blip): how long
        until all are back, connect times, failures, and what the server spent on it."""
        self.check_time("reconnect storm")
        held = sum(s.open for s in pool.status())
        self.enter("storm")
        self.log(f"reconnect storm: {held} sockets close and come back")
        pool.close_down_to(0)
        server.wait_sockets(0)
        before = server.metrics()
        cpu.start()
        reopened = self.open_sockets(
            pool, self.options.facility, held, self.options.storm_ramp_per_s
        )
        usage = cpu.stop()
        storm: dict[str, Any] = {
            "sockets": held,
            "open": reopened,
            "cpu": usage,
            "server_sockets_after": server.wait_sockets(reopened["opened"]),
            "server_metrics": metrics_change(before, server.metrics()),
        }
        handshakes = reopened["opened"] or 1
        storm["server_cpu_us_per_handshake"] = round(usage["cpu_s"]["server"] * 1e6 / handshakes, 1)
        self.result["storm"] = storm
        connect = reopened["connect_ms"]
        self.log(
            f"  {reopened['opened']} of {held} back in {reopened['elapsed_s']} s, connect p50 "
            f"{connect.get('p50_ms')} ms, p99 {connect.get('p99_ms')} ms, "
            f"failures {reopened['failures_by_kind'] or 0}"
        )

    def after_close(self, server: Server) -> None:
        left = server.wait_sockets(0, timeout_s=10.0)
        self.result["after_close"] = {
            "server_sockets": left,
            "server_rss_kib": server.rss_kib(),
            "redis_connections": server.redis_connections(),
        }
        if isinstance(server, WsloopServer):
            self.result["after_close"]["health"] = server.health()
            if server.other_pids_seen:
                self.warn(
                    f"/healthz/wsloop answered from other pids {sorted(server.other_pids_seen)}: "
                    f"more than one wsloop worker; figures are for pid {server.pid} only"
                )


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # like Ctrl-C: close the sockets, write results
    bench = Bench(options)
    result = bench.run()
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    from .html_report import report_page  # noqa: PLC0415 (matplotlib: not in the client processes)

    report = options.out.with_suffix(".html")
    report.write_text(report_page(result))
    print(render(result))
    print(f"\nresults: {options.out}\nreport:  {report}")
    return 1 if result.get("error") else 0


if __name__ == "__main__":
    sys.exit(main())
