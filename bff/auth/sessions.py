"""Server-side sessions behind a signed cookie (tokens never reach the browser).

The cookie holds only a random session id signed with itsdangerous (HttpOnly, SameSite=Lax,
Secure unless the deployment explicitly relaxes it for a loopback demo). Everything else,
OIDC tokens included, stays in the :class:`SessionStore`. Sessions expire after an idle
period and after an absolute lifetime, whichever comes first.

The store is in memory (one BFF process); the class is the seam for a shared store.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer

from bff.access.params import ViewerLink
from bff.access.policy import Grant, RemoteOpening, StudyRef

COOKIE_NAME = "drimbox_session"
#: Signed cookies remembered as checked (a few per live session).
VERIFIED_COOKIES = 4096


@dataclass
class PendingLogin:
    """What the OIDC round trip must find again on the callback (single use)."""

    state: str
    nonce: str
    code_verifier: str
    provider: str  # 'psc' | 'fcp' | 'fc'
    redirect_uri: str
    created_at: float


@dataclass
class OpenedStudy:
    """A study granted to this session, with what the viewer shows of it (DB.VI-CS.29)."""

    location: str
    study_uid: str
    kos_sop_uid: str
    display: dict[str, str | list[str] | None]
    #: Consumer: the KOS the study was opened from (its images come from its Source).
    remote: RemoteOpening | None = None


@dataclass
class Session:
    id: str
    created_at: float
    last_seen: float
    csrf_token: str
    profile: str | None = None  # 'patient' | 'professional'
    provider: str | None = None
    subject: str | None = None
    user_display: str | None = None
    tokens: dict[str, Any] = field(default_factory=dict, repr=False)
    pending_link: ViewerLink | None = None  # awaiting login
    pending_location: str | None = None
    pending_login: PendingLogin | None = field(default=None, repr=False)
    pending_consumer: bool = False  # signing in to the Consumer viewer (no exam link)
    studies: list[OpenedStudy] = field(default_factory=list)

    @property
    def authenticated(self) -> bool:
        return self.subject is not None

    @property
    def grant(self) -> Grant | None:
        """What this session may see (plain data for the access decision)."""
        if not self.studies:
            return None
        refs = tuple(
            StudyRef(
                s.location,
                s.study_uid,
                s.kos_sop_uid if s.remote is not None else "",
                str(s.display.get("institution") or ""),
                s.remote,
            )
            for s in self.studies
        )
        return Grant(refs, str(self.tokens.get("access_token", "")))

    def opened(self, location: str, study_uid: str) -> OpenedStudy | None:
        for study in self.studies:
            if study.location == location and study.study_uid == study_uid:
                return study
        return None

    def open_study(self, study: OpenedStudy) -> None:
        self.studies = [
            s
            for s in self.studies
            if (s.location, s.study_uid) != (study.location, study.study_uid)
        ]
        self.studies.append(study)


class SessionStore:
    """In-memory sessions with idle and absolute expiry, found by signed cookie value."""

    def __init__(
        self,
        secret: str,
        *,
        idle_timeout: float,
        max_age: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt="drimbox-session")
        self._idle_timeout = idle_timeout
        self.max_age = max_age
        self._clock = clock
        self._sessions: dict[str, Session] = {}
        # Cookies whose signature was checked, -> session id: the viewer sends ~1300
        # requests per opening with the same cookie; two HMACs each add up (issue 5).
        # Only ever consulted for sessions still in the store (the expiry checks below
        # still run on every load).
        self._verified: OrderedDict[str, str] = OrderedDict()

    def create(self) -> Session:
        self._purge()
        now = self._clock()
        session = Session(
            id=secrets.token_urlsafe(32),
            created_at=now,
            last_seen=now,
            csrf_token=secrets.token_urlsafe(24),
        )
        self._sessions[session.id] = session
        return session

    def cookie_value(self, session: Session) -> str:
        return self._serializer.dumps(session.id)

    def load(self, cookie: str | None) -> Session | None:
        """The live session a cookie names; None when absent, forged, foreign or expired."""
        if not cookie:
            return None
        session_id = self._verified.get(cookie)
        if session_id is None:
            try:
                session_id = str(self._serializer.loads(cookie, max_age=int(self.max_age)))
            except BadSignature:  # includes SignatureExpired
                return None
            self._verified[cookie] = session_id
            while len(self._verified) > VERIFIED_COOKIES:
                self._verified.popitem(last=False)
        session = self._sessions.get(session_id)
        if session is None:
            return None
        now = self._clock()
        if now - session.last_seen > self._idle_timeout or now - session.created_at > self.max_age:
            self._sessions.pop(session.id, None)
            return None
        session.last_seen = now
        return session

    def delete(self, session: Session) -> None:
        self._sessions.pop(session.id, None)

    def check_csrf(self, session: Session, token: str) -> bool:
        return hmac.compare_digest(session.csrf_token.encode(), token.encode())

    def _purge(self) -> None:
        now = self._clock()
        for key, session in list(self._sessions.items()):
            if (
                now - session.last_seen > self._idle_timeout
                or now - session.created_at > self.max_age
            ):
                del self._sessions[key]

    def __len__(self) -> int:
        return len(self._sessions)
