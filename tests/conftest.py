"""Test setup: Django configured for the demo project, and the stacks the scenarios run against.

A test that asks for the ``stack`` fixture runs once per deployment (two pools behind nginx,
standalone uWSGI, runserver), unless ``@pytest.mark.deployments(...)`` narrows it. One stack
runs at a time; they share ports, chosen before Django is set up so that ``wsloop.publish`` in
this process talks to the running stack's Redis.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "app")]

from devstack.stack import Deployment, Stack, StackConfig  # noqa: E402

HEARTBEAT = "--heartbeat--"
PREFIX = "wsl"
STACK_ENV = {
    "WSLOOP_PREFIX": PREFIX,
    "WSLOOP_HEARTBEAT": HEARTBEAT,
    "WSLOOP_HEARTBEAT_INTERVAL_S": "1",
    "WSLOOP_SUBPROTOCOLS": "chat.v2,chat.v1",
    "WSLOOP_PRESENCE_TTL_S": "3",  # a killed worker's presence entries expire within seconds
}
STACK_CONFIG = StackConfig.ephemeral(Path(tempfile.mkdtemp(prefix="wsloop-test-")), env=STACK_ENV)

os.environ.update(STACK_ENV)
os.environ.update(
    {
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "DJANGO_DEBUG": "1",
        "REDIS_URL": STACK_CONFIG.redis_url,
        "WSLOOP_DATA_DIR": str(STACK_CONFIG.var_dir),
    }
)

import django  # noqa: E402

django.setup()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every scenario that uses ``stack`` runs against each deployment it is marked for."""
    if "stack" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("deployments")
    # Deployment("two-pools") is Deployment.TWO_POOLS: the stack compares deployments with `is`.
    deployments = tuple(Deployment(name) for name in marker.args) if marker else tuple(Deployment)
    metafunc.parametrize("stack", deployments, indirect=True, scope="session", ids=str)


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    config = dataclasses.replace(STACK_CONFIG, deployment=request.param)
    # Each deployment starts from an empty Redis (the previous one saved its data on exit).
    shutil.rmtree(config.var_dir / "redis", ignore_errors=True)
    with Stack.running(config) as running:
        yield running


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[object]:
    """A Docker engine of the suite's own (tests/docker_engine.py), shared by the compose and
    the Ansible tests, with the local ``debian:bookworm-slim`` base image."""
    from docker_engine import DockerEngine  # noqa: PLC0415 (imports conftest)

    engine = DockerEngine()
    engine.start()
    try:
        engine.ensure_base_image()
        yield engine
    finally:
        engine.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """On a failing stack test, attach the tail of every service's log to the report."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and "stack" in getattr(item, "fixturenames", ()):
        stack_fixture = item.funcargs.get("stack") if hasattr(item, "funcargs") else None
        if isinstance(stack_fixture, Stack):
            for name, tail in stack_fixture.logs():
                report.sections.append((f"{name} log", tail))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI a skipped test is a hidden gap: fail the run instead of passing quietly."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if os.environ.get("CI") and skipped and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if reporter:
            reporter.write_line(f"CI: {len(skipped)} skipped test(s) count as failures", red=True)


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel and the sdist of this checkout, built as a release would build them."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(REPO)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return out
