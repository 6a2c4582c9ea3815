"""Where an audited act came from: the client address and User-Agent of the request.

:class:`AuditSourceMiddleware` (mounted by the application) puts them in a context
variable for the duration of each HTTP request, so ``append`` records them without every
caller threading them through. The address is the ASGI ``client`` host: behind a proxy,
run uvicorn with ``--proxy-headers`` and ``--forwarded-allow-ips`` so it is the real one.
"""

from __future__ import annotations

import contextvars
import ipaddress
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from billfold.audit.models import SOURCE_IP_LENGTH_MAX, USER_AGENT_LENGTH_MAX

__all__ = ["AuditSourceMiddleware", "Source", "current_source", "source_from_scope"]


@dataclass(frozen=True, slots=True)
class Source:
    """A request's origin, as recorded: a valid IP address or None, a printable,
    truncated User-Agent or None."""

    ip: str | None
    user_agent: str | None


_NO_SOURCE = Source(ip=None, user_agent=None)
_current: contextvars.ContextVar[Source] = contextvars.ContextVar(
    "billfold_audit_source", default=_NO_SOURCE
)


def current_source() -> Source:
    """The source of the request being served; both None outside one (CLI, tasks)."""
    return _current.get()


def _clean_ip(host: object) -> str | None:
    """The address, normalised. An IPv6 zone (``%eth0``) is free text of any length: one
    that would not fit the column is dropped, else PostgreSQL refuses the row and with it
    every audited act of the request (a failed sign-in too)."""
    if not isinstance(host, str):
        return None
    try:
        address = str(ipaddress.ip_address(host))
    except ValueError:
        return None
    return address if len(address) <= SOURCE_IP_LENGTH_MAX else address.partition("%")[0]


def _clean_user_agent(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    text = raw.decode("latin-1")
    printable = "".join(character for character in text if character.isprintable())
    return printable[:USER_AGENT_LENGTH_MAX] or None


def source_from_scope(scope: Scope) -> Source:
    client = scope.get("client")
    ip = _clean_ip(client[0]) if client else None
    user_agent = None
    for name, value in scope.get("headers", []):
        if name == b"user-agent":
            user_agent = _clean_user_agent(value)
            break
    return Source(ip=ip, user_agent=user_agent)


class AuditSourceMiddleware:
    """Sets :func:`current_source` for each HTTP request."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        token = _current.set(source_from_scope(scope))
        try:
            await self._app(scope, receive, send)
        finally:
            _current.reset(token)
