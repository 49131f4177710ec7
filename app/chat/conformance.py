"""A process-request hook for the conformance run only (``WSLOOP_PROCESS_REQUEST``).

The Autobahn fuzzing client runs its cases one after another on one URL. With a shared channel,
a message of case N still on its way through Redis can reach case N+1's socket, which is
correct for wsloop and wrong for the fuzzer's exact expectations. Giving every connection a
session of its own (``subscribe-session&publish-session``) isolates the cases. Never use this
in a deployment: it ignores the session cookie.
"""

import secrets

from django.http import HttpRequest

from wsloop.identity import SessionUser


class _OwnSession:
    def __init__(self) -> None:
        self.session_key = secrets.token_hex(16)


def own_session_per_connection(request: HttpRequest) -> None:
    request.session = _OwnSession()  # type: ignore[assignment]
    request.user = SessionUser(None, frozenset())  # type: ignore[assignment]
