"""``create_app(settings)``: the BFF as a Starlette application. No I/O at import time.

The lifespan creates the shared things (upstream clients per location, the transcoding
pool, the frame cache, the retriever, the KOS archive, the audit trail), gathered in one
typed :class:`~bff.services.Services` object that every route finds through
:func:`~bff.services.services_of`, and closes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.types import Scope

from bff.access.handover import HandoverStore
from bff.access.limits import InFlight, RateLimit
from bff.access.local_patient_id import LocalPatientIds
from bff.access.published import PublishedKos
from bff.archive.store import ArchiveStore
from bff.audit import Pseudonymizer, add_handler, configure_audit, remove_handler
from bff.auth.introspect import PscIntrospector
from bff.auth.middleware import SessionMiddleware
from bff.auth.oidc import (
    IDENTITY_SCOPE,
    PSC_SCOPE,
    OidcProvider,
    ProviderConfig,
    generate_encryption_key,
    load_encryption_key,
    public_jwks,
)
from bff.auth.pending import PendingCookies, PendingLogins
from bff.auth.sessions import SessionStore
from bff.consumer.routes import UPLOAD_PATHS as CONSUMER_UPLOAD_PATHS
from bff.consumer.routes import consumer_routes
from bff.dicomweb.budget import ReadaheadBudget
from bff.dicomweb.cache import FrameCache
from bff.dicomweb.disk_cache import DiskFrameCache
from bff.dicomweb.observe import ObservedTransport
from bff.dicomweb.prepared import PreparedStore
from bff.dicomweb.retrieve import Retriever
from bff.dicomweb.shared_disk_cache import SharedDiskFrameCache
from bff.dicomweb.upstream import DicomwebUpstream
from bff.errors import ViewerError
from bff.export.jobs import PacsExports
from bff.export.pacs import pacs_export_routes
from bff.export.routes import export_routes
from bff.facade.progress import progress_routes
from bff.facade.routes import dicomweb_routes, frames_route
from bff.migrations import database_urls, require_head, upgrade
from bff.origins.factory import OriginFactory
from bff.origins.preparation import Preparer
from bff.origins.remote import source_client
from bff.origins.whitelist_file import load_whitelist
from bff.services import Services
from bff.settings import Settings
from bff.source.admin import UPLOAD_PATHS as ADMIN_UPLOAD_PATHS
from bff.source.admin import Admin, admin_routes
from bff.source.routes import source_routes
from bff.source.wado import consumer_api_routes
from bff.state.audit_log import AuditLog, AuditTrail, SqlAuditHandler
from bff.state.backend import MemoryBackend, StateBackend
from bff.state.sealing import Sealer, load_keys
from bff.state.sql import SqlBackend
from bff.transcode import EncodeParams, TranscodePool
from bff.web import errors as web_errors
from bff.web.audit_context import AuditContext
from bff.web.headers import (
    SecurityHeaders,
    content_security_policy,
    inline_script_hashes,
    origin_of,
)
from bff.web.hosts import TrustedHosts
from bff.web.limits import BodyCaps, BodyLimits
from bff.web.observe import Observe, Operations
from bff.web.owner import StudyOwner
from bff.web.probes import CHECK_TIMEOUT_S, Check, Readiness, http_get, pool_answers, writable_dir
from bff.web.static import OhifSite, compression_middleware

log = logging.getLogger(__name__)


def build_providers(settings: Settings) -> tuple[dict[str, OidcProvider], dict[str, Any]]:
    """The identity providers with a client secret configured, and our public JWKS."""
    key = (
        load_encryption_key(settings.fcp_encryption_key)
        if settings.fcp_encryption_key
        else generate_encryption_key()
    )
    timeout = settings.oidc_timeout
    providers: dict[str, OidcProvider] = {}
    if settings.psc_client_secret:
        providers["psc"] = OidcProvider(
            ProviderConfig(
                name="psc",
                issuer=settings.psc_issuer,
                client_id=settings.psc_client_id,
                client_secret=settings.psc_client_secret,
                scope=PSC_SCOPE,
                acr_values="eidas1",
                accepted_acr=frozenset({"eidas1", "eidas2", "eidas3"}),
                encrypted=False,
                max_auth_age=settings.oidc_max_auth_age,
                max_token_age=settings.oidc_max_token_age,
            ),
            timeout=timeout,
        )
    if settings.fcp_client_secret:
        providers["fcp"] = OidcProvider(
            ProviderConfig(
                name="fcp",
                issuer=settings.fcp_issuer,
                client_id=settings.fcp_client_id,
                client_secret=settings.fcp_client_secret,
                scope=IDENTITY_SCOPE,
                acr_values=settings.fcp_acr_values,
                accepted_acr=frozenset({"eidas2", "eidas3"}),
                encrypted=True,
                max_auth_age=settings.oidc_max_auth_age,
                max_token_age=settings.oidc_max_token_age,
            ),
            timeout=timeout,
            decryption_key=key,
        )
    if settings.fc_enabled and settings.fc_client_secret:
        providers["fc"] = OidcProvider(
            ProviderConfig(
                name="fc",
                issuer=settings.fc_issuer,
                client_id=settings.fc_client_id,
                client_secret=settings.fc_client_secret,
                scope=IDENTITY_SCOPE,
                acr_values="eidas2",
                accepted_acr=frozenset({"eidas2", "eidas3"}),
                encrypted=False,
                max_auth_age=settings.oidc_max_auth_age,
                max_token_age=settings.oidc_max_token_age,
            ),
            timeout=timeout,
        )
    return providers, public_jwks(key)


#: The window of the per-client and per-subject rate limits (bff/access/limits.py).
LIMIT_WINDOW_S = 600.0
#: How often expired sessions are dropped.
SESSION_PURGE_S = 60.0


async def _purge_sessions(sessions: SessionStore, logins: PendingLogins) -> None:
    while True:
        await asyncio.sleep(SESSION_PURGE_S)
        try:
            await asyncio.to_thread(sessions.purge)
            await asyncio.to_thread(logins.purge)
        except ViewerError as exc:  # the state's database down: try again next time
            log.warning("state purge failed: %s", exc.detail)


def prepare_schema(settings: Settings) -> None:
    """Production: every database at the migrations' head, or no start (run ``drimbox-
    viewer db upgrade`` first; the schema is never changed at start). Demo and tests:
    upgraded here (the embedded SQLite)."""
    for url in database_urls(settings):
        if settings.mode == "production":
            require_head(url)
        else:
            upgrade(url)


def state_store(settings: Settings) -> tuple[StateBackend, Sealer]:
    """Where sessions, logins and hand-overs are kept, and the key sealing them."""
    if settings.state_key_file:
        sealer = Sealer(load_keys(settings.state_key_file, settings.state_old_key_files))
    else:
        sealer = Sealer.ephemeral()
    if settings.state_url == "memory":
        return MemoryBackend(), sealer
    if not settings.state_key_file:
        log.warning("DRIMBOX_STATE_KEY_FILE is empty: stored sessions die with this process")
    return SqlBackend(settings.state_url), sealer


async def _kos_state(archive: ArchiveStore, kos_sop_uid: str) -> str | None:
    kos = await asyncio.to_thread(archive.get, kos_sop_uid)
    return kos.state if kos is not None else None


def _csp(settings: Settings, site: OhifSite, *, worker: bool = False) -> str:
    """The pages' Content-Security-Policy (bff/web/headers.py): OHIF's inline boot
    scripts by hash; login forms may lead to the configured identity providers."""
    issuers = (settings.psc_issuer, settings.fcp_issuer, settings.fc_issuer)
    targets = [o for o in map(origin_of, issuers) if o]
    hashes = inline_script_hashes(site.dist / "index.html")
    return content_security_policy(hashes, targets, worker=worker)


def _sessions(scope: Scope) -> SessionStore | None:
    services = getattr(scope["app"].state, "services", None)
    return services.sessions if isinstance(services, Services) else None


def local_patient_ids(settings: Settings) -> LocalPatientIds:
    """Consumer role (DB.VI-CS.32): the practice's PACS the local patient id is looked up
    in; off unless the Consumer runs and DRIMBOX_LOCAL_PATIENT_ID_URL is set."""
    upstream = None
    if settings.consumer_enabled and settings.local_patient_id_url:
        timeout = settings.local_patient_id_timeout
        upstream = DicomwebUpstream(
            settings.local_patient_id_url,
            origin="local-patient-id",
            auth=settings.local_patient_id_auth,
            connect_timeout=timeout,
            read_timeout=timeout,
        )
    return LocalPatientIds(
        upstream,
        settings.local_patient_id_issuer_set(),
        timeout=settings.local_patient_id_timeout,
    )


def _audit_trail(scope: Scope) -> AuditTrail | None:
    services = getattr(scope["app"].state, "services", None)
    return services.audit_trail if isinstance(services, Services) else None


def audit_trail(settings: Settings) -> AuditTrail:
    """The audit's pseudonyms, and (with DRIMBOX_AUDIT_URL) its table and writer."""
    pseudonyms = (
        Pseudonymizer.from_file(settings.audit_key_file)
        if settings.audit_key_file
        else Pseudonymizer.ephemeral()
    )
    trail = AuditTrail(pseudonyms)
    if settings.audit_url:
        trail.log = AuditLog(settings.audit_url)
        trail.handler = SqlAuditHandler(trail.log, trail.sink)
        add_handler(trail.handler)
    return trail


def body_caps(settings: Settings) -> BodyCaps:
    """The request-size policy (issue 13): a small cap everywhere, a KOS and its form on
    the routes that take one."""
    upload = settings.max_kos_bytes + settings.max_form_bytes
    paths = (*CONSUMER_UPLOAD_PATHS, *ADMIN_UPLOAD_PATHS)
    return BodyCaps(settings.max_form_bytes, dict.fromkeys(paths, upload))


def _readiness(
    services: Services, pool: TranscodePool, disk: DiskFrameCache | None, probe: httpx.AsyncClient
) -> Readiness:
    """Issue 15 item 4: what /readyz checks (bff/web/probes.py)."""
    hard: dict[str, Check] = {
        "database": functools.partial(asyncio.to_thread, services.archive.ping),
        "transcode_pool": pool_answers(pool, CHECK_TIMEOUT_S / 2),
    }
    if disk is not None:
        hard["disk_cache"] = writable_dir(disk.directory)
    soft: dict[str, Check] = {
        f"pacs:{host}": up.reachable for host, up in services.origins.locations.items()
    }
    for name, provider in services.providers.items():
        url = provider.config.issuer.rstrip("/") + "/.well-known/openid-configuration"
        soft[f"identity_provider:{name}"] = http_get(probe, url)
    return Readiness(hard, soft)


def _pacs_transport(operations: Operations) -> httpx.AsyncBaseTransport:
    """The PACS client's transport: the request id sent, failures counted."""
    inner = httpx.AsyncHTTPTransport(
        limits=httpx.Limits(max_connections=32, max_keepalive_connections=16)
    )
    return ObservedTransport(inner, "pacs", operations.metrics.upstream_error)


def create_app(settings: Settings, *, operations: Operations | None = None) -> Starlette:
    """``operations``: the probes' and metrics' state, shared with the internal listener
    and the drain on SIGTERM (bff/__main__.py); a fresh one by default."""
    ops = operations or Operations()
    ops.metrics_public = settings.metrics_on_main_listener()
    site = OhifSite(settings)
    archive = ArchiveStore(settings.archive_url)  # no I/O until used
    published = PublishedKos(functools.partial(_kos_state, archive))
    #: told of every KOS the admin API publishes or unpublishes (the preparation, issue 16)
    changed: list[Callable[[str], None]] = []

    def kos_changed(kos_sop_uid: str) -> None:
        published.forget(kos_sop_uid)
        for listener in list(changed):
            listener(kos_sop_uid)

    exports = PacsExports(settings)  # DB.VI-CO.42; no I/O until the lifespan

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # The ANS whitelist, both roles, verified first: an unsigned or tampered list
        # stops the start before anything else is built (issue 13 item 6).
        whitelist = None
        if settings.whitelist_file:
            whitelist = load_whitelist(
                Path(settings.whitelist_file), Path(settings.whitelist_signer_cert)
            )
        # Then the schema: production refuses to start on a database not migrated.
        await asyncio.to_thread(prepare_schema, settings)
        pool = TranscodePool(settings.workers)
        pool.warm_up()
        locations = {
            host: DicomwebUpstream(
                url,
                origin=host,
                auth=settings.upstream_auth,
                connect_timeout=settings.upstream_connect_timeout,
                read_timeout=settings.upstream_read_timeout,
                transport=_pacs_transport(ops),
            )
            for host, url in settings.location_map().items()
        }
        exports.open()  # the export destinations' credentials (a missing file stops here)
        state, sealer = state_store(settings)
        audit_handler = configure_audit(settings.audit_log)
        trail = audit_trail(settings)
        # Consumer role: one client towards every Source (mutual TLS, connection pool,
        # whitelisted Sources only).
        client = (
            source_client(settings, whitelist, on_error=ops.metrics.upstream_error)
            if settings.consumer_enabled
            else None
        )
        disk = None
        if settings.frame_disk_cache_dir:
            # Issue 15 item 2: replicas on one volume share one size accountant.
            kind = SharedDiskFrameCache if settings.frame_disk_cache_shared else DiskFrameCache
            disk = kind(Path(settings.frame_disk_cache_dir), settings.frame_disk_cache_bytes)
            await asyncio.to_thread(disk.open)
        prepared = None
        if settings.prepared_dir:
            prepared = PreparedStore(Path(settings.prepared_dir), settings.prepared_bytes)
            await asyncio.to_thread(prepared.open)
        params = EncodeParams(quality=settings.lossy_quality, codec=settings.lossy_codec)
        budget = ReadaheadBudget(settings.readahead_budget)
        retriever = Retriever(
            FrameCache(settings.cache_max_bytes),
            pool,
            params,
            frame_timeout=settings.frame_wait_timeout,
            max_part_bytes=settings.max_part_bytes,
            workers=settings.workers + 1,
            disk=disk,
            prepared=prepared,
            budget=budget,
            on_frame_wait=ops.metrics.observe_frame_wait,
        )
        # Issue 16: published exams are transcoded once, in the background.
        preparer = None
        if prepared is not None and settings.prepare_at_publication:
            preparer = Preparer(
                archive,
                locations,
                prepared,
                pool,
                params,
                max_part_bytes=settings.max_part_bytes,
                scan_interval=settings.prepare_scan_interval,
                lease_seconds=settings.prepare_lease,
            )
            changed.append(preparer.changed)
        background: set[asyncio.Task[Any]] = set()
        providers, jwks = build_providers(settings)
        secret = settings.session_secret or secrets.token_urlsafe(32)
        app.state.services = Services(
            settings=settings,
            sessions=SessionStore(
                secret,
                idle_timeout=settings.session_idle_timeout,
                max_age=settings.session_max_age,
                secure=settings.secure_cookie,
                max_sessions=settings.max_sessions,
                backend=state,
                sealer=sealer,
                touch_every=settings.session_touch_interval,
            ),
            pending=PendingCookies(secret, secure=settings.secure_cookie),
            logins=PendingLogins(max_entries=settings.max_sessions, backend=state, sealer=sealer),
            archive=archive,
            retriever=retriever,
            origins=OriginFactory(
                locations=locations,
                retriever=retriever,
                background=background,
                max_part_bytes=settings.max_part_bytes,
                frame_timeout=settings.frame_wait_timeout,
                consumer_images=lambda: settings.consumer_images,
                whitelist=whitelist,
                source_ports=settings.source_port_set(),
                source_client=client,
            ),
            providers=providers,
            public_jwks=jwks,
            # Source role: Consumers' PSC tokens are checked by introspection (DRIM-M).
            psc_introspector=PscIntrospector(
                settings.psc_issuer,
                settings.psc_client_id,
                settings.psc_client_secret,
                timeout=settings.oidc_timeout,
            ),
            handovers=HandoverStore(backend=state, sealer=sealer),
            published=published,
            frame_waits=InFlight(settings.frame_waits_per_session),
            link_attempts=RateLimit(settings.link_attempts_per_client, LIMIT_WINDOW_S),
            failed_checks=RateLimit(settings.failed_checks_per_subject, LIMIT_WINDOW_S),
            site=site,
            background=background,
            audit_trail=trail,
            whitelist=whitelist,
            local_patient_ids=local_patient_ids(settings),
            preparer=preparer,
            owner=StudyOwner(settings.owner_url) if settings.owner_url else None,
            metrics=ops.metrics,
        )
        services = app.state.services
        ops.metrics.sources.cache = retriever.cache
        ops.metrics.sources.disk = disk
        ops.metrics.sources.pool = pool
        ops.metrics.sources.budget = budget
        ops.metrics.sources.answers = retriever.answers
        ops.metrics.sources.prepared = prepared
        ops.metrics.sources.preparation = preparer.stats if preparer is not None else None
        ops.metrics.sources.draining = lambda: ops.drain.draining
        probe_client = httpx.AsyncClient(timeout=CHECK_TIMEOUT_S)
        ops.readiness = _readiness(services, pool, disk, probe_client)
        purge = asyncio.create_task(_purge_sessions(services.sessions, services.logins))
        preparing = asyncio.create_task(preparer.run()) if preparer is not None else None
        try:
            yield
        finally:
            ops.readiness = None
            await probe_client.aclose()
            purge.cancel()
            if preparing is not None:
                preparing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await preparing
            changed.clear()
            await exports.aclose()
            if services.owner is not None:
                await services.owner.aclose()
            await retriever.aclose()
            if disk is not None:
                await asyncio.to_thread(disk.close)
            await services.local_patient_ids.aclose()
            for upstream in locations.values():
                await upstream.aclose()
            if client is not None:
                await client.aclose()
            pool.close()
            if prepared is not None:
                prepared.close()
            archive.close()
            state.close()
            remove_handler(audit_handler)
            if trail.handler is not None:
                trail.handler.stop()  # the queued entries written first (bounded)
                remove_handler(trail.handler)
            if trail.log is not None:
                trail.log.close()

    return Starlette(
        routes=[
            frames_route(),  # first: the hot path (bff/facade/routes.py)
            *(consumer_api_routes() if settings.source_api_port else []),
            *source_routes(),
            *consumer_routes(),
            *progress_routes(),
            *export_routes(),
            *pacs_export_routes(exports),
            *admin_routes(
                Admin(settings.admin_secret, archive, kos_changed, settings.max_kos_bytes)
            ),
            *dicomweb_routes(),
            *site.routes(),
        ],
        middleware=[
            # Outermost: request id, access log, metrics, and the probes, which answer
            # whatever the Host (a balancer's probe; bff/web/observe.py).
            Middleware(Observe, ops=ops),
            Middleware(
                SecurityHeaders,
                csp=_csp(settings, site),
                worker_csp=_csp(settings, site, worker=True),
                hsts=settings.secure_cookie,
            ),
            # Before anything reads the session or builds a URL from the Host header.
            Middleware(TrustedHosts, hosts=settings.host_names()),
            Middleware(BodyLimits, caps=body_caps(settings)),
            Middleware(SessionMiddleware, store_of=_sessions),
            Middleware(AuditContext, trail_of=_audit_trail),
            compression_middleware(),
        ],
        exception_handlers={
            ViewerError: web_errors.viewer_error,
            HTTPException: web_errors.http_error,
            Exception: web_errors.unexpected_error,
        },
        lifespan=lifespan,
    )
