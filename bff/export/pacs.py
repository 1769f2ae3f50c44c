"""Export to the practice's PACS from the Consumer viewer (DB.VI-CO.42)::

    GET  /api/pacs-export/{study_uid}   200 {"destinations": [{"id", "name"}], "job": {...} | null}
    POST /api/pacs-export/{study_uid}   202 {job}; JSON body {"destination": id,
                                        "series_uid": uid (absent: the whole exam)};
                                        header X-CSRF-Token (the session's)

A job's JSON: ``state`` (running, done, failed), ``sent``, ``refused``, ``total``,
``code`` (when failed) and ``message``, the French sentence the viewer shows ("Export
terminé : 124 images envoyées à PACS du cabinet."). The viewer polls the GET while the
job runs (ohif-config/panel/pacs-export.js).

Checks, in order: a signed-in session (401 E401); on POST the CSRF header (400 E400);
the feature on (destinations configured) and the study granted to the session and
opened on the Consumer from a KOS (404 E404 otherwise, as every route: the one access
decision :func:`bff.services.study_origin`; the Source viewer offers no export); a
known destination (400 E460); a series of the KOS (404 E404); one export at a time per
user and a bound per server (429 E461). Nothing is fetched nor sent before they pass.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bff.errors import AuthenticationRequired, BadRequest, NotFound
from bff.export.jobs import PacsExports
from bff.origins.base import StudyOrigin
from bff.services import UID, services_of, study_origin, uid_param

NO_STORE = {"Cache-Control": "no-store"}


def _subject(request: Request) -> str:
    session = request.scope.get("session")
    if session is None or not session.authenticated or not session.subject:
        raise AuthenticationRequired("PACS export without a signed-in session")
    return str(session.subject)


async def _exportable(request: Request, exports: PacsExports) -> StudyOrigin:
    """The study's origin when this session may export it here; 404 otherwise."""
    origin = await study_origin(request, uid_param(request, "study_uid"))
    if not exports.enabled or not origin.exports_to_pacs:
        raise NotFound("no PACS export for this study here")
    return origin


def _check_csrf(request: Request) -> None:
    session = request.scope["session"]
    token = request.headers.get("x-csrf-token", "")
    if not services_of(request).sessions.check_csrf(session, token):
        raise BadRequest("csrf token mismatch")


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()  # bounded by the request-size policy (bff/web/limits.py)
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise BadRequest("PACS export body is not JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("PACS export body is not an object")
    return body


def pacs_export_routes(exports: PacsExports) -> list[BaseRoute]:
    async def status(request: Request) -> Response:
        subject = _subject(request)
        origin = await _exportable(request, exports)
        job = exports.job_of(subject, origin.study_uid)
        return JSONResponse(
            {
                "destinations": [{"id": d.id, "name": d.name} for d in exports.destinations],
                "job": job.as_json() if job is not None else None,
            },
            headers=NO_STORE,
        )

    async def start(request: Request) -> Response:
        subject = _subject(request)
        _check_csrf(request)
        origin = await _exportable(request, exports)
        body = await _body(request)
        destination = exports.destination(str(body.get("destination", "")))
        series_uid = body.get("series_uid") or ""
        if not isinstance(series_uid, str) or (
            series_uid and (len(series_uid) > 64 or not UID.match(series_uid))
        ):
            raise BadRequest("bad series_uid")
        plan = await origin.export_plan()
        if series_uid and series_uid not in plan.series_uids:
            # Only what the session was granted: the KOS's series (issue 13).
            raise NotFound("series outside the KOS")
        chosen = (series_uid,) if series_uid else plan.series_uids
        totals = [p.total for p in origin.progress() if p.series_uid in chosen]
        total = sum(t for t in totals if t is not None) if totals else None
        job = exports.start(
            subject, origin, destination, chosen, series_uid=series_uid, total=total or None
        )
        return JSONResponse(job.as_json(), status_code=202, headers=NO_STORE)

    path = "/api/pacs-export/{study_uid}"
    return [Route(path, status, methods=["GET"]), Route(path, start, methods=["POST"])]
