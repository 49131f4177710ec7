"""docker compose on a real engine: the files validate (compose config, the compose-spec schema,
hadolint), the images build, ``up --wait`` brings every service to healthy, and through nginx
a logged-in user's socket receives what Django publishes; a Redis container restart leaves the
socket open and delivering; with ``--scale wsloop=3`` sockets spread over every replica and one
broadcast reaches them all; ``down -v`` removes everything."""

from __future__ import annotations

import contextlib
import json
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from docker_engine import DockerEngine, run

from conftest import REPO
from devstack.stack import StackConfig, free_port
from helpers import http_request, login, post_form, recv, wait_until, ws_connect

pytestmark = pytest.mark.docker

DOCKERFILES = ["Dockerfile", "docker/nginx/Dockerfile", "docker/redis/Dockerfile"]
REPLICAS = 3


@pytest.fixture(scope="module")
def engine(docker_engine: DockerEngine) -> DockerEngine:
    return docker_engine


class Compose:
    def __init__(self, engine: DockerEngine, env_file: Path, project: str) -> None:
        self.engine, self.env_file, self.project = engine, env_file, project

    def __call__(self, *args: str, timeout_s: float = 900) -> str:
        return self.engine.docker(
            "compose",
            "--env-file",
            str(self.env_file),
            "-p",
            self.project,
            *args,
            timeout_s=timeout_s,
        )

    def metrics(self, service: str = "wsloop") -> list[str]:
        """``/metrics/wsloop`` of every replica, read where Prometheus would (port 9000)."""
        script = "import urllib.request as u; print(u.urlopen('http://127.0.0.1:9000/metrics/wsloop').read().decode())"
        return [
            self.engine.docker("exec", container, "python3", "-c", script)
            for container in self("ps", "-q", service).split()
        ]

    def health(self, service: str) -> list[dict[str, object]]:
        """``/healthz/wsloop`` (or Django's ``/healthz``) of every replica of a service."""
        reports = []
        for container in self("ps", "-q", service).split():
            path = "/healthz/wsloop" if service == "wsloop" else "/healthz"
            body = self.engine.docker(
                "exec",
                container,
                "python3",
                "-c",
                f"import urllib.request as u; print(u.urlopen('http://127.0.0.1:9000{path}').read().decode())",
            )
            reports.append(json.loads(body))
        return reports


@pytest.fixture(scope="module")
def compose(engine, tmp_path_factory) -> Iterator[tuple[Compose, SimpleNamespace]]:
    port = free_port()
    env_file = tmp_path_factory.mktemp("compose") / "test.env"
    example = (REPO / ".env.example").read_text()
    env_file.write_text(
        example.replace("change-me-to-a-long-random-string", secrets.token_hex(32))
        .replace("change-me-to-another-long-random-string", secrets.token_hex(24))
        .replace("change-me-demo-password", "wsloop-demo")
        .replace("WSLOOP_HTTP_PORT=8000", f"WSLOOP_HTTP_PORT={port}")
        .replace("127.0.0.1:8000", f"127.0.0.1:{port}")
        # One worker per wsloop container: each container's health report is then all of it.
        .replace("WSLOOP_WS_PROCESSES=2", "WSLOOP_WS_PROCESSES=1")
        .replace("WSLOOP_DJANGO_PROCESSES=4", "WSLOOP_DJANGO_PROCESSES=2")
    )
    compose = Compose(engine, env_file, f"wsloop-test-{uuid.uuid4().hex[:6]}")
    compose("build")
    try:
        compose("up", "-d", "--wait")
        yield compose, SimpleNamespace(config=StackConfig(http_port=port))
    finally:
        compose("down", "-v", "--remove-orphans")


def test_the_files_validate(engine):
    example = REPO / ".env.example"
    engine.docker(
        "compose",
        "--env-file",
        str(example),
        "-f",
        str(REPO / "docker-compose.yml"),
        "config",
        "-q",
    )
    run(
        [
            "check-jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            str(REPO / "docker-compose.yml"),
        ],
        engine.env,
    )
    run(["hadolint", *(str(REPO / name) for name in DOCKERFILES)], engine.env)


def test_every_service_is_healthy_and_redis_is_not_published(compose):
    stack_compose, _ = compose
    lines = stack_compose("ps", "--format", "json").splitlines()
    states = [json.loads(line) for line in lines if line.strip()]
    by_service = {state["Service"]: state for state in states}
    assert set(by_service) == {"redis", "django", "wsloop", "nginx"}
    assert all("healthy" in state["Status"] for state in by_service.values()), by_service
    assert not by_service["redis"]["Publishers"] or all(
        not p.get("PublishedPort") for p in by_service["redis"]["Publishers"]
    )


def room_socket(stack, room: str, session: str):
    return ws_connect(stack, f"chat-{room}?subscribe-broadcast", session=session)


def say(stack, room: str, session: str, text: str) -> None:
    status, body = post_form(stack, f"/chat/{room}/send", session, {"text": text})
    assert status == 200, body


def test_websockets_through_nginx_survive_a_redis_restart(compose):
    stack_compose, stack = compose
    alice = login(stack, "alice")
    room = f"r{uuid.uuid4().hex[:8]}"
    with room_socket(stack, room, alice) as ws:
        wait_until(lambda: stack_compose.health("wsloop")[0]["channels"] >= 1, what="subscribed")
        say(stack, room, alice, "hello from compose")
        assert json.loads(recv(ws))["text"] == "hello from compose"
        assert "wsloop_sockets_open 1.0" in stack_compose.metrics()[0]
        assert http_request(stack, "GET", "/metrics/wsloop")[0] == 403  # not through nginx
        stack_compose("restart", "redis")
        wait_until(
            lambda: all(r["status"] == "ok" for r in stack_compose.health("wsloop")),
            timeout=30,
            what="wsloop back on Redis",
        )
        say(stack, room, alice, "after the restart")
        assert json.loads(recv(ws, timeout=10))["text"] == "after the restart"


def test_scaled_to_three_replicas_a_broadcast_reaches_sockets_on_each(compose):
    stack_compose, stack = compose
    stack_compose("up", "-d", "--wait", "--scale", f"wsloop={REPLICAS}")
    alice = login(stack, "alice")
    room = f"r{uuid.uuid4().hex[:8]}"
    with contextlib.ExitStack() as opened:
        sockets = []
        while len(sockets) < 60:
            sockets.append(opened.enter_context(room_socket(stack, room, alice)))
            if len(sockets) % 10 == 0 and all(
                r["sockets"] > 0 for r in stack_compose.health("wsloop")
            ):
                break
        counts = [r["sockets"] for r in stack_compose.health("wsloop")]
        assert len(counts) == REPLICAS and all(counts), counts
        wait_until(
            lambda: all(r["channels"] >= 1 for r in stack_compose.health("wsloop")),
            what="every replica subscribed",
        )
        say(stack, room, alice, "to every replica")
        assert all(json.loads(recv(ws))["text"] == "to every replica" for ws in sockets)
