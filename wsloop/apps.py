from django.apps import AppConfig
from django.contrib.auth.signals import user_logged_in


class WsloopConfig(AppConfig):
    name = "wsloop"
    verbose_name = "wsloop"

    def ready(self) -> None:
        from .identity import remember_identity  # noqa: PLC0415  (needs the app registry)

        user_logged_in.connect(remember_identity, dispatch_uid="wsloop.remember_identity")
