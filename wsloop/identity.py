"""Who a websocket belongs to, from the Django session, without a database query.

At login (``user_logged_in``) the username and group names are stored in the session; the
websocket process reads them back through ``SESSION_ENGINE``. Trade-off: a change of a user's
groups reaches their sockets at their next login, and a session invalidated by a password change
elsewhere stays usable for websockets until Django flushes it on that session's next request.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.backends.base import SessionBase
from django.http import HttpRequest

from .channels import Identity

USERNAME_KEY = "wsloop:username"
GROUPS_KEY = "wsloop:memberof"
WS4REDIS_GROUPS_KEY = "ws4redis:memberof"  # read too, so ws4redis sessions keep their groups


def remember_identity(sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
    """``user_logged_in`` receiver: keep what websockets need in the session."""
    session = getattr(request, "session", None)
    if session is None:
        return
    session[USERNAME_KEY] = user.get_username()
    session[GROUPS_KEY] = sorted(user.groups.values_list("name", flat=True))


class SessionUser:
    """The user of a websocket as the session knows it (not a model instance)."""

    def __init__(self, username: str | None, groups: frozenset[str]) -> None:
        self.username = username
        self.groups = groups

    @property
    def is_authenticated(self) -> bool:
        return self.username is not None

    @property
    def is_anonymous(self) -> bool:
        return self.username is None

    def get_username(self) -> str:
        return self.username or ""

    def __repr__(self) -> str:
        return f"<SessionUser {self.username or 'anonymous'}>"


def load_session(request: HttpRequest) -> SessionBase | None:
    """The request's session, loaded; None without a cookie or for an unknown or forged key."""
    session_key = request.COOKIES.get(settings.SESSION_COOKIE_NAME)
    if not session_key:
        return None
    engine = import_module(settings.SESSION_ENGINE)
    session: SessionBase = engine.SessionStore(session_key)
    session.keys()  # loads once; backends reset session_key to None for an unknown key
    return session if session.session_key is not None else None


def user_from_session(session: SessionBase | None) -> SessionUser:
    if session is None or SESSION_KEY not in session or USERNAME_KEY not in session:
        return SessionUser(None, frozenset())
    groups = session.get(GROUPS_KEY, session.get(WS4REDIS_GROUPS_KEY, ()))
    return SessionUser(str(session[USERNAME_KEY]), frozenset(str(g) for g in groups))


def process_request(request: HttpRequest) -> None:
    """The default process-request hook: attach ``session`` and ``user`` to the request."""
    session = load_session(request)
    request.session = session  # type: ignore[assignment]
    request.user = user_from_session(session)  # type: ignore[assignment]


def identity_of(request: HttpRequest) -> Identity:
    """The identity a (possibly custom) process-request hook left on the request."""
    user = getattr(request, "user", None)
    session = getattr(request, "session", None)
    username = user.get_username() if user is not None and user.is_authenticated else None
    groups: frozenset[str] = frozenset()
    if isinstance(user, SessionUser):
        groups = user.groups
    elif username is not None and session is not None:
        groups = frozenset(session.get(GROUPS_KEY, session.get(WS4REDIS_GROUPS_KEY, ())))
    session_key = session.session_key if session is not None else None
    return Identity(username=username, groups=groups, session_key=session_key)
