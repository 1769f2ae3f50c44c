"""The one place where errors become responses (STYLE.md point 4).

JSON ``{"code", "message"}`` for DICOMweb and API callers (OHIF, machines), a French HTML
page for people. The message is one of our fixed French sentences; raw input and
exception details never reach the body (details go to the log). A failure only the
producing site can mend (DB.VI-SO.28, :attr:`~bff.errors.ViewerError.contact_site`) adds
``"contact_site": true`` to the JSON (the viewer names the site, from the KOS) and the
invitation to contact it to the page, with the site's name when the error carries it.
"""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from bff.errors import CONTACT_SITE, ViewerError
from bff.web.pages import error_page

log = logging.getLogger(__name__)

TITLES = {
    400: "Demande invalide",
    401: "Authentification requise",
    403: "Accès refusé",
    404: "Introuvable",
    406: "Format non disponible",
    409: "Identifiant patient incohérent",
    413: "Demande trop volumineuse",
    415: "Format non accepté",
    502: "Serveur d'images indisponible",
    503: "Service indisponible",
    504: "Délai dépassé",
}


def wants_json(request: Request) -> bool:
    path = request.url.path
    if path.startswith(("/dicomweb/", "/api/")) or path == "/dicomweb":
        return True
    accept = request.headers.get("accept", "")
    return "json" in accept and "text/html" not in accept


def render_error(
    request: Request,
    status: int,
    code: str,
    message: str,
    *,
    contact_site: bool = False,
    site: str = "",
) -> Response:
    headers = {"Cache-Control": "no-store", "X-Error-Code": code}
    if wants_json(request):
        body: dict[str, str | bool] = {"code": code, "message": message}
        if contact_site:
            body["contact_site"] = True
        return JSONResponse(body, status, headers=headers)
    page = error_page(
        TITLES.get(status, "Erreur"),
        message,
        code,
        contact=CONTACT_SITE if contact_site else "",
        site=site,
    )
    return HTMLResponse(page, status, headers=headers)


async def viewer_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ViewerError)
    return error_response(request, exc)


def error_response(request: Request, exc: ViewerError) -> Response:
    """The response of one of our errors, logged (also for the middleware that answers
    before the routes, :mod:`bff.web.limits`)."""
    level = logging.WARNING if exc.status >= 500 else logging.INFO
    log.log(
        level,
        "%s %s -> %s %s: %s",
        request.method,
        request.url.path,
        exc.status,
        exc.code,
        exc.detail,
    )
    return render_error(
        request, exc.status, exc.code, exc.message, contact_site=exc.contact_site, site=exc.site
    )


async def unexpected_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, ViewerError):  # raised in a middleware (the session's store)
        return await viewer_error(request, exc)
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return render_error(request, 500, ViewerError.code, ViewerError.message)


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own HTTP errors (unknown route, wrong method) in our format."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        return render_error(request, 405, "E405", "Cette opération n'est pas permise.")
    if exc.status_code == 404:
        return render_error(request, 404, "E404", "L'élément demandé est introuvable.")
    return render_error(request, exc.status_code, f"E{exc.status_code}", "La demande est invalide.")
