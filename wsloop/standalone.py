"""One uWSGI for everything: Django and wsloop in the same gevent workers, HTTP served directly.

For small sites and single-host installs (``uwsgi/standalone.ini``: ``--http-socket``,
``--gevent``, early monkey-patching). Requests under ``WSLOOP_URL`` and ``/healthz/wsloop`` go
to ``wsloop.uwsgi_adapter``, exactly as in the websocket pool; everything else to the project's
own WSGI application (``settings.WSGI_APPLICATION``), each request in a greenlet. Django's sync
code runs unchanged, but a view that blocks without yielding (CPU work, a C library doing its
own I/O) holds up the websockets of its worker meanwhile: that is the trade-off against two
pools.

Run as ``module = wsloop.standalone:application`` with ``DJANGO_SETTINGS_MODULE`` set.
"""

from __future__ import annotations

from typing import Any

from django.core.servers.basehttp import get_internal_wsgi_application

from . import conf, uwsgi_adapter
from .server import is_wsloop_path

_django = get_internal_wsgi_application()
_settings = conf.load()


def application(environ: dict[str, Any], start_response: uwsgi_adapter.StartResponse) -> Any:
    if is_wsloop_path(str(environ.get("PATH_INFO", "")), _settings):
        return uwsgi_adapter.application(environ, start_response)
    return _django(environ, _closing(start_response))


def _closing(start_response: uwsgi_adapter.StartResponse) -> uwsgi_adapter.StartResponse:
    """uWSGI's ``http-socket`` closes the connection after each response without saying so;
    ``Connection: close`` tells clients not to send a next request on it (a POST sent on a
    connection being closed fails)."""

    def start(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
        if not any(name.lower() == "connection" for name, _ in headers):
            headers = [*headers, ("Connection", "close")]
        return start_response(status, headers, *exc_info)

    return start
