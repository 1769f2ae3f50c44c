"""The way to the replica that owns a study's images, behind the balancer.

Several single-process replicas sit behind one balancer (docs/deployment.md): pages and
logins go to any of them, a study's image routes to one, chosen by a consistent hash of
the study UID, so that one replica retrieves and caches each series (DB.VI-CS.17). The
grant (the login callback, the Consumer's opening) lands on any replica; instead of
starting the exam's retrieval itself, it asks the owner to (``POST /api/prefetch/{study}``
through the balancer's internal listener, ``DRIMBOX_OWNER_URL``), carrying the session it
has just made: the owner finds that session in the shared store and decides with the same
access function as every image route, so the request proves itself and needs no secret of
its own. A failure is logged and forgotten: the owner's first metadata request then starts
the retrieval (slower, never wrong).
"""

from __future__ import annotations

import logging

import httpx

log = logging.getLogger(__name__)

#: Seconds for the owner to take the request (it answers before anything is fetched).
OWNER_TIMEOUT_S = 5.0
PREFETCH_PATH = "/api/prefetch/{study_uid}"


class StudyOwner:
    """Asks the owner of a study to start its retrieval now, through the balancer."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = OWNER_TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        # trust_env=False: the internal listener is never reached through an egress proxy.
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=timeout,
            transport=transport,
            trust_env=False,
            follow_redirects=False,
        )

    async def prefetch(
        self,
        *,
        host: str,
        study_uid: str,
        cookie: tuple[str, str],
        csrf_token: str,
        series_uid: str | None = None,
    ) -> bool:
        """True when the owner took it (204). ``host``: the location's Host header (the
        owner builds the viewer's URLs from it); ``cookie``: the session's (name, value),
        ``csrf_token`` its CSRF token."""
        params = {"series": series_uid} if series_uid else None
        try:
            response = await self._client.post(
                PREFETCH_PATH.format(study_uid=study_uid),
                params=params,
                headers={
                    "Host": host,
                    "Cookie": f"{cookie[0]}={cookie[1]}",
                    "X-CSRF-Token": csrf_token,
                },
            )
        except httpx.HTTPError as exc:
            log.warning("the owner of %s was not reached: %r", study_uid, exc)
            return False
        if response.status_code != 204:
            log.warning("the owner of %s answered %d", study_uid, response.status_code)
            return False
        return True

    async def aclose(self) -> None:
        await self._client.aclose()
