"""The Source role's mutual-TLS listener for Consumer DRIMboxes (DRIM-M transport between
DRIMboxes; issue 13 item 7), beside the BFF's own listener in the same event loop.

- TLS 1.2+ with the DRIMbox cipher list (:mod:`bff.origins.tls`), a client certificate
  required, chaining to DRIMBOX_TLS_CLIENT_CA (IGC-Santé);
- only the Source API is served there (:class:`SourceApiOnly`): any other path (the admin
  API, OHIF, the login, the DICOMweb facade) is a 404 before the application sees it;
- the client certificate is handed to the application as the ASGI ``tls`` extension
  (:class:`PeerCertificateProtocol`: uvicorn sets none), where the Source API checks its
  subject against the ANS whitelist (:func:`bff.access.source_api.check_peer_certificate`)
  and the audit trail records it;
- no proxy headers: the peer address in the audit is the TCP peer's.

``source_api_options`` is what ``drimbox-viewer serve`` / ``demo``, the bench and the tests
start it with: the same listener everywhere.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from bff.errors import NotFound
from bff.origins.tls import harden, peer_certificate
from bff.settings import Settings
from bff.source.wado import PREFIX

#: The Source API routes (bff/source/wado.py), and nothing else.
SOURCE_API_PATH = re.compile(
    re.escape(PREFIX) + r"/studies/[^/]+/series/[^/]+(?:/metadata|/instances/[^/]+)?"
)
#: ASGI TLS extension: ``tls_version`` as the TLS protocol number.
TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


def server_tls_context(cert: str, key: str, client_ca: str) -> ssl.SSLContext:
    """TLS 1.2+, modern suites, a client certificate chaining to ``client_ca`` required."""
    context = harden(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    context.load_cert_chain(cert, key)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(client_ca)
    return context


def tls_extension(ssl_object: ssl.SSLObject | None) -> dict[str, Any]:
    """The ASGI ``tls`` extension of a connection (the client certificate, its subject
    as an RFC 4514 DN, the protocol version)."""
    cert = peer_certificate(ssl_object)
    return {
        "server_cert": None,
        "client_cert_chain": [cert.public_bytes(Encoding.PEM).decode("ascii")] if cert else [],
        "client_cert_name": cert.subject.rfc4514_string() if cert else None,
        "client_cert_error": None,
        "tls_version": TLS_VERSIONS.get(ssl_object.version() or "") if ssl_object else None,
        "cipher_suite": None,
    }


def _with_tls(app: ASGIApp, tls: dict[str, Any]) -> ASGIApp:
    async def with_tls(scope: Scope, receive: Receive, send: Send) -> None:
        extensions = {**(scope.get("extensions") or {}), "tls": tls}
        await app({**scope, "extensions": extensions}, receive, send)

    return with_tls


class PeerCertificateProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol, putting the connection's TLS details in every
    request's scope (read once, when the handshake is done)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.app = _with_tls(self.app, tls_extension(transport.get_extra_info("ssl_object")))


class SourceApiOnly:
    """Only the Source API routes pass; anything else is a 404 (E404, JSON)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and SOURCE_API_PATH.fullmatch(scope["path"]):
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            return  # no lifespan, no websocket on this listener
        body = {"code": NotFound.code, "message": NotFound.message}
        headers = {"Cache-Control": "no-store", "X-Error-Code": NotFound.code}
        await JSONResponse(body, 404, headers=headers)(scope, receive, send)


def source_api_options(app: ASGIApp, settings: Settings) -> dict[str, Any]:
    """``uvicorn.Config`` arguments of the listener on ``settings.source_api_port``
    (the caller adds host, log level, timeouts)."""
    context = server_tls_context(settings.tls_cert, settings.tls_key, settings.tls_client_ca)

    def factory(config: Any, default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        return context

    return {
        "app": SourceApiOnly(app),
        "port": settings.source_api_port,
        "lifespan": "off",
        "ws": "none",
        "http": PeerCertificateProtocol,
        "proxy_headers": False,
        "ssl_context_factory": factory,
    }
