"""ansible/site.yml against real systemd hosts (Debian 12 containers booted with /sbin/init on
the suite's Docker engine, reached over ssh).

Lint first (yamllint, ansible-lint, a syntax check of both example inventories). Then the
single-host layout from a clean host: it converges, a second run changes nothing, testinfra
checks units, ports, users and file modes, a logged-in user's socket through nginx receives
what Django publishes, and a new release deploys with no HTTP request dropped while websockets
hear 1001 and come back; Django's data is in PostgreSQL. Then the split layout (web, ws and a
data host with Redis and PostgreSQL).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import testinfra
from docker_engine import run
from playbook import ANSIBLE_DIR, Playbook, ansible_env
from systemd_hosts import Host, SystemdHosts

from conftest import REPO
from devstack.stack import StackConfig
from helpers import (
    close_code_of,
    doc_blocks,
    http_request,
    login,
    place_an_order_and_hear_it,
    post_form,
    recv,
    replaced,
    ws_connect,
)
from tools.release_archive import SHIPPED

# Each module fixture converges clean hosts (packages, a virtualenv, uWSGI built): minutes.
pytestmark = [pytest.mark.ansible, pytest.mark.timeout(900)]

SINGLE_HOST = "push1.example.com"
SPLIT_HOSTS = {"web": "web1.example.com", "ws": "ws1.example.com", "redis": "redis1.example.com"}
# `systemd-analyze security` scores: 0 is fully sandboxed, 10 not at all. Measured on Debian 12
# (docs/testing.md): both pools 1.4, nginx with the role's drop-in 2.8 (Debian's own unit: 9.6).
# These bounds catch a directive that goes missing.
MAX_EXPOSURE = {"wsloop-django": 2.0, "wsloop-ws": 2.0, "nginx": 3.5}
ARTIFACTS = REPO / "var/artifacts"  # the units' full systemd-analyze reports
SHOP = REPO / "tests/projects/shop"


class Deployment(SimpleNamespace):
    playbook: Playbook
    hosts: dict[str, Host]
    first_run_output: str


def deploy(
    engine, tmp_path_factory, layout: str, names: list[str], project: str | None = None
) -> Iterator[Deployment]:
    """The layout converged from clean hosts: the demo, or the project whose group_vars are
    ``project``."""
    workdir = tmp_path_factory.mktemp(f"ansible-{layout}")
    systemd_hosts = SystemdHosts(engine, workdir)
    try:
        started = systemd_hosts.start(names)
        playbook = Playbook(layout, systemd_hosts, workdir)
        playbook.reach(started, private=layout == "split", demo=project is None)
        if project is not None:
            playbook.add_group_vars("project.yml", project)
        first = playbook.converge()
        first.assert_succeeded()
        yield Deployment(playbook=playbook, hosts=started, first_run_output=first.output)
    finally:
        systemd_hosts.stop()


@pytest.fixture(scope="module")
def single(docker_engine, tmp_path_factory) -> Iterator[Deployment]:
    yield from deploy(docker_engine, tmp_path_factory, "single", [SINGLE_HOST])


@pytest.fixture(scope="module")
def shop(docker_engine, dist, tmp_path_factory) -> Iterator[Deployment]:
    """tests/projects/shop, the kit's uwsgi/ copied in and wsloop's wheel in its wheels/, on a
    single host of its own, with the group_vars docs/deploy.md gives."""
    source = tmp_path_factory.mktemp("shop-source") / "shop"
    shutil.copytree(SHOP, source)
    shutil.copytree(REPO / "uwsgi", source / "uwsgi")
    (source / "wheels").mkdir()
    shutil.copy(next(dist.glob("wsloop-*.whl")), source / "wheels")
    block = doc_blocks(REPO / "docs/deploy.md")["ansible-project"]
    project = replaced(block, {"/path/to/shop": str(source)})
    yield from deploy(docker_engine, tmp_path_factory, "single", [SINGLE_HOST], project)


@pytest.fixture(scope="module")
def split(docker_engine, tmp_path_factory) -> Iterator[Deployment]:
    yield from deploy(docker_engine, tmp_path_factory, "split", list(SPLIT_HOSTS.values()))


def infra(deployment: Deployment, name: str):
    host = deployment.hosts[name]
    return testinfra.get_host(
        f"ssh://{host.address}", ssh_config=str(deployment.playbook.hosts.ssh_config)
    )


def site(host: Host) -> SimpleNamespace:
    """What the helpers need to talk to a host's nginx (its port 80 on loopback)."""
    return SimpleNamespace(config=StackConfig(http_port=host.http_port))


def say(stack, room: str, session: str, text: str) -> None:
    status, body = post_form(stack, f"/chat/{room}/send", session, {"text": text})
    assert status == 200, body


def assert_push_reaches_a_socket(stack) -> None:
    alice = login(stack, "alice")
    room = f"r{uuid.uuid4().hex[:8]}"
    with ws_connect(stack, f"chat-{room}?subscribe-broadcast", session=alice) as ws:
        deadline = time.monotonic() + 10
        while json.loads(http_request(stack, "GET", "/healthz/wsloop")[2])["channels"] < 1:
            assert time.monotonic() < deadline, "the socket never subscribed"
            time.sleep(0.1)
        say(stack, room, alice, "pushed through nginx")
        assert json.loads(recv(ws))["text"] == "pushed through nginx"


# -- lint ------------------------------------------------------------------------------------


def test_yamllint():
    config = str(ANSIBLE_DIR / ".yamllint")
    run(["yamllint", "--strict", "-c", config, str(ANSIBLE_DIR)], ansible_env())


def test_ansible_lint():
    run(["sh", "-c", f"cd '{ANSIBLE_DIR}' && ansible-lint --strict"], ansible_env())


@pytest.mark.parametrize("layout", ["single", "split"])
def test_syntax_check(layout):
    inventory = ANSIBLE_DIR / "inventories/example" / layout
    site_yml = ANSIBLE_DIR / "site.yml"
    run(["ansible-playbook", "--syntax-check", "-i", str(inventory), str(site_yml)], ansible_env())


# -- one host --------------------------------------------------------------------------------


def test_a_second_run_changes_nothing(single):
    again = single.playbook.converge()
    again.assert_succeeded()
    assert {host: counts["changed"] for host, counts in again.recap().items()} == {SINGLE_HOST: 0}


def test_units_are_enabled_running_and_sandboxed(single):
    host = infra(single, SINGLE_HOST)
    for unit in ("wsloop-django", "wsloop-ws", "nginx", "redis-server", "postgresql@15-main"):
        service = host.service(unit)
        assert service.is_enabled and service.is_running, unit
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for unit, max_exposure in MAX_EXPOSURE.items():
        report = host.check_output(f"systemd-analyze security --no-pager {unit}")
        (ARTIFACTS / f"systemd-analyze-security-{unit}.txt").write_text(report + "\n")
        score = float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", report).group(1))
        assert score <= max_exposure, report
    assert host.check_output("systemctl show -p LimitNOFILE --value wsloop-ws") == "20000"
    assert set(host.check_output("ps -o user= -C uwsgi").split()) == {"wsloop"}
    # The sandboxed nginx master still switches its workers to www-data.
    assert host.check_output("ps -o user= -C nginx").split().count("www-data") >= 1


def test_listening_ports(single):
    host = infra(single, SINGLE_HOST)
    assert host.socket("tcp://0.0.0.0:80").is_listening
    ports = ("8001", "8002", "6379", "5432")
    for port in ports:
        assert host.socket(f"tcp://127.0.0.1:{port}").is_listening, port
        assert not host.socket(f"tcp://0.0.0.0:{port}").is_listening, port


def test_users_and_file_modes(single):
    host = infra(single, SINGLE_HOST)
    user = host.user("wsloop")
    assert user.exists and user.shell == "/usr/sbin/nologin" and user.uid < 1000
    expected = {
        "/etc/wsloop/wsloop.env": ("root", "root", 0o600),
        "/etc/redis/redis.conf": ("redis", "redis", 0o640),
        "/var/lib/wsloop": ("wsloop", "wsloop", 0o750),
        "/opt/wsloop/releases": ("root", "root", 0o755),
        "/usr/local/bin/wsloop-manage": ("root", "root", 0o755),
    }
    for path, (owner, group, mode) in expected.items():
        file = host.file(path)
        assert (file.user, file.group, file.mode) == (owner, group, mode), path
    current = host.file("/opt/wsloop/current")
    assert current.is_symlink and current.linked_to.startswith("/opt/wsloop/releases/")
    assert host.run("runuser -u wsloop -- touch /opt/wsloop/current/app/x").rc != 0


def test_redis_requires_the_password(single):
    host = infra(single, SINGLE_HOST)
    assert "NOAUTH" in host.check_output("redis-cli ping 2>&1")
    password = single.playbook.redis_password
    assert host.check_output(f"redis-cli --no-auth-warning -a {password} ping") == "PONG"


def test_django_keeps_its_data_in_postgresql(single):
    """The pools' database is PostgreSQL, which refuses the database user without its password
    and lets it in with it; the demo users are rows there."""
    host = infra(single, SINGLE_HOST)
    environment = host.file("/etc/wsloop/wsloop.env").content_string
    assert 'DJANGO_DB_HOST="127.0.0.1"' in environment
    query = "psql -h 127.0.0.1 -U wsloop -d wsloop -tAc 'SELECT username FROM auth_user'"
    assert host.run(f"PGPASSWORD=wrong {query}").rc != 0
    password = re.search(r'DJANGO_DB_PASSWORD="([^"]+)"', environment).group(1)
    users = host.check_output(f"PGPASSWORD={password} {query}").split()
    assert {"alice", "bob", "carol"} <= set(users)


def test_the_documented_backup_dumps_and_restores_the_database(single):
    host = infra(single, SINGLE_HOST)
    backup = doc_blocks(REPO / "docs/deploy.md")["ansible-backup"]
    result = host.run(f"bash -ec {shlex.quote(backup)}")
    assert result.rc == 0, result.stderr
    dump = host.file("/var/backups/wsloop.sql").content_string
    assert "CREATE TABLE public.auth_user" in dump and "COPY public.auth_user" in dump
    assert login(site(single.hosts[SINGLE_HOST]), "bob")  # restored, and the site serving


def test_a_socket_through_nginx_receives_what_django_publishes(single):
    assert_push_reaches_a_socket(site(single.hosts[SINGLE_HOST]))


def test_metrics_answer_on_the_host_only(single):
    host = infra(single, SINGLE_HOST)
    url = "http://127.0.0.1/metrics/wsloop"
    scrape = f"import urllib.request as u; print(u.urlopen('{url}').read().decode())"
    assert "wsloop_sockets_open" in host.check_output(f'python3 -c "{scrape}"')
    # Through the published port the request comes from the Docker bridge: not allowed.
    assert http_request(site(single.hosts[SINGLE_HOST]), "GET", "/metrics/wsloop")[0] == 403


class Requests(threading.Thread):
    """GETs a page back to back until stopped; counts every answer and failure."""

    def __init__(self, stack, path: str) -> None:
        super().__init__(daemon=True)
        self.stack, self.path = stack, path
        self.statuses: list[int] = []
        self.errors: list[str] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.statuses.append(http_request(self.stack, "GET", self.path)[0])
            except OSError as error:
                self.errors.append(repr(error))

    def stop(self) -> None:
        self.stopping.set()
        self.join(30)


def next_release_source(tmp: Path, marker: str) -> Path:
    source = tmp / "next"
    for name in SHIPPED:
        if (REPO / name).is_dir():
            shutil.copytree(
                REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO / name, source / name)
    login_page = source / "app/chat/templates/registration/login.html"
    page = login_page.read_text()
    login_page.write_text(page.replace("<h1>Log in</h1>", f"<h1>Log in</h1><!-- {marker} -->"))
    return source


def main_pids(host) -> dict[str, str]:
    return {
        unit: host.check_output(f"systemctl show -p MainPID --value {unit}")
        for unit in ("wsloop-django", "wsloop-ws")
    }


def test_a_new_release_reloads_gracefully(single, tmp_path):
    host = infra(single, SINGLE_HOST)
    stack = site(single.hosts[SINGLE_HOST])
    marker = f"release-{uuid.uuid4().hex[:8]}"
    source = next_release_source(tmp_path, marker)
    previous = host.file("/opt/wsloop/current").linked_to
    pids = main_pids(host)
    alice = login(stack, "alice")
    requests = Requests(stack, "/accounts/login/")
    with ws_connect(stack, "chat-deploy?subscribe-broadcast", session=alice) as ws:
        requests.start()
        deployed = single.playbook.converge("-e", f"wsloop_release_source_dir={source}")
        time.sleep(1)  # requests keep going while the pools finish reloading
        requests.stop()
        deployed.assert_succeeded()
        assert close_code_of(ws) == 1001
    assert requests.errors == [] and set(requests.statuses) == {200}, (
        requests.errors[:5],
        sorted(set(requests.statuses)),
    )
    assert len(requests.statuses) > 20
    assert marker in http_request(stack, "GET", "/accounts/login/")[2].decode()
    assert host.file("/opt/wsloop/current").linked_to != previous
    assert host.file(previous).is_directory, "the previous release is kept for a rollback"
    assert main_pids(host) == pids, "the pools reloaded in place (same masters), not restarted"
    assert_push_reaches_a_socket(stack)


# -- three hosts -----------------------------------------------------------------------------


def test_split_layout_converges_and_a_second_run_changes_nothing(split):
    again = split.playbook.converge()
    again.assert_succeeded()
    assert {counts["changed"] for counts in again.recap().values()} == {0}, again.recap()


def test_split_layout_listens_on_private_addresses_only(split):
    redis_host, ws_host = split.hosts[SPLIT_HOSTS["redis"]], split.hosts[SPLIT_HOSTS["ws"]]
    redis = infra(split, SPLIT_HOSTS["redis"])
    for port in ("6379", "5432"):
        assert redis.socket(f"tcp://{redis_host.address}:{port}").is_listening, port
        assert not redis.socket(f"tcp://0.0.0.0:{port}").is_listening, port
    assert not redis.service("nginx").is_running and not redis.user("wsloop").exists
    ws = infra(split, SPLIT_HOSTS["ws"])
    assert ws.socket(f"tcp://{ws_host.address}:8002").is_listening
    assert not ws.service("wsloop-django").is_running
    web = infra(split, SPLIT_HOSTS["web"])
    # From the web host, over the private network, without the password: refused.
    ping = f"exec 3<>/dev/tcp/{redis_host.address}/6379; printf 'PING\\r\\n' >&3; timeout 3 cat <&3"
    assert "NOAUTH" in web.run(f'bash -c "{ping}"').stdout


def test_split_layout_pushes_from_the_web_host_to_a_socket_on_the_ws_host(split):
    assert_push_reaches_a_socket(site(split.hosts[SPLIT_HOSTS["web"]]))


def test_another_project_deployed_by_the_roles_pushes_through_nginx(shop):
    """The shop on its own host: an order placed through nginx is pushed to a socket once its
    row is in PostgreSQL; a second run changes nothing."""
    stack = site(shop.hosts[SINGLE_HOST])
    place_an_order_and_hear_it(stack, "kettle")
    host = infra(shop, SINGLE_HOST)
    rows = host.check_output(
        "runuser -u postgres -- psql -tAc 'SELECT item FROM orders_order' wsloop"
    )
    assert rows.split() == ["kettle"]
    assert host.check_output("wsloop-manage showmigrations orders").split()[-1] == "0001_initial"
    again = shop.playbook.converge()
    again.assert_succeeded()
    assert {h: c["changed"] for h, c in again.recap().items()} == {SINGLE_HOST: 0}
