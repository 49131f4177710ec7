"""``manage.py runserver`` with websockets: Django's command, wsloop's server class.

Django picks the command of the first app in INSTALLED_APPS that has one: list ``wsloop`` before
``django.contrib.staticfiles`` (system check ``wsloop.W001`` says so otherwise).
"""

import signal
from types import FrameType
from typing import Any

from django.apps import apps

from wsloop.devserver import DevServer, going_away

if apps.is_installed("django.contrib.staticfiles"):
    from django.contrib.staticfiles.management.commands.runserver import (
        Command as RunserverCommand,
    )
else:
    from django.core.management.commands.runserver import (  # type: ignore[assignment]
        Command as RunserverCommand,
    )


class Command(RunserverCommand):
    help = f"{RunserverCommand.help} Websockets under WSLOOP_URL are served in the same process."
    server_cls = DevServer

    def run(self, **options: Any) -> None:
        """Django's, with Ctrl-C saying GOING_AWAY to every socket before anything else (in
        this thread, the main one: the server runs in another)."""
        previous = signal.getsignal(signal.SIGINT)
        interrupt = previous if callable(previous) else signal.default_int_handler

        def interrupted(signum: int, frame: FrameType | None) -> None:
            going_away()
            interrupt(signum, frame)

        signal.signal(signal.SIGINT, interrupted)
        super().run(**options)
