"""What `pip install wsloop` gives a user: the wheel and sdist built from this checkout as a
release would be, checked as PyPI would check them, then installed into a fresh virtualenv with
nothing else and imported there, away from this checkout."""

from __future__ import annotations

import ast
import email
import importlib.metadata
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "wsloop"
# Imports whose distribution is not found by importlib.metadata in this venv under that name.
OPTIONAL = {"uwsgi": "uWSGI"}  # provided by the uWSGI server, the "uwsgi" extra
NOT_IMPORTED = {"hiredis"}  # redis-py's parser, used without being imported


def the(dist: Path, pattern: str) -> Path:
    (found,) = dist.glob(pattern)
    return found


def wheel_metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return email.message_from_bytes(archive.read(name))


def test_the_distributions_pass_twine_check(dist):
    result = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, dist.iterdir())],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_wheel_holds_the_package_and_nothing_else(dist):
    wheel = the(dist, "wsloop-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    shipped = {n for n in names if not n.startswith(f"wsloop-{wheel_version(wheel)}.dist-info/")}
    source = {
        path.relative_to(REPO).as_posix()
        for path in PACKAGE.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert shipped == source
    assert "wsloop/py.typed" in shipped
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)


def wheel_version(wheel: Path) -> str:
    return wheel.name.split("-")[1]


def test_the_sdist_holds_the_package_its_license_and_no_tests(dist):
    sdist = the(dist, "wsloop-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = [name.split("/", 1)[1] for name in archive.getnames() if "/" in name]
    top = {name.split("/")[0] for name in names}
    assert top <= {
        "wsloop",
        "wsloop.egg-info",
        "LICENSE",
        "README.md",
        "CHANGELOG.md",
        "pyproject.toml",
        "MANIFEST.in",
        "PKG-INFO",
        "setup.cfg",
    }
    assert {"wsloop", "LICENSE", "pyproject.toml"} <= top


def imported_distributions() -> set[str]:
    """The distributions of every third-party module wsloop imports (stdlib and itself left
    out), as importlib.metadata names them."""
    modules: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    modules -= set(sys.stdlib_module_names) | {"wsloop", "__future__"}
    by_module = importlib.metadata.packages_distributions()
    names = set()
    for module in modules:
        if module in OPTIONAL:
            names.add(OPTIONAL[module])
            continue
        assert module in by_module, f"{module} is imported but installed by no distribution"
        names.update(by_module[module])
    return {canonical(name) for name in names}


def canonical(name: str) -> str:
    return name.lower().replace("_", "-")


def requirement_name(requirement: str) -> str:
    for stop in "<>=!~ ;[":
        requirement = requirement.split(stop, maxsplit=1)[0]
    return canonical(requirement)


def test_every_import_is_a_declared_dependency(dist):
    metadata = wheel_metadata(the(dist, "wsloop-*.whl"))
    required, extras = set(), set()
    for requirement in metadata.get_all("Requires-Dist", []):
        (extras if "extra ==" in requirement else required).add(requirement_name(requirement))
    imported = imported_distributions()
    assert imported - required - extras == set(), "imported, not declared"
    assert required - imported == set(NOT_IMPORTED), "declared, never imported"
    assert extras == {canonical(name) for name in OPTIONAL.values()}


def test_the_wheel_installed_alone_in_a_fresh_venv_imports_every_module(dist, tmp_path):
    """The wheel with its declared dependencies only (pinned as the deployment pins them), no
    test tools, no uWSGI, run from a directory that is not this checkout."""
    venv = tmp_path / "venv"
    # Nothing of this checkout's environment: a PYTHONPATH would make pip and Python find it.
    alone = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    wheel = the(dist, "wsloop-*.whl")
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "-c", str(REPO / "requirements/base.txt"), wheel],
        env=alone,
        check=True,
        timeout=600,
    )
    installed = subprocess.run(
        [python, "-m", "pip", "list", "--format=freeze"],
        env=alone,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    names = {requirement_name(line) for line in installed.splitlines()}
    assert "wsloop" in names
    assert not names & {"uwsgi", "pytest", "websockets"}
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    result = subprocess.run(
        [python, str(probe)],
        check=False,
        cwd=tmp_path,
        env=alone,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split() == ["ok", str(venv)]


PROBE = """
import importlib
import importlib.metadata
import pkgutil
import sys

import django
from django.conf import settings

settings.configure(
    SECRET_KEY="probe",
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth",
                    "django.contrib.sessions", "wsloop"],
)
django.setup()
import wsloop

assert importlib.metadata.version("wsloop") == wsloop.__version__
uwsgi_only = {"wsloop.uwsgi_adapter", "wsloop.standalone"}  # uWSGI's entry points
for module in pkgutil.walk_packages(wsloop.__path__, "wsloop."):
    try:
        importlib.import_module(module.name)
    except ModuleNotFoundError as error:  # the uwsgi module exists only inside uWSGI
        assert module.name in uwsgi_only and error.name == "uwsgi", (module.name, error)
assert wsloop.__file__.startswith(sys.prefix), wsloop.__file__
print("ok", sys.prefix)
"""
