"""bff.auth.sessions.SessionStore: signed cookie -> live session, with expiry.

The store remembers cookies whose signature it checked (issue 5: the viewer sends
~1300 requests per opening with the same cookie); these tests pin that the memo never
lets through what the signature and expiry checks would refuse. Every test runs on both
state backends (issue 15 item 1: in memory, and SQL on SQLite; tests/integration/
test_state_postgres.py runs them on PostgreSQL).
"""

from __future__ import annotations

import pytest

from bff.auth import sessions as sessions_module
from bff.auth.sessions import SessionStore
from bff.state.backend import StateBackend


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock, backend: StateBackend) -> SessionStore:
    return SessionStore("s" * 32, idle_timeout=60, max_age=600, clock=clock, backend=backend)


def test_cookie_names_its_session_again_and_again(store: SessionStore) -> None:
    session = store.create()
    cookie = store.cookie_value(session)
    for _ in range(3):
        assert _id(store.load(cookie)) == session.id


def test_forged_or_foreign_cookies_are_no_session(store: SessionStore) -> None:
    session = store.create()
    cookie = store.cookie_value(session)
    assert _id(store.load(cookie)) == session.id  # remembered as checked
    assert store.load(cookie[:-2] + ("AA" if not cookie.endswith("AA") else "BB")) is None
    assert store.load(session.id) is None  # the bare id is not a signed cookie
    other = SessionStore("o" * 32, idle_timeout=60, max_age=600)
    assert other.load(cookie) is None
    assert store.load("") is None and store.load(None) is None


def test_expiry_and_logout_apply_to_remembered_cookies(store: SessionStore, clock: Clock) -> None:
    idle = store.create()
    idle_cookie = store.cookie_value(idle)
    assert _id(store.load(idle_cookie)) == idle.id
    clock.now += 61
    assert store.load(idle_cookie) is None  # idle timeout, although remembered
    assert store.load(idle_cookie) is None

    old = store.create()
    old_cookie = store.cookie_value(old)
    for _ in range(10):  # active all along (550 s), then past the absolute age
        clock.now += 55
        assert _id(store.load(old_cookie)) == old.id
    clock.now += 55
    assert store.load(old_cookie) is None

    gone = store.create()
    gone_cookie = store.cookie_value(gone)
    assert _id(store.load(gone_cookie)) == gone.id
    store.delete(gone)
    assert store.load(gone_cookie) is None


def test_remembered_cookies_are_bounded(
    store: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sessions_module, "VERIFIED_COOKIES", 3)
    made = [store.create() for _ in range(5)]
    cookies = [store.cookie_value(s) for s in made]
    for session, cookie in zip(made, cookies, strict=True):
        assert _id(store.load(cookie)) == session.id
    assert len(store._verified) == 3
    # An evicted cookie is simply checked again.
    assert store.load(cookies[0]) is made[0]


def test_a_look_at_the_session_is_not_activity(store: SessionStore, clock: Clock) -> None:
    """Issue 14: the viewer's watch (touch=False) sees the session live, but does not
    keep an idle session alive: the idle limit still applies."""
    session = store.create()
    cookie = store.cookie_value(session)
    for _ in range(2):
        clock.now += 25
        assert _id(store.load(cookie, touch=False)) == session.id
    clock.now += 11  # 61 s after the last activity, over the 60 s idle limit
    assert store.load(cookie, touch=False) is None
    assert store.load(cookie) is None


def _signed_in(store: SessionStore, *, id_token: str | None = "the-id-token") -> str:
    session = store.create()
    session.provider, session.subject = "fcp", "sub-1"
    if id_token is not None:
        session.tokens = {"access_token": "at", "id_token": id_token}
    store.save(session)
    return store.cookie_value(session)


def test_an_expired_session_can_still_be_logged_out_at_its_provider(
    store: SessionStore, clock: Clock
) -> None:
    """Issue 14: once expired, a session leaves only what the logout at its provider
    needs (provider, id_token, CSRF token), until its cookie's end; logout forgets it."""
    cookie = _signed_in(store)
    live = store.load(cookie)
    assert live is not None
    csrf = live.csrf_token
    clock.now += 61
    assert store.load(cookie) is None
    ended = store.to_end(None, cookie)
    assert ended is not None
    assert (ended.provider, ended.id_token, ended.csrf_token) == ("fcp", "the-id-token", csrf)
    assert "the-id-token" not in repr(ended) and csrf not in repr(ended)
    store.end(None, cookie)
    assert store.to_end(None, cookie) is None

    expired_long_ago = _signed_in(store)
    clock.now += 61
    store.purge()  # the purge timer ends it the same way
    assert store.to_end(None, expired_long_ago) is not None
    clock.now += 600  # past the cookie's life (max_age)
    assert store.to_end(None, expired_long_ago) is None
    store.purge()
    assert store.ended_count() == 0


def test_what_expired_sessions_leave_is_bounded_and_only_for_provider_logout(
    store: SessionStore, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    without_token = _signed_in(store, id_token=None)  # nothing to end at a provider
    monkeypatch.setattr(sessions_module, "ENDED_SESSIONS", 2)
    cookies = [_signed_in(store) for _ in range(3)]
    clock.now += 61
    store.purge()
    assert store.to_end(None, without_token) is None
    assert [store.to_end(None, c) is not None for c in cookies] == [False, True, True]
    assert store.to_end(None, "forged") is None


def _id(session: sessions_module.Session | None) -> str | None:
    return session.id if session is not None else None
