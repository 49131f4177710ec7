"""Django in the load generator's own process, configured as the stack's Django is (the demo
project's settings on the stack's Redis): to log users in the way Django's login does, to
publish through wsloop's Python API, and to read wsloop's presence. Only the tools and options
that need it import Django (the client processes never do)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

APP_DIR = Path(__file__).resolve().parent.parent / "app"
# Usernames of the load test's users: "lt0", "lt1", ... (the demo's own users are words).
USERNAME_PREFIX = "lt"


def use_stack_settings(redis_url: str, prefix: str) -> None:
    """Set up Django here with the demo project's settings on the stack's Redis (its sessions,
    its history policy), as the stack's own Django processes have them."""
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "project.settings",
            "DJANGO_DEBUG": "1",
            "REDIS_URL": redis_url,
            "WSLOOP_PREFIX": prefix,
        }
    )
    if str(APP_DIR) not in sys.path:
        sys.path.insert(0, str(APP_DIR))
    import django  # noqa: PLC0415 (only the tools that need Django load it)

    django.setup()


def user_sessions(redis_url: str, prefix: str, users: int) -> tuple[str, ...]:
    """A ``sessionid`` cookie per user ``lt<n>``, as Django's login leaves it in a cache
    session (what wsloop's identity reads)."""
    use_stack_settings(redis_url, prefix)
    from django.contrib.auth import SESSION_KEY  # noqa: PLC0415
    from django.contrib.sessions.backends.cache import SessionStore  # noqa: PLC0415

    from wsloop.identity import USERNAME_KEY  # noqa: PLC0415

    cookies = []
    for number in range(users):
        session = SessionStore()
        session.create()
        session[SESSION_KEY], session[USERNAME_KEY] = str(number), f"{USERNAME_PREFIX}{number}"
        session.save()
        cookies.append(f"sessionid={session.session_key}")
    return tuple(cookies)


def users_online(facility: str) -> int:
    """The load test's users with a socket open on ``facility`` (wsloop's presence)."""
    import wsloop  # noqa: PLC0415 (after use_stack_settings)

    return sum(1 for name in wsloop.presence(facility) if name.startswith(USERNAME_PREFIX))
