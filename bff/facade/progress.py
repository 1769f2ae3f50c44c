"""``GET /api/progress``: how far each series of the session's studies has come
(DB.VI-CS.18), the series pulled only when the user displays them (DB.VI-CS.05), and
the errors to show in the viewer itself (DB.VI-CO.27).

The page around OHIF polls it while images load (ohif-config/panel/).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bff.access.decide import granted_origins
from bff.dicomweb.retrieve import retrieval_error
from bff.errors import AuthenticationRequired, ViewerError
from bff.origins.base import SeriesProgress
from bff.services import location_of, services_of


def _error(error: ViewerError | None) -> dict[str, str] | None:
    return {"code": error.code, "message": error.message} if error is not None else None


def _entry(series: SeriesProgress) -> dict[str, Any]:
    retrieval = series.retrieval
    if retrieval is None:
        return {
            "series_uid": series.series_uid,
            "description": "",
            "received": 0,
            "total": series.total,
            "complete": False,
            "on_demand": series.on_demand,
            "error": _error(series.error),
        }
    received = len(retrieval.delivered) + len(retrieval.refused)
    error: ViewerError | None = series.error
    if error is None and retrieval.finished and retrieval.error is not None:
        error = retrieval_error(retrieval)
    elif error is None and retrieval.refused:
        error = next(iter(retrieval.refused.values()))
    return {
        "series_uid": series.series_uid,
        "description": retrieval.description,
        "received": received,
        "total": retrieval.expected or series.total,
        "complete": retrieval.finished and retrieval.error is None and not retrieval.refused,
        # DB.VI-CS.05: not pulled until the user displays it (a series-level opening).
        "on_demand": series.on_demand,
        # DB.VI-CS.26: any image of the series served lossy (then never "diagnostic").
        "lossy": any(f.lossy for f in retrieval.delivered.values()),
        "error": _error(error),
    }


async def progress(request: Request) -> Response:
    session = request.scope.get("session")
    grant = session.grant if session is not None else None
    if grant is None:
        raise AuthenticationRequired("no session")
    origins = granted_origins(services_of(request).origins, grant, location_of(request))
    series = [
        {"study_uid": origin.study_uid, **_entry(entry)}
        for origin in origins
        for entry in origin.progress()
    ]
    return JSONResponse({"series": series}, headers={"Cache-Control": "no-store"})


def progress_routes() -> list[Route]:
    return [Route("/api/progress", progress)]
