"""Trusted hosts (issue 13, item 8): a request whose Host header names none of the host
names this deployment answers on is refused before any route runs.

The Host header is what the BFF builds absolute URLs from: the OIDC redirect URI, the
DICOMweb roots written into metadata (BulkDataURI), the logout return address. Only the
configured names are accepted (:meth:`bff.settings.Settings.host_names`: the locations'
and ``DRIMBOX_TRUSTED_HOSTS``); ``X-Forwarded-Host`` is never read (uvicorn's
``proxy_headers`` only takes ``X-Forwarded-Proto`` and ``X-Forwarded-For``, and only
from ``FORWARDED_ALLOW_IPS``), so a proxy in front must pass the browser's Host on.

The refusal is the project's error (:class:`~bff.errors.UnknownHost`, 400 E416) rendered
in the one place errors are (:mod:`bff.web.errors`): French page or JSON. No session is
looked up or created, nothing is audited, no URL is built from the refused host.
"""

from __future__ import annotations

import re

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from bff.errors import UnknownHost
from bff.web.errors import viewer_error

#: A Host header: a name or an IPv4 address, or a bracketed IPv6 address; a port maybe.
HOST_HEADER = re.compile(r"(?:(?P<name>[a-z0-9.-]+)|\[(?P<ipv6>[0-9a-f:.]+)\])(?::[0-9]{1,5})?")


def host_name(header: str) -> str | None:
    """The host name of a Host header (lower case, no port, IPv6 unbracketed); None when
    it is not one."""
    match = HOST_HEADER.fullmatch(header.strip().lower())
    if match is None:
        return None
    return match.group("name") or match.group("ipv6")


class TrustedHosts:
    """``hosts``: the accepted host names; None accepts any (a single '*' location with no
    trusted hosts configured: demo and tests only, refused in production)."""

    def __init__(self, app: ASGIApp, *, hosts: frozenset[str] | None) -> None:
        self.app = app
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.hosts is None or scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        header = Headers(scope=scope).get("host", "")
        if host_name(header) in self.hosts:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":  # none is served; closed before accepting
            await send({"type": "websocket.close", "code": 1008})
            return
        # Rendered without the refused Host header: nothing is built from it.
        headers = [(k, v) for k, v in scope["headers"] if k != b"host"]
        request = Request({**scope, "headers": headers}, receive)
        refusal = UnknownHost(f"host {header[:100]!r} is not configured")
        response = await viewer_error(request, refusal)
        await response(scope, receive, send)
