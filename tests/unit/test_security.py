"""Issue 13 in process: sessions bound to one person and renewed at login, a bounded
session store, grants re-checked against the archive, per-user and per-client bounds,
the browser-side headers, and a grant limited to the KOS's series."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from bff.access.limits import InFlight, RateLimit
from bff.access.params import AccessionNumber, ViewerLink
from bff.access.published import TTL_S, PublishedKos
from bff.auth.pending import HOST_COOKIE_NAME as PENDING_HOST_COOKIE
from bff.auth.pending import PENDING_TTL_S, PendingCookies, PendingLogin, PendingLogins
from bff.auth.sessions import COOKIE_NAME, HOST_COOKIE_NAME, OpenedStudy, SessionStore
from bff.dicomweb.key_images import KeyImageIndex
from bff.dicomweb.upstream import DicomwebUpstream
from bff.errors import NotFound, ServiceBusy, TooManyRequests
from bff.origins.local import LocalPacsOrigin
from bff.settings import Settings
from bff.web.cookies import with_session_cookie
from bff.web.headers import SecurityHeaders, content_security_policy, inline_script_hashes
from bff.web.hosts import TrustedHosts
from tests.clock import ManualClock
from tests.unit.test_facade_routes import idle_retriever
from tests.unit.test_settings import DATA_PATHS


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def store(clock: Clock | None = None, **kwargs: object) -> SessionStore:
    return SessionStore(
        "s" * 32,
        idle_timeout=600,
        max_age=3600,
        clock=clock or Clock(),
        **kwargs,  # type: ignore[arg-type]
    )


def opened(study_uid: str) -> OpenedStudy:
    return OpenedStudy("vi1.localhost", study_uid, "1.2.3.9", {})


# -- sessions ------------------------------------------------------------------------------


def test_login_renews_the_session_id_and_kills_the_old_cookie() -> None:
    sessions = store()
    session = sessions.create()
    planted = sessions.cookie_value(session)  # what an attacker could have set
    old_id, old_csrf = session.id, session.csrf_token
    assert sessions.load(planted) is session
    renewed = sessions.renew(session)
    assert renewed.id != old_id and renewed.csrf_token != old_csrf
    assert sessions.load(planted) is None  # the cookie known before the login is dead
    assert sessions.load(sessions.cookie_value(renewed)) is renewed
    assert len(sessions) == 1


def test_another_person_never_inherits_the_earlier_grants() -> None:
    sessions = store()
    session = sessions.create()
    session.carried, session.carried_subject = [opened("1.1")], "patient-a"
    session.signed_in("patient-b")
    assert session.studies == [] and session.carried == []
    again = sessions.create()
    again.carried, again.carried_subject = [opened("1.1")], "patient-a"
    again.open_study(opened("2.2"))
    again.signed_in("patient-a")  # the same person: both exams (DB.VI-CS.36)
    assert sorted(s.study_uid for s in again.studies) == ["1.1", "2.2"]


def test_secure_sessions_use_a_host_only_cookie() -> None:
    secure = store(secure=True)
    session = secure.create()
    response = with_session_cookie(PlainTextResponse("ok"), secure, session)
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{HOST_COOKIE_NAME}=")
    assert "Secure" in cookie and "Path=/" in cookie and "Domain" not in cookie
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert store().cookie_name == COOKIE_NAME  # the demo's plain http


def test_the_session_store_is_bounded() -> None:
    clock = Clock()
    sessions = store(clock, max_sessions=3)
    for _ in range(3):
        sessions.create()
    with pytest.raises(ServiceBusy):
        sessions.create()
    clock.now += 601  # idle past the limit: purged, room again
    sessions.create()
    assert len(sessions) == 1


# -- grants re-checked against the archive ------------------------------------------------


@pytest.mark.anyio
async def test_an_unpublished_kos_is_seen_within_the_ttl() -> None:
    state = {"1.2.3.9": "published"}
    asked: list[str] = []

    async def state_of(uid: str) -> str | None:
        asked.append(uid)
        return state.get(uid)

    clock = Clock()
    published = PublishedKos(state_of, clock=clock)
    assert await published.published("1.2.3.9")
    state["1.2.3.9"] = "unpublished"
    assert await published.published("1.2.3.9")  # remembered for the TTL
    assert asked == ["1.2.3.9"]
    clock.now += TTL_S + 1
    assert not await published.published("1.2.3.9")
    assert not await published.published("unknown")
    state["4.5"] = "published"
    assert await published.published("4.5")
    state["4.5"] = "unpublished"
    published.forget("4.5")  # unpublished by this process: at once
    assert not await published.published("4.5")


# -- bounds ---------------------------------------------------------------------------------


def test_in_flight_requests_are_bounded_per_key() -> None:
    waits = InFlight(per_key=2)
    with waits.slot("a"), waits.slot("a"):
        with pytest.raises(TooManyRequests) as refused, waits.slot("a"):
            pass
        assert refused.value.status == 429 and refused.value.code == "E429"
        with waits.slot("b"):  # another session is not affected
            pass
    assert len(waits) == 0  # nothing kept once done


def test_rate_limit_over_a_sliding_window() -> None:
    clock = Clock()
    limit = RateLimit(3, 600, clock=clock)
    for _ in range(3):
        limit.hit("ip:1")
    assert limit.exceeded("ip:1") and not limit.exceeded("ip:2")
    with pytest.raises(TooManyRequests):
        limit.hit("ip:1")
    clock.now += 601
    assert not limit.exceeded("ip:1")
    limit.hit("ip:1")


# -- browser-side headers -------------------------------------------------------------------


def test_every_answer_carries_the_security_headers(tmp_path: Path) -> None:
    index = tmp_path / "index.html"
    index.write_bytes(b"<html><script>window.PUBLIC_URL='/'</script><script src=/a.js></script>")
    hashes = inline_script_hashes(index)
    assert len(hashes) == 1 and hashes[0].startswith("'sha256-")
    csp = content_security_policy(hashes, ["https://auth.esante.gouv.fr"])
    worker_csp = content_security_policy(hashes, [], worker=True)
    for name in ("demo", "production"):
        app = Starlette(
            routes=[
                Route("/", lambda request: PlainTextResponse("ok")),
                Route("/w.js", lambda r: PlainTextResponse("", media_type="text/javascript")),
            ]
        )
        client = TestClient(
            SecurityHeaders(app, csp=csp, worker_csp=worker_csp, hsts=name == "production")
        )
        headers = client.get("/").headers
        policy = headers["content-security-policy"]
        assert "'unsafe-eval'" not in policy  # pages never evaluate strings
        worker = client.get("/w.js").headers["content-security-policy"]
        assert "'unsafe-eval'" in worker and "frame-ancestors 'none'" in worker
        assert "frame-ancestors 'none'" in policy and hashes[0] in policy
        assert "'unsafe-inline'" not in policy.split("script-src")[1].split(";")[0]
        assert "form-action 'self' https://auth.esante.gouv.fr" in policy
        # OHIF's PDF viewport: the document (a blob:) in an <object>, which Chromium's
        # PDF viewer frames (tests/e2e/test_side_by_side.py: the report beside images).
        assert "object-src 'self' blob:" in policy and "frame-src 'self' blob:" in policy
        assert headers["x-frame-options"] == "DENY"
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["x-content-type-options"] == "nosniff"
        assert ("strict-transport-security" in headers) == (name == "production")


# -- a grant covers the KOS's series only ---------------------------------------------------


@pytest.mark.anyio
async def test_a_series_the_kos_does_not_reference_starts_nothing() -> None:
    asked: list[str] = []

    class Recording(DicomwebUpstream):
        async def _get(self, path: str, accept: str, params: object) -> object:  # type: ignore[override]
            asked.append(path)
            raise AssertionError("nothing may be asked")

    upstream = Recording("http://127.0.0.1:9/dicom-web", origin="pacs")
    retriever = idle_retriever()
    origin = LocalPacsOrigin(
        upstream,
        "1.2.3",
        retriever,
        KeyImageIndex(),
        set(),
        kos_series=("1.2.3.1",),
        max_part_bytes=1 << 20,
    )
    for call in (
        lambda: origin.frames("1.2.3.7", "1.2.3.7.1", [1]),
        lambda: origin.instance_metadata_rows("1.2.3.7", ["1.2.3.7.1"]),
        lambda: origin.bulk("1.2.3.7", "1.2.3.7.1", "00100010", "*/*"),
        lambda: origin.thumbnail("1.2.3.7", None),
    ):
        coroutine = call()
        try:
            result = await coroutine
        except NotFound:
            continue
        assert result == [], result  # instance metadata: left out, never asked
    with pytest.raises(NotFound):
        origin.prefer("1.2.3.7")
    assert asked == [] and retriever.find("pacs", "1.2.3", "1.2.3.7") is None
    await asyncio.sleep(0)
    await upstream.aclose()


# -- trusted hosts ---------------------------------------------------------------------------


def test_an_unknown_host_is_refused_before_any_route_runs() -> None:
    ran: list[str] = []

    async def route(request: Request) -> PlainTextResponse:
        ran.append(request.url.path)
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/{path:path}", route)])
    client = TestClient(TrustedHosts(app, hosts=frozenset({"vi1.localhost", "::1"})))
    for host in ("vi1.localhost", "VI1.localhost:8080", "[::1]:8080"):
        assert client.get("/IHEInvokeImageDisplay", headers={"Host": host}).text == "ok", host
    assert len(ran) == 3
    for host in ("evil.localhost", "vi1.localhost.evil", "vi1.localhost@evil", "", "[::2]"):
        page = client.get("/IHEInvokeImageDisplay", headers={"Host": host})
        assert page.status_code == 400 and page.headers["x-error-code"] == "E416", host
        assert "compte rendu d&#x27;imagerie" in page.text and "evil" not in page.text
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["cache-control"] == "no-store"
        api = client.get("/dicomweb/studies", headers={"Host": host})
        assert api.status_code == 400 and api.json()["code"] == "E416", host
    assert len(ran) == 3  # no route ran for a refused host
    anyone = TestClient(TrustedHosts(app, hosts=None))  # one '*' location: demo and tests
    assert anyone.get("/", headers={"Host": "evil.localhost"}).text == "ok"


def test_the_trusted_hosts_are_the_locations_and_the_configured_names() -> None:
    settings = Settings.from_env(
        {},
        locations="vi1.localhost=http://pacs1/dicom-web,VI2.localhost=http://pacs2/dicom-web",
        trusted_hosts=" api.localhost , 127.0.0.1,::1",
    )
    assert settings.host_names() == frozenset(
        {
            "vi1.localhost",
            "vi2.localhost",
            "api.localhost",
            "127.0.0.1",
            "::1",
        }
    )
    assert Settings.from_env({}).host_names() is None  # any host: demo and tests only
    assert Settings.from_env({}, trusted_hosts="vi1.localhost").host_names() == frozenset(
        {"vi1.localhost"}
    )
    with pytest.raises(ValueError, match="TRUSTED_HOSTS"):
        Settings.from_env({}, trusted_hosts="vi1.localhost:8080")
    production = {
        "mode": "production",
        "session_secret": "s" * 32,
        "psc_issuer": "https://psc.example",
        "fcp_issuer": "https://fcp.example",
        "state_url": "postgresql+psycopg://drimbox@db.example/drimbox",
        "state_key_file": "/run/secrets/state-key",
        "audit_url": "postgresql+psycopg://drimbox@db.example/drimbox",
        "audit_key_file": "/run/secrets/audit-key",
        **DATA_PATHS,
    }
    with pytest.raises(ValueError, match="DRIMBOX_LOCATIONS or DRIMBOX_TRUSTED_HOSTS"):
        Settings.from_env({}, **production)
    Settings.from_env({}, **production, locations="vi1.example=https://pacs/dicom-web")


# -- what waits for a login (no session for an anonymous view) -------------------------------

LINK = ViewerLink("1.2.3", AccessionNumber("A1", "1.2.250.1.999"), "1.2.250.1.999.1.1.101")


def test_a_pending_link_travels_signed_and_short_lived() -> None:
    clock = ManualClock()
    cookies = PendingCookies("s" * 32, clock=clock)
    pending = cookies.new(LINK, "vi1.localhost")
    cookie = cookies.dumps(replace(pending, state="the-state"))
    assert cookies.loads(cookie) == replace(pending, state="the-state")
    assert cookies.loads(cookies.dumps(cookies.new())) is not None  # Consumer: no link
    tampered = cookie[:-3] + ("AAA" if not cookie.endswith("AAA") else "BBB")
    foreign = PendingCookies("t" * 32, clock=clock).dumps(pending)
    sessions = store()  # same secret, another salt: a session cookie is no pending link
    session_cookie = sessions.cookie_value(sessions.create())
    for bad in (tampered, foreign, session_cookie, "garbage", "", None):
        assert cookies.loads(bad) is None, bad
    clock.advance(PENDING_TTL_S)
    assert cookies.loads(cookie) is not None
    clock.advance(1)
    assert cookies.loads(cookie) is None  # too old: the user reopens the report link
    assert PendingCookies("s" * 32, secure=True).cookie_name == PENDING_HOST_COOKIE


def test_login_round_trips_are_single_use_short_lived_and_bounded() -> None:
    clock = ManualClock()
    logins = PendingLogins(max_entries=2, clock=clock)

    def started(state: str) -> PendingLogin:
        return PendingLogin(state, "nonce", "verifier", "fcp", "http://vi1/cb", "patient")

    logins.add(started("a"))
    assert logins.take("a") == started("a")
    assert logins.take("a") is None  # replayed
    logins.add(started("b"))
    clock.advance(1)
    logins.add(started("c"))
    with pytest.raises(ServiceBusy):
        logins.add(started("d"))
    clock.advance(PENDING_TTL_S)  # "b" is too old now, "c" not yet
    logins.add(started("d"))  # room made by dropping "b"
    assert logins.take("b") is None and logins.take("c") == started("c")
    clock.advance(1)
    assert logins.take("d") == started("d")
    logins.add(started("e"))
    clock.advance(PENDING_TTL_S + 1)
    assert logins.take("e") is None  # too old to finish
    assert len(logins) == 0
