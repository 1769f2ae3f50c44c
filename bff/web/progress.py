"""``GET /api/progress``: how far each series of the session's studies has come
(DB.VI-CS.18), and the errors to show in the viewer itself (DB.VI-CO.27).

The page around OHIF polls it while images load (ohif-config/drimbox-panel.js).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bff.auth.sessions import Session
from bff.dicomweb.retrieve import Retriever, SeriesRetrieval, retrieval_error
from bff.errors import AuthenticationRequired, ViewerError
from bff.source.routes import location_of


def _error(error: ViewerError | None) -> dict[str, str] | None:
    return {"code": error.code, "message": error.message} if error is not None else None


def _entry(series_uid: str, retrieval: SeriesRetrieval | None, total: int | None) -> dict[str, Any]:
    if retrieval is None:
        return {
            "series_uid": series_uid,
            "description": "",
            "received": 0,
            "total": total,
            "complete": False,
            "error": None,
        }
    received = len(retrieval.delivered) + len(retrieval.refused)
    error: ViewerError | None = None
    if retrieval.finished and retrieval.error is not None:
        error = retrieval_error(retrieval)
    elif retrieval.refused:
        error = next(iter(retrieval.refused.values()))
    expected = retrieval.expected or total
    return {
        "series_uid": series_uid,
        "description": retrieval.description,
        "received": received,
        "total": expected,
        "complete": retrieval.finished and retrieval.error is None and not retrieval.refused,
        # DB.VI-CS.26: any image of the series served lossy (then never "diagnostic").
        "lossy": any(f.lossy for f in retrieval.delivered.values()),
        "error": _error(error),
    }


async def progress(request: Request) -> Response:
    session: Session | None = request.scope.get("session")
    if session is None or not session.studies:
        raise AuthenticationRequired("no session")
    location = location_of(request)
    retriever: Retriever = request.app.state.retriever
    series: list[dict[str, Any]] = []
    for opened in session.studies:
        if opened.location != location:
            continue
        if opened.remote is not None:
            for kos_series in opened.remote.record.series:
                upstream = opened.remote.upstreams[kos_series.series_uid]
                retrieval = retriever.find(upstream.origin, opened.study_uid, kos_series.series_uid)
                entry = _entry(kos_series.series_uid, retrieval, len(kos_series.instances))
                series.append({"study_uid": opened.study_uid, **entry})
            continue
        origin = request.app.state.locations[location].origin
        for retrieval in retriever.for_study(origin, opened.study_uid):
            entry = _entry(retrieval.key.series_uid, retrieval, None)
            series.append({"study_uid": opened.study_uid, **entry})
    return JSONResponse({"series": series}, headers={"Cache-Control": "no-store"})


def progress_routes() -> list[Route]:
    return [Route("/api/progress", progress)]
