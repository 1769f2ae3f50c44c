"""Admin HTTP API of the KOS archive: the DRIMbox's own publication step (DB.SO.22).

    POST   /api/admin/kos?cda_id=OID[&location=HOST]   body: application/dicom (KOS,
           <= DRIMBOX_MAX_KOS_BYTES: 413 E440 beyond; a deflated one 415 E441)
           -> 201 {"sop_uid", "study_uid", "state"}
    DELETE /api/admin/kos/{sop_uid}                    -> 200 {"sop_uid", "state"} | 404
    GET    /api/admin/kos[?state=published|unpublished&limit=N]
           -> 200 [{...}] (no patient identity)

Authentication: ``Authorization: Bearer <DRIMBOX_ADMIN_SECRET>``, compared in constant time.
An empty secret disables the API: every path answers 404, as if it did not exist. Expects
an :class:`Admin` (the secret and the archive). Each action
(including refused ones) writes one structured line to the ``bff.audit`` logger, never
with patient identity.
"""

from __future__ import annotations

import functools
import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from bff.archive.store import DEFAULT_LOCATION, STATES, ArchivedKos, ArchiveStore, Preparation
from bff.errors import BadRequest, Forbidden, NotFound, ViewerError
from bff.web.uploads import read_body, read_kos_upload

PREFIX = "/api/admin/kos"
#: The route that takes a KOS file: its body cap is DRIMBOX_MAX_KOS_BYTES (bff/web/limits.py).
UPLOAD_PATHS = (PREFIX,)

audit = logging.getLogger("bff.audit")


@dataclass(frozen=True)
class Admin:
    """What the API acts on: its bearer secret ('' disables it) and the KOS archive."""

    secret: str
    archive: ArchiveStore
    #: told of every KOS whose state changes (the grants' check asks the archive again)
    changed: Callable[[str], None] = lambda sop_uid: None
    #: the largest KOS accepted (DRIMBOX_MAX_KOS_BYTES)
    max_kos_bytes: int = 16 * 1024**2


def admin_routes(admin: Admin) -> list[BaseRoute]:
    return [
        Route(PREFIX, functools.partial(publish_kos, admin), methods=["POST"]),
        Route(PREFIX, functools.partial(list_kos, admin), methods=["GET"]),
        Route(PREFIX + "/{sop_uid}", functools.partial(unpublish_kos, admin), methods=["DELETE"]),
    ]


def _audit(request: Request, action: str, level: int = logging.INFO, **fields: Any) -> None:
    client = request.client.host if request.client else ""
    # ``event`` as in :mod:`bff.audit` (its JSON-lines handler), ``action`` as specified.
    record = {"event": f"admin.{action}", "action": action, "client": client, **fields}
    audit.log(level, "admin.%s", action, extra={"audit": record})


def _authorize(admin: Admin, request: Request, action: str) -> None:
    """404 when the API is disabled, 403 without the right bearer secret."""
    secret = admin.secret
    if not secret:
        raise NotFound("admin API disabled (DRIMBOX_ADMIN_SECRET is empty)")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    expected = secret.encode("utf-8")
    ok = hmac.compare_digest(given.strip().encode("utf-8"), expected)
    if scheme.lower() != "bearer" or not ok:
        _audit(request, f"{action}.denied", logging.WARNING)
        raise Forbidden(f"admin {action}: missing or wrong bearer secret")


async def publish_kos(admin: Admin, request: Request) -> JSONResponse:
    _authorize(admin, request, "kos.publish")
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/dicom":
        raise BadRequest(f"KOS body must be application/dicom, not {media_type[:40]!r}")
    cda_id = request.query_params.get("cda_id", "")
    location = request.query_params.get("location", DEFAULT_LOCATION)
    try:
        body = await read_body(request, admin.max_kos_bytes)
        record = await read_kos_upload(body)
        try:
            await run_in_threadpool(admin.archive.publish, record, cda_id=cda_id, location=location)
        except ValueError as exc:  # a bad cda_id / location
            raise BadRequest(f"KOS refused: {exc}") from exc
    except ViewerError as exc:
        _audit(request, "kos.publish.rejected", logging.WARNING, reason=exc.detail[:200])
        raise
    admin.changed(record.sop_uid)  # prepared at once (issue 16)
    _audit(
        request,
        "kos.publish",
        sop_uid=record.sop_uid,
        study_uid=record.study_uid,
        cda_id=cda_id,
        location=location,
    )
    body_json = {"sop_uid": record.sop_uid, "study_uid": record.study_uid, "state": "published"}
    return JSONResponse(body_json, status_code=201)


async def unpublish_kos(admin: Admin, request: Request) -> JSONResponse:
    _authorize(admin, request, "kos.unpublish")
    sop_uid = request.path_params["sop_uid"]
    store = admin.archive
    found = await run_in_threadpool(store.unpublish, sop_uid)
    if not found:
        raise NotFound("admin kos.unpublish: unknown KOS")
    admin.changed(sop_uid)  # live sessions lose the study now (issue 13)
    entry = await run_in_threadpool(store.get, sop_uid)
    fields: dict[str, Any] = {"sop_uid": sop_uid}
    if entry is not None:
        fields |= {
            "study_uid": entry.record.study_uid,
            "cda_id": entry.cda_id,
            "location": entry.location,
        }
    _audit(request, "kos.unpublish", **fields)
    return JSONResponse({"sop_uid": sop_uid, "state": "unpublished"})


def summary(entry: ArchivedKos, preparation: Preparation | None = None) -> dict[str, Any]:
    """What the admin listing shows of an archived KOS: no patient identity; how far its
    images are prepared (issue 16: ``prepared`` null when nothing was)."""
    record = entry.record
    prepared = None
    if preparation is not None and entry.state == "published":
        prepared = {
            "state": preparation.state,
            "instances": preparation.prepared,
            "total": preparation.total,
            "store_bytes": preparation.nbytes,
        }
    return {
        "sop_uid": record.sop_uid,
        "study_uid": record.study_uid,
        "accession_number": record.accession_number,
        "accession_issuer": record.accession_issuer,
        "accession_issuer_type": record.accession_issuer_type,
        "cda_id": entry.cda_id,
        "location": entry.location,
        "state": entry.state,
        "institution_name": record.institution_name,
        "is_key_image_note": record.is_key_image_note,
        "series_count": len(record.series),
        "instance_count": sum(len(s.instances) for s in record.series),
        "published_at": entry.published_at.isoformat(),
        "updated_at": entry.updated_at.isoformat(),
        "prepared": prepared,
    }


async def list_kos(admin: Admin, request: Request) -> JSONResponse:
    _authorize(admin, request, "kos.list")
    state = request.query_params.get("state") or None
    if state is not None and state not in STATES:
        raise BadRequest("admin kos.list: bad state")
    limit_text = request.query_params.get("limit", "1000")
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= 10000:
        raise BadRequest("admin kos.list: bad limit")
    entries = await run_in_threadpool(admin.archive.list, state=state, limit=int(limit_text))
    preparations = await run_in_threadpool(admin.archive.preparations)
    _audit(request, "kos.list", state=state, count=len(entries))
    return JSONResponse(
        [summary(entry, preparations.get(entry.record.sop_uid)) for entry in entries]
    )
