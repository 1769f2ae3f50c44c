"""ProSantéConnect token introspection (RFC 7662) for the Source WADO-RS API.

A Consumer DRIMbox sends the professional's PSC access token as ``Authorization: Bearer``;
the Source asks PSC whether it is active, and what it is: issuer, client, scope, acr,
subject (:class:`~bff.access.source_api.PscToken`; the Source API then checks them,
:func:`~bff.access.source_api.check_psc_token`). The introspection endpoint comes from the
PSC discovery document; the BFF authenticates with its own PSC client id and secret
(client_secret_basic, form-encoded, RFC 6749 §2.3.1). Positive answers are cached for
``min(60 s, exp - now)`` under the SHA-256 of the token (the token itself is never kept,
logged or audited); negative answers are not cached. Concurrent checks of the same
token share one request.

Failures to reach PSC fail closed: :class:`SourceIntrospectionUnavailable` (503).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx

from bff.access.source_api import PscToken
from bff.auth.oidc import client_basic_credentials
from bff.errors import SourceIntrospectionUnavailable

log = logging.getLogger(__name__)

POSITIVE_TTL_S = 60.0
DISCOVERY_TTL_S = 3600.0
MAX_TOKEN_LENGTH = 8192
MAX_CACHE_ENTRIES = 10_000


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class PscIntrospector:
    def __init__(
        self,
        issuer: str,
        client_id: str,
        client_secret: str,
        *,
        timeout: float,
        clock: Callable[[], float] = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._issuer = issuer.rstrip("/")
        self._client_id = client_id
        self._client_secret = client_secret
        self._timeout = timeout
        self._clock = clock
        self._transport = transport
        self._endpoint: str | None = None
        self._endpoint_at = 0.0
        # token digest -> (cache expiry, what PSC said)
        self._active_until: dict[str, tuple[float, PscToken]] = {}
        self._in_flight: dict[str, asyncio.Future[PscToken | None]] = {}

    async def is_active(self, token: str) -> bool:
        """True when PSC says the token is active (and not past its ``exp``)."""
        return await self.introspect(token) is not None

    async def introspect(self, token: str) -> PscToken | None:
        """What PSC says of an active token (not past its ``exp``); None when inactive."""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            return None
        key = token_digest(token)
        cached = self._active_until.get(key)
        if cached is not None:
            if cached[0] > self._clock():
                return cached[1]
            del self._active_until[key]
        running = self._in_flight.get(key)
        if running is not None:
            try:
                return await asyncio.shield(running)
            except asyncio.CancelledError:
                if not running.cancelled():
                    raise  # this request was cancelled itself
                # The request that was asking went away: ask again below.
        future: asyncio.Future[PscToken | None] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        try:
            active = await self._introspect(key, token)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # marked retrieved: waiters (if any) get it too
            raise
        finally:
            if self._in_flight.get(key) is future:
                del self._in_flight[key]
        future.set_result(active)
        return active

    async def _introspect(self, key: str, token: str) -> PscToken | None:
        if not self._client_secret:
            raise SourceIntrospectionUnavailable("DRIMBOX_PSC_CLIENT_SECRET is not configured")
        endpoint = await self._introspection_endpoint()
        body = await self._call(
            "POST",
            endpoint,
            data={"token": token, "token_type_hint": "access_token"},
            headers={
                "Authorization": client_basic_credentials(self._client_id, self._client_secret),
                "Accept": "application/json",
            },
        )
        if body.get("active") is not True:
            return None
        info = PscToken.from_introspection(body)
        now = self._clock()
        exp = body.get("exp")
        if isinstance(exp, int | float) and not isinstance(exp, bool):
            if exp <= now:
                return None
            self._remember(key, now + min(POSITIVE_TTL_S, float(exp) - now), info)
        # Without exp the answer holds for this request only (not cached).
        return info

    def _remember(self, key: str, until: float, info: PscToken) -> None:
        if len(self._active_until) >= MAX_CACHE_ENTRIES:
            now = self._clock()
            for stale in [k for k, (t, _) in self._active_until.items() if t <= now]:
                del self._active_until[stale]
            if len(self._active_until) >= MAX_CACHE_ENTRIES:
                self._active_until.clear()
        self._active_until[key] = (until, info)

    async def _introspection_endpoint(self) -> str:
        now = self._clock()
        if self._endpoint is None or now - self._endpoint_at > DISCOVERY_TTL_S:
            url = f"{self._issuer}/.well-known/openid-configuration"
            metadata = await self._call("GET", url)
            endpoint = metadata.get("introspection_endpoint")
            if not isinstance(endpoint, str) or not endpoint.startswith(("https://", "http://")):
                raise SourceIntrospectionUnavailable("PSC discovery has no introspection_endpoint")
            self._endpoint, self._endpoint_at = endpoint, now
        return self._endpoint

    async def _call(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        try:
            async with httpx.AsyncClient(
                timeout=self._timeout, transport=self._transport
            ) as client:
                response = await client.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise SourceIntrospectionUnavailable(f"{method} {url}: {type(exc).__name__}") from exc
        if response.status_code != 200:
            raise SourceIntrospectionUnavailable(f"{method} {url}: HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError as exc:
            raise SourceIntrospectionUnavailable(f"{method} {url}: invalid JSON") from exc
        if not isinstance(body, dict):
            raise SourceIntrospectionUnavailable(f"{method} {url}: not a JSON object")
        return body
