"""Run a whole stack from this checkout, each part a child process with its log prefixed by its
name, in one of the three deployments wsloop supports:

- ``two-pools`` (production): Redis, uWSGI pool 1 (Django), uWSGI pool 2 (wsloop), nginx;
- ``standalone`` (small sites): Redis and one uWSGI serving HTTP, Django and websockets;
- ``runserver`` (development): Redis and ``manage.py runserver``, websockets included.

Whatever the deployment, browsers reach it at ``http_port`` with the same URLs. Used by
``make run`` (foreground, Ctrl-C stops everything) and by the integration tests (one stack at a
time, on free ports, in a temporary directory).
"""

from __future__ import annotations

import contextlib
import enum
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The virtualenv running this (make's .venv, or a nox session's): uWSGI comes from it and both
# pools run in it, so a stack always runs the Python and Django versions under test.
VENV = Path(sys.prefix) if sys.prefix != sys.base_prefix else REPO / ".venv"
STOP_TIMEOUT_S = 15.0
START_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def find_program(name: str) -> str:
    for candidate in (VENV / "bin" / name, Path("/usr/sbin") / name, Path("/usr/bin") / name):
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found: run `make setup` first")
    return found


class Deployment(enum.StrEnum):
    TWO_POOLS = "two-pools"
    STANDALONE = "standalone"
    RUNSERVER = "runserver"


# The service that serves websockets (and reports /healthz/wsloop) in each deployment.
WEBSOCKET_SERVICE = {
    Deployment.TWO_POOLS: "wsloop",
    Deployment.STANDALONE: "standalone",
    Deployment.RUNSERVER: "runserver",
}
# runserver's autoreloader watches every imported module: touching one restarts the server.
RUNSERVER_RELOAD_TRIGGER = REPO / "app/project/urls.py"


@dataclass
class StackConfig:
    """Where everything listens and lives; defaults are those of ``make run``."""

    deployment: Deployment = Deployment.TWO_POOLS
    var_dir: Path = REPO / "var"
    http_port: int = 8000
    django_port: int = 8001
    ws_port: int = 8002
    redis_port: int = 6380
    django_processes: int = 2
    ws_processes: int = 1
    debug: bool = True
    log_to_console: bool = True
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def ephemeral(cls, var_dir: Path, **overrides: object) -> StackConfig:
        ports = {
            "http_port": free_port(),
            "django_port": free_port(),
            "ws_port": free_port(),
            "redis_port": free_port(),
        }
        return cls(var_dir=var_dir, log_to_console=False, **{**ports, **overrides})  # type: ignore[arg-type]

    @property
    def run_dir(self) -> Path:
        return self.var_dir / "run"

    @property
    def log_dir(self) -> Path:
        return self.var_dir / "log" / self.deployment

    @property
    def static_root(self) -> Path:
        return self.var_dir / "static"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.http_port}/ws/"

    def app_env(self) -> dict[str, str]:
        """Environment of both pools and of manage.py."""
        env = dict(os.environ)
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "project.settings",
                "DJANGO_DEBUG": "1" if self.debug else "0",
                "DJANGO_SECRET_KEY": env.get("DJANGO_SECRET_KEY", "devstack-not-secret"),
                "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
                "REDIS_URL": self.redis_url,
                "WSLOOP_DATA_DIR": str(self.var_dir),
                "WSLOOP_DJANGO_SOCKET": f"127.0.0.1:{self.django_port}",
                "WSLOOP_WS_SOCKET": f"127.0.0.1:{self.ws_port}",
                "WSLOOP_DJANGO_PROCESSES": str(self.django_processes),
                "WSLOOP_WS_PROCESSES": str(self.ws_processes),
                "WSLOOP_HTTP_SOCKET": f"127.0.0.1:{self.http_port}",
                "WSLOOP_STANDALONE_PROCESSES": str(self.ws_processes),
                "DJANGO_STATIC_ROOT": str(self.static_root),
                "PYTHONUNBUFFERED": "1",
            }
        )
        if VENV.exists():
            env["VIRTUAL_ENV"] = str(VENV)
            env["PATH"] = f"{VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env.update(self.env)
        return env


class Service:
    """One child process, its output prefixed and sent to the console or a log file."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        config: StackConfig,
        stop_signal: signal.Signals = signal.SIGTERM,
    ) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.config = config
        self.stop_signal = stop_signal
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = config.log_dir / f"{name}.log"

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        threading.Thread(target=self._pump, args=(self.process,), daemon=True).start()

    def _pump(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        with self.log_path.open("ab") as log:
            for line in process.stdout:
                log.write(line)
                log.flush()
                if self.config.log_to_console:
                    text = line.decode("utf-8", "replace").rstrip()
                    sys.stdout.write(f"{self.name:>7} | {text}\n")
                    sys.stdout.flush()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        if self.running:
            assert self.process is not None
            os.killpg(self.process.pid, sig)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        if self.process is None:
            return
        self.signal(self.stop_signal)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.process.wait(timeout_s)
        self.process = None

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


PLACEHOLDER = re.compile(r"\$\{([A-Z_]+)\}")


def render(template: Path, target: Path, values: dict[str, str]) -> None:
    """Fill ``${NAME}`` placeholders (upper case, braced); nginx's ``$vars`` stay as they are."""
    target.write_text(PLACEHOLDER.sub(lambda m: values[m.group(1)], template.read_text()))


def http_get(port: int, path: str, timeout_s: float = 2.0) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


class Stack:
    def __init__(self, config: StackConfig) -> None:
        self.config = config
        config.run_dir.mkdir(parents=True, exist_ok=True)
        config.log_dir.mkdir(parents=True, exist_ok=True)
        (config.var_dir / "redis").mkdir(parents=True, exist_ok=True)
        env = config.app_env()
        self.services: dict[str, Service] = {"redis": self._redis(env)}
        for service in self._app_services(env):
            self.services[service.name] = service

    def _redis(self, env: dict[str, str]) -> Service:
        config = self.config
        argv = [
            find_program("redis-server"),
            "--bind",
            "127.0.0.1",
            "--port",
            str(config.redis_port),
            "--dir",
            str(config.var_dir / "redis"),
            "--save",
            "60 1",
            "--appendonly",
            "no",
            "--maxclients",
            "10000",
        ]
        return Service("redis", argv, env, config)

    def _app_services(self, env: dict[str, str]) -> list[Service]:
        config = self.config
        if config.deployment is Deployment.RUNSERVER:
            # SIGINT, like Ctrl-C: the server closes its sockets with 1001 on the way out.
            argv = [sys.executable, str(REPO / "app/manage.py"), "runserver"]
            argv.append(f"127.0.0.1:{config.http_port}")
            return [Service("runserver", argv, env, config, signal.SIGINT)]
        uwsgi = find_program("uwsgi")
        # The websocket workers' metrics files (wsloop.metrics), summed by every scrape.
        metrics_dir = config.run_dir / "metrics"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        ws_env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
        if config.deployment is Deployment.STANDALONE:
            argv = [uwsgi, "--ini", str(REPO / "uwsgi/standalone.ini")]
            return [Service("standalone", argv, ws_env, config)]
        return [
            Service("django", [uwsgi, "--ini", str(REPO / "uwsgi/django.ini")], env, config),
            Service("wsloop", [uwsgi, "--ini", str(REPO / "uwsgi/wsloop.ini")], ws_env, config),
            Service("nginx", self.nginx_command(), env, config, signal.SIGQUIT),
        ]

    @property
    def ws_service(self) -> str:
        """The name of the service that serves websockets."""
        return WEBSOCKET_SERVICE[self.config.deployment]

    def reload_websockets(self) -> None:
        """Restart what serves websockets gracefully: uWSGI reloads its workers, runserver's
        autoreloader restarts its process. Sockets hear 1001 either way."""
        if self.config.deployment is Deployment.RUNSERVER:
            os.utime(RUNSERVER_RELOAD_TRIGGER)
        else:
            self.services[self.ws_service].signal(signal.SIGHUP)  # uWSGI master: reload workers

    def kill_websockets(self, worker_pid: int) -> None:
        """Kill what serves websockets with SIGKILL (no goodbye to its sockets): a uWSGI
        worker, which its master replaces, or the whole runserver, started again as a
        supervisor would."""
        if self.config.deployment is Deployment.RUNSERVER:
            service = self.services[self.ws_service]
            service.signal(signal.SIGKILL)
            service.stop()
            service.start()
        else:
            os.kill(worker_pid, signal.SIGKILL)

    @classmethod
    @contextlib.contextmanager
    def running(cls, config: StackConfig) -> Iterator[Stack]:
        """A started stack, stopped on exit even if starting failed half-way."""
        stack = cls(config)
        try:
            stack.start()
            yield stack
        finally:
            stack.stop()

    def nginx_command(self) -> list[str]:
        run_dir = self.config.run_dir
        return [
            find_program("nginx"),
            "-p",
            str(run_dir),
            "-c",
            str(run_dir / "nginx.conf"),
            "-e",
            "stderr",
        ]

    def manage(self, *args: str) -> str:
        """Run a manage.py command with the stack's environment; its output, or RuntimeError."""
        result = subprocess.run(
            [sys.executable, str(REPO / "app/manage.py"), *args],
            env=self.config.app_env(),
            cwd=REPO / "app",
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"manage.py {' '.join(args)} failed:\n{result.stdout}{result.stderr}"
            )
        return result.stdout

    def prepare(self) -> None:
        """Render the nginx configuration, migrate, collect static files, demo users."""
        config = self.config
        values = {
            "RUN_DIR": str(config.run_dir),
            "CONF_DIR": str(REPO / "nginx"),
            "WORKER_PROCESSES": "4",
            "WORKER_USER": "user root;" if os.geteuid() == 0 else "",
            "ACCESS_LOG": "off" if not config.log_to_console else "/dev/stdout",
            "LISTEN": f"127.0.0.1:{config.http_port}",
            "DJANGO_UPSTREAM": f"127.0.0.1:{config.django_port}",
            "WSLOOP_UPSTREAM": f"127.0.0.1:{config.ws_port}",
            "STATIC_ROOT": str(config.static_root),
        }
        if config.deployment is Deployment.TWO_POOLS:
            render(REPO / "nginx/nginx.conf", config.run_dir / "nginx.conf", values)
            render(REPO / "nginx/wsloop.conf", config.run_dir / "wsloop.conf", values)
            subprocess.run([*self.nginx_command(), "-t", "-q"], check=True)
        self.manage("migrate", "--noinput")
        self.manage("collectstatic", "--noinput", "--clear")
        if config.debug:
            self.manage("demo_users")

    def start(self) -> None:
        self.prepare()
        self.start_service("redis")
        self.wait_for("redis", self.redis_ready)
        for name in self.services:
            if name != "redis":
                self.start_service(name)
        self.wait_for_app()

    def wait_for_app(self) -> None:
        """Until Django and the websocket loop both answer their health checks."""
        django = "django" if self.config.deployment is Deployment.TWO_POOLS else self.ws_service
        self.wait_for(django, lambda: self.healthy("/healthz"))
        self.wait_for(self.ws_service, lambda: self.healthy("/healthz/wsloop"))

    def start_service(self, name: str) -> None:
        self.services[name].start()

    def stop_service(self, name: str) -> None:
        self.services[name].stop()

    def stop(self) -> None:
        for service in reversed(self.services.values()):
            service.stop()

    def redis_ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.config.redis_port), 1) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def healthy(self, path: str) -> bool:
        try:
            status, _ = http_get(self.config.http_port, path)
        except OSError:
            return False
        return status == 200

    def wait_for(
        self, name: str, check: Callable[[], bool], timeout_s: float = START_TIMEOUT_S
    ) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if check():
                return
            for service in self.services.values():
                if service.process is not None and not service.running:
                    raise RuntimeError(f"{service.name} exited:\n{service.log_tail()}")
            time.sleep(0.1)
        raise RuntimeError(
            f"{name} not healthy after {timeout_s}s:\n" + self.services[name].log_tail()
        )

    def logs(self) -> Iterator[tuple[str, str]]:
        for name, service in self.services.items():
            yield name, service.log_tail()
