"""The Consumer's view of a study: a KOS from the DMP and the DRIMbox Source(s) its
RetrieveURLs point to (spec 4.2.1, 4.3.1; DB.VI-CS.17, DB.VI-CO.27).

For each series of the KOS, one upstream: the series-level WADO-RS URL of the KOS, asked
with the DRIM-M transfer syntaxes and q-values, `Authorization: Bearer <the user's PSC
access token>`, `KOS-SOPInstanceUID`, over mutual TLS (our client certificate, the
configured CA bundle). A Source host missing from the ANS whitelist is refused before
any connection (E203).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from bff.archive.kos import KosRecord
from bff.consumer.conformance import accept_header
from bff.consumer.errors import ConsumerErrorPolicy, SourceError
from bff.consumer.whitelist import Whitelist
from bff.dicomweb.upstream import DicomwebUpstream
from bff.errors import NotFound
from bff.settings import Settings

log = logging.getLogger(__name__)


class RefusedSource(DicomwebUpstream):
    """A Source we must not contact (E203): every use answers the error, nothing is sent."""

    def __init__(self, base_url: str, *, origin: str, error: SourceError) -> None:
        super().__init__(base_url, origin=origin, serve="browser")
        self.error = error

    # The two places every upstream request goes through (get_json, get_json_bytes,
    # search and get_bytes all use _get): nothing can reach the network.
    async def _get(self, path: str, accept: str, params: Any) -> httpx.Response:
        raise self.error

    @asynccontextmanager
    async def stream(
        self, path: str, accept: str
    ) -> AsyncIterator[tuple[str, AsyncIterator[bytes]]]:
        raise self.error
        yield  # pragma: no cover


@dataclass
class RemoteStudy:
    """A study opened from a KOS: its record and one upstream per series."""

    record: KosRecord
    upstreams: dict[str, DicomwebUpstream]
    #: series metadata rows as received (read only: callers get fresh copies)
    metadata: dict[str, list[Any]] = field(default_factory=dict)
    #: the fetch of each series' metadata, as JSON bytes (bff.consumer.dicomweb)
    metadata_tasks: dict[str, asyncio.Task[bytes]] = field(default_factory=dict)

    def upstream_for(self, series_uid: str) -> DicomwebUpstream:
        try:
            return self.upstreams[series_uid]
        except KeyError:
            raise NotFound(f"series {series_uid} is not in the KOS") from None

    async def aclose(self) -> None:
        for upstream in {id(u): u for u in self.upstreams.values()}.values():
            await upstream.aclose()


def source_client(settings: Settings) -> httpx.AsyncClient:
    """The Consumer's client towards Sources: mutual TLS, CA bundle, Source timeout."""
    return httpx.AsyncClient(
        verify=client_tls_context(settings),
        timeout=httpx.Timeout(settings.source_timeout, connect=min(settings.source_timeout, 10)),
        limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
    )


def client_tls_context(settings: Settings) -> ssl.SSLContext:
    """Mutual TLS towards Sources: the configured CA bundle and our client certificate."""
    context = ssl.create_default_context(cafile=str(settings.source_ca_bundle) or None)
    if str(settings.source_client_cert):
        context.load_cert_chain(str(settings.source_client_cert), str(settings.source_client_key))
    return context


def split_retrieve_url(url: str, study_uid: str, series_uid: str) -> str:
    """The Source's WADO-RS base from a series RetrieveURL (``<base>/studies/S/series/SE``)."""
    suffix = f"/studies/{study_uid}/series/{series_uid}"
    clean = url.rstrip("/")
    if not clean.endswith(suffix) or not clean.startswith("https://"):
        raise SourceError("E205", f"unexpected RetrieveURL {url!r}")
    return clean[: -len(suffix)]


def open_remote_study(
    record: KosRecord,
    *,
    access_token: str,
    settings: Settings,
    whitelist: Whitelist | None,
    client: httpx.AsyncClient,
) -> RemoteStudy:
    """``client``: the Consumer's one client towards Sources (mutual TLS, timeouts)."""
    upstreams: dict[str, DicomwebUpstream] = {}
    for series in record.series:
        # Cache keys name the Source and the KOS (another Source may serve the same KOS),
        # and what the browser gets (DRIMBOX_CONSUMER_IMAGES).
        serve = "lossy" if settings.consumer_images == "lossy" else "browser"
        origin = f"{series.retrieve_url}#kos={record.sop_uid}&serve={serve}"
        try:
            base = split_retrieve_url(
                series.retrieve_url or "", record.study_uid, series.series_uid
            )
        except SourceError as exc:
            upstreams[series.series_uid] = RefusedSource(
                "https://invalid", origin=origin, error=exc
            )
            continue
        host = (urlsplit(base).hostname or "").lower()
        if whitelist is None or whitelist.allows_host(host) is None:
            error = SourceError("E203", f"{host} is not in the ANS whitelist")
            upstreams[series.series_uid] = RefusedSource(base, origin=origin, error=error)
            continue
        upstreams[series.series_uid] = DicomwebUpstream(
            base,
            origin=origin,
            headers={
                "Authorization": f"Bearer {access_token}",
                "KOS-SOPInstanceUID": record.sop_uid,
            },
            client=client,
            series_accept=accept_header(),
            policy=ConsumerErrorPolicy(),
            # DRIMBOX_CONSUMER_IMAGES: as received (lossless), or transcoded like the
            # Source viewer's frames for a slow link to the browser (issue 5).
            serve=serve,
            keep_headers=True,
        )
    return RemoteStudy(record=record, upstreams=upstreams)
