"""``manage.py runserver`` with websockets: Django's command, wsloop's server class.

Django picks the command of the first app in INSTALLED_APPS that has one: list ``wsloop`` before
``django.contrib.staticfiles`` (system check ``wsloop.W001`` says so otherwise).
"""

from django.apps import apps

from wsloop.devserver import DevServer

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
