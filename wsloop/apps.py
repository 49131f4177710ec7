from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.contrib.auth.signals import user_logged_in
from django.core import checks
from django.core.management import get_commands


class WsloopConfig(AppConfig):
    name = "wsloop"
    verbose_name = "wsloop"

    def ready(self) -> None:
        from .identity import remember_identity  # noqa: PLC0415  (needs the app registry)

        user_logged_in.connect(remember_identity, dispatch_uid="wsloop.remember_identity")
        checks.register(check_runserver_order)


def check_runserver_order(**kwargs: Any) -> list[checks.CheckMessage]:
    """``manage.py runserver`` serves websockets only when it is wsloop's: Django takes the
    command of the first app in INSTALLED_APPS that has one (silence wsloop.W001 when another
    app's runserver is wanted)."""
    provider = get_commands().get("runserver")
    if provider in (None, "wsloop"):
        return []
    return [
        checks.Warning(
            f"manage.py runserver comes from {provider!r}, not from wsloop: it will not serve "
            "websockets.",
            hint=f"List 'wsloop' before {provider!r} in INSTALLED_APPS.",
            id="wsloop.W001",
        )
    ]
