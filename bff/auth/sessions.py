"""Server-side sessions behind a signed cookie (tokens never reach the browser).

A session is created at a successful sign-in (or a Consumer hand-over), never for an
anonymous view: what waits for a login travels in a signed cookie meanwhile
(:mod:`bff.auth.pending`).

The cookie holds only a random session id signed with itsdangerous (HttpOnly, SameSite=Lax,
Secure unless the deployment explicitly relaxes it for a loopback demo). Everything else,
OIDC tokens included, stays in the :class:`SessionStore`. Sessions expire after an idle
period and after an absolute lifetime, whichever comes first.

Of a session that expired, the store keeps for the rest of its cookie's life only what
the logout at the identity provider needs (:class:`EndedSession`): the viewer that says
"your session has ended" (issue 14) can still end it at FranceConnect+ / ProSantéConnect
(RP-initiated logout, ``POST /auth/logout``). A session ended by logout keeps nothing.

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

from bff.access.policy import Grant, RemoteOpening, StudyRef
from bff.errors import ServiceBusy

COOKIE_NAME = "drimbox_session"
#: The cookie's name when it is Secure (production): the ``__Host-`` prefix makes the
#: browser refuse it from a sibling host or with a Domain or a Path other than /, so a
#: cookie planted by another host under the same parent domain is never sent (issue 13).
HOST_COOKIE_NAME = "__Host-drimbox_session"
#: Signed cookies remembered as checked (a few per live session).
VERIFIED_COOKIES = 4096
#: Expired sessions remembered for the logout at their provider (the oldest forgotten).
ENDED_SESSIONS = 4096


@dataclass
class OpenedStudy:
    """A study granted to this session, with what the viewer shows of it (DB.VI-CS.29)."""

    location: str
    study_uid: str
    kos_sop_uid: str
    display: dict[str, str | list[str] | None]
    #: Consumer: the KOS the study was opened from (its images come from its Source).
    remote: RemoteOpening | None = None
    #: The series the KOS references: nothing else of the study is retrieved (issue 13).
    #: Empty: not restricted (studies granted before series were recorded, tests).
    series_uids: tuple[str, ...] = ()


@dataclass(frozen=True)
class EndedSession:
    """What the logout of a session needs: its identity provider and id_token (the
    ``id_token_hint``), its CSRF token (the logout form's check). An expired session
    leaves this in the store until its cookie's end (``until``)."""

    provider: str | None
    id_token: str | None = field(repr=False)
    csrf_token: str = field(repr=False)
    until: float


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
    studies: list[OpenedStudy] = field(default_factory=list)
    #: A new report link opened in a signed-in browser: what the earlier session had
    #: granted, and to whom. Kept only if the same person signs in again (a shared
    #: computer: another person never inherits the earlier grants; DB.VI-CS.36).
    carried: list[OpenedStudy] = field(default_factory=list)
    carried_subject: str | None = field(default=None, repr=False)

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
                s.kos_sop_uid,
                str(s.display.get("institution") or ""),
                s.remote,
                s.series_uids,
            )
            for s in self.studies
        )
        return Grant(refs, str(self.tokens.get("access_token", "")))

    def opened(self, location: str, study_uid: str) -> OpenedStudy | None:
        for study in self.studies:
            if study.location == location and study.study_uid == study_uid:
                return study
        return None

    def signed_in(self, subject: str) -> None:
        """The identity provider proved ``subject``: the grants carried from an earlier
        session are kept only if they were that same person's."""
        if self.carried and self.carried_subject == subject:
            kept = [s for s in self.carried if self.opened(s.location, s.study_uid) is None]
            self.studies = kept + self.studies
        self.carried, self.carried_subject = [], None
        self.subject = subject

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
        secure: bool = False,
        max_sessions: int = 20_000,
    ) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt="drimbox-session")
        #: Secure cookies carry the ``__Host-`` prefix (HOST_COOKIE_NAME).
        self.secure = secure
        self.cookie_name = HOST_COOKIE_NAME if secure else COOKIE_NAME
        self._idle_timeout = idle_timeout
        self.max_age = max_age
        self._clock = clock
        self._sessions: dict[str, Session] = {}
        self._max_sessions = max_sessions
        # Cookies whose signature was checked, -> session id: the viewer sends ~1300
        # requests per opening with the same cookie; two HMACs each add up (issue 5).
        # Only ever consulted for sessions still in the store (the expiry checks below
        # still run on every load).
        self._verified: OrderedDict[str, str] = OrderedDict()
        self._ended: OrderedDict[str, EndedSession] = OrderedDict()

    def create(self) -> Session:
        """A new session; when the store is full and purging frees nothing, ServiceBusy
        (the store's memory is bounded whatever visitors do; :meth:`purge` also runs
        on a timer, so that creating a session never walks them all)."""
        if len(self._sessions) >= self._max_sessions:
            self.purge()
            if len(self._sessions) >= self._max_sessions:
                raise ServiceBusy(f"{len(self._sessions)} sessions")
        now = self._clock()
        session = Session(
            id=secrets.token_urlsafe(32),
            created_at=now,
            last_seen=now,
            csrf_token=secrets.token_urlsafe(24),
        )
        self._sessions[session.id] = session
        return session

    def renew(self, session: Session) -> Session:
        """The same session under a new id and CSRF token; the old id is dead at once.
        Called at every hand-over (a sign-in creates a new session), so that a cookie
        known before (planted, or read on a shared computer) never carries what the
        hand-over grants."""
        self._sessions.pop(session.id, None)
        session.id = secrets.token_urlsafe(32)
        session.csrf_token = secrets.token_urlsafe(24)
        session.created_at = session.last_seen = self._clock()
        self._sessions[session.id] = session
        return session

    def cookie_value(self, session: Session) -> str:
        return self._serializer.dumps(session.id)

    def _session_id(self, cookie: str | None) -> str | None:
        """The session id a cookie names, if its signature holds."""
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
        return session_id

    def load(self, cookie: str | None, *, touch: bool = True) -> Session | None:
        """The live session a cookie names; None when absent, forged, foreign or expired.
        ``touch``: the request counts as activity (the idle timeout starts again); the
        viewer's look at whether its session still lives does not (issue 14)."""
        session_id = self._session_id(cookie)
        session = self._sessions.get(session_id) if session_id is not None else None
        if session is None:
            return None
        now = self._clock()
        if self._expired(session, now):
            self._end(session)
            return None
        if touch:
            session.last_seen = now
        return session

    def to_end(self, session: Session | None, cookie: str | None) -> EndedSession | None:
        """What the logout needs of ``session``, or of the expired session ``cookie``
        names (None: nothing to end)."""
        if session is not None:
            return self._leftover(session)
        session_id = self._session_id(cookie)
        ended = self._ended.get(session_id) if session_id is not None else None
        return ended if ended is not None and ended.until >= self._clock() else None

    def end(self, session: Session | None, cookie: str | None) -> None:
        """Logout: ``session`` is gone, and so is what an expired one left."""
        if session is not None:
            self.delete(session)
        session_id = self._session_id(cookie)
        if session_id is not None:
            self._ended.pop(session_id, None)

    def _leftover(self, session: Session) -> EndedSession:
        id_token = session.tokens.get("id_token")
        return EndedSession(
            session.provider,
            id_token if isinstance(id_token, str) else None,
            session.csrf_token,
            session.created_at + self.max_age,
        )

    def _expired(self, session: Session, now: float) -> bool:
        return (
            now - session.last_seen > self._idle_timeout or now - session.created_at > self.max_age
        )

    def _end(self, session: Session) -> None:
        """Drop an expired session, keeping what its logout at the provider needs."""
        self._sessions.pop(session.id, None)
        leftover = self._leftover(session)
        if leftover.provider and leftover.id_token:
            self._ended[session.id] = leftover
            while len(self._ended) > ENDED_SESSIONS:
                self._ended.popitem(last=False)

    def delete(self, session: Session) -> None:
        self._sessions.pop(session.id, None)

    def check_csrf(self, session: Session, token: str) -> bool:
        return hmac.compare_digest(session.csrf_token.encode(), token.encode())

    def purge(self) -> int:
        """Drop expired sessions; returns how many."""
        before = len(self._sessions)
        self._purge()
        return before - len(self._sessions)

    def _purge(self) -> None:
        now = self._clock()
        for session in list(self._sessions.values()):
            if self._expired(session, now):
                self._end(session)
        for key in [k for k, e in self._ended.items() if e.until < now]:
            del self._ended[key]

    def __len__(self) -> int:
        return len(self._sessions)
