"""The support matrix: the whole suite on the current Django LTS and on the newest Django release.

``make test`` runs both sessions (after lint); ``nox -s tests-lts`` or ``nox -s tests-latest``
runs one, and arguments after ``--`` go to pytest (``nox -s tests-lts -- -k runserver``). Each
session has its own virtualenv under ``.nox/`` with the pinned requirements and the Django of its
row; uWSGI is built for that Python, and every stack the suite starts runs in that virtualenv.
"""

from __future__ import annotations

from collections.abc import Callable

import nox

nox.options.error_on_missing_interpreters = True  # a missing Python fails, never skips
nox.options.download_python = "never"

# name -> (Python, Django requirements). Django 6.x needs Python >= 3.12.
MATRIX = {
    "lts": ("3.11", "requirements/base.txt"),  # Django 5.2 LTS, the reference deployment
    "latest": ("3.13", "requirements/django-latest.txt"),  # the newest Django release
}


# The compose and Ansible tests build images and hosts with Debian's Python 3.11 and the pinned
# Django LTS, whatever Python runs pytest: once per `make test` is enough, in the LTS row.
LATEST_ROW_SELECTION = "not docker and not ansible"


def suite(name: str, django_requirements: str) -> Callable[[nox.Session], None]:
    def run(session: nox.Session) -> None:
        session.install("-r", "requirements/test.txt")
        session.install("-r", django_requirements)
        session.install("--no-deps", "-e", ".")
        session.run("python", "-c", "import django, sys; print('Django', django.get_version())")
        narrowing = [] if name == "lts" else ["-m", LATEST_ROW_SELECTION]
        session.run("python", "-m", "pytest", *narrowing, *session.posargs)

    return run


for name, (python, requirements) in MATRIX.items():
    nox.session(name=f"tests-{name}", python=python, venv_backend="venv")(suite(name, requirements))
