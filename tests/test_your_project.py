"""docs/your-project.md, run as written: the wheel built from this checkout installed into a
fresh virtualenv, a project made by ``django-admin startproject`` (not the demo) set up with the
page's settings, and served the page's three ways (runserver, one uWSGI, two pools behind
nginx), each time with a websocket client that receives what ``manage.py wspublish`` and
``wsloop.publish`` send.

The page's blocks run in bash with the virtualenv activated, as in the reader's terminal. Only
what must differ on a test machine is replaced, and each replaced text must be in the block (a
changed page fails here): the ports, and nginx's system paths, for an nginx of the test's own."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from websockets.exceptions import InvalidHandshake
from websockets.sync.client import ClientConnection, connect

from conftest import REPO
from devstack.stack import find_program, free_port
from helpers import doc_blocks, replaced

pytestmark = pytest.mark.stack

PAGE = REPO / "docs/your-project.md"
# This checkout's settings, not the reader's: the page's commands run without them.
OURS = ("DJANGO", "WSLOOP", "VIRTUAL_ENV", "PYTHONPATH", "REDIS_URL", "PIP_")
STARTUP_TIMEOUT_S = 60.0
RECEIVE_TIMEOUT_S = 10.0


def blocks() -> dict[str, str]:
    return doc_blocks(PAGE)


@dataclass
class Project:
    """The reader's directory: the virtualenv in it, the project in ``mysite/``."""

    home: Path
    env: dict[str, str]

    @property
    def root(self) -> Path:
        return self.home / "mysite"

    def script(self, block: str) -> list[str]:
        activate = self.home / ".venv/bin/activate"
        return ["bash", "-ec", f". {activate}\n{block}"]

    def run(self, block: str) -> str:
        result = subprocess.run(
            self.script(block),
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    @contextlib.contextmanager
    def serving(self, block: str, name: str) -> Iterator[None]:
        """A block that runs a server, in the background until the ``with`` ends; its output
        is attached to a failure."""
        log = self.home / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                self.script(block),
                cwd=self.root,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            yield
        except BaseException:
            print(f"--- {name} ---\n{log.read_text(errors='replace')[-6000:]}")
            raise
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    data = tmp_path_factory.mktemp("redis")
    server = subprocess.Popen(
        [
            *(find_program("redis-server"), "--port", str(port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--dir", str(data)),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def project(
    dist: Path, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Project]:
    """Install and settings, as the page says. pip finds wsloop in the freshly built
    distributions, wsloop's dependencies pinned as in the environment running this test (the
    Django of this matrix row), Celery as requirements/task-queue.txt pins it."""
    home = tmp_path_factory.mktemp("reader")
    constraints = home / "constraints.txt"
    constraints.write_text(runtime_pins() + (REPO / "requirements/task-queue.txt").read_text())
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(OURS)},
        "PIP_FIND_LINKS": str(dist),
        "PIP_CONSTRAINT": str(constraints),
        "REDIS_URL": redis_url,
    }
    reader = Project(home, env)
    page = blocks()
    install = subprocess.run(
        ["bash", "-ec", page["install"]],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    settings = reader.root / "mysite/settings.py"
    settings.write_text(settings.read_text() + "\n" + page["settings"])
    yield reader


@pytest.fixture(autouse=True)
def empty_redis(redis_url: str) -> None:
    """Each way starts from an empty Redis: a message the previous one published is kept (the
    channel's persisted message) and would reach the next one's socket first."""
    redis.Redis.from_url(redis_url).flushall()


def runtime_pins() -> str:
    """This environment's versions of what requirements/base.txt pins."""
    names = {
        line.split("==")[0].lower()
        for line in (REPO / "requirements/base.txt").read_text().splitlines()
        if "==" in line
    }
    frozen = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--exclude-editable"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    return "".join(f"{line}\n" for line in frozen if line.split("==")[0].lower() in names)


def websocket(port: int, path: str) -> ClientConnection:
    """A client of the served socket, once the server answers; returned once its ping has been
    answered (the socket is served)."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        try:
            ws = connect(
                f"ws://127.0.0.1:{port}/ws/{path}", open_timeout=5, max_queue=None, legacy=True
            )
            break
        except (OSError, InvalidHandshake, TimeoutError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    ws.ping().wait(RECEIVE_TIMEOUT_S)
    return ws


def receives_both_publishes(reader: Project, port: int) -> None:
    page = blocks()
    with websocket(port, "chat?subscribe-broadcast") as ws:
        reader.run(page["publish"])
        assert ws.recv(RECEIVE_TIMEOUT_S) == "hello from the shell"
        reader.run(f"python manage.py shell -c {quoted(page['publish-python'])}")
        assert ws.recv(RECEIVE_TIMEOUT_S) == "hello from Python"


def quoted(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def http_get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_runserver(project):
    port = free_port()
    block = replaced(blocks()["runserver"], {"127.0.0.1:8000": f"127.0.0.1:{port}"})
    with project.serving(block, "runserver"):
        receives_both_publishes(project, port)


def test_a_celery_worker_publishes(project):
    page = blocks()
    project.run(page["celery-install"])
    settings = project.root / "mysite/settings.py"
    settings.write_text(settings.read_text() + "\n" + page["celery-settings"])
    (project.root / "mysite/celery.py").write_text(page["celery-app"])
    (project.root / "mysite/tasks.py").write_text(page["celery-tasks"])
    (project.root / "mysite/__init__.py").write_text(page["celery-init"])
    port = free_port()
    server = replaced(page["runserver"], {"127.0.0.1:8000": f"127.0.0.1:{port}"})
    with (
        project.serving(server, "runserver"),
        project.serving(page["celery-worker"], "celery"),
        websocket(port, "reports?subscribe-broadcast") as ws,
    ):
        project.run(f"python manage.py shell -c {quoted(page['celery-call'])}")
        assert ws.recv(STARTUP_TIMEOUT_S) == "report 7 is ready"


def test_one_uwsgi(project):
    port = free_port()
    block = replaced(blocks()["standalone"], {"127.0.0.1:8000": f"127.0.0.1:{port}"})
    (project.root / "standalone.ini").write_bytes((REPO / "uwsgi/standalone.ini").read_bytes())
    with project.serving(block, "standalone"):
        receives_both_publishes(project, port)
        status, body = http_get(port, "/static/wsloop/wsloop.js")
        assert status == 200 and b"WSLoop" in body


def test_two_pools_behind_nginx(project, tmp_path):
    page = blocks()
    http, django, websockets = free_port(), free_port(), free_port()
    for name in ("uwsgi/django.ini", "uwsgi/wsloop.ini", "nginx/wsloop.conf"):
        (project.root / Path(name).name).write_bytes((REPO / name).read_bytes())
    project.run("python manage.py collectstatic --noinput")
    ports = {"127.0.0.1:8001": f"127.0.0.1:{django}", "127.0.0.1:8002": f"127.0.0.1:{websockets}"}
    django_pool = replaced(page["django-pool"], {"127.0.0.1:8001": f"127.0.0.1:{django}"})
    websocket_pool = replaced(page["websocket-pool"], {"127.0.0.1:8002": f"127.0.0.1:{websockets}"})
    main = tmp_path / "nginx.conf"
    (tmp_path / "conf.d").mkdir()
    main.write_text(
        NGINX_MAIN.format(prefix=tmp_path, user="user root;" if os.geteuid() == 0 else "")
    )
    nginx = f"{find_program('nginx')} -p {tmp_path} -c {main}"
    configure = replaced(
        page["nginx"],
        {
            **ports,
            "LISTEN=80 ": f"LISTEN=127.0.0.1:{http} ",
            "/etc/nginx/conf.d/": f"{tmp_path}/conf.d/",
            "nginx -t && nginx -s reload": f"{nginx} -t",
        },
    )
    with project.serving(django_pool, "django-pool"), project.serving(websocket_pool, "ws-pool"):
        project.run(configure)
        with project.serving(f"exec {nginx}", "nginx"):
            receives_both_publishes(project, http)
            status, body = http_get(http, "/static/wsloop/wsloop.js")
            assert status == 200 and b"WSLoop" in body
            status, _ = http_get(http, "/admin/login/")
            assert status == 200


NGINX_MAIN = """{user}
pid {prefix}/nginx.pid;
error_log stderr warn;
daemon off;
events {{ worker_connections 512; }}
http {{
    include /etc/nginx/mime.types;
    access_log off;
    include {prefix}/conf.d/*.conf;
}}
"""
