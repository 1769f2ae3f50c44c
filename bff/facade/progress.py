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


def _error(error: ViewerError | None) -> dict[str, str | bool] | None:
    """The error as the viewer shows it: code, French message, and whether only the
    producing site can mend it (DB.VI-SO.28: the viewer then names it, from the KOS)."""
    if error is None:
        return None
    shown: dict[str, str | bool] = {"code": error.code, "message": error.message}
    if error.contact_site:
        shown["contact_site"] = True
    return shown


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
    """401 E401 once the session has ended (the page around OHIF then says so)."""
    session = request.scope.get("session")
    if session is None or not session.authenticated:
        raise AuthenticationRequired("no signed-in session")
    grant = session.grant
    origins = granted_origins(services_of(request).origins, grant, location_of(request))
    series = [
        {"study_uid": origin.study_uid, **_entry(entry)}
        for origin in origins
        for entry in origin.progress()
    ]
    return JSONResponse({"series": series}, headers={"Cache-Control": "no-store"})


def progress_routes() -> list[Route]:
    return [Route("/api/progress", progress)]
