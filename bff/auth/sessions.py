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

Where sessions are kept is a :class:`~bff.state.backend.StateBackend` (issue 15, item
1): in this process's memory (the demo), or a database every replica reads
(``DRIMBOX_STATE_URL``). A session is stored as sealed JSON (AES-GCM bound to its id,
:mod:`bff.state.sealing`: its tokens are never clear at rest) and written back by
:meth:`SessionStore.save`, which setting the session cookie calls (bff/web/cookies.py).

The image path must not ask the database at every request (~1300 per opening): a
session read is kept :data:`CACHE_TTL_S` seconds by the process that read it, and its
activity (``last_seen``) is written at most every ``touch_every`` seconds. Two bounds
follow, documented in docs/architecture.md: a logout or expiry seen by another replica
takes effect here within :data:`CACHE_TTL_S` seconds; an idle session may end up to
``touch_every`` seconds before its idle timeout (never after).
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer

from bff.access.policy import Grant, RemoteOpening, StudyRef
from bff.errors import ServiceBusy
from bff.state.backend import Entry, MemoryBackend, StateBackend
from bff.state.sealing import Sealer, SealError

log = logging.getLogger(__name__)

COOKIE_NAME = "drimbox_session"
#: The cookie's name when it is Secure (production): the ``__Host-`` prefix makes the
#: browser refuse it from a sibling host or with a Domain or a Path other than /, so a
#: cookie planted by another host under the same parent domain is never sent (issue 13).
HOST_COOKIE_NAME = "__Host-drimbox_session"
#: Signed cookies remembered as checked (a few per live session).
VERIFIED_COOKIES = 4096
#: Expired sessions remembered for the logout at their provider (the oldest forgotten).
ENDED_SESSIONS = 4096
#: Seconds a process keeps a session it read before reading it again from the store.
CACHE_TTL_S = 3.0
#: Sessions a process keeps read (the least recently used forgotten first).
CACHED_SESSIONS = 4096
#: Expired sessions ended per batch by the purge.
_PURGE_BATCH = 500


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


class _Cached:
    """A session as this process read it, when, and the last activity written."""

    __slots__ = ("read_at", "session", "written_seen")

    def __init__(self, session: Session, read_at: float, written_seen: float) -> None:
        self.session = session
        self.read_at = read_at
        self.written_seen = written_seen


class SessionStore:
    """Sessions with idle and absolute expiry, found by signed cookie value, kept in a
    :class:`~bff.state.backend.StateBackend` (in memory by default)."""

    def __init__(
        self,
        secret: str,
        *,
        idle_timeout: float,
        max_age: float,
        clock: Callable[[], float] = time.time,
        secure: bool = False,
        max_sessions: int = 20_000,
        backend: StateBackend | None = None,
        sealer: Sealer | None = None,
        touch_every: float = 0.0,
        cache_ttl: float = CACHE_TTL_S,
    ) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt="drimbox-session")
        #: Secure cookies carry the ``__Host-`` prefix (HOST_COOKIE_NAME).
        self.secure = secure
        self.cookie_name = HOST_COOKIE_NAME if secure else COOKIE_NAME
        self._idle_timeout = idle_timeout
        self.max_age = max_age
        self._clock = clock
        self._backend: StateBackend = backend if backend is not None else MemoryBackend()
        self._sealer = sealer if sealer is not None else Sealer.ephemeral()
        self._max_sessions = max_sessions
        self._touch_every = touch_every
        self._cache_ttl = cache_ttl
        # Cookies whose signature was checked, -> session id: the viewer sends ~1300
        # requests per opening with the same cookie; two HMACs each add up (issue 5).
        # Only ever consulted for sessions still in the store (the expiry checks below
        # still run on every load).
        self._verified: OrderedDict[str, str] = OrderedDict()
        self._cache: OrderedDict[str, _Cached] = OrderedDict()
        # A shared store is read from threads (bff/auth/middleware.py): both memos locked.
        self._lock = threading.Lock()

    @property
    def shared(self) -> bool:
        """Whether sessions live in a database (its reads may wait: off the event loop)."""
        return self._backend.shared

    # -- stored form ------------------------------------------------------------------------

    def _entry(self, session: Session) -> Entry:
        payload = json.dumps(session_to_json(session), separators=(",", ":")).encode()
        return Entry(
            self._sealer.seal(payload, f"session:{session.id}"),
            session.created_at,
            session.last_seen,
            self._expires_at(session),
        )

    def _decode(self, session_id: str, entry: Entry) -> Session | None:
        try:
            data = json.loads(self._sealer.open(entry.payload, f"session:{session_id}"))
            return session_from_json(session_id, entry.created_at, entry.last_seen, data)
        except (SealError, ValueError, KeyError, TypeError):
            # Altered, moved from another row, or sealed with a key no longer known: no
            # session (the user signs in again). Never logged: the payload.
            log.warning("a stored session did not open: treated as absent")
            return None

    def _expires_at(self, session: Session) -> float:
        return min(session.last_seen + self._idle_timeout, session.created_at + self.max_age)

    def _remember(self, session: Session, written_seen: float) -> _Cached:
        cached = _Cached(session, self._clock(), written_seen)
        with self._lock:
            self._cache[session.id] = cached
            self._cache.move_to_end(session.id)
            while len(self._cache) > CACHED_SESSIONS:
                self._cache.popitem(last=False)
        return cached

    # -- life cycle -------------------------------------------------------------------------

    def create(self) -> Session:
        """A new session; when the store is full and purging frees nothing, ServiceBusy
        (the store's memory is bounded whatever visitors do; :meth:`purge` also runs
        on a timer, so that creating a session never walks them all)."""
        now = self._clock()
        session = Session(
            id=secrets.token_urlsafe(32),
            created_at=now,
            last_seen=now,
            csrf_token=secrets.token_urlsafe(24),
        )
        entry = self._entry(session)
        if not self._backend.add("session", session.id, entry, max_entries=self._max_sessions):
            self.purge()
            if not self._backend.add("session", session.id, entry, max_entries=self._max_sessions):
                raise ServiceBusy(f"{self._max_sessions} sessions")
        self._remember(session, now)
        return session

    def save(self, session: Session) -> None:
        """Write ``session`` as it is now (its grants, identity and tokens) for every
        replica; setting its cookie does (bff/web/cookies.py)."""
        self._backend.put("session", session.id, self._entry(session))
        self._remember(session, session.last_seen)

    def renew(self, session: Session) -> Session:
        """The same session under a new id and CSRF token; the old id is dead at once.
        Called at every hand-over (a sign-in creates a new session), so that a cookie
        known before (planted, or read on a shared computer) never carries what the
        hand-over grants."""
        self.delete(session)
        session.id = secrets.token_urlsafe(32)
        session.csrf_token = secrets.token_urlsafe(24)
        session.created_at = session.last_seen = self._clock()
        self.save(session)
        return session

    def cookie_value(self, session: Session) -> str:
        return self._serializer.dumps(session.id)

    def _session_id(self, cookie: str | None) -> str | None:
        """The session id a cookie names, if its signature holds."""
        if not cookie:
            return None
        with self._lock:
            session_id = self._verified.get(cookie)
        if session_id is None:
            try:
                session_id = str(self._serializer.loads(cookie, max_age=int(self.max_age)))
            except BadSignature:  # includes SignatureExpired
                return None
            with self._lock:
                self._verified[cookie] = session_id
                while len(self._verified) > VERIFIED_COOKIES:
                    self._verified.popitem(last=False)
        return session_id

    def _read(self, session_id: str, now: float) -> _Cached | None:
        with self._lock:
            cached = self._cache.get(session_id)
            if cached is not None and 0 <= now - cached.read_at <= self._cache_ttl:
                return cached
            self._cache.pop(session_id, None)
        entry = self._backend.get("session", session_id)
        session = self._decode(session_id, entry) if entry is not None else None
        return self._remember(session, entry.last_seen) if session and entry else None

    def load(self, cookie: str | None, *, touch: bool = True) -> Session | None:
        """The live session a cookie names; None when absent, forged, foreign or expired.
        ``touch``: the request counts as activity (the idle timeout starts again); the
        viewer's look at whether its session still lives does not (issue 14)."""
        session_id = self._session_id(cookie)
        if session_id is None:
            return None
        now = self._clock()
        cached = self._read(session_id, now)
        if cached is None:
            return None
        session = cached.session
        if self._expired(session, now):
            self._end(session)
            return None
        if touch:
            session.last_seen = now
            if now - cached.written_seen >= self._touch_every:
                self._backend.touch("session", session.id, now, self._expires_at(session))
                cached.written_seen = now
        return session

    def to_end(self, session: Session | None, cookie: str | None) -> EndedSession | None:
        """What the logout needs of ``session``, or of the expired session ``cookie``
        names (None: nothing to end)."""
        if session is not None:
            return self._leftover(session)
        session_id = self._session_id(cookie)
        entry = self._backend.get("ended", session_id) if session_id is not None else None
        if entry is None or session_id is None or entry.expires_at < self._clock():
            return None
        try:
            data = json.loads(self._sealer.open(entry.payload, f"ended:{session_id}"))
            return EndedSession(
                data["provider"], data["id_token"], str(data["csrf"]), entry.expires_at
            )
        except (SealError, ValueError, KeyError, TypeError):
            log.warning("a stored ended session did not open: treated as absent")
            return None

    def end(self, session: Session | None, cookie: str | None) -> None:
        """Logout: ``session`` is gone, and so is what an expired one left."""
        if session is not None:
            self.delete(session)
        session_id = self._session_id(cookie)
        if session_id is not None:
            self._backend.delete("ended", session_id)

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
        self.delete(session)
        leftover = self._leftover(session)
        if leftover.provider and leftover.id_token:
            payload = json.dumps(
                {
                    "provider": leftover.provider,
                    "id_token": leftover.id_token,
                    "csrf": leftover.csrf_token,
                }
            ).encode()
            now = self._clock()
            sealed = self._sealer.seal(payload, f"ended:{session.id}")
            self._backend.put("ended", session.id, Entry(sealed, now, now, leftover.until))
            self._backend.trim("ended", ENDED_SESSIONS)

    def delete(self, session: Session) -> None:
        self._backend.delete("session", session.id)
        with self._lock:
            self._cache.pop(session.id, None)

    def check_csrf(self, session: Session, token: str) -> bool:
        return hmac.compare_digest(session.csrf_token.encode(), token.encode())

    def purge(self) -> int:
        """Drop expired sessions (keeping what their logout needs); returns how many."""
        now, ended = self._clock(), 0
        while True:
            batch = self._backend.expired("session", now, _PURGE_BATCH)
            for session_id, entry in batch:
                session = self._decode(session_id, entry)
                if session is None:
                    self._backend.delete("session", session_id)
                else:
                    self._end(session)
            ended += len(batch)
            if len(batch) < _PURGE_BATCH:
                break
        self._backend.purge("ended", now)
        return ended

    def ended_count(self) -> int:
        """Expired sessions whose logout at their provider is still possible."""
        return self._backend.count("ended")

    def __len__(self) -> int:
        return self._backend.count("session")


# -- JSON form (sealed before it is stored) ----------------------------------------------------


def _study_to_json(study: OpenedStudy) -> dict[str, Any]:
    return {
        "location": study.location,
        "study_uid": study.study_uid,
        "kos_sop_uid": study.kos_sop_uid,
        "display": study.display,
        "remote": study.remote.to_json() if study.remote is not None else None,
        "series_uids": list(study.series_uids),
    }


def _study_from_json(data: dict[str, Any]) -> OpenedStudy:
    remote = data["remote"]
    return OpenedStudy(
        str(data["location"]),
        str(data["study_uid"]),
        str(data["kos_sop_uid"]),
        dict(data["display"]),
        RemoteOpening.from_json(remote) if remote is not None else None,
        tuple(str(uid) for uid in data["series_uids"]),
    )


def session_to_json(session: Session) -> dict[str, Any]:
    """Everything of a session but its id and times (the row's key and columns)."""
    return {
        "csrf": session.csrf_token,
        "profile": session.profile,
        "provider": session.provider,
        "subject": session.subject,
        "user_display": session.user_display,
        "tokens": session.tokens,
        "studies": [_study_to_json(s) for s in session.studies],
        "carried": [_study_to_json(s) for s in session.carried],
        "carried_subject": session.carried_subject,
    }


def session_from_json(
    session_id: str, created_at: float, last_seen: float, data: dict[str, Any]
) -> Session:
    return Session(
        id=session_id,
        created_at=created_at,
        last_seen=last_seen,
        csrf_token=str(data["csrf"]),
        profile=data["profile"],
        provider=data["provider"],
        subject=data["subject"],
        user_display=data["user_display"],
        tokens=dict(data["tokens"]),
        studies=[_study_from_json(s) for s in data["studies"]],
        carried=[_study_from_json(s) for s in data["carried"]],
        carried_subject=data["carried_subject"],
    )
