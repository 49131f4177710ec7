"""wsloop: real-time server push for Django, in a decoupled gevent websocket loop.

Django code publishes with :func:`publish` (:func:`publish_on_commit` after the transaction,
:func:`apublish` from async code); the websocket loop pushes to the browsers, run by
the websocket pool (``wsloop.uwsgi_adapter``), one standalone uWSGI (``wsloop.standalone``) or
``manage.py runserver`` (``wsloop.devserver``). The wire contract, configuration and deployment
are in the repository's ``docs/``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = [
    "SELF",
    "PublishError",
    "aposition",
    "apublish",
    "position",
    "presence",
    "publish",
    "publish_on_commit",
]

if TYPE_CHECKING:
    from .publisher import (
        SELF,
        PublishError,
        aposition,
        apublish,
        position,
        presence,
        publish,
        publish_on_commit,
    )


def __getattr__(name: str) -> Any:
    # Lazy, so that importing wsloop does not import Django before settings are configured.
    if name in __all__:
        from . import publisher  # noqa: PLC0415  (lazy: Django may not be configured yet)

        return getattr(publisher, name)
    raise AttributeError(name)
