"""The Consumer viewer: opening a KOS from the DMP (spec 4.2.1; DB.VI-CS.05, .06, .29).

Hand-over from the Consumer DRIMbox (server to server):

    POST /api/consumer/kos[?series=<SeriesInstanceUID>]
         Authorization: Bearer <DRIMBOX_CONSUMER_HANDOVER_SECRET>
         X-PSC-Access-Token: <the user's ProSantéConnect access token>
         Content-Type: application/dicom            (the KOS Part-10 file from the DMP)
    201  {"viewer_url": "https://<viewer>/consumer/open/<single-use token>", "expires_in": 120}

The DRIMbox sends the user's browser to ``viewer_url`` once: it grants that session the
study (or the series: series-level opening) and redirects to OHIF.

By hand (the demo): ``/consumer`` asks a professional to sign in with ProSantéConnect,
then offers a French form to open a KOS file.
"""

from __future__ import annotations

import hmac
from dataclasses import replace
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from bff.access.handover import HANDOVER_TTL_S
from bff.access.link import opening_display
from bff.access.policy import RemoteOpening
from bff.archive.kos import KosRecord
from bff.audit import audit
from bff.auth.sessions import OpenedStudy, Session
from bff.errors import AuthenticationRequired, BadRequest, Forbidden, NotFound
from bff.services import (
    audit_as,
    location_of,
    pending_of,
    services_of,
    start_at_owner,
    with_cookie,
    with_pending,
)
from bff.web.boot import before_viewer_head
from bff.web.pages import escape, layout
from bff.web.uploads import read_body, read_kos_upload, read_upload_form

#: The routes that take a KOS file: their body cap is DRIMBOX_MAX_KOS_BYTES (bff/web/limits.py).
UPLOAD_PATHS = ("/api/consumer/kos", "/consumer/open")


def _session(request: Request) -> Session | None:
    session: Session | None = request.scope.get("session")
    return session


def _enabled(request: Request) -> None:
    if not services_of(request).settings.consumer_enabled:
        raise NotFound("consumer viewer disabled")


async def grant_remote(
    request: Request,
    session: Session,
    opening: RemoteOpening,
    token: str,
    series_uid: str | None = None,
) -> None:
    """Open the KOS's study in this session: its Source(s) asked with the user's token
    (the origin the hand-over made, its metadata already asked for, when it came that
    way), and pulled from now, images and metadata, while the browser loads OHIF
    (DB.VI-CS.17; issue 5: OHIF's first image waits for the series metadata). With
    ``series_uid`` (series-level opening, DB.VI-CS.05), only that series' images are
    pulled now; each other series' when the user displays it.

    The practice's local patient id (DB.VI-CS.32) is looked up first (asked ahead at the
    hand-over; bounded, never an error): when found it replaces the Source's PatientID
    in what the viewer shows."""
    services = services_of(request)
    record = opening.record
    location = location_of(request)
    local = await services.local_patient_ids.find(record)
    if local.found:
        opening = replace(
            opening, local_patient_id=local.patient_id, local_patient_issuer=local.issuer
        )
    session.open_study(
        OpenedStudy(
            location, record.study_uid, record.sop_uid, opening_display(record, local), opening
        )
    )
    origin = services.origins.remote(
        location,
        record,
        token,
        opening.kos_bytes,
        patient_id=opening.local_patient_id,
        patient_issuer=opening.local_patient_issuer,
    )
    start_at_owner(request, origin, session, series_uid)
    audit(
        "consumer_opened",
        study_uid=record.study_uid,
        kos_sop_uid=record.sop_uid,
        series=len(record.series),
        series_uid=series_uid,
        refused=origin.refusal.code if origin.refusal else None,
    )


def _viewer(record: KosRecord, series_uid: str | None) -> str:
    """OHIF on the study; at series level (DB.VI-CS.05) showing that series first with
    ``initialSeriesInstanceUID``, which keeps the other series in the series tree
    (``SeriesInstanceUIDs`` would filter them out; DB.VI-CS.06)."""
    url = f"/viewer?StudyInstanceUIDs={record.study_uid}"
    if series_uid:
        url += f"&initialSeriesInstanceUID={series_uid}"
    return url


# -- server-to-server hand-over ------------------------------------------------------------


async def handover(request: Request) -> Response:
    _enabled(request)
    services = services_of(request)
    secret = services.settings.consumer_handover_secret
    given = request.headers.get("authorization", "")
    if not secret or not hmac.compare_digest(given.encode(), f"Bearer {secret}".encode()):
        audit("consumer_handover_denied")
        raise Forbidden("bad hand-over secret")
    token = request.headers.get("x-psc-access-token", "")
    if not token:
        raise BadRequest("missing X-PSC-Access-Token")
    body = await read_body(request, services.settings.max_kos_bytes)
    record = await read_kos_upload(body)
    series_uid = request.query_params.get("series")
    if series_uid and series_uid not in {s.series_uid for s in record.series}:
        raise BadRequest("series not in the KOS")
    opening = RemoteOpening(record, body)
    one_time = services.handovers.add(opening, token, series_uid)
    audit(
        "consumer_handover",
        study_uid=record.study_uid,
        kos_sop_uid=record.sop_uid,
        series_uid=series_uid,
    )
    # The Source is asked for the series metadata now, while the browser comes (issue 5,
    # DB.VI-CO.39: OHIF's first image waits for it; the Source takes 1-2 s to answer
    # it). Kept server side (bff/dicomweb/metadata_ahead.py), never served before the
    # one-time URL is opened; no image is pulled before that either.
    services.origins.remote(location_of(request), record, token, body).ask_ahead()
    # The practice's local patient id is looked up meanwhile too (DB.VI-CS.32).
    services.local_patient_ids.ask_ahead(record)
    url = str(request.url.replace(path=f"/consumer/open/{one_time}", query=""))
    return JSONResponse({"viewer_url": url, "expires_in": int(HANDOVER_TTL_S)}, 201)


async def open_handover(request: Request) -> Response:
    _enabled(request)
    services = services_of(request)
    item = services.handovers.take(str(request.path_params["token"]))  # single use
    if item is None:
        raise AuthenticationRequired("unknown, used or expired hand-over")
    session = _session(request)
    if session is None or session.tokens.get("access_token") != item.access_token:
        # Another user's token (or none): a session of its own, inheriting nothing.
        session = services.sessions.create()
    # A new session id at every hand-over (the old cookie is dead: no fixation).
    session = services.sessions.renew(session)
    session.profile = "professional"
    session.provider = "psc"
    session.subject = session.subject or "consumer-handover"
    session.tokens = {"access_token": item.access_token}
    audit_as(request, session)
    await grant_remote(request, session, item.opening, item.access_token, item.series_uid)
    return with_cookie(
        request, RedirectResponse(_viewer(item.opening.record, item.series_uid), 303), session
    )


# -- by hand (demo) ---------------------------------------------------------------------------


def _open_page(session: Session, *, demo_kos: bool, head: str) -> str:
    demo = (
        '<form method="post" action="/consumer/open" class="choices">'
        f'<input type="hidden" name="csrf" value="{escape(session.csrf_token)}">'
        '<input type="hidden" name="demo" value="1">'
        '<button type="submit">Ouvrir l\'examen de démonstration'
        "<small>le KOS du scanner thoraco-abdominal de démonstration</small></button></form>"
        if demo_kos
        else ""
    )
    body = demo + (
        f"<p>Connecté : {escape(session.user_display or '')}</p>"
        "<p>Choisissez le fichier KOS de l'examen, tel que récupéré dans le DMP. Les images "
        "seront téléchargées depuis la DRIMbox Source de l'établissement producteur.</p>"
        '<form method="post" action="/consumer/open" enctype="multipart/form-data">'
        f'<input type="hidden" name="csrf" value="{escape(session.csrf_token)}">'
        '<p><label for="kos">Fichier KOS (DICOM)</label><br>'
        '<input id="kos" type="file" name="kos" accept=".dcm,application/dicom" required></p>'
        '<p><label for="series">Ouvrir directement une série (facultatif, UID)</label><br>'
        '<input id="series" type="text" name="series" autocomplete="off"></p>'
        '<div class="choices"><button type="submit">Ouvrir l\'examen</button></div></form>'
    )
    return layout("Ouvrir un examen du DMP", body, head=head)


def _login_page(csrf_token: str, *, head: str) -> str:
    body = (
        "<p>La visionneuse de la DRIMbox Consommatrice est réservée aux professionnels de "
        "santé.</p>"
        '<div class="choices"><form method="post" action="/auth/login">'
        f'<input type="hidden" name="csrf" value="{escape(csrf_token)}">'
        '<input type="hidden" name="profile" value="professional">'
        '<input type="hidden" name="provider" value="psc">'
        '<button type="submit" data-provider="psc">Se connecter avec Pro Santé Connect'
        "<small>carte CPS ou e-CPS</small></button></form></div>"
    )
    return layout("Visionneuse de la DRIMbox Consommatrice", body, head=head)


async def consumer_home(request: Request) -> Response:
    _enabled(request)
    session = _session(request)
    # The Consumer's own pages fetch OHIF's boot files meanwhile (bff/web/boot.py): the
    # spec's test opens the exam from a browser already on them (4.6.2, DB.VI-CO.39).
    head = before_viewer_head(services_of(request).site.boot_files)
    if session is not None and session.authenticated and session.provider == "psc":
        page = _open_page(session, demo_kos=_demo_kos(request) is not None, head=head)
        return with_cookie(request, HTMLResponse(page), session)
    # Not signed in: no session until the login succeeds; the sign-in form's CSRF token
    # waits in the signed pending cookie (bff/auth/pending.py), with no exam link.
    pending = services_of(request).pending.new(earlier=pending_of(request))
    return with_pending(request, HTMLResponse(_login_page(pending.csrf, head=head)), pending)


async def open_by_hand(request: Request) -> Response:
    _enabled(request)
    session = _session(request)
    if session is None or not session.authenticated or session.provider != "psc":
        raise AuthenticationRequired("consumer opening without a PSC session")
    settings = services_of(request).settings
    form = await read_upload_form(
        request, max_file_bytes=settings.max_kos_bytes, max_form_bytes=settings.max_form_bytes
    )
    if not services_of(request).sessions.check_csrf(session, form.fields.get("csrf", "")):
        raise BadRequest("csrf token mismatch")
    demo = _demo_kos(request) if form.fields.get("demo") else None
    if demo is not None:
        body = demo.read_bytes()
    elif "kos" in form.files:
        body = form.files["kos"]
    else:
        raise BadRequest("no KOS file")
    record = await read_kos_upload(body)
    series_uid = form.fields.get("series", "").strip() or None
    if series_uid and series_uid not in {s.series_uid for s in record.series}:
        raise BadRequest("series not in the KOS")
    token = str(session.tokens.get("access_token", ""))
    await grant_remote(request, session, RemoteOpening(record, body), token, series_uid)
    # The grant written to the shared store (with_cookie saves the session): another
    # replica, or this one after a restart, serves the images with it.
    return with_cookie(request, RedirectResponse(_viewer(record, series_uid), 303), session)


def _demo_kos(request: Request) -> Path | None:
    settings = services_of(request).settings
    if settings.mode != "demo" or not settings.consumer_demo_kos:
        return None
    return Path(settings.consumer_demo_kos)


def consumer_routes() -> list[BaseRoute]:
    return [
        Route("/api/consumer/kos", handover, methods=["POST"]),
        Route("/consumer/open/{token}", open_handover),
        Route("/consumer", consumer_home),
        Route("/consumer/open", open_by_hand, methods=["POST"]),
    ]
