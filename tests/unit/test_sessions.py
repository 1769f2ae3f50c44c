"""bff.auth.sessions.SessionStore: signed cookie -> live session, with expiry.

The store remembers cookies whose signature it checked (issue 5: the viewer sends
~1300 requests per opening with the same cookie); these tests pin that the memo never
lets through what the signature and expiry checks would refuse.
"""

from __future__ import annotations

import pytest

from bff.auth import sessions as sessions_module
from bff.auth.sessions import SessionStore


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> SessionStore:
    return SessionStore("s" * 32, idle_timeout=60, max_age=600, clock=clock)


def test_cookie_names_its_session_again_and_again(store: SessionStore) -> None:
    session = store.create()
    cookie = store.cookie_value(session)
    for _ in range(3):
        assert store.load(cookie) is session


def test_forged_or_foreign_cookies_are_no_session(store: SessionStore) -> None:
    session = store.create()
    cookie = store.cookie_value(session)
    assert store.load(cookie) is session  # remembered as checked
    assert store.load(cookie[:-2] + ("AA" if not cookie.endswith("AA") else "BB")) is None
    assert store.load(session.id) is None  # the bare id is not a signed cookie
    other = SessionStore("o" * 32, idle_timeout=60, max_age=600)
    assert other.load(cookie) is None
    assert store.load("") is None and store.load(None) is None


def test_expiry_and_logout_apply_to_remembered_cookies(store: SessionStore, clock: Clock) -> None:
    idle = store.create()
    idle_cookie = store.cookie_value(idle)
    assert store.load(idle_cookie) is idle
    clock.now += 61
    assert store.load(idle_cookie) is None  # idle timeout, although remembered
    assert store.load(idle_cookie) is None

    old = store.create()
    old_cookie = store.cookie_value(old)
    for _ in range(10):  # active all along (550 s), then past the absolute age
        clock.now += 55
        assert store.load(old_cookie) is old
    clock.now += 55
    assert store.load(old_cookie) is None

    gone = store.create()
    gone_cookie = store.cookie_value(gone)
    assert store.load(gone_cookie) is gone
    store.delete(gone)
    assert store.load(gone_cookie) is None


def test_remembered_cookies_are_bounded(
    store: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sessions_module, "VERIFIED_COOKIES", 3)
    made = [store.create() for _ in range(5)]
    cookies = [store.cookie_value(s) for s in made]
    for session, cookie in zip(made, cookies, strict=True):
        assert store.load(cookie) is session
    assert len(store._verified) == 3
    # An evicted cookie is simply checked again.
    assert store.load(cookies[0]) is made[0]
