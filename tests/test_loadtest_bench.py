"""loadtest.bench end to end: against the suite's two-pool stack through each way of publishing,
and against another server (Django Channels on uvicorn) through a publish command.

Correctness of the tool only: every socket opened, every message of every phase counted once and
in order on every reading socket, every stalled socket drained without loss, the JSON and HTML
written. No figure is judged (speed is for ``loadtest/``, not for the suite).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import PREFIX
from devstack.stack import Deployment, free_port
from helpers import wait_until
from loadtest import probes
from loadtest.options import parse_options

REPO = Path(__file__).resolve().parent.parent
SOCKETS = 120
SLOW = 6
SMALL = (
    f"--sockets={SOCKETS}",
    "--subscribers=60,120",
    "--burst-deliveries=2400",
    "--latency-rate=600",
    "--latency-seconds=1",
    "--idle-seconds=0.2",
    f"--slow-consumers={SLOW}",
    "--clients=2",
    "--max-seconds=120",
)
BENCH_TIMEOUT_S = 180


def run_bench(out: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, "-m", "loadtest.bench", *SMALL, f"--out={out}", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=BENCH_TIMEOUT_S,
        env={**os.environ, **(env or {})},
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-4000:]
    assert out.with_suffix(".html").read_text().startswith("<!doctype html>")
    result: dict[str, Any] = json.loads(out.read_text())
    assert "error" not in result
    return result


def assert_counted_everything(result: dict[str, Any]) -> None:
    assert result["idle"]["ramp"]["opened"] == SOCKETS
    assert result["storm"]["open"]["opened"] == SOCKETS
    assert [entry["subscribers"] for entry in result["fanout"]] == [120, 60]
    for entry in result["fanout"]:
        for kind in ("burst", "latency"):
            phase = entry[kind]
            assert phase["armed_sockets"] == entry["subscribers"] - SLOW
            assert phase["deliveries"] == phase["expected_deliveries"] > 0
            assert phase["lost"] == phase["duplicates"] == phase["out_of_order"] == 0
            assert phase["latency"]["count"] == phase["deliveries"]
    slow = result["slow_consumers"]
    phases = [entry[kind] for entry in result["fanout"] for kind in ("burst", "latency")]
    assert slow["messages_each"] == sum(phase["messages"] for phase in phases)
    assert (slow["sockets"], slow["complete"]) == (SLOW, SLOW)
    assert slow["lost"] == slow["duplicates"] == 0
    sampled = {sample["phase"] for sample in result["over_time"]}
    assert {"steady 120", "steady 60"} <= sampled  # the bursts may fall between samples


@pytest.mark.stack
@pytest.mark.deployments(Deployment.TWO_POOLS)
@pytest.mark.parametrize(("way", "users"), [("redis", 0), ("api", 12), ("socket", 0)])
def test_the_bench_counts_every_delivery_whichever_way_it_publishes(stack, tmp_path, way, users):
    result = run_bench(
        tmp_path / f"{way}.json",
        f"--base-url={stack.config.base_url}",
        f"--redis-url={stack.config.redis_url}",
        f"--prefix={PREFIX}",
        f"--publish={way}",
        f"--users={users}",
    )
    # logged in: every user is online on the facility (wsloop's presence read the sessions)
    assert result["idle"]["users_online"] == (users or None)
    assert_counted_everything(result)
    assert result["server"]["name"] == "wsloop"
    assert result["idle"]["server_sockets"] == SOCKETS  # the worker's own count
    assert result["idle"]["redis_connections"]["max_sampled"] <= 2


@pytest.fixture
def channels_peer(stack) -> Iterator[tuple[str, str, int]]:
    """Django Channels (``loadtest.peers.channels_app``) on uvicorn, its layer in the stack's
    Redis (database 1): base URL, Redis URL, server pid."""
    port = free_port()
    redis_url = stack.config.redis_url.rsplit("/", 1)[0] + "/1"
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "loadtest.peers.channels_app:application",
         f"--port={port}", "--log-level=warning"],
        cwd=REPO,
        env={**os.environ, "REDIS_URL": redis_url},
    )  # fmt: skip
    try:
        wait_until(lambda: bool(probes.listening_pids(port)), what="uvicorn listening")
        yield f"http://127.0.0.1:{port}", redis_url, server.pid
    finally:
        server.terminate()
        server.wait(10)


@pytest.mark.stack
@pytest.mark.deployments(Deployment.TWO_POOLS)
def test_the_bench_measures_another_server_through_a_publish_command(channels_peer, tmp_path):
    base_url, redis_url, pid = channels_peer
    result = run_bench(
        tmp_path / "channels.json",
        "--peer=channels",
        f"--base-url={base_url}",
        f"--redis-url={redis_url}",
        "--url-path=/ws/{facility}",
        "--ramp=300",  # channels_redis's default pool refuses faster connects (HTTP 500)
        "--storm-ramp=300",
        "--publish=command",
        f"--publish-command={sys.executable} -m loadtest.peers.channels_publish",
        env={"REDIS_URL": redis_url},
    )
    assert_counted_everything(result)
    assert result["server"]["name"] == "channels" and result["server"]["pids"] == [pid]
    assert result["idle"]["server_counts_sockets"] is False
    assert "<title>channels load test</title>" in (tmp_path / "channels.html").read_text()


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--peer=other", "--publish=api"], "a peer takes redis or command"),
        (["--publish=command"], "go together"),
        (["--answer=ping"], "FRAME=REPLY"),
        (["--sockets=100", "--subscribers=50", "--slow-consumers=50"], "fewer than the smallest"),
    ],
)
def test_options_that_cannot_work_are_refused(args, error, capsys):
    with pytest.raises(SystemExit):
        parse_options(args)
    assert error in capsys.readouterr().err


def test_a_peer_speaks_its_own_subscribe_and_keepalive_frames():
    options = parse_options(
        ["--peer=centrifugo", "--url-path=/connection/websocket", '--hello={"id":1,"connect":{}}',
         "--answer={}={}", "--slow-consumers=0"]
    )  # fmt: skip
    assert options.path("room-1") == "/connection/websocket"
    assert options.protocol.hello == (b'{"id":1,"connect":{}}',)
    assert options.protocol.answers == ((b"{}", b"{}"),)
    wsloop = parse_options(["--prefix=p", "--sockets=1000"])
    assert wsloop.path("f") == "/ws/f?subscribe-broadcast"
    assert wsloop.channel("f") == "p:broadcast:f"
    assert wsloop.slow_consumers == 10  # 1 % of the sockets
