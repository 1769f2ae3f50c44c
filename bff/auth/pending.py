"""Between a page offering to sign in and the login's callback (issue 13, item 4): no
session is written for an anonymous view.

- :class:`PendingCookies`: the report link awaiting login travels in a signed,
  short-lived cookie (HttpOnly, SameSite=Lax, ``__Host-`` prefixed when Secure; set by
  :mod:`bff.web.cookies`): the link, its location, the CSRF token of the page's forms,
  and, once the user chose a provider, the OIDC state of the round trip. A cookie that
  is tampered with, signed with another key, unreadable or older than
  :data:`PENDING_TTL_S` is no pending link at all: the user reopens the report link.
  The Consumer's sign-in page uses it too, with no link.
- :class:`PendingLogins`: the login round trips under way, created when the user clicks
  "sign in" (POST /auth/login, rate-limited per client), keyed by their state, single
  use, expired after :data:`PENDING_TTL_S`, bounded. Kept in a
  :class:`~bff.state.backend.StateBackend` (memory, or the database every replica reads:
  a login started on one replica finishes on another), their nonce and PKCE verifier
  sealed (AES-GCM bound to the state, :mod:`bff.state.sealing`).

The session itself is created at the successful callback only (bff/source/routes.py).
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import parse_qsl

from itsdangerous import BadSignature, URLSafeSerializer

from bff.access.params import ViewerLink, parse_link
from bff.errors import InvalidLink, ServiceBusy
from bff.state.backend import Entry, MemoryBackend, StateBackend
from bff.state.sealing import Sealer, SealError

log = logging.getLogger(__name__)

#: How long a pending link, and a login round trip, may wait (profile choice -> provider
#: -> callback).
PENDING_TTL_S = 600.0
COOKIE_NAME = "drimbox_pending"
#: The cookie's name when it is Secure: the browser refuses it from a sibling host.
HOST_COOKIE_NAME = "__Host-drimbox_pending"


@dataclass(frozen=True)
class Pending:
    """What the pending cookie carries."""

    csrf: str
    #: The report link awaiting login and the location it was opened on; None: signing
    #: in to the Consumer viewer (no exam link).
    link: ViewerLink | None = None
    location: str = ""
    #: The OIDC state of the login round trip, once the user chose a provider.
    state: str = ""


class PendingCookies:
    """Signs and reads the pending cookie (the session secret, a salt of its own)."""

    def __init__(
        self, secret: str, *, secure: bool = False, clock: Callable[[], float] = time.time
    ) -> None:
        self._serializer = URLSafeSerializer(secret, salt="drimbox-pending")
        self.secure = secure
        self.cookie_name = HOST_COOKIE_NAME if secure else COOKIE_NAME
        self.max_age = PENDING_TTL_S
        self._clock = clock

    def new(
        self, link: ViewerLink | None = None, location: str = "", *, earlier: Pending | None = None
    ) -> Pending:
        """A pending link; ``earlier``: the one this browser's cookie already carried,
        whose CSRF token is kept, so that a form shown before still signs in (to the
        latest link, as one browser waits for one login at a time)."""
        csrf = earlier.csrf if earlier is not None else secrets.token_urlsafe(24)
        return Pending(csrf, link, location)

    def check_csrf(self, pending: Pending, token: str) -> bool:
        return hmac.compare_digest(pending.csrf.encode(), token.encode())

    def dumps(self, pending: Pending) -> str:
        return self._serializer.dumps(
            {
                "csrf": pending.csrf,
                "link": pending.link.query() if pending.link is not None else "",
                "location": pending.location,
                "state": pending.state,
                "at": self._clock(),
            }
        )

    def loads(self, cookie: str | None) -> Pending | None:
        """The pending link a cookie carries; None when absent, forged, foreign or old."""
        if not cookie:
            return None
        try:
            data: Any = self._serializer.loads(cookie)
        except BadSignature:
            return None
        if not isinstance(data, dict):
            return None
        fields = [data.get(k) for k in ("csrf", "link", "location", "state")]
        at = data.get("at")
        if not all(isinstance(v, str) for v in fields) or not isinstance(at, int | float):
            return None
        if not 0 <= self._clock() - at <= self.max_age:
            return None
        csrf, query, location, state = (str(v) for v in fields)
        link = None
        if query:
            try:
                link = parse_link(parse_qsl(query, keep_blank_values=True))
            except InvalidLink:
                return None
        return Pending(csrf, link, location, state)


@dataclass(frozen=True)
class PendingLogin:
    """What the OIDC round trip must find again on the callback (single use)."""

    state: str
    nonce: str
    code_verifier: str = field(repr=False)
    provider: str  # 'psc' | 'fcp' | 'fc'
    redirect_uri: str
    profile: str  # 'patient' | 'professional'


class PendingLogins:
    """Login round trips under way, by state; beyond ``max_entries`` live ones,
    ServiceBusy (E507), like the session store."""

    def __init__(
        self,
        *,
        max_entries: int,
        clock: Callable[[], float] = time.time,
        backend: StateBackend | None = None,
        sealer: Sealer | None = None,
    ) -> None:
        self._max_entries = max_entries
        self._clock = clock
        self._backend: StateBackend = backend if backend is not None else MemoryBackend()
        self._sealer = sealer if sealer is not None else Sealer.ephemeral()

    def add(self, login: PendingLogin) -> None:
        now = self._clock()
        payload = json.dumps(dataclasses.asdict(login)).encode()
        sealed = self._sealer.seal(payload, f"login:{login.state}")
        entry = Entry(sealed, now, now, now + PENDING_TTL_S)
        if not self._backend.add("login", login.state, entry, max_entries=self._max_entries):
            self.purge()
            if not self._backend.add("login", login.state, entry, max_entries=self._max_entries):
                raise ServiceBusy(f"{self._max_entries} logins under way")

    def take(self, state: str) -> PendingLogin | None:
        """The round trip of ``state``, removed (single use); None if unknown or old."""
        entry = self._backend.take("login", state)
        if entry is None or self._clock() - entry.created_at > PENDING_TTL_S:
            return None
        try:
            data = json.loads(self._sealer.open(entry.payload, f"login:{state}"))
            return PendingLogin(**{f.name: str(data[f.name]) for f in fields(PendingLogin)})
        except (SealError, ValueError, KeyError, TypeError):
            log.warning("a stored login round trip did not open: treated as absent")
            return None

    def purge(self) -> int:
        """Drop the round trips too old to finish; returns how many."""
        return self._backend.purge("login", self._clock())

    def __len__(self) -> int:
        return self._backend.count("login")
