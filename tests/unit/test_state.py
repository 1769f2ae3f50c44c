"""The shared state (issue 15, item 1): one store interface, two implementations.

Every test runs on the in-memory backend and on the SQL one (SQLite here; the same
suite runs on PostgreSQL in tests/integration/test_state_postgres.py). Two stores over
one backend stand for two replicas (or a restart): what one writes, the other reads.
Tokens are sealed at rest (AES-GCM bound to their row): a raw row holds no token, a
tampered or swapped ciphertext is no entry at all.
"""

from __future__ import annotations

import io
import socket
from pathlib import Path

import pydicom
import pytest

from bff.access.handover import HANDOVER_TTL_S, HandoverStore
from bff.access.policy import RemoteOpening
from bff.archive.kos import parse_kos
from bff.auth.pending import PENDING_TTL_S, PendingLogin, PendingLogins
from bff.auth.sessions import CACHE_TTL_S, OpenedStudy, Session, SessionStore
from bff.errors import ServiceBusy, StateUnavailable
from bff.state.backend import Entry, StateBackend
from bff.state.sealing import Sealer, load_keys, parse_key
from bff.state.sql import SqlBackend
from tests.unit.test_archive import make_kos

SECRET = "s" * 32
ACCESS_TOKEN = "psc-access-token-0123456789"
ID_TOKEN = "eyJ-the-id-token-0123456789"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sealer() -> Sealer:
    return Sealer.ephemeral()


def sessions(backend: StateBackend, clock: Clock, sealer: Sealer, **kw: object) -> SessionStore:
    options: dict[str, object] = {"idle_timeout": 60, "max_age": 600, **kw}
    return SessionStore(
        SECRET,
        clock=clock,
        backend=backend,
        sealer=sealer,
        **options,  # type: ignore[arg-type]
    )


def opening() -> RemoteOpening:
    ds = make_kos()
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    # The practice's local patient id travels with the opening (DB.VI-CS.32).
    return RemoteOpening(
        parse_kos(ds),
        buffer.getvalue(),
        local_patient_id="CAB-000042",
        local_patient_issuer="CABINET-DUPONT",
    )


def signed_in(store: SessionStore) -> Session:
    session = store.create()
    session.profile, session.provider = "professional", "psc"
    session.signed_in("sub-1")
    session.user_display = "Dr Test"
    session.tokens = {"access_token": ACCESS_TOKEN, "id_token": ID_TOKEN, "expires_at": 5}
    remote = opening()
    session.open_study(
        OpenedStudy(
            "co.localhost",
            remote.record.study_uid,
            remote.record.sop_uid,
            {"institution": "Centre", "series": ["a", "b"], "none": None},
            remote,
        )
    )
    session.open_study(OpenedStudy("vi1.localhost", "1.2.3", "1.2.3.4", {}, None, ("1.2.3.5",)))
    store.save(session)
    return session


# -- the backend contract ------------------------------------------------------------------


def test_backend_keeps_takes_once_expires_and_bounds(backend: StateBackend) -> None:
    entry = Entry(b"\x00sealed\xff", 10.0, 10.0, 70.0)
    assert backend.add("login", "a", entry, max_entries=2)
    assert backend.add("login", "b", Entry(b"b", 20.0, 20.0, 80.0), max_entries=2)
    assert not backend.add("login", "c", entry, max_entries=2)  # full
    assert backend.count("login") == 2 and backend.count("session") == 0
    assert backend.get("login", "a") == entry
    assert backend.take("login", "a") == entry
    assert backend.take("login", "a") is None  # single use
    backend.put("session", "s", entry)
    backend.put("session", "s", Entry(b"new", 10.0, 10.0, 70.0))  # replaced
    assert backend.get("session", "s") == Entry(b"new", 10.0, 10.0, 70.0)
    backend.touch("session", "s", 30.0, 90.0)
    backend.touch("session", "s", 25.0, 85.0)  # never backwards
    assert backend.get("session", "s") == Entry(b"new", 10.0, 30.0, 90.0)
    assert [k for k, _ in backend.expired("login", 85.0, 10)] == ["b"]
    assert backend.purge("login", 85.0) == 1 and backend.count("login") == 0
    for i in range(5):
        backend.put("ended", f"e{i}", Entry(b"x", float(i), float(i), 1e9))
    assert backend.trim("ended", 2) == 3
    assert backend.get("ended", "e4") is not None and backend.get("ended", "e0") is None
    backend.delete("session", "s")
    assert backend.get("session", "s") is None


# -- sessions ------------------------------------------------------------------------------


def test_a_session_written_by_one_replica_is_read_by_another(
    backend: StateBackend, clock: Clock, sealer: Sealer
) -> None:
    """Issue 15: a login on A, images on B with the same cookie; a restart (a new
    store on the same backend) keeps the session, its grants and tokens."""
    a, b = sessions(backend, clock, sealer), sessions(backend, clock, sealer)
    session = signed_in(a)
    found = b.load(a.cookie_value(session))
    assert found is not None and found is not session
    assert found == session  # every field, the RemoteOpening's KOS bytes included
    assert found.grant == session.grant
    remote = found.studies[0].remote
    assert remote is not None and remote.kos_bytes == opening().kos_bytes
    assert remote.local_patient_id == "CAB-000042"  # the local id survives the store
    assert found.authenticated and found.tokens["access_token"] == ACCESS_TOKEN


def test_renew_and_logout_on_one_replica_end_the_session_on_the_other(
    backend: StateBackend, clock: Clock, sealer: Sealer
) -> None:
    a, b = sessions(backend, clock, sealer), sessions(backend, clock, sealer)
    session = signed_in(a)
    old_cookie = a.cookie_value(session)
    assert b.load(old_cookie) is not None
    a.renew(session)
    clock.now += CACHE_TTL_S + 1  # B read it before: its copy is kept that long at most
    assert b.load(old_cookie) is None
    new_cookie = a.cookie_value(session)
    assert b.load(new_cookie) is not None
    a.end(session, new_cookie)
    assert b.load(new_cookie) is not None  # within B's read bound (documented)
    clock.now += CACHE_TTL_S + 1
    assert b.load(new_cookie) is None


def test_activity_is_written_at_most_every_touch_interval(
    backend: StateBackend, clock: Clock, sealer: Sealer
) -> None:
    store = sessions(backend, clock, sealer, touch_every=30)
    session = store.create()
    cookie = store.cookie_value(session)
    created = session.created_at
    clock.now += 10
    assert store.load(cookie) is not None
    stored = backend.get("session", session.id)
    assert stored is not None and stored.last_seen == created  # not written yet
    clock.now += 25  # 35 s after the last write
    assert store.load(cookie) is not None
    stored = backend.get("session", session.id)
    assert stored is not None and stored.last_seen == clock.now
    assert stored.expires_at == clock.now + 60  # the idle timeout from the last activity


def test_an_idle_session_ends_for_every_replica_and_its_logout_stays_possible(
    backend: StateBackend, clock: Clock, sealer: Sealer
) -> None:
    a, b = sessions(backend, clock, sealer), sessions(backend, clock, sealer)
    session = signed_in(a)
    cookie = a.cookie_value(session)
    clock.now += 61
    assert a.purge() == 1 and len(a) == 0
    assert b.load(cookie) is None
    ended = b.to_end(None, cookie)
    assert ended is not None and ended.id_token == ID_TOKEN
    b.end(None, cookie)
    assert a.to_end(None, cookie) is None


def test_sessions_are_bounded(backend: StateBackend, clock: Clock, sealer: Sealer) -> None:
    store = sessions(backend, clock, sealer, max_sessions=2)
    store.create()
    store.create()
    with pytest.raises(ServiceBusy):
        store.create()
    clock.now += 61  # both idle: the purge frees room
    assert store.create() is not None and len(store) == 1


def test_no_token_or_identity_in_a_stored_row(
    backend: StateBackend, clock: Clock, sealer: Sealer
) -> None:
    store = sessions(backend, clock, sealer)
    session = signed_in(store)
    raw = backend.get("session", session.id)
    assert raw is not None
    for secret in (ACCESS_TOKEN, ID_TOKEN, session.csrf_token, "sub-1", "PAT-TROIS", "Dr Test"):
        assert secret.encode() not in raw.payload
    assert opening().kos_bytes[-64:] not in raw.payload


def test_a_tampered_or_swapped_row_is_no_session(
    backend: StateBackend, clock: Clock, sealer: Sealer
) -> None:
    store = sessions(backend, clock, sealer)
    mine, theirs = signed_in(store), store.create()
    mine_cookie, theirs_cookie = store.cookie_value(mine), store.cookie_value(theirs)
    reader = sessions(backend, clock, sealer)  # nothing read before: reads the rows
    raw = backend.get("session", mine.id)
    assert raw is not None
    # Their row given my sealed payload: it does not open under their id.
    backend.put("session", theirs.id, raw)
    assert reader.load(theirs_cookie) is None
    flipped = bytearray(raw.payload)
    flipped[-1] ^= 1
    backend.put("session", mine.id, Entry(bytes(flipped), raw.created_at, raw.last_seen, 1e12))
    assert reader.load(mine_cookie) is None
    backend.put("session", mine.id, raw)  # put back: opens again
    assert reader.load(mine_cookie) is not None


def test_old_keys_still_open_during_a_rotation(
    backend: StateBackend, clock: Clock, tmp_path: Path
) -> None:
    old, new = tmp_path / "old.key", tmp_path / "new.key"
    old.write_bytes(b"o" * 32)
    new.write_text("bmJubmJubmJubmJubmJubmJubmJubmJubmJubmJubmI=\n")  # base64 of 32 bytes
    assert parse_key(new.read_bytes()) == b"nbn" * 10 + b"nb"
    before = sessions(backend, clock, Sealer(load_keys(str(old))))
    session = signed_in(before)
    cookie = before.cookie_value(session)
    rotated = sessions(backend, clock, Sealer(load_keys(str(new), str(old))))
    assert rotated.load(cookie) is not None
    forgotten = sessions(backend, clock, Sealer(load_keys(str(new))))
    assert forgotten.load(cookie) is None
    with pytest.raises(ValueError):
        parse_key(b"too short")


# -- pending logins and hand-overs ---------------------------------------------------------


def login(state: str) -> PendingLogin:
    return PendingLogin(state, "the-nonce-123", "the-verifier-456", "psc", "https://x/cb", "pro")


def test_a_login_started_on_one_replica_finishes_on_another_once(
    backend: StateBackend, clock: Clock, sealer: Sealer
) -> None:
    a = PendingLogins(max_entries=2, clock=clock, backend=backend, sealer=sealer)
    b = PendingLogins(max_entries=2, clock=clock, backend=backend, sealer=sealer)
    a.add(login("state-1"))
    raw = backend.get("login", "state-1")
    assert raw is not None
    assert b"the-nonce-123" not in raw.payload and b"the-verifier-456" not in raw.payload
    assert b.take("state-1") == login("state-1")
    assert a.take("state-1") is None and b.take("state-1") is None  # single use
    a.add(login("state-2"))
    a.add(login("state-3"))
    with pytest.raises(ServiceBusy):
        a.add(login("state-4"))
    clock.now += PENDING_TTL_S + 1
    a.add(login("state-4"))  # the purge made room
    assert len(a) == 1
    assert b.take("state-4") is not None
    a.add(login("state-5"))
    clock.now += PENDING_TTL_S + 1
    assert b.take("state-5") is None  # too old


def test_a_handover_posted_to_one_replica_opens_on_another_once(
    backend: StateBackend, clock: Clock, sealer: Sealer
) -> None:
    a = HandoverStore(clock=clock, backend=backend, sealer=sealer)
    b = HandoverStore(clock=clock, backend=backend, sealer=sealer)
    token = a.add(opening(), ACCESS_TOKEN, "1.2.3")
    raw = backend.expired("handover", 1e12, 10)
    assert len(raw) == 1
    key, entry = raw[0]
    assert token not in key and ACCESS_TOKEN.encode() not in entry.payload
    item = b.take(token)
    assert item is not None and item.access_token == ACCESS_TOKEN
    assert item.opening == opening() and item.series_uid == "1.2.3"
    assert a.take(token) is None  # single use
    late = a.add(opening(), ACCESS_TOKEN, None)
    clock.now += HANDOVER_TTL_S + 1
    assert b.take(late) is None


# -- a database that fails ------------------------------------------------------------------


def test_a_database_outage_is_a_503_not_a_crash_or_an_endless_wait() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there
    backend = SqlBackend(f"postgresql+psycopg://drimbox@127.0.0.1:{port}/drimbox")
    store = SessionStore(SECRET, idle_timeout=60, max_age=600, backend=backend)
    cookie = store.cookie_value(Session("id", 0.0, 0.0, "csrf"))
    try:
        with pytest.raises(StateUnavailable) as raised:
            store.load(cookie)
        assert raised.value.status == 503 and raised.value.code == "E508"
    finally:
        backend.close()
