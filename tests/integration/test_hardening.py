"""Issue 13 through the real access path (Orthanc, the local identity provider, the BFF
over HTTP): no session fixation, a shared computer's next user inherits nothing, an
unpublished KOS ends live sessions, guessing is rate-limited, every answer carries the
browser-side headers, and (Consumer) a session is only served what the Source answered
to its own token."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest
from itsdangerous import URLSafeSerializer

from bff.auth.pending import PENDING_TTL_S
from bff.demo.stack import DEMO_CDA_ID
from bff.services import services_of
from tests.access import LoopbackTransport, ScriptedBrowser
from tests.consumer_stack import DrimmStack
from tests.integration.test_consumer import ConsumerBrowser
from tests.integration.test_facade import FRAME_ACCEPT
from tests.source_stack import LOCATION, OTHER_CDA_ID, SourceStack, set_state

pytestmark = pytest.mark.integration


def bff(source: SourceStack, path: str, host: str = LOCATION) -> str:
    return source.stack.bff_url(host) + path


@pytest.fixture
def browser() -> Iterator[ScriptedBrowser]:
    b = ScriptedBrowser()
    yield b
    b.close()


def cookie_of(browser: ScriptedBrowser, source: SourceStack) -> str:
    name = services_of(source.app).sessions.cookie_name
    value = browser.client.cookies.get(name)
    assert value, "no session cookie"
    return value


def test_the_cookie_held_before_signing_in_carries_nothing_after(
    source: SourceStack, browser: ScriptedBrowser
) -> None:
    """Session fixation: a session cookie the browser holds before the login (here an
    attacker's own, planted by a sibling host or read on a shared computer) never carries
    what the login grants: the login makes a new session, and the planted one ends."""
    attacker = ScriptedBrowser()
    other = source.stack.viewer_link(source.other_study, LOCATION, cda_id=OTHER_CDA_ID)
    assert attacker.sign_in(other, "psc", "dr.radiologue").status_code == 303
    planted = cookie_of(attacker, source)
    name = services_of(source.app).sessions.cookie_name
    browser.client.cookies.set(name, planted, domain=LOCATION)
    done = browser.sign_in(source.link(), "fcp", "dominique.pat-trois")
    assert done.status_code == 303
    assert cookie_of(browser, source) != planted
    study = f"/dicomweb/studies?StudyInstanceUID={source.study.study_uid}"
    with httpx.Client(transport=LoopbackTransport(), cookies={name: planted}) as again:
        assert again.get(bff(source, "/api/session")).status_code == 401
        assert again.get(bff(source, study)).json()["code"] == "E401"
    assert browser.get(bff(source, study)).json()[0]["0020000D"]["Value"] == [
        source.study.study_uid
    ]
    info = browser.get(bff(source, "/api/session")).json()  # the other person's exam: no
    assert [s["study_uid"] for s in info["studies"]] == [source.study.study_uid]
    attacker.close()


def test_the_next_person_on_a_shared_computer_inherits_nothing(
    source: SourceStack, browser: ScriptedBrowser
) -> None:
    """A patient views her exam; then, in the same browser, a professional opens another
    report link and signs in: he gets that exam, and not hers."""
    assert browser.sign_in(source.link(), "fcp", "dominique.pat-trois").status_code == 303
    other = source.stack.viewer_link(source.other_study, LOCATION, cda_id=OTHER_CDA_ID)
    done = browser.sign_in(other, "psc", "dr.radiologue")
    assert done.status_code == 303, done.text
    first = browser.get(bff(source, f"/dicomweb/studies/{source.study.study_uid}/series"))
    assert first.status_code == 404 and source.study.study_uid not in first.text
    second = browser.get(bff(source, f"/dicomweb/studies/{source.other_study.study_uid}/series"))
    assert second.status_code == 200
    info = browser.get(bff(source, "/api/session")).json()
    assert [s["study_uid"] for s in info["studies"]] == [source.other_study.study_uid]


def test_unpublishing_ends_the_live_sessions(source: SourceStack, browser: ScriptedBrowser) -> None:
    """The KOS is unpublished (here through the archive, as `drimbox-viewer kos remove`
    in another process does): the signed-in session loses the exam within the
    re-check delay; here the delay is spent by forgetting the remembered answer."""
    assert browser.sign_in(source.link(), "fcp", "dominique.pat-trois").status_code == 303
    series = f"/dicomweb/studies/{source.study.study_uid}/series"
    viewer = f"/viewer?StudyInstanceUIDs={source.study.study_uid}"
    assert browser.get(bff(source, series)).status_code == 200
    set_state(source.archive_url, source.study.kos_sop_uid, published=False, cda_id=DEMO_CDA_ID)
    try:
        services_of(source.app).published.forget(source.study.kos_sop_uid)
        for path in (series, viewer, f"/api/download/{source.study.study_uid}"):
            refused = browser.get(bff(source, path))
            assert refused.status_code == 404, path
            assert source.study.study_uid not in refused.text
    finally:
        set_state(source.archive_url, source.study.kos_sop_uid, published=True, cda_id=DEMO_CDA_ID)
        services_of(source.app).published.forget(source.study.kos_sop_uid)
    assert browser.get(bff(source, series)).status_code == 200


def test_link_attempts_are_rate_limited_per_client(
    source: SourceStack, browser: ScriptedBrowser
) -> None:
    limiter = services_of(source.app).link_attempts
    saved = limiter._attempts
    limiter._attempts = 3
    limiter._seen.clear()  # what the module's earlier sign-ins counted
    try:
        wrong = source.link(**{"idCDA=1.2.250.1.999.1.1.101": "idCDA=1.2.250.1.999.1.1.199"})
        answers = [browser.open_link(wrong) for _ in range(4)]
        assert [a.status_code for a in answers[:3]] == [200, 200, 200]
        assert answers[3].status_code == 429
        assert answers[3].headers["x-error-code"] == "E429"
        assert "Trop de demandes" in answers[3].text
    finally:
        limiter._attempts = saved
        limiter._seen.clear()


def test_every_page_carries_the_browser_side_headers(
    source: SourceStack, browser: ScriptedBrowser
) -> None:
    for url in (bff(source, "/"), source.link(), bff(source, "/api/session")):
        answer = browser.get(url)
        policy = answer.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy and "default-src 'self'" in policy
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["referrer-policy"] == "no-referrer"


def test_a_huge_form_is_refused_on_its_headers_alone(source: SourceStack) -> None:
    """Item 3: uvicorn in front, a 20 MB form declared to /auth/logout is answered 413
    E440 before one byte of its body is sent, and the connection is closed (the rest is
    never drained)."""
    port = source.stack.bff_port
    head = (
        "POST /auth/logout HTTP/1.1\r\n"
        f"Host: {LOCATION}:{port}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {20 * 10**6}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head.encode("ascii"))  # and no body at all
        answer = b""
        while chunk := sock.recv(65536):  # until the server closes
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 413 Request Entity Too Large"
    headers = rest.partition(b"\r\n\r\n")[0].lower()
    assert b"x-error-code: e440" in headers and b"connection: close" in headers


def test_an_unknown_host_is_refused_before_anything_runs(
    source: SourceStack, browser: ScriptedBrowser
) -> None:
    """Issue 13, item 8: the Host header builds the OIDC redirect URI and the DICOMweb
    roots, so a host that is not a configured location (nor a trusted name) is refused
    before any route runs: no session, no audit entry, no URL built from it."""
    sessions = services_of(source.app).sessions
    before, audited = len(sessions), len(source.audit())
    evil = "evil.localhost"
    page = browser.open_link(source.link().replace(LOCATION, evil))
    assert page.status_code == 400 and page.headers["x-error-code"] == "E416"
    assert "compte rendu d&#x27;imagerie" in page.text and evil not in page.text
    assert "set-cookie" not in page.headers
    login = browser.client.post(
        bff(source, "/auth/login", evil), data={"profile": "patient", "provider": "fcp"}
    )
    assert login.status_code == 400 and login.headers["x-error-code"] == "E416"
    assert "location" not in login.headers
    study = f"/dicomweb/studies?StudyInstanceUID={source.study.study_uid}"
    assert browser.get(bff(source, study, evil)).json()["code"] == "E416"
    assert len(sessions) == before and len(source.audit()) == audited
    # A configured host works; X-Forwarded-Host is never believed (only the Host header,
    # checked above, names the site: a proxy passes the browser's Host on).
    browser.client.headers["X-Forwarded-Host"] = evil
    authorize = browser.choose(browser.open_link(source.link()), "fcp")
    assert authorize.status_code == 303
    redirect_uri = f"redirect_uri={quote(bff(source, '/auth/callback'), safe='')}"
    assert redirect_uri in authorize.headers["location"]
    assert evil not in authorize.headers["location"]


# -- no session for an anonymous view (item 4) -----------------------------------------------


def test_anonymous_link_views_write_no_session(
    source: SourceStack, browser: ScriptedBrowser
) -> None:
    """Opening a report link writes nothing server side: the link waits for the login in
    a signed short-lived cookie. Choosing a profile starts a login round trip (kept by its
    state); the session is made at the successful login only."""
    services = services_of(source.app)
    sessions = len(services.sessions)
    cookies = []
    for _ in range(5):
        anonymous = ScriptedBrowser()
        page = anonymous.open_link(source.link())
        assert page.status_code == 200 and "Je suis le patient" in page.text
        cookies += page.headers.get_list("set-cookie")
        anonymous.close()
    assert len(services.sessions) == sessions
    assert len(cookies) == 5
    for cookie in cookies:
        assert cookie.startswith(f"{services.pending.cookie_name}=")
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Max-Age=600" in cookie
    logins = len(services.logins)
    authorize = browser.choose(browser.open_link(source.link()), "fcp")
    assert authorize.status_code == 303
    assert len(services.sessions) == sessions and len(services.logins) == logins + 1
    assert browser.login(authorize, "dominique.pat-trois").status_code == 303
    assert len(services.sessions) == sessions + 1 and len(services.logins) == logins
    assert services.pending.cookie_name not in browser.client.cookies  # used up


def test_a_tampered_or_expired_pending_link_asks_to_reopen_the_link(
    source: SourceStack, browser: ScriptedBrowser, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pending cookie tampered with, signed with another key or too old: the French
    page asking to reopen the report link (401 E401), never an error 500; reopening the
    link shows the profile choice again and signing in works."""
    pending = services_of(source.app).pending
    page = browser.open_link(source.link())
    good = browser.client.cookies[pending.cookie_name]
    foreign = URLSafeSerializer("another-secret", salt="drimbox-pending").dumps({"csrf": "x"})
    tampered = good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB")
    for bad in (tampered, foreign, "garbage"):
        browser.client.cookies.set(pending.cookie_name, bad, domain=LOCATION)
        assert_asked_to_reopen_the_link(browser.choose(page, "fcp"))
    # Signed PENDING_TTL_S and a second ago (the BFF's clock, moved back while it signs).
    signed_at = time.time() - PENDING_TTL_S - 1
    monkeypatch.setattr(pending, "_clock", lambda: signed_at)
    old = browser.open_link(source.link())
    monkeypatch.undo()
    assert_asked_to_reopen_the_link(browser.choose(old, "fcp"))
    again = browser.open_link(source.link())
    assert again.status_code == 200 and "Je suis le patient" in again.text
    assert browser.login(browser.choose(again, "fcp"), "dominique.pat-trois").status_code == 303


def test_a_profile_form_shown_before_another_link_still_signs_in(
    source: SourceStack, browser: ScriptedBrowser
) -> None:
    """Two report links opened before signing in (two tabs): one browser waits for one
    login, that of the latest link, whichever tab's form is used (as when the pending
    link was kept in a session)."""
    first = browser.open_link(source.link())
    other = source.stack.viewer_link(source.other_study, LOCATION, cda_id=OTHER_CDA_ID)
    assert browser.open_link(other).status_code == 200
    done = browser.login(browser.choose(first, "psc"), "dr.radiologue")
    assert done.status_code == 303
    assert done.headers["location"].endswith(source.other_study.study_uid)


def assert_asked_to_reopen_the_link(answer: httpx.Response) -> None:
    assert answer.status_code == 401 and answer.headers["x-error-code"] == "E401"
    assert answer.headers["content-type"].startswith("text/html")
    assert "Veuillez rouvrir le lien de l&#x27;examen" in answer.text


def test_the_consumer_sign_in_page_writes_no_session(drimm: DrimmStack) -> None:
    """The Consumer's page for a professional not signed in: no session either, until
    ProSantéConnect answered; then the page to open a KOS."""
    sessions = services_of(drimm.consumer_app).sessions
    before = len(sessions)
    browser = ScriptedBrowser()
    try:
        page = browser.get(drimm.consumer_url + "/consumer")
        assert page.status_code == 200 and "Se connecter avec Pro Santé Connect" in page.text
        assert len(sessions) == before
        done = browser.login(browser.choose(page, "psc"), "dr.radiologue")
        assert done.status_code == 303 and done.headers["location"] == "/consumer"
        assert len(sessions) == before + 1
        home = browser.get(drimm.consumer_url + "/consumer")
        assert "Ouvrir un examen du DMP" in home.text and "Connecté : Dr" in home.text
    finally:
        browser.close()


# -- Consumer: cached frames only for a token the Source accepted (item 10) ---------------


def test_a_token_the_source_refuses_gets_nothing_another_session_fetched(
    drimm: DrimmStack,
) -> None:
    study, series = drimm.study, drimm.study.series_uids[-1]
    first = ConsumerBrowser(drimm)
    second = ConsumerBrowser(drimm)
    try:
        first.open(drimm.kos_for(drimm.source_api))
        meta = first.get(f"/dicomweb/studies/{study.study_uid}/series/{series}/metadata")
        sop = meta.json()[0]["00080018"]["Value"][0]
        frame = f"/dicomweb/studies/{study.study_uid}/series/{series}/instances/{sop}/frames/1"
        assert first.get(frame, headers={"Accept": FRAME_ACCEPT}).status_code == 200
        # The same KOS handed over with a token the Source's PSC does not know.
        second.open(drimm.kos_for(drimm.source_api), token="not-a-psc-token")
        refused = second.get(frame, headers={"Accept": FRAME_ACCEPT})
        assert refused.status_code == 502 and refused.json()["code"] == "E204"
    finally:
        first.close()
        second.close()
