"""The application's services: one typed, frozen object built in the lifespan
(:func:`bff.app.create_app`) and found by every route through :func:`services_of`
(STYLE.md: ``app.state`` is not a bag).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import HTTPConnection
from starlette.responses import Response

from bff.access.decide import origin_for
from bff.access.handover import HandoverStore
from bff.access.limits import InFlight, RateLimit
from bff.access.local_patient_id import LocalPatientIds
from bff.access.published import PublishedKos
from bff.archive.store import ArchiveStore
from bff.audit import Pseudonymizer
from bff.auth.introspect import PscIntrospector
from bff.auth.middleware import read_cookie
from bff.auth.oidc import OidcProvider
from bff.auth.pending import Pending, PendingCookies, PendingLogins
from bff.auth.sessions import Session, SessionStore
from bff.dicomweb.retrieve import Retriever
from bff.errors import AuthenticationRequired, BadRequest
from bff.origins.base import StudyOrigin
from bff.origins.factory import OriginFactory
from bff.origins.preparation import Preparer
from bff.origins.whitelist import Whitelist
from bff.settings import Settings
from bff.state.audit_log import AuditTrail
from bff.web.cookies import with_pending_cookie, with_session_cookie
from bff.web.metrics import Metrics
from bff.web.owner import StudyOwner
from bff.web.static import OhifSite


@dataclass(frozen=True)
class Services:
    settings: Settings
    sessions: SessionStore
    #: what waits for a login: a signed cookie, and the round trips under way
    pending: PendingCookies
    logins: PendingLogins
    archive: ArchiveStore
    retriever: Retriever
    #: every study's origin (the location PACS, remote Sources) and the locations
    origins: OriginFactory
    #: identity providers with a client secret configured, by name ('psc', 'fcp', 'fc')
    providers: Mapping[str, OidcProvider]
    #: our public encryption key(s), for FranceConnect+ (GET /auth/jwks)
    public_jwks: Mapping[str, Any]
    #: Source role: Consumers' PSC tokens are checked by introspection (DRIM-M)
    psc_introspector: PscIntrospector
    #: Consumer role: hand-overs waiting for the browser
    handovers: HandoverStore
    #: whether a grant's KOS is still published (re-checked on use, issue 13)
    published: PublishedKos
    #: bounds per user and per client (issue 13, bff/access/limits.py)
    frame_waits: InFlight
    link_attempts: RateLimit
    failed_checks: RateLimit
    #: the stock OHIF build and our files around it (its boot files: bff/web/boot.py)
    site: OhifSite
    #: tasks started in the background (kept referenced until done)
    background: set[asyncio.Task[Any]]
    #: the ANS whitelist, verified (both roles); None: every Source and Consumer refused
    whitelist: Whitelist | None = None
    #: Consumer role: the practice's local patient id, looked up by INS (DB.VI-CS.32)
    local_patient_ids: LocalPatientIds = field(
        default_factory=lambda: LocalPatientIds(None, frozenset(), timeout=1.0)
    )
    #: the preparation of published exams (issue 16); None when turned off
    preparer: Preparer | None = None
    #: pseudonyms of the audit, and its table (issue 15 item 5, bff/state/audit_log.py)
    audit_trail: AuditTrail = field(default_factory=lambda: AuditTrail(Pseudonymizer.ephemeral()))
    #: Prometheus metrics of this application (issue 15 item 4)
    metrics: Metrics = field(default_factory=Metrics)
    #: several replicas: the way to a study's owner (bff/web/owner.py); None: this one
    owner: StudyOwner | None = None

    @property
    def open_access(self) -> bool:
        return self.settings.open_access


def services_of(connection: HTTPConnection | Starlette) -> Services:
    """The services of the application serving this request (or of this app)."""
    app = connection if isinstance(connection, Starlette) else connection.app
    services = getattr(app.state, "services", None)
    if not isinstance(services, Services):
        raise RuntimeError("the application's services are not started (lifespan)")
    return services


def location_of(connection: HTTPConnection) -> str:
    """The location (registered FQDN) the request came through (DB.VI-SO.07, .127)."""
    return services_of(connection).origins.location_of(connection.url.hostname or "")


UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def uid_param(request: HTTPConnection, name: str) -> str:
    value = str(request.path_params[name])
    if len(value) > 64 or not UID.match(value):
        raise BadRequest(f"bad {name}")
    return value


def signed_in_session(request: HTTPConnection) -> Session | None:
    """The request's signed-in session; without one (none, expired, revoked, or a login
    not finished), :class:`~bff.errors.AuthenticationRequired` (401 E401: the viewer
    says the session ended, issue 14), unless the deployment is in open access (the
    facade's own tests: None)."""
    session: Session | None = request.scope.get("session")
    if session is not None and session.authenticated:
        return session
    if services_of(request).open_access:
        return None
    raise AuthenticationRequired("no signed-in session")


async def study_origin(request: HTTPConnection, study_uid: str) -> StudyOrigin:
    """The one access decision for this request's study (401 without a signed-in
    session; 404 / E203 before any fetch)."""
    services = services_of(request)
    session = signed_in_session(request)
    return await origin_for(
        services.origins,
        session.grant if session is not None else None,
        location_of(request),
        study_uid,
        open_access=services.open_access,
        published=services.published,
    )


def client_key(connection: HTTPConnection) -> str:
    """The client address (behind a proxy: what the proxy says, see docs/deployment)."""
    return "ip:" + (connection.client.host if connection.client else "?")


def with_cookie(connection: HTTPConnection, response: Response, session: Session) -> Response:
    """``response`` carrying ``session``'s cookie (bff/web/cookies.py)."""
    return with_session_cookie(response, services_of(connection).sessions, session)


def audit_as(connection: HTTPConnection, session: Session) -> None:
    """This request's audit entries from now on name ``session`` and its person (a
    sign-in or hand-over made it during the request)."""
    trail = services_of(connection).audit_trail
    trail.bind_session(session.id, session.provider, session.subject)


def pending_of(connection: HTTPConnection) -> Pending | None:
    """The report link (or Consumer sign-in) this browser's signed cookie says awaits a
    login; None when absent, forged or too old (bff/auth/pending.py)."""
    cookies = services_of(connection).pending
    return cookies.loads(read_cookie(connection.scope, cookies.cookie_name))


def with_pending(connection: HTTPConnection, response: Response, pending: Pending) -> Response:
    """``response`` carrying the pending cookie (bff/web/cookies.py)."""
    return with_pending_cookie(response, services_of(connection).pending, pending)


def start_at_owner(
    connection: HTTPConnection,
    origin: StudyOrigin,
    session: Session,
    series_uid: str | None = None,
) -> None:
    """At the grant: start the exam's retrieval (metadata prepared, series streaming)
    where its images will be served, while the browser loads OHIF. One replica: here.
    Several behind the balancer (DRIMBOX_OWNER_URL): on the replica owning the study
    (bff/web/owner.py), asked in the background with the session just made, so that
    two replicas never stream the same series (DB.VI-CS.17)."""
    services = services_of(connection)
    if services.owner is None:
        origin.start_at_grant(str(connection.base_url).rstrip("/") + "/dicomweb", series_uid)
        return
    # Written for every replica before the owner is asked to find it.
    services.sessions.save(session)
    cookie = (services.sessions.cookie_name, services.sessions.cookie_value(session))
    task = asyncio.create_task(
        services.owner.prefetch(
            host=connection.headers.get("host", ""),
            study_uid=origin.study_uid,
            cookie=cookie,
            csrf_token=session.csrf_token,
            series_uid=series_uid,
        ),
        name=f"prefetch at the owner {origin.study_uid}",
    )
    services.background.add(task)
    task.add_done_callback(services.background.discard)
