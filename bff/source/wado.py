"""The Source WADO-RS API: this DRIMbox answering Consumer DRIMboxes (FACTS section 1,
spec Tableau 2 / DB.VI-CO.27 for the statuses the Consumer maps).

    GET /api/source/studies/{study}/series/{series}
    GET /api/source/studies/{study}/series/{series}/instances/{sop}
    GET /api/source/studies/{study}/series/{series}/metadata

Headers: ``Authorization: Bearer <PSC access token>``, ``KOS-SOPInstanceUID``, and an
Accept of ``multipart/related; type="application/dicom"; transfer-syntax=..; q=..`` ranges.

Every answer and refusal is audited with who asked (:func:`caller`): the professional's
PSC subject (and RPPS when the introspection gives it), the Consumer's client id, the
peer address and the subject DN of its client certificate, which the mutual-TLS listener
puts in the ASGI scope (the ``tls`` extension, :mod:`bff.source.listener`).

Checks, in this order, all before any response header is sent (STYLE.md point 6):

0. the request came through the mutual-TLS listener (``source_api_port``), else 404;
   its client certificate is the operator certificate of an entry of the ANS whitelist
   (``DNCertificatOperateur``), else 403 S403L (issue 13 item 7);
1. the bearer token is active at ProSantéConnect (:mod:`bff.auth.introspect`), issued by
   the PSC issuer to a Consumer client of ``DRIMBOX_SOURCE_API_CLIENTS``, with
   ``scope_all`` and an acr of eidas1 or above, else 403 S403 (nothing else said);
2. the KOS is in the archive for this location, names this study, series (and instance),
   else 404; it is published, else 410;
3. the PACS's PatientID for the study is the archive's INS or IPP, else 406 (+ audit);
   the PACS unreachable 502, too slow 504, the study gone 410;
4. the PACS answers the retrieval (series gone 410, 502, 504) and its first part is read.

The answer streams the PACS's parts as they arrive (``transfer-syntax=*`` upstream: the
stored bytes, never a PACS-side transcoding), each part either forwarded byte for byte or,
when the Consumer prefers / only accepts Explicit VR Little Endian, decoded losslessly
to it (:mod:`bff.source.accept`, :mod:`bff.source.native`). Parts for instances the KOS
does not reference are left out (a key-image KOS only opens its key images). A failure
once streaming has started is logged and the stream ends without its closing delimiter
(the Consumer sees a truncated multipart); a client going away closes the PACS stream.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from bff.access.source_api import (
    PscToken,
    check_kos,
    check_kos_uid,
    check_patient_id,
    check_peer_certificate,
    check_psc_token,
    pacs_error,
)
from bff.archive.store import ArchivedKos
from bff.audit import audit
from bff.dicomweb.multipart import Part, closing_delimiter, encode_part, new_boundary
from bff.dicomweb.series_stream import series_parts
from bff.dicomweb.upstream import SERIES_ACCEPT, DicomwebUpstream
from bff.errors import (
    NotFound,
    SourceGone,
    SourcePeerRefused,
    SourceTokenInvalid,
    UpstreamError,
    UpstreamProtocolError,
    ViewerError,
)
from bff.services import services_of
from bff.source.accept import AcceptedSyntaxes, parse_accept
from bff.source.native import can_decode, peek, to_explicit_le

log = logging.getLogger(__name__)

PREFIX = "/api/source"
KOS_HEADER = "kos-sopinstanceuid"


# -- checks ------------------------------------------------------------------------------


def check_listener(request: Request) -> None:
    """Only the mutual-TLS listener serves this API (when ``source_api_port`` is set)."""
    port = services_of(request).settings.source_api_port
    server = request.scope.get("server") or (None, None)
    if port and server[1] != port:
        raise NotFound("source API asked outside the mutual-TLS listener")


async def introspected_token(request: Request) -> PscToken:
    """What PSC says of the bearer token (S403 when there is none or it is not active)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise SourceTokenInvalid("no bearer token")
    info = await services_of(request).psc_introspector.introspect(token)
    if info is None:
        raise SourceTokenInvalid("token not active at ProSantéConnect")
    return info


def _tls(request: Request) -> dict[str, Any]:
    tls: dict[str, Any] = (request.scope.get("extensions") or {}).get("tls") or {}
    return tls


def check_peer(request: Request) -> dict[str, Any]:
    """The client certificate is a whitelisted operator certificate (S403L, audited);
    the audit fields naming the whitelist entry."""
    try:
        entry, _ = check_peer_certificate(
            _tls(request).get("client_cert_chain") or (), services_of(request).whitelist
        )
    except SourcePeerRefused as exc:
        _audit_refusal(request, exc, **caller(request, None))
        raise
    return {"whitelist_id": entry.identifiant}


def _audit_refusal(request: Request, exc: ViewerError, **who: Any) -> None:
    audit(
        "source_retrieve_refused",
        study_uid=request.path_params["study_uid"],
        series_uid=request.path_params["series_uid"],
        code=exc.code,
        reason=exc.detail,
        **who,
    )


def caller(request: Request, token: PscToken | None) -> dict[str, Any]:
    """Who asked, for the audit trail: never the token, only what identifies the caller."""
    client = request.scope.get("client") or (None, None)
    fields: dict[str, Any] = {
        "peer_address": client[0],
        # ASGI TLS extension, set by the mutual-TLS listener (bff/source/listener.py).
        "peer_certificate_dn": _tls(request).get("client_cert_name"),
    }
    if token is not None:
        # The professional as a pseudonym (HMAC of the PSC subject, which holds his RPPS:
        # neither is written; 'drimbox-viewer audit actor psc <subject>' finds his
        # entries with the key) and the Consumer's client id.
        pseudonyms = services_of(request).audit_trail.pseudonymizer
        fields.update(
            actor=pseudonyms.actor("psc", token.subject),
            client_id=token.client_id,
        )
    return fields


# -- the stream --------------------------------------------------------------------------


@dataclass
class _Upstream:
    """An open PACS series stream, its first part already read."""

    stack: AsyncExitStack
    parts: AsyncIterator[Part]
    first: Part


async def open_retrieval(upstream: DicomwebUpstream, path: str, max_part_bytes: int) -> _Upstream:
    """Open the PACS stream (the one series reader, :mod:`bff.dicomweb.series_stream`,
    asking for the stored syntax) and read its first part; errors as Tableau 2 statuses."""
    stack = AsyncExitStack()
    try:
        parts = await stack.enter_async_context(
            series_parts(upstream, path, max_part_bytes=max_part_bytes, accept=SERIES_ACCEPT)
        )
        first = await anext(parts, None)
        if first is None:
            raise SourceGone(f"GET {path}: the PACS answered no instance")
        return _Upstream(stack, parts, first)
    except ViewerError as exc:
        await stack.aclose()
        raise pacs_error(exc, f"GET {path}") from exc
    except BaseException:
        await stack.aclose()
        raise


@dataclass(frozen=True)
class _Encoder:
    accepted: AcceptedSyntaxes
    boundary: str
    referenced: frozenset[str]  # SOP UIDs of the KOS for this series (empty: no filter)
    only: str | None  # the syntax promised in the response's Content-Type, if any

    async def encode(self, part: Part) -> bytes:
        """The part as sent to the Consumer; b"" when the KOS does not reference it."""
        stored, sop_uid = peek(part.body)
        if self.referenced and sop_uid not in self.referenced:
            log.info("instance not referenced by the KOS left out of the answer")
            return b""
        syntax = self.accepted.choose(stored, can_decode=can_decode(stored))
        if self.only is not None and syntax != self.only:
            raise UpstreamError(f"instance in {stored} cannot be sent as {self.only}")
        body = part.body
        if syntax != stored:
            body = await run_in_threadpool(to_explicit_le, body)
        elif not self.accepted.accepts(stored):
            log.warning("sending %s, which the Consumer did not accept (E302)", stored)
        return encode_part(body, f"application/dicom; transfer-syntax={syntax}", self.boundary)


async def _body(opened: _Upstream, encoder: _Encoder, what: str) -> AsyncGenerator[bytes, None]:
    sent = 0
    try:
        part: Part | None = opened.first
        while part is not None:
            chunk = await encoder.encode(part)
            if chunk:
                sent += 1
                yield chunk
            part = await anext(opened.parts, None)
        yield closing_delimiter(encoder.boundary)
        log.info("%s: %d instances sent", what, sent)
    except ViewerError as exc:
        # Headers are gone: end without the closing delimiter (a truncated multipart).
        log.warning("%s: stream cut after %d instances: %s", what, sent, exc)
    except Exception:
        log.exception("%s: stream cut after %d instances", what, sent)
    finally:
        with anyio.CancelScope(shield=True):
            await opened.stack.aclose()


class _ClosingStreamingResponse(StreamingResponse):
    """Closes its generator (hence the PACS stream) however the response ends."""

    def __init__(self, body: AsyncGenerator[bytes, None], **kwargs: Any) -> None:
        super().__init__(body, **kwargs)
        self._generator = body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self._generator.aclose()


# -- endpoints ---------------------------------------------------------------------------


async def _checked(
    request: Request, sop_uid: str | None = None
) -> tuple[DicomwebUpstream, ArchivedKos, str, dict[str, Any]]:
    check_listener(request)
    peer = check_peer(request)
    services = services_of(request)
    token: PscToken | None = None
    try:
        token = await introspected_token(request)
        check_psc_token(
            token,
            issuer=services.settings.psc_issuer,
            allowed_clients=services.settings.source_api_client_ids(),
        )
    except SourceTokenInvalid as exc:
        _audit_refusal(request, exc, **caller(request, token), **peer)
        raise
    who = {**caller(request, token), **peer}
    study_uid = request.path_params["study_uid"]
    series_uid = request.path_params["series_uid"]
    location = "?"
    try:
        kos_uid = check_kos_uid(request.headers.get(KOS_HEADER, ""))
        archived = await run_in_threadpool(services.archive.get, kos_uid)
        locations = services.origins.locations
        kos = check_kos(archived, kos_uid, locations.keys(), study_uid, series_uid, sop_uid)
        location = kos.location if kos.location in locations else "*"
        upstream = locations[location]
        await check_patient_id(upstream, kos, location)
    except ViewerError as exc:
        audit(
            "source_retrieve_refused",
            location=location,
            study_uid=study_uid,
            series_uid=series_uid,
            code=exc.code,
            **who,
        )
        raise
    return upstream, kos, location, who


async def retrieve(request: Request) -> Response:
    sop_uid: str | None = request.path_params.get("sop_uid")
    upstream, kos, location, who = await _checked(request, sop_uid)
    record = kos.record
    series_uid = request.path_params["series_uid"]
    # Fail closed: nothing is asked of the PACS, nor sent, before the audit table holds
    # this retrieval (without it: 503 E508; bff/state/audit_log.py).
    await services_of(request).audit_trail.durable(
        "source_retrieve",
        location=location,
        study_uid=record.study_uid,
        series_uid=series_uid,
        sop_uid=sop_uid,
        kos_sop_uid=record.sop_uid,
        **who,
    )
    path = f"/studies/{record.study_uid}/series/{series_uid}"
    if sop_uid is not None:
        path += f"/instances/{sop_uid}"
    accepted = parse_accept(request.headers.getlist("accept"))
    opened = await open_retrieval(upstream, path, services_of(request).settings.max_part_bytes)
    series = next(s for s in record.series if s.series_uid == series_uid)
    only = accepted.only
    if sop_uid is not None and only is None:
        try:
            stored, _ = peek(opened.first.body)  # one part: its syntax is known now
        except ViewerError as exc:
            await opened.stack.aclose()
            raise pacs_error(exc, f"GET {path}") from exc
        only = accepted.choose(stored, can_decode=can_decode(stored))
    boundary = new_boundary()
    encoder = _Encoder(accepted, boundary, frozenset(uid for _, uid in series.instances), only)
    content_type = f'multipart/related; type="application/dicom"; boundary={boundary}'
    if only is not None:
        content_type += f"; transfer-syntax={only}"
    return _ClosingStreamingResponse(
        _body(opened, encoder, f"GET {PREFIX}{path}"),
        headers={"Content-Type": content_type, "Cache-Control": "no-store"},
    )


async def series_metadata(request: Request) -> Response:
    """The series' DICOM JSON metadata from the PACS, after the same checks."""
    started = time.monotonic()
    upstream, kos, location, who = await _checked(request)
    series_uid = request.path_params["series_uid"]
    await services_of(request).audit_trail.durable(  # fail closed, as retrieve()
        "source_metadata",
        location=location,
        study_uid=kos.record.study_uid,
        series_uid=series_uid,
        kos_sop_uid=kos.record.sop_uid,
        **who,
    )
    checked = time.monotonic()
    path = f"/studies/{kos.record.study_uid}/series/{series_uid}/metadata"
    try:
        raw = await upstream.get_json_bytes(path)
    except ViewerError as exc:
        raise pacs_error(exc, f"GET {path}") from exc
    fetched = time.monotonic()
    series = next(s for s in kos.record.series if s.series_uid == series_uid)
    referenced = frozenset(uid for _, uid in series.instances)
    # 7.8 MB of JSON for a 1300-slice CT: parsed, filtered and compressed in a thread,
    # so the event loop keeps streaming the images meanwhile (issue 5).
    gzip_ok = "gzip" in request.headers.get("accept-encoding", "")
    try:
        body, encoding = await asyncio.to_thread(_referenced_only, raw, referenced, gzip_ok)
    except ValueError as exc:
        raise pacs_error(UpstreamProtocolError(f"GET {path}: invalid JSON"), path) from exc
    headers = {"Cache-Control": "no-store", "Vary": "Accept-Encoding"}
    if encoding:
        headers["Content-Encoding"] = encoding
    log.info(
        "series metadata for a Consumer: checks %.2f s, PACS %.2f s, built %.2f s, %d B",
        checked - started,
        fetched - checked,
        time.monotonic() - fetched,
        len(body),
    )
    return Response(body, media_type="application/dicom+json", headers=headers)


def _referenced_only(
    raw: bytes, referenced: frozenset[str], gzip_ok: bool
) -> tuple[bytes, str | None]:
    """The metadata rows of the instances the KOS references (all without a list)."""
    rows = json.loads(raw) if raw else []
    if referenced and isinstance(rows, list):
        rows = [r for r in rows if _sop_uid(r) in referenced]
    body = json.dumps(rows, separators=(",", ":")).encode()
    if gzip_ok:
        return gzip.compress(body, 6, mtime=0), "gzip"
    return body, None


def _sop_uid(row: Any) -> str:
    try:
        return str((row.get("00080018", {}).get("Value") or [""])[0])
    except (AttributeError, IndexError, TypeError):
        return ""


def consumer_api_routes() -> list[BaseRoute]:
    base = PREFIX + "/studies/{study_uid}/series/{series_uid}"
    return [
        Route(base, retrieve, methods=["GET"]),
        Route(base + "/metadata", series_metadata, methods=["GET"]),
        Route(base + "/instances/{sop_uid}", retrieve, methods=["GET"]),
    ]
