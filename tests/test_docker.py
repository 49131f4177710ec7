"""docker compose on a real engine: the files validate (compose config, the compose-spec schema,
hadolint), the images build, ``up --wait`` brings every service to healthy, and through nginx
a logged-in user's socket receives what Django publishes; a Redis container restart leaves the
socket open and delivering; with ``--scale wsloop=3`` sockets spread over every replica and one
broadcast reaches them all; the documented PostgreSQL backup dumps and restores; ``down -v``
removes everything. Then the kit deploys another project (``tests/projects/shop``: a src/
layout, its own model) as docs/deploy.md says, and an order placed through nginx reaches a
socket once its row is in PostgreSQL."""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from docker_engine import DockerEngine, run

from conftest import REPO
from devstack.stack import StackConfig, free_port
from helpers import (
    doc_blocks,
    http_request,
    login,
    place_an_order_and_hear_it,
    post_form,
    recv,
    replaced,
    wait_until,
    ws_connect,
)

pytestmark = pytest.mark.docker

DOCKERFILES = [
    "Dockerfile",
    "docker/nginx/Dockerfile",
    "docker/redis/Dockerfile",
    "docker/postgres/Dockerfile",
]
DEPLOY_PAGE = REPO / "docs/deploy.md"
SHOP = REPO / "tests/projects/shop"
# What conftest exports for the suite's own stacks, and compose files read.
SUITE_SETTINGS = ("DJANGO_", "WSLOOP_", "REDIS_", "POSTGRES_", "PROJECT_")
REPLICAS = 3


@pytest.fixture(scope="module")
def engine(docker_engine: DockerEngine) -> DockerEngine:
    return docker_engine


class Compose:
    def __init__(
        self, engine: DockerEngine, env_file: Path, project: str, directory: Path = REPO
    ) -> None:
        self.engine, self.env_file, self.project = engine, env_file, project
        self.directory = directory

    @property
    def command(self) -> list[str]:
        """``docker compose`` for this test's project: what the docs' commands say, with the
        test's env file and project name."""
        return [
            "docker",
            "compose",
            "--project-directory",
            str(self.directory),
            "--env-file",
            str(self.env_file),
            "-p",
            self.project,
        ]

    @property
    def env(self) -> dict[str, str]:
        """The engine's environment without this suite's settings: compose takes a variable
        of the shell over the same one in the env file."""
        return {k: v for k, v in self.engine.env.items() if not k.startswith(SUITE_SETTINGS)}

    def __call__(self, *args: str, timeout_s: float = 900) -> str:
        return run([*self.command, *args], self.env, timeout_s)

    def shell(self, block: str, cwd: Path) -> str:
        """A docs block in bash, its ``docker compose`` this test's."""
        script = replaced(block, {"docker compose ": " ".join(self.command) + " "})
        return run(["bash", "-ec", script], self.env, cwd=cwd)

    def up(self) -> None:
        """``up --wait``, then every service healthy and the migrate job done (``--wait``
        returns 0 when a failed job left the services after it merely created)."""
        self("up", "-d", "--wait")
        states = [json.loads(line) for line in self("ps", "-a", "--format", "json").splitlines()]
        done = {"State": "exited", "ExitCode": 0}
        unwell = [
            (state["Service"], state["Status"])
            for state in states
            if state.get("Health") != "healthy" and {k: state.get(k) for k in done} != done
        ]
        assert unwell == [], f"{unwell}\n{self('logs', '--tail', '40')}"

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


def running(compose: Compose, port: int) -> Iterator[tuple[Compose, SimpleNamespace]]:
    """The project built and up until the fixture ends, then down with its volumes."""
    compose("build")
    try:
        compose.up()
        yield compose, SimpleNamespace(config=StackConfig(http_port=port))
    finally:
        compose("down", "-v", "--remove-orphans")


def with_secrets(example: str, port: int) -> str:
    """.env.example as an operator fills it in: every secret replaced, the test's port."""
    return (
        example.replace("change-me-to-a-long-random-string", secrets.token_hex(32))
        .replace("change-me-to-another-long-random-string", secrets.token_hex(24))
        .replace("change-me-to-a-third-long-random-string", secrets.token_hex(24))
        .replace("change-me-demo-password", "wsloop-demo")
        .replace("WSLOOP_HTTP_PORT=8000", f"WSLOOP_HTTP_PORT={port}")
        .replace("127.0.0.1:8000", f"127.0.0.1:{port}")
        # One worker per wsloop container: each container's health report is then all of it.
        .replace("WSLOOP_WS_PROCESSES=2", "WSLOOP_WS_PROCESSES=1")
        .replace("WSLOOP_DJANGO_PROCESSES=4", "WSLOOP_DJANGO_PROCESSES=2")
    )


@pytest.fixture(scope="module")
def compose(engine, tmp_path_factory) -> Iterator[tuple[Compose, SimpleNamespace]]:
    port = free_port()
    env_file = tmp_path_factory.mktemp("compose") / "test.env"
    env_file.write_text(with_secrets((REPO / ".env.example").read_text(), port))
    compose = Compose(engine, env_file, f"wsloop-test-{uuid.uuid4().hex[:6]}")
    yield from running(compose, port)


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


def test_every_service_is_healthy_and_the_stores_are_not_published(compose):
    stack_compose, _ = compose
    lines = stack_compose("ps", "--format", "json").splitlines()
    states = [json.loads(line) for line in lines if line.strip()]
    by_service = {state["Service"]: state for state in states}
    assert set(by_service) == {"postgres", "redis", "django", "wsloop", "nginx"}
    assert all("healthy" in state["Status"] for state in by_service.values()), by_service
    for private in ("postgres", "redis"):
        publishers = by_service[private]["Publishers"] or []
        assert all(not p.get("PublishedPort") for p in publishers), publishers


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


def test_the_documented_backup_dumps_and_restores_the_database(compose, tmp_path):
    stack_compose, stack = compose
    stack_compose.shell(doc_blocks(DEPLOY_PAGE)["compose-backup"], tmp_path)
    dump = (tmp_path / "backup.sql").read_text()
    assert "CREATE TABLE public.auth_user" in dump and "COPY public.auth_user" in dump
    assert login(stack, "bob")  # the users restored, the site serving
    assert all(r["status"] == "ok" for r in stack_compose.health("django"))


@pytest.fixture(scope="module")
def shop(engine, dist, tmp_path_factory) -> Iterator[tuple[Compose, SimpleNamespace]]:
    """tests/projects/shop with the kit copied in and .env written as docs/deploy.md says,
    wsloop's wheel in its wheels/ as a private index would serve it."""
    root = tmp_path_factory.mktemp("shop") / "shop"
    shutil.copytree(SHOP, root)
    (root / "wheels").mkdir()
    shutil.copy(next(dist.glob("wsloop-*.whl")), root / "wheels")
    page = doc_blocks(DEPLOY_PAGE)
    run(
        ["bash", "-ec", replaced(page["compose-kit"], {"path/to/wsloop": str(REPO)})],
        engine.env,
        cwd=root,
    )
    port = free_port()
    env = root / ".env"
    env.write_text(with_secrets(env.read_text(), port) + page["compose-project"])
    compose = Compose(engine, env, f"shop-test-{uuid.uuid4().hex[:6]}", directory=root)
    yield from running(compose, port)


def test_another_project_deployed_by_the_kit_pushes_through_nginx(shop):
    shop_compose, stack = shop
    place_an_order_and_hear_it(stack, "teapot")
    rows = shop_compose(
        "exec",
        "-T",
        "postgres",
        "psql",
        "--username=wsloop",
        "-tAc",
        "SELECT item FROM orders_order",
        "wsloop",
    )
    assert rows.split() == ["teapot"]
    assert http_request(stack, "GET", "/healthz")[0] == 200
