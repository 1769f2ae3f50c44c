"""The Source viewer's access path (spec 4.1, 4.2.2; DB.VI-SO.07, .08, .114, .115, .33,
.152, .28; DB.VI-CS.03).

    GET  /IHEInvokeImageDisplay?requestType=STUDY&studyUID=..&accessionNumber=..&idCDA=..
         -> validate the link, keep it in a signed short-lived cookie (no session for an
            anonymous view: bff/auth/pending.py), show the profile choice page
    POST /auth/login      profile + provider -> redirect to ProSantéConnect / FranceConnect+
                          (the round trip kept server side by its state, the state in
                          the cookie)
    GET  /auth/callback   code + state -> tokens -> checks against the KOS archive
                          -> a new session, granted that one study -> /viewer
    GET  /viewer          OHIF, only for a session granted the studies it names
    GET  /api/session     what the viewer shows on opening (identity from the KOS)
    GET  /api/session/state  whether the session still lives (not counted as activity)
    POST /auth/logout     ends the session here, then at the provider (RP-initiated logout),
                          also for a session that expired meanwhile
    GET  /auth/logged-out where the provider sends the browser back after its logout

Every check is made against the KOS archive, never the images. Every refusal is the
French message of DB.VI-SO.28 with a stable code, and an audit entry.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import logging
from collections.abc import Coroutine
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from bff.access.link import check_link, check_patient, opening_display
from bff.access.params import ViewerLink, parse_link
from bff.access.patient_id import check_images_patient
from bff.archive.kos import KosRecord
from bff.audit import audit
from bff.auth.middleware import SESSION_STATE_PATH, read_cookie
from bff.auth.pending import Pending, PendingLogin
from bff.auth.sessions import OpenedStudy, Session
from bff.errors import (
    AccessRefused,
    AuthenticationRequired,
    BadRequest,
    LoginFailed,
    NotFound,
    TooManyRequests,
    ViewerError,
)
from bff.services import (
    Services,
    audit_as,
    client_key,
    location_of,
    pending_of,
    services_of,
    start_at_owner,
    study_origin,
    with_cookie,
    with_pending,
)
from bff.web.boot import before_viewer_head
from bff.web.cookies import without_pending_cookie
from bff.web.pages import logged_out_page, profile_page
from bff.web.uploads import small_form

log = logging.getLogger(__name__)

OHIF_MODES = ("viewer", "segmentation", "tmtv", "microscopy", "dynamic-volume")
PROVIDERS_BY_PROFILE = {"patient": ("fcp", "fc"), "professional": ("psc",)}


# -- helpers ---------------------------------------------------------------------------


def _session(request: Request) -> Session | None:
    session: Session | None = request.scope.get("session")
    return session


def _redirect_uri(request: Request) -> str:
    return str(request.url.replace(path="/auth/callback", query="", fragment=""))


def _viewer_url(study_uids: list[str]) -> str:
    return "/viewer?StudyInstanceUIDs=" + quote(",".join(study_uids), safe=",")


# -- entry and profile choice -------------------------------------------------------------


async def invoke_image_display(request: Request) -> Response:
    """The link of the radiology report (DB.VI-SO.07): validate, then ask the profile.
    Nothing is written server side for it (issue 13): the link waits for the login in a
    signed short-lived cookie (bff/auth/pending.py)."""
    services = services_of(request)
    services.link_attempts.hit(client_key(request))  # slows down guessing
    link = parse_link(request.query_params.multi_items())
    location = location_of(request)
    session = _session(request)
    grant = session.grant if session is not None else None
    ref = grant.find(location, link.study_uid) if grant is not None else None
    if ref is not None and not ref.remote and await services.published.published(ref.kos_sop_uid):
        return RedirectResponse(_viewer_url([link.study_uid]), 303)
    # A new exam link always goes through the checks, and a successful login makes a new
    # session (callback): what a session in this browser had granted is kept only if the
    # same person signs in (Session.signed_in); on a shared computer, another person
    # inherits nothing.
    pending = services.pending.new(link, location, earlier=pending_of(request))
    audit("link_opened", location=location, study_uid=link.study_uid)
    _warm_while_signing_in(request, link, location)
    page = profile_page(
        csrf_token=pending.csrf,
        fc_enabled="fc" in services.providers,
        # While the user chooses and signs in, the browser fetches OHIF (bff/web/boot.py).
        head=before_viewer_head(services.site.boot_files),
    )
    return with_pending(request, HTMLResponse(page), pending)


async def login(request: Request) -> Response:
    """The profile was chosen (DB.VI-SO.08): go to its identity provider. The round trip
    is kept server side by its state from now on; the cookie names that state."""
    services = services_of(request)
    pending = pending_of(request)
    if pending is None:  # none, tampered with, or too old: reopen the report link
        raise AuthenticationRequired("login without a pending link")
    services.link_attempts.hit(client_key(request))
    form = await small_form(request)
    if not services.pending.check_csrf(pending, str(form.get("csrf", ""))):
        raise BadRequest("csrf token mismatch")
    profile, provider_name = str(form.get("profile", "")), str(form.get("provider", ""))
    providers = services.providers
    if provider_name not in PROVIDERS_BY_PROFILE.get(profile, ()) or provider_name not in providers:
        raise BadRequest("unknown profile or provider")
    if pending.link is None and provider_name != "psc":  # the Consumer: professionals only
        raise BadRequest("the Consumer viewer is for ProSantéConnect only")
    redirect_uri = _redirect_uri(request)
    started = await providers[provider_name].start(redirect_uri)
    services.logins.add(
        PendingLogin(
            state=started.state,
            nonce=started.nonce,
            code_verifier=started.code_verifier,
            provider=provider_name,
            redirect_uri=redirect_uri,
            profile=profile,
        )
    )
    response = RedirectResponse(started.url, 303)
    return with_pending(request, response, dataclasses.replace(pending, state=started.state))


# -- callback and checks -------------------------------------------------------------------


def _pending_login(request: Request) -> tuple[Pending, PendingLogin]:
    """The round trip this callback ends: its state must be the one this browser's
    pending cookie names (bound to the browser that started it), and is used once."""
    state = request.query_params.get("state", "")
    pending = pending_of(request)
    if (
        pending is None
        or not state
        or not hmac.compare_digest(state.encode(), pending.state.encode())
    ):
        raise LoginFailed("callback without a pending login (missing or foreign state)")
    started = services_of(request).logins.take(state)
    if started is None:
        raise LoginFailed("callback for an unknown, used or expired state (replay)")
    return pending, started


def _new_session(request: Request) -> Session:
    """The session a successful login makes: a new id (a cookie known before the login,
    planted or read on a shared computer, never carries what the login grants). What
    this browser's earlier session had granted is carried, and kept only if the same
    person signed in (Session.signed_in); the earlier session ends."""
    store = services_of(request).sessions
    session = store.create()
    previous = _session(request)
    if previous is not None:
        session.carried = list(previous.studies)
        session.carried_subject = previous.subject
        store.delete(previous)
    return session


def _signed_in(request: Request, response: Response, session: Session) -> Response:
    response = with_cookie(request, response, session)
    return without_pending_cookie(response, services_of(request).pending)


async def callback(request: Request) -> Response:
    """The provider's redirect back (DB.VI-SO.130-137): the login's outcome is counted
    by provider (metrics, issue 15 item 4): success, refused (an access check said no),
    failed (the login itself: state, provider error, token checks), error (unexpected)."""
    metrics = services_of(request).metrics
    provider: list[str] = []  # named once the pending login is found

    def named() -> str:
        return provider[0] if provider else "unknown"

    try:
        response = await _callback(request, provider)
    except AccessRefused:
        metrics.login(named(), "refused")
        raise
    except ViewerError:
        metrics.login(named(), "failed")
        raise
    except Exception:
        metrics.login(named(), "error")
        raise
    metrics.login(named(), "success")
    return response


async def _callback(request: Request, named: list[str]) -> Response:
    pending, started = _pending_login(request)
    named.append(started.provider)
    if "error" in request.query_params or "code" not in request.query_params:
        raise LoginFailed("provider answered an error", code="E431")
    services = services_of(request)
    provider = services.providers[started.provider]
    result = await provider.finish(
        code=request.query_params["code"],
        redirect_uri=started.redirect_uri,
        nonce=started.nonce,
        code_verifier=started.code_verifier,
        response_issuer=request.query_params.get("iss"),
    )
    claims = {**result.id_claims, **result.userinfo}
    if pending.link is None:
        # A professional signing in to the Consumer viewer (DB.VI-CS.03): no exam link.
        if started.provider != "psc":
            raise LoginFailed("callback without a pending link")
        session = _new_session(request)
        _sign_in(session, started, claims, result.tokens)
        audit_as(request, session)
        audit("consumer_sign_in", provider="psc")
        return _signed_in(request, RedirectResponse("/consumer", 303), session)
    link, location = pending.link, pending.location
    subject_key = f"sub:{started.provider}:{claims.get('sub')}"
    if services.failed_checks.exceeded(subject_key):  # no oracle once over the bound
        raise TooManyRequests("too many refused link checks for this person")
    try:
        kos = await check_link(services.archive, link, location)
        if started.profile == "patient":
            check_patient(kos, claims)
    except AccessRefused as exc:
        audit(
            "access_refused",
            location=location,
            study_uid=link.study_uid,
            actor=services.audit_trail.pseudonymizer.actor(started.provider, claims.get("sub")),
            profile=started.profile,
            provider=started.provider,
            code=exc.reason,
            reason=exc.detail,
        )
        services.failed_checks.hit(subject_key)
        raise
    # The images' patient id against the archive (DB.SO.134, .47), before the grant: a
    # mismatch (E425) or an exam the PACS lacks (E426) is refused, nothing of the images
    # served; the PACS failing is its own error (E50x), never a refusal (DB.VI-SO.28).
    await check_images_patient(services.origins.pacs(location), kos, location)
    session = _new_session(request)
    _sign_in(session, started, claims, result.tokens)
    audit_as(request, session)
    session.open_study(
        OpenedStudy(
            location,
            link.study_uid,
            kos.record.sop_uid,
            opening_display(kos.record),
            series_uids=tuple(s.series_uid for s in kos.record.series),
        )
    )
    audit(
        "access_granted",
        location=location,
        study_uid=link.study_uid,
        kos_sop_uid=kos.record.sop_uid,
        profile=session.profile,
        provider=started.provider,
    )
    start_retrievals(request, kos.record, location, session)
    return _signed_in(request, RedirectResponse(_viewer_url([link.study_uid]), 303), session)


def _warm_while_signing_in(request: Request, link: ViewerLink, location: str) -> None:
    """While the user chooses a profile and signs in (seconds), ask the PACS for the
    exam's series metadata if the link matches a published KOS (issue 5: the first
    image waits for it, DB.VI-SO.37). Nothing is served, and nothing else is retrieved,
    before the grant (the checks run again then, with the identity); the answer is the
    same page whatever the link (the check runs after it, in the background)."""
    services = services_of(request)
    if location not in services.origins.locations:
        return

    async def warm() -> None:
        try:
            kos = await check_link(services.archive, link, location)
        except AccessRefused:
            return
        except Exception as exc:  # an optimization: the grant checks and fetches again
            log.warning("metadata not asked ahead for %s: %r", link.study_uid, exc)
            return
        series = [s.series_uid for s in kos.record.series]
        services.origins.local(location, kos.record.study_uid, kos_series=series).ask_ahead()

    _background(services, warm(), f"warm {link.study_uid}")


def _background(services: Services, work: Coroutine[Any, Any, None], name: str) -> None:
    task = asyncio.create_task(work, name=name)
    services.background.add(task)
    task.add_done_callback(services.background.discard)


def start_retrievals(request: Request, record: KosRecord, location: str, session: Session) -> None:
    """Start pulling the exam now, while the browser loads OHIF (the origin's
    start_at_grant: metadata answers prepared as OHIF will ask for them, same host,
    institution from the KOS), on the replica that will serve its images
    (:func:`~bff.services.start_at_owner`)."""
    origin = services_of(request).origins.local(
        location,
        record.study_uid,
        institution=record.institution_name,
        kos_series=[s.series_uid for s in record.series],
    )
    start_at_owner(request, origin, session)


def _sign_in(
    session: Session, started: PendingLogin, claims: dict[str, Any], tokens: dict[str, Any]
) -> None:
    session.profile = started.profile
    session.provider = started.provider
    session.signed_in(str(claims.get("sub")))
    session.user_display = display_name(claims, started.profile)
    session.tokens = kept_tokens(tokens)


def kept_tokens(tokens: dict[str, Any]) -> dict[str, Any]:
    """What the session keeps of the provider's tokens, server side only: the access token
    (the Consumer forwards the PSC one to Sources) and the id_token (the ``id_token_hint``
    of the logout at the provider, the one time it goes to the browser)."""
    return {k: tokens[k] for k in ("access_token", "expires_at", "id_token") if k in tokens}


def display_name(claims: dict[str, Any], profile: str) -> str:
    given = str(claims.get("given_name", "")).strip()
    family = str(claims.get("family_name", "")).strip()
    name = f"{given} {family}".strip()
    return f"Dr {name}" if profile == "professional" and name else name


# -- the viewer and its session ------------------------------------------------------------


async def viewer(request: Request) -> Response:
    """OHIF's routes: only for a session granted every study named in the URL."""
    if services_of(request).open_access:
        return services_of(request).site.index(request)
    session = _session(request)
    if session is None or session.grant is None:
        raise AuthenticationRequired("viewer without a granted session")
    location = location_of(request)
    granted = set(session.grant.study_uids(location))
    asked = [u for u in request.query_params.get("StudyInstanceUIDs", "").split(",") if u]
    if not asked:
        return RedirectResponse(_viewer_url(sorted(granted)), 303)
    if not set(asked) <= granted:
        raise NotFound("viewer asked for a study outside the grant")
    for study_uid in asked:  # the same decision as the facade: unpublished since, 404
        await study_origin(request, study_uid)
    return services_of(request).site.index(request)


async def session_info(request: Request) -> Response:
    """What the page shows around OHIF (identity banner, DB.VI-CS.29); no token here."""
    session = _session(request)
    if session is None or not session.authenticated:
        raise AuthenticationRequired("no session")
    location = location_of(request)
    opened_here = [s for s in session.studies if s.location == location]
    studies = [{"study_uid": s.study_uid, **s.display} for s in opened_here]
    payload = {
        # DB.VI-CS.26: whether this deployment is referenced as a medical device.
        "medical_device": services_of(request).settings.medical_device,
        "profile": session.profile,
        "user": session.user_display,
        "csrf": session.csrf_token,
        "studies": studies,
        # Issue 14: how the exam is opened again once the session ends: from the
        # Consumer DRIMbox's page, or from the report link.
        "reopen": "consumer" if any(s.remote for s in opened_here) else "report",
    }
    return JSONResponse(payload, headers={"Cache-Control": "no-store"})


async def session_state(request: Request) -> Response:
    """Whether the session still lives, for the viewer's watch (issue 14): 401 E401 once
    it has expired or was ended elsewhere. Not counted as activity (bff/auth/middleware)."""
    session = _session(request)
    if session is None or not session.authenticated:
        raise AuthenticationRequired("session ended")
    return JSONResponse({"active": True}, headers={"Cache-Control": "no-store"})


async def logout(request: Request) -> Response:
    """End the session here, then at the identity provider where it offers
    RP-initiated logout (FranceConnect+ does): the browser goes to its
    ``end_session_endpoint`` with the id_token as ``id_token_hint`` and comes back to
    ``/auth/logged-out``. A session that expired meanwhile (the viewer says so, issue 14)
    is still ended at its provider, from what the store kept of it."""
    session = _session(request)
    store = services_of(request).sessions
    cookie = read_cookie(request.scope, store.cookie_name)
    ending = store.to_end(session, cookie)
    provider_logout: str | None = None
    if ending is not None:
        form = await small_form(request)
        if not hmac.compare_digest(ending.csrf_token.encode(), str(form.get("csrf", "")).encode()):
            raise BadRequest("csrf token mismatch")
        profile = session.profile if session is not None else None
        audit("logout", profile=profile, provider=ending.provider, expired=session is None)
        store.end(session, cookie)
        provider = services_of(request).providers.get(ending.provider or "")
        if provider is not None and ending.id_token is not None:
            back = str(request.url.replace(path="/auth/logged-out", query="", fragment=""))
            provider_logout = await provider.end_session_url(ending.id_token, back)
    response: Response
    if provider_logout is not None:
        response = RedirectResponse(provider_logout, 303, headers={"Cache-Control": "no-store"})
    else:
        response = _logged_out_page()
    response.delete_cookie(services_of(request).sessions.cookie_name, path="/")
    return without_pending_cookie(response, services_of(request).pending)


async def logged_out(request: Request) -> Response:
    """Where the provider's logout sends the browser back."""
    return _logged_out_page()


def _logged_out_page() -> Response:
    return HTMLResponse(logged_out_page(), headers={"Cache-Control": "no-store"})


async def jwks(request: Request) -> Response:
    """Our public encryption key(s): FranceConnect+ encrypts id_token and userinfo to them."""
    return JSONResponse(dict(services_of(request).public_jwks))


def source_routes() -> list[BaseRoute]:
    return [
        Route("/IHEInvokeImageDisplay", invoke_image_display),
        Route("/auth/login", login, methods=["POST"]),
        Route("/auth/callback", callback),
        Route("/auth/logout", logout, methods=["POST"]),
        Route("/auth/logged-out", logged_out),
        Route("/auth/jwks", jwks),
        Route("/api/session", session_info),
        Route(SESSION_STATE_PATH, session_state),
        *(Route(f"/{mode}", viewer) for mode in OHIF_MODES),
    ]
