"""Builds the origin of a granted study (:mod:`bff.origins.base`) from plain grant data.

A local PACS origin is light and made per request. A remote Source origin keeps what its
Source answered (the series metadata asked ahead, the series' first rows) between the
requests of a viewing, so it is kept here, bounded, keyed by the location, the KOS and a
digest of the user's access token (the token itself is never a key or a log field).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx

from bff.archive.kos import KosRecord
from bff.dicomweb.key_images import KeyImageIndex
from bff.dicomweb.retrieve import Retriever
from bff.dicomweb.upstream import DicomwebUpstream
from bff.errors import InvalidLink
from bff.origins.local import LocalPacsOrigin
from bff.origins.remote import RemoteSourceOrigin, source_upstreams
from bff.origins.whitelist import Whitelist

#: Remote studies kept at once (each holds a few small rows per series).
MAX_REMOTE = 256


class OriginFactory:
    def __init__(
        self,
        *,
        locations: Mapping[str, DicomwebUpstream],
        retriever: Retriever,
        background: set[asyncio.Task[Any]],
        max_part_bytes: int,
        frame_timeout: float,
        consumer_images: Callable[[], str] = lambda: "lossless",
        whitelist: Whitelist | None = None,
        source_ports: frozenset[int] = frozenset({443}),
        source_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.locations = locations
        self.retriever = retriever
        self.key_images = KeyImageIndex()
        self._background = background
        self._max_part_bytes = max_part_bytes
        self._frame_timeout = frame_timeout
        self._consumer_images = consumer_images
        self._whitelist = whitelist
        self._source_ports = source_ports
        self._client = source_client
        self._remote: OrderedDict[tuple[str, ...], RemoteSourceOrigin] = OrderedDict()

    def location_of(self, host: str) -> str:
        """The location (registered FQDN) a request came through (DB.VI-SO.07, .127)."""
        host = host.lower()
        if host in self.locations:
            return host
        if "*" in self.locations:
            return "*"
        raise InvalidLink(f"unknown location {host!r}", code="E415")

    def pacs(self, location: str) -> DicomwebUpstream:
        return self.locations[location]

    def local(
        self,
        location: str,
        study_uid: str,
        *,
        institution: str = "",
        kos_series: Sequence[str] = (),
    ) -> LocalPacsOrigin:
        """The location's PACS, answering for one study (``kos_series``: the series the
        KOS lists, retrieved at grant time)."""
        return LocalPacsOrigin(
            self.locations[location],
            study_uid,
            self.retriever,
            self.key_images,
            self._background,
            institution=institution,
            kos_series=kos_series,
            max_part_bytes=self._max_part_bytes,
        )

    def remote(
        self,
        location: str,
        record: KosRecord,
        access_token: str,
        kos_bytes: bytes = b"",
        *,
        patient_id: str = "",
        patient_issuer: str = "",
    ) -> RemoteSourceOrigin:
        """The remote Source(s) of a KOS opened on the Consumer, asked with this token;
        ``patient_id``: the practice's local patient id shown in place of the Source's
        (DB.VI-CS.32), and its issuer."""
        digest = hashlib.sha256(access_token.encode()).hexdigest()
        # DRIMBOX_CONSUMER_IMAGES: as received (lossless), or transcoded like the Source
        # viewer's frames for a slow link to the browser (issue 5).
        serve = "lossy" if self._consumer_images() == "lossy" else "browser"
        key = (location, record.sop_uid, digest, serve, patient_id, patient_issuer)
        origin = self._remote.get(key)
        if origin is not None:
            self._remote.move_to_end(key)
            return origin
        if self._client is None:
            raise InvalidLink("the Consumer viewer is not enabled here", code="E415")
        upstreams = source_upstreams(
            record,
            access_token=access_token,
            serve=serve,
            whitelist=self._whitelist,
            ports=self._source_ports,
            client=self._client,
        )
        origin = RemoteSourceOrigin(
            record,
            upstreams,
            self.retriever,
            max_part_bytes=self._max_part_bytes,
            frame_timeout=self._frame_timeout,
            kos_bytes=kos_bytes,
            patient_id=patient_id,
            patient_issuer=patient_issuer,
        )
        self._remote[key] = origin
        while len(self._remote) > MAX_REMOTE:
            self._remote.popitem(last=False)
        return origin
