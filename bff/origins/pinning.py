"""The Consumer's transport towards Sources (issue 13 item 6): a request only leaves for a
whitelisted Source, and its headers (the user's PSC token) only once the Source proved,
in the TLS handshake, to hold its operator certificate.

Two checks, in :class:`PinnedSourceTransport`, below every upstream of a remote Source:

1. the URL: https, a host listed in the ANS whitelist, an allowed port, no user info,
   query or fragment (the origin already built it from checked parts: a second line);
2. the Source's certificate: after the handshake, before the request is written, its
   subject must be the entry's ``DNCertificatOperateur`` (:func:`dn_matches`). httpcore
   reports each step of a request to the ``trace`` extension; at
   ``connection.start_tls.complete`` the TLS stream exists and nothing of the request
   has been sent. A mismatch closes the connection there: the Source never receives
   the request line nor the Authorization header. Connections are pooled per origin
   (scheme, host, port), one whitelist entry each, so a reused connection was checked
   for the same entry when it was opened; the answer's connection is checked again.

Refusals are E203 (the Source is not the one the whitelist names) and audited.
Environment proxies are not used for Sources (``trust_env=False``): a proxy would be a
transport this check does not see.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from bff.audit import audit
from bff.origins.errors import SourceError
from bff.origins.tls import peer_certificate
from bff.origins.whitelist import HTTPS_PORT, Whitelist, WhitelistEntry, dn_matches

log = logging.getLogger(__name__)

TLS_DONE = "connection.start_tls.complete"
Trace = Callable[[str, dict[str, Any]], Awaitable[None]]


def _check_peer(entry: WhitelistEntry, port: int, ssl_object: ssl.SSLObject | None) -> None:
    """E203 unless the Source's certificate subject is the entry's operator DN."""
    cert = peer_certificate(ssl_object)
    if cert is not None and dn_matches(entry.operator_dn, cert.subject):
        return
    presented = cert.subject.rfc4514_string() if cert is not None else None
    audit(
        "consumer_source_refused",
        code="E203",
        host=entry.db,
        port=port,
        whitelist_id=entry.identifiant,
        reason="the Source's certificate is not the whitelisted operator certificate",
        peer_certificate_dn=presented,
        expected_dn=entry.dn_certificat_operateur,
    )
    raise SourceError(
        "E203", f"{entry.db}:{port} presented {presented!r}, not {entry.dn_certificat_operateur!r}"
    )


class PinnedSourceTransport(httpx.AsyncBaseTransport):
    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        whitelist: Whitelist | None,
        ports: frozenset[int],
    ) -> None:
        self._inner = inner
        self._whitelist = whitelist
        self._ports = ports

    def _entry(self, url: httpx.URL) -> tuple[WhitelistEntry, int]:
        entry = self._whitelist.allows_host(url.host) if self._whitelist else None
        port = HTTPS_PORT if url.port is None else url.port
        if (
            entry is None
            or url.scheme != "https"
            or port not in self._ports
            or url.userinfo
            or url.query
            or url.fragment
        ):
            raise SourceError("E203", f"{url.host}:{port} is not a whitelisted Source address")
        return entry, port

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        entry, port = self._entry(request.url)
        previous: Trace | None = request.extensions.get("trace")

        async def trace(event: str, info: dict[str, Any]) -> None:
            if previous is not None:
                await previous(event, info)
            if event == TLS_DONE:
                stream = info["return_value"]
                try:
                    _check_peer(entry, port, stream.get_extra_info("ssl_object"))
                except SourceError:
                    await stream.aclose()
                    raise

        request.extensions = {**request.extensions, "trace": trace}
        response = await self._inner.handle_async_request(request)
        network = response.extensions.get("network_stream")
        try:
            _check_peer(entry, port, network.get_extra_info("ssl_object") if network else None)
        except SourceError:
            await response.aclose()
            raise
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()
