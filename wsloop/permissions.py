"""Who may use which flag: decided before the upgrade, so a refusal is an HTTP 403, never a
101 followed by a close."""

from __future__ import annotations

from .channels import Audience, Flag, Identity


class Forbidden(Exception):
    """The handshake is refused with HTTP 403; the message is the response body."""


def required_identity(audience: Audience) -> str | None:
    """What an audience needs of the client, as words for an error message; None if nothing."""
    if audience in (Audience.USER, Audience.GROUP):
        return "an authenticated user"
    if audience is Audience.SESSION:
        return "a session"
    return None


def has_identity_for(audience: Audience, identity: Identity) -> bool:
    if audience in (Audience.USER, Audience.GROUP):
        return identity.is_authenticated
    if audience is Audience.SESSION:
        return identity.session_key is not None
    return True


def check_flags(flags: frozenset[Flag], identity: Identity) -> None:
    """Raise Forbidden if any flag needs an identity this client does not have."""
    for flag in sorted(flags, key=lambda f: f.value):
        audience = flag.audience
        if audience is not None and not has_identity_for(audience, identity):
            raise Forbidden(f"{flag.value} requires {required_identity(audience)}")
