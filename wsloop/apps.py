from __future__ import annotations

from typing import Any

from django.apps import AppConfig, apps
from django.contrib.auth.signals import user_logged_in
from django.core import checks

STATICFILES = "django.contrib.staticfiles"


class WsloopConfig(AppConfig):
    name = "wsloop"
    verbose_name = "wsloop"

    def ready(self) -> None:
        from .identity import remember_identity  # noqa: PLC0415  (needs the app registry)

        user_logged_in.connect(remember_identity, dispatch_uid="wsloop.remember_identity")
        checks.register(check_runserver_order)


def check_runserver_order(**kwargs: Any) -> list[checks.CheckMessage]:
    """wsloop's ``runserver`` only wins over staticfiles' when wsloop is listed first."""
    names = [config.name for config in apps.get_app_configs()]
    if STATICFILES not in names or names.index("wsloop") < names.index(STATICFILES):
        return []
    return [
        checks.Warning(
            "'wsloop' comes after 'django.contrib.staticfiles' in INSTALLED_APPS: "
            "manage.py runserver will not serve websockets.",
            hint="Move 'wsloop' before 'django.contrib.staticfiles'.",
            id="wsloop.W001",
        )
    ]
