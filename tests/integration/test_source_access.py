"""The Source access path end to end over HTTP: the report link, the profile choice, a
real OIDC round trip at the local provider, the checks against the KOS archive, and the
one-study scope (DB.VI-SO.07, .08, .114, .115, .33, .152, .28, .127; DB.VI-CS.03).

Every refusal is checked for its status, its stable code, its French message, its audit
entry, and that nothing of the exam leaked (no grant, nothing fetched upstream)."""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pydicom
import pytest

from bff.auth.sessions import Session
from bff.demo.stack import CLIENT_ID
from bff.dicomweb.metadata_ahead import Answers
from bff.dicomweb.retrieve import Retriever
from bff.origins.local import OHIF_SERIES_SEARCH
from bff.services import services_of
from tests.access import ScriptedBrowser
from tests.source_stack import (
    LOCATION,
    OTHER_CDA_ID,
    OTHER_LOCATION,
    SourceStack,
    set_state,
)
from tests.waiting import poll

pytestmark = pytest.mark.integration

REFUSAL = "Veuillez prendre contact avec le site qui a réalisé l'examen"
FRAME_ACCEPT = "multipart/related; type=application/octet-stream; transfer-syntax=*"
#: What the Source serves the demo CT as (JPEG-LS near-lossless, the default codec).
SERVED_LOSSY = "1.2.840.10008.1.2.4.81"


@pytest.fixture
def browser() -> Iterator[ScriptedBrowser]:
    b = ScriptedBrowser()
    yield b
    b.close()


def bff(source: SourceStack, path: str, host: str = LOCATION) -> str:
    return source.stack.bff_url(host) + path


def assert_refused(source: SourceStack, response: httpx.Response, reason: str) -> None:
    """A refusal of the link checks: the user sees the one code E420 and the one French
    message (issue 13: no oracle); the audit trail says which check refused (``reason``)."""
    assert response.status_code == 403, response.text
    assert response.headers["x-error-code"] == "E420"
    assert "Code d'erreur : E420" in response.text
    assert response.headers["content-type"].startswith("text/html")
    entry = source.audit()[-1]
    assert entry["event"] == "access_refused" and entry["code"] == reason, entry


def assert_nothing_leaks(source: SourceStack, browser: ScriptedBrowser, study_uid: str) -> None:
    """After a refusal: no viewer, no DICOMweb answer, nothing retrieved upstream."""
    assert browser.get(bff(source, f"/viewer?StudyInstanceUIDs={study_uid}")).status_code == 401
    assert browser.get(bff(source, "/api/session")).status_code == 401
    qido = browser.get(bff(source, f"/dicomweb/studies?StudyInstanceUID={study_uid}"))
    assert qido.status_code == 401 and qido.json()["code"] == "E401"
    series = browser.get(bff(source, f"/dicomweb/studies/{study_uid}/series"))
    assert series.status_code == 401
    assert source.study.study_uid not in series.text
    # Nothing retrieved upstream because of this test (earlier tests may have opened the
    # study legitimately: retrievals are compared with what existed when the test began).
    assert retrieval_keys(source) <= RETRIEVALS_BEFORE[0]


RETRIEVALS_BEFORE: list[set[object]] = [set()]


def retrieval_keys(source: SourceStack) -> set[object]:
    retriever: Retriever = services_of(source.app).retriever
    return set(retriever._retrievals)


@pytest.fixture(autouse=True)
def _snapshot_retrievals(source: SourceStack) -> None:
    RETRIEVALS_BEFORE[0] = retrieval_keys(source)


def granted_series(source: SourceStack, browser: ScriptedBrowser, study_uid: str) -> list[str]:
    rows = browser.get(bff(source, f"/dicomweb/studies/{study_uid}/series")).json()
    return [r["0020000E"]["Value"][0] for r in rows]


# -- the two flows ------------------------------------------------------------------------


def test_patient_flow_grants_the_study_and_shows_the_kos_identity(
    source: SourceStack, browser: ScriptedBrowser
) -> None:
    page = browser.open_link(source.link())
    assert page.status_code == 200
    assert "Je suis le patient" in page.text and "professionnel de santé" in page.text
    assert "carte Vitale" in page.text  # the notice after DB.VI-SO.137
    cookie = page.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie

    authorize = browser.choose(page, "fcp")
    location = authorize.headers["location"]
    for param in (
        "state=",
        "nonce=",
        "code_challenge=",
        "code_challenge_method=S256",
        "acr_values=eidas2",
    ):
        assert param in location

    done = browser.login(authorize, "dominique.pat-trois")
    assert done.status_code == 303
    assert done.headers["location"] == f"/viewer?StudyInstanceUIDs={source.study.study_uid}"
    viewer = browser.get(bff(source, done.headers["location"]))
    assert viewer.status_code == 200 and "<html" in viewer.text.lower()

    info = browser.get(bff(source, "/api/session")).json()
    assert info["profile"] == "patient"
    [study] = info["studies"]
    assert study["birth_name"] == "PAT-TROIS" and study["given_names"] == ["DOMINIQUE"]
    assert study["sex"] == "F" and study["birth_date"] == "19790328"
    assert study["birthplace"] == "63220" and study["ins"] == "279035121518989"
    assert study["institution"] == "Centre de radiologie Ambroise"
    assert "token" not in str(info).lower()

    assert len(granted_series(source, browser, source.study.study_uid)) == 2
    # Progress per series (DB.VI-CS.18), served lossy on the Source (DB.VI-CS.26).
    import time

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        series = browser.get(bff(source, "/api/progress")).json()["series"]
        if len(series) == 2 and all(s["complete"] for s in series):
            break
        time.sleep(0.2)
    assert all(s["lossy"] and s["received"] > 0 and s["error"] is None for s in series)
    assert info["medical_device"] is False
    entries = [e for e in source.audit() if e["event"] == "access_granted"]
    assert entries and entries[-1]["study_uid"] == source.study.study_uid


def test_professional_flow_with_prosanteconnect(
    source: SourceStack, browser: ScriptedBrowser
) -> None:
    authorize = browser.choose(browser.open_link(source.link()), "psc")
    assert "scope=openid+scope_all" in authorize.headers["location"]
    assert "acr_values=eidas1" in authorize.headers["location"]
    done = browser.login(authorize, "dr.radiologue")
    assert done.status_code == 303
    # The exam is already being pulled and transcoded while the browser loads OHIF.
    retriever: Retriever = services_of(source.app).retriever
    for series_uid in source.study.series_uids:
        retrieval = retriever.find(LOCATION, source.study.study_uid, series_uid)
        assert retrieval is not None
        key = (LOCATION, source.study.study_uid, series_uid)
        assert retriever.answers.has_series(key)  # its metadata answer prepared too
    info = browser.get(bff(source, "/api/session")).json()
    assert info["profile"] == "professional" and info["user"] == "Dr Camille RADIOLOGUE"
    assert granted_series(source, browser, source.study.study_uid)


def test_series_metadata_prepared_at_grant_is_the_answer_ohif_gets(
    source: SourceStack, browser: ScriptedBrowser
) -> None:
    """DB.VI-SO.37 (first image in 4 s): the series metadata OHIF waits for is fetched,
    rewritten and compressed while the browser loads OHIF, then answered as is; it says
    what the BFF serves, with the KOS's Institution Name (DB.VI-CS.29), like the answer
    built on demand."""
    done = browser.sign_in(source.link(), "fcp", "dominique.pat-trois")
    assert done.status_code == 303
    retriever: Retriever = services_of(source.app).retriever
    study_uid = source.study.study_uid
    series_uid = source.study.series_uids[1]  # the axial CT
    retrieval = retriever.find(LOCATION, study_uid, series_uid)
    assert retrieval is not None and retriever.answers.has_series((LOCATION, study_uid, series_uid))
    # The key-image lookup (its series search and metadata wait for it) started too,
    # and OHIF's own series search is being asked, to be shared when OHIF asks it.
    origins = services_of(source.app).origins
    assert (LOCATION, study_uid) in origins.key_images._entries
    upstream = origins.locations[LOCATION]
    asked = (f"/studies/{study_uid}/series", tuple(sorted(OHIF_SERIES_SEARCH.items())))
    deadline = time.monotonic() + 5
    while asked not in upstream._searches and time.monotonic() < deadline:
        time.sleep(0.02)  # the search task runs on the server's loop
    assert asked in upstream._searches
    path = f"/dicomweb/studies/{study_uid}/series/{series_uid}/metadata"
    first = browser.get(bff(source, path), headers={"Accept-Encoding": "gzip"})
    assert first.status_code == 200, first.text
    assert first.headers["content-encoding"] == "gzip"
    assert first.headers["content-type"].startswith("application/dicom+json")
    assert retriever.answers.has_series((LOCATION, study_uid, series_uid))  # kept, shared
    again = browser.get(bff(source, path), headers={"Accept-Encoding": "identity"})
    assert again.status_code == 200 and "content-encoding" not in again.headers
    prepared, on_demand = first.json(), again.json()
    assert retrieval.expected is not None
    assert len(prepared) == len(on_demand) == retrieval.expected > 0
    institution = source.study.institution_name.partition("^")[0]  # the KOS's name part
    for row in prepared:
        assert row["00080080"]["Value"] == [institution]
        assert row["00020010"]["Value"] == [SERVED_LOSSY]
        uri = row["7FE00010"]["BulkDataURI"]
        assert uri.startswith(bff(source, f"/dicomweb/studies/{study_uid}/series/{series_uid}/"))

    def without_ratio(rows: list[dict[str, object]]) -> list[dict[str, object]]:
        return sorted(
            ({k: v for k, v in row.items() if k != "00282112"} for row in rows),
            key=lambda row: str(row["00080018"]),
        )

    assert without_ratio(prepared) == without_ratio(on_demand)


def test_sessions_of_one_exam_share_its_series_metadata_answer(
    source: SourceStack, browser: ScriptedBrowser
) -> None:
    """Issue 16 (the load benchmark): the series metadata answer built for one session is
    the answer of the next session of the exam, neither fetched from the PACS nor built
    again (it was built per grant and used once: 20 viewers, 20 fetches and builds).
    Each session's access is still checked: without a session, nothing of it."""
    retriever: Retriever = services_of(source.app).retriever
    retriever.answers = Answers()  # what earlier tests built is not this test's
    study_uid, series_uid = source.study.study_uid, source.study.series_uids[1]
    path = f"/dicomweb/studies/{study_uid}/series/{series_uid}/metadata"
    second = ScriptedBrowser()
    bodies, builds = [], []
    try:
        for session in (browser, second):
            assert session.sign_in(source.link(), "fcp", "dominique.pat-trois").status_code == 303
            answer = session.get(bff(source, path), headers={"Accept-Encoding": "gzip"})
            assert answer.status_code == 200, answer.text
            bodies.append(answer.content)
            builds.append(retriever.answers.builds)
    finally:
        second.close()
    assert bodies[0] == bodies[1] and len(bodies[0]) > 1000
    assert builds[0] >= 1 and builds[1] == builds[0]  # the second session built nothing
    stranger = ScriptedBrowser()  # no session: refused before any answer is looked up
    try:
        refused = stranger.get(bff(source, path))
    finally:
        stranger.close()
    assert refused.status_code == 401 and study_uid not in refused.text


def test_names_that_must_still_match(source: SourceStack) -> None:
    for username in ("same.spelling", "same.accents"):
        browser = ScriptedBrowser()
        done = browser.sign_in(source.link(), "fcp", username)
        assert done.status_code == 303, (username, done.text)
        browser.close()


# -- refusals against the KOS archive -------------------------------------------------------


def warm_keys(source: SourceStack) -> set[tuple[str, str, str]]:
    retriever: Retriever = services_of(source.app).retriever
    return {key for key, entry in retriever.ahead._entries.items() if entry.raw is not None}


def wait_for_warm(source: SourceStack, expected: set[tuple[str, str, str]]) -> bool:
    deadline = time.monotonic() + 5
    while not expected <= warm_keys(source) and time.monotonic() < deadline:
        time.sleep(0.02)  # the check and the PACS request run on the server's loop
    return expected <= warm_keys(source)


def test_a_valid_link_asks_the_metadata_while_the_user_signs_in(
    source: SourceStack, browser: ScriptedBrowser
) -> None:
    """Issue 5 (DB.VI-SO.37): once a report link matches a published KOS, the PACS is
    asked for the series metadata while the user chooses a profile and signs in. Nothing
    is served before the grant, no retrieval starts, and the grant uses what was asked.
    (Not when another session's answer is built: see the test after the next.)"""
    services_of(source.app).retriever.answers = Answers()  # earlier tests built them
    study_uid = source.study.study_uid
    expected = {(LOCATION, study_uid, uid) for uid in source.study.series_uids}
    page = browser.open_link(source.link())
    assert page.status_code == 200
    assert wait_for_warm(source, expected)
    assert retrieval_keys(source) <= RETRIEVALS_BEFORE[0]  # nothing streams yet
    for path in (
        f"/dicomweb/studies/{study_uid}/series/{source.study.series_uids[1]}/metadata",
        f"/dicomweb/studies/{study_uid}/series",
    ):
        refused = browser.get(bff(source, path))
        assert refused.status_code in (401, 403, 404) and study_uid not in refused.text
    done = browser.login(browser.choose(page, "fcp"), "dominique.pat-trois")
    assert done.status_code == 303
    assert not expected & warm_keys(source)  # taken by the grant
    retriever = services_of(source.app).retriever
    retrieval = retriever.find(LOCATION, study_uid, source.study.series_uids[1])
    assert retrieval is not None
    assert retriever.answers.has_series((LOCATION, study_uid, source.study.series_uids[1]))


def test_a_link_that_matches_no_kos_asks_nothing_ahead(
    source: SourceStack, browser: ScriptedBrowser
) -> None:
    link = source.link(**{"idCDA=1.2.250.1.999.1.1.101": "idCDA=1.2.250.1.999.1.1.199"})
    expected = {(LOCATION, source.study.study_uid, uid) for uid in source.study.series_uids}
    assert not expected & warm_keys(source)  # else a warm-up would go unseen
    assert browser.open_link(link).status_code == 200  # the same page: nothing told
    # The check against the archive runs after the answer, on the server's loop: wait
    # for it to end (its task is in the services' background set until then).
    name = f"warm {source.study.study_uid}"
    background = services_of(source.app).background
    assert poll(lambda: not [t for t in background.copy() if t.get_name() == name])
    assert not expected & warm_keys(source)
    assert retrieval_keys(source) <= RETRIEVALS_BEFORE[0]


def test_wrong_cda_id_is_refused(source: SourceStack, browser: ScriptedBrowser) -> None:
    link = source.link(**{"idCDA=1.2.250.1.999.1.1.101": "idCDA=1.2.250.1.999.1.1.199"})
    response = browser.sign_in(link, "fcp", "dominique.pat-trois")
    assert_refused(source, response, "E420")
    assert REFUSAL in html.unescape(response.text)
    assert source.audit()[-1]["code"] == "E420"
    assert_nothing_leaks(source, browser, source.study.study_uid)


def test_right_accession_wrong_issuer_is_refused(
    source: SourceStack, browser: ScriptedBrowser
) -> None:
    link = source.link(**{"_1.2.250.1.213.4.5.2.5_ISO": "_1.2.250.1.213.4.5.2.6_ISO"})
    response = browser.sign_in(link, "psc", "dr.radiologue")
    assert_refused(source, response, "E421")
    assert REFUSAL in html.unescape(response.text)
    assert_nothing_leaks(source, browser, source.study.study_uid)


def test_study_uid_of_another_exam_is_refused(
    source: SourceStack, browser: ScriptedBrowser
) -> None:
    link = source.link(**{source.study.study_uid: source.other_study.study_uid})
    response = browser.sign_in(link, "psc", "dr.radiologue")
    assert_refused(source, response, "E420")
    assert_nothing_leaks(source, browser, source.other_study.study_uid)


def test_unpublished_kos_is_refused(source: SourceStack, browser: ScriptedBrowser) -> None:
    other = source.other_study
    link = source.stack.viewer_link(other, LOCATION, cda_id=OTHER_CDA_ID)
    set_state(source.archive_url, other.kos_sop_uid, published=False, cda_id=OTHER_CDA_ID)
    try:
        assert_refused(source, browser.sign_in(link, "psc", "dr.radiologue"), "E422")
        assert_nothing_leaks(source, browser, other.study_uid)
    finally:
        set_state(source.archive_url, other.kos_sop_uid, published=True, cda_id=OTHER_CDA_ID)
    assert browser.sign_in(link, "psc", "dr.radiologue").status_code == 303


def test_same_study_through_another_location_is_refused(
    source: SourceStack, browser: ScriptedBrowser
) -> None:
    response = browser.sign_in(source.link(OTHER_LOCATION), "psc", "dr.radiologue")
    assert_refused(source, response, "E424")


@pytest.mark.parametrize(
    ("username", "trait"),
    [
        ("wrong.birth_name", "birth_name"),
        ("wrong.given_names", "given_names"),
        ("wrong.sex", "sex"),
        ("wrong.birth_date", "birth_date"),
        ("wrong.birthplace", "birthplace"),
        ("jean.martin", "birth_name"),
    ],
)
def test_each_identity_trait_wrong_is_refused(
    source: SourceStack, browser: ScriptedBrowser, username: str, trait: str
) -> None:
    response = browser.sign_in(source.link(), "fcp", username)
    assert_refused(source, response, "E423")
    assert REFUSAL in html.unescape(response.text)
    assert_nothing_leaks(source, browser, source.study.study_uid)
    entry = source.audit()[-1]
    assert entry["event"] == "access_refused" and trait in entry["reason"]
    assert "PAT" not in str(entry) and "1979" not in str(entry)  # no identity values


# -- the login round trip -------------------------------------------------------------------


def test_weaker_acr_is_refused(source: SourceStack, browser: ScriptedBrowser) -> None:
    response = browser.sign_in(source.link(), "fcp", "dominique.faible")
    assert response.status_code == 401 and response.headers["x-error-code"] == "E433"
    assert_nothing_leaks(source, browser, source.study.study_uid)


def test_replayed_or_missing_state_is_refused(
    source: SourceStack, browser: ScriptedBrowser
) -> None:
    authorize = browser.choose(browser.open_link(source.link()), "fcp")
    form = browser.client.get(authorize.headers["location"])
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form.text))
    back = browser.client.post(
        str(form.url).split("?")[0], data={**fields, "username": "dominique.pat-trois"}
    )
    callback = back.headers["location"]
    assert browser.get(callback).status_code == 303
    replay = browser.get(callback)
    assert replay.status_code == 401 and replay.headers["x-error-code"] == "E430"
    # A callback with no state at all, in a fresh session, is refused too.
    fresh = ScriptedBrowser()
    page = fresh.open_link(source.link())
    assert page.status_code == 200
    fresh.choose(page, "fcp")
    code = re.search(r"code=([^&]+)", callback)
    assert code is not None
    missing = fresh.get(bff(source, f"/auth/callback?code={code.group(1)}"))
    assert missing.status_code == 401 and missing.headers["x-error-code"] == "E430"
    assert_nothing_leaks(source, fresh, source.study.study_uid)
    fresh.close()


# -- the session and its scope --------------------------------------------------------------


def test_tampered_expired_or_foreign_cookies_give_nothing(
    source: SourceStack, browser: ScriptedBrowser
) -> None:
    assert browser.sign_in(source.link(), "psc", "dr.radiologue").status_code == 303
    good = browser.client.cookies["drimbox_session"]
    study_series = f"/dicomweb/studies/{source.study.study_uid}/series"
    from itsdangerous import URLSafeTimedSerializer

    foreign = URLSafeTimedSerializer("another-secret", salt="drimbox-session").dumps("x" * 43)
    tampered = good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB")
    for cookie in (tampered, foreign, "garbage", ""):
        other = ScriptedBrowser()
        other.client.cookies.set("drimbox_session", cookie)
        assert other.get(bff(source, study_series)).status_code == 401
        assert other.get(bff(source, "/api/session")).status_code == 401
        other.close()
    # Expired: the idle and absolute limits end the session server side.
    sessions = services_of(source.app).sessions
    session = sessions.load(good)
    assert session is not None
    session.last_seen -= 10 * 24 * 3600
    assert browser.get(bff(source, study_series)).status_code == 401
    assert browser.get(bff(source, "/api/session")).status_code == 401


def test_granted_session_cannot_reach_another_study(
    source: SourceStack, browser: ScriptedBrowser
) -> None:
    assert browser.sign_in(source.link(), "fcp", "dominique.pat-trois").status_code == 303
    other = source.other_study
    other_series = other.series_uids[-1]
    # OHIF's patient-history query by PatientID: only the granted study comes back.
    history = browser.get(bff(source, "/dicomweb/studies?PatientID=279035121518989")).json()
    assert [r["0020000D"]["Value"][0] for r in history] == [source.study.study_uid]
    asked = browser.get(bff(source, f"/dicomweb/studies?StudyInstanceUID={other.study_uid}"))
    assert asked.json() == []
    for path in (
        f"/dicomweb/studies/{other.study_uid}/series",
        f"/dicomweb/studies/{other.study_uid}/metadata",
        f"/dicomweb/studies/{other.study_uid}/series/{other_series}/metadata",
        f"/dicomweb/studies/{other.study_uid}/series/{other_series}/thumbnail",
        f"/dicomweb/studies/{other.study_uid}/series/{other_series}/instances/1.2.3/frames/1",
    ):
        response = browser.get(bff(source, path), headers={"Accept": FRAME_ACCEPT})
        assert response.status_code == 404, path
        assert response.json()["code"] == "E404"
    assert (
        browser.get(bff(source, f"/viewer?StudyInstanceUIDs={other.study_uid}")).status_code == 404
    )
    new = retrieval_keys(source) - RETRIEVALS_BEFORE[0]
    assert not [k for k in new if getattr(k, "study_uid", None) == other.study_uid]
    # The granted study through the other location: not granted there, even with the
    # session's cookie (which a browser would not send to another host anyway).
    granted = f"/dicomweb/studies/{source.study.study_uid}/series"
    carried = ScriptedBrowser()
    carried.client.cookies.set("drimbox_session", browser.client.cookies["drimbox_session"])
    try:
        assert carried.get(bff(source, granted, OTHER_LOCATION)).status_code == 404
    finally:
        carried.close()


def test_invalid_links_get_a_french_400_without_echo(
    browser: ScriptedBrowser, source: SourceStack
) -> None:
    bad = source.link(**{"requestType=STUDY": "requestType=<script>alert(1)</script>"})
    response = browser.open_link(bad)
    assert response.status_code == 400 and response.headers["x-error-code"] == "E410"
    assert "<script>" not in response.text and "lien" in response.text
    unknown_host = browser.open_link(source.link().replace(LOCATION, "vi9.localhost"))
    assert unknown_host.status_code == 400 and unknown_host.headers["x-error-code"] == "E416"
    # A trusted name that is not a location (here the Source API's) has no exams.
    not_a_location = browser.open_link(source.link().replace(LOCATION, "localhost"))
    assert not_a_location.status_code == 400
    assert not_a_location.headers["x-error-code"] == "E415"


def test_logout_ends_the_session_here_and_at_the_provider(
    source: SourceStack, browser: ScriptedBrowser
) -> None:
    """POST /auth/logout ends the session, then sends the browser to the provider's
    end_session_endpoint with the id_token as id_token_hint (OIDC RP-Initiated Logout);
    the provider ends its session (its tokens die) and sends the browser back."""
    assert browser.sign_in(source.link(), "psc", "dr.radiologue").status_code == 303
    csrf = browser.get(bff(source, "/api/session")).json()["csrf"]
    session = _live_session(source, browser)
    assert session.csrf_token == csrf
    access_token, id_token = session.tokens["access_token"], session.tokens["id_token"]
    # The id_token stays server side until the logout: not in the page data, not a cookie.
    assert id_token not in browser.get(bff(source, "/api/session")).text
    assert all(id_token not in (c or "") for c in browser.client.cookies.values())
    assert introspect(source, access_token)["active"] is True

    out = browser.client.post(bff(source, "/auth/logout"), data={"csrf": csrf})
    assert out.status_code == 303
    target = urlsplit(out.headers["location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == (
        f"{source.stack.issuer_base}/psc/logout"
    )
    query = parse_qs(target.query)
    assert query["id_token_hint"] == [id_token]
    assert query["post_logout_redirect_uri"] == [bff(source, "/auth/logged-out")]
    assert (
        browser.get(bff(source, f"/dicomweb/studies/{source.study.study_uid}/series")).status_code
        == 401
    )
    at_provider = browser.get(out.headers["location"])
    assert at_provider.status_code in (302, 303)
    assert at_provider.headers["location"].startswith(bff(source, "/auth/logged-out"))
    assert introspect(source, access_token)["active"] is False  # the provider session ended
    back = browser.get(at_provider.headers["location"])
    assert back.status_code == 200 and "déconnecté" in back.text


def introspect(source: SourceStack, token: str) -> dict[str, object]:
    answer = httpx.post(
        f"{source.stack.issuer_base}/psc/introspect",
        data={"token": token},
        auth=(CLIENT_ID, source.stack.client_secret),
    )
    assert answer.status_code == 200
    body: dict[str, object] = answer.json()
    return body


def test_logout_without_a_provider_session_shows_the_page(
    source: SourceStack, browser: ScriptedBrowser
) -> None:
    page = browser.open_link(source.link())
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None
    out = browser.client.post(bff(source, "/auth/logout"), data={"csrf": csrf.group(1)})
    assert out.status_code == 200 and "déconnecté" in out.text


def test_franceconnect_with_two_factors_is_offered_as_an_option(
    source: SourceStack, browser: ScriptedBrowser
) -> None:
    """DB.VI-SO.137: FranceConnect with two factors, signed tokens, acr eidas2."""
    page = browser.open_link(source.link())
    assert 'data-provider="fc"' in page.text
    done = browser.login(browser.choose(page, "fc"), "dominique.fc")
    assert done.status_code == 303
    assert browser.get(bff(source, "/api/session")).json()["profile"] == "patient"


@pytest.mark.parametrize("profile", [("psc", "dr.radiologue"), ("fcp", "dominique.pat-trois")])
def test_patient_id_mismatch_between_images_and_archive_is_refused_and_traced(
    source: SourceStack, browser: ScriptedBrowser, profile: tuple[str, str]
) -> None:
    """Spec note after DB.VI-SO.33, DB.SO.134 / .47 (issue 14, item 7): the PACS's patient
    id for the exam is not the archive's INS/IPP. Refused as the Source API refuses it
    (there 406, Consumer E209): a French page with its code E425, naming the site to
    contact (DB.VI-SO.28); traced for the administrator; no grant, and not one byte of
    the images fetched or served."""
    import dataclasses

    from bff.archive.store import ArchiveStore

    other = source.other_study
    store = ArchiveStore(source.archive_url)
    try:
        archived = store.get(other.kos_sop_uid)
        assert archived is not None
        wrong = dataclasses.replace(archived.record, ins="199999999999999", local_patient_id=None)
        store.publish(wrong, cda_id=OTHER_CDA_ID, location=LOCATION)
        link = source.stack.viewer_link(other, LOCATION, cda_id=OTHER_CDA_ID)
        answer = browser.sign_in(link, *profile)
    finally:
        if archived is not None:
            store.publish(archived.record, cda_id=OTHER_CDA_ID, location=LOCATION)
        store.close()
    assert answer.status_code == 409, answer.text
    assert answer.headers["x-error-code"] == "E425"
    assert answer.headers["content-type"].startswith("text/html")
    text = html.unescape(answer.text)
    assert "ne correspond pas à celui de l'examen publié" in text
    assert "prendre contact avec le site qui a réalisé l'examen" in text
    assert "Centre de radiologie Ambroise" in text and "Code d'erreur : E425" in text
    assert "199999999999999" not in text and "279035121518989" not in text
    entry = source.audit()[-1]
    assert entry["event"] == "patient_id_mismatch" and entry["study_uid"] == other.study_uid
    assert "199999999999999" not in str(entry) and "279035121518989" not in str(entry)
    # No grant: the viewer, the DICOMweb routes and the frames are refused; nothing of
    # the exam was retrieved (so no image byte can have been served).
    assert (
        browser.get(bff(source, f"/viewer?StudyInstanceUIDs={other.study_uid}")).status_code == 401
    )
    image = pydicom.dcmread(other.instance_files[-1], stop_before_pixels=True)
    path = (
        f"/dicomweb/studies/{other.study_uid}/series/{image.SeriesInstanceUID}"
        f"/instances/{image.SOPInstanceUID}/frames/1"
    )
    frame = browser.get(bff(source, path), headers={"Accept": FRAME_ACCEPT})
    assert frame.status_code == 401 and frame.json()["code"] == "E401"
    new = retrieval_keys(source) - RETRIEVALS_BEFORE[0]
    assert not [k for k in new if getattr(k, "study_uid", None) == other.study_uid]


def test_a_pacs_that_fails_at_the_grant_is_an_outage_not_a_refusal(
    source: SourceStack, browser: ScriptedBrowser, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DB.VI-SO.28: the patient id check meets the PACS down (nothing listens where it
    should be): the page says what happened (E503, never the refusal E420/E425), asks
    to contact the site that produced the exam, and names it."""
    from bff.dicomweb.upstream import DicomwebUpstream
    from tests.servers import free_port

    locations = services_of(source.app).origins.locations
    dead = DicomwebUpstream(f"http://127.0.0.1:{free_port()}/dicom-web", origin=LOCATION)
    monkeypatch.setitem(locations, LOCATION, dead)
    try:
        answer = browser.sign_in(source.link(), "psc", "dr.radiologue")
    finally:
        monkeypatch.undo()
    assert answer.status_code == 502, answer.text
    assert answer.headers["x-error-code"] == "E503"
    text = html.unescape(answer.text)
    assert "Le serveur d'images est injoignable." in text
    assert "prenez contact avec le site qui a réalisé l'examen" in text
    assert "Centre de radiologie Ambroise" in text and "Code d'erreur : E503" in text
    assert "E420" not in text and "E425" not in text and "Accès refusé" not in text
    assert source.audit()[-1]["event"] != "access_granted"


def test_the_viewer_watch_sees_the_session_without_keeping_it_alive(
    source: SourceStack, browser: ScriptedBrowser
) -> None:
    """Issue 14: GET /api/session/state says whether the session lives (200, then 401
    E401 once it ended), and is not activity: the idle limit still ends the session."""
    assert browser.sign_in(source.link(), "fcp", "dominique.pat-trois").status_code == 303
    info = browser.get(bff(source, "/api/session")).json()
    assert info["reopen"] == "report"
    sessions = services_of(source.app).sessions
    session = _live_session(source, browser)
    assert session.csrf_token == info["csrf"]
    seen = session.last_seen
    session.last_seen = seen - 100  # as if 100 s idle
    sessions.save(session)
    state = browser.get(bff(source, "/api/session/state"))
    assert state.status_code == 200 and state.json() == {"active": True}
    assert _live_session(source, browser).last_seen == seen - 100  # not counted as activity
    session.last_seen -= 10 * 24 * 3600  # past the idle limit
    sessions.save(session)
    ended = browser.get(bff(source, "/api/session/state"))
    assert ended.status_code == 401 and ended.json()["code"] == "E401"


def test_a_session_that_expired_is_still_logged_out_at_its_provider(
    source: SourceStack, browser: ScriptedBrowser
) -> None:
    """Issue 14: the viewer says the session ended and offers the logout; the BFF still
    ends it at the provider (RP-initiated logout with the id_token kept server side for
    that only), once, with the session's CSRF token."""
    assert browser.sign_in(source.link(), "psc", "dr.radiologue").status_code == 303
    csrf = browser.get(bff(source, "/api/session")).json()["csrf"]
    session = _live_session(source, browser)
    assert session.csrf_token == csrf
    id_token = session.tokens["id_token"]
    session.last_seen -= 10 * 24 * 3600  # past the idle limit
    services_of(source.app).sessions.save(session)
    assert browser.get(bff(source, "/api/progress")).status_code == 401
    forged = browser.client.post(bff(source, "/auth/logout"), data={"csrf": "forged"})
    assert forged.status_code == 400
    out = browser.client.post(bff(source, "/auth/logout"), data={"csrf": csrf})
    assert out.status_code == 303
    target = urlsplit(out.headers["location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == (
        f"{source.stack.issuer_base}/psc/logout"
    )
    assert parse_qs(target.query)["id_token_hint"] == [id_token]
    again = browser.client.post(bff(source, "/auth/logout"), data={"csrf": csrf})
    assert again.status_code == 200 and "déconnecté" in again.text


def test_two_report_links_in_one_browser_grant_both_exams(
    source: SourceStack, browser: ScriptedBrowser
) -> None:
    """DB.VI-CS.36 (and .35): two exams in two tabs, or side by side in one tab."""
    first, other = source.study, source.other_study
    assert browser.sign_in(source.link(), "psc", "dr.radiologue").status_code == 303
    second_link = source.stack.viewer_link(other, LOCATION, cda_id=OTHER_CDA_ID)
    assert browser.sign_in(second_link, "psc", "dr.radiologue").status_code == 303
    both = f"{first.study_uid},{other.study_uid}"
    side_by_side = browser.get(
        bff(source, f"/viewer?StudyInstanceUIDs={both}&hangingProtocolId=@ohif/hpCompare")
    )
    assert side_by_side.status_code == 200
    for study_uid in (first.study_uid, other.study_uid):
        assert granted_series(source, browser, study_uid)
    rows = browser.get(bff(source, f"/dicomweb/studies?StudyInstanceUID={both}")).json()
    assert sorted(r["0020000D"]["Value"][0] for r in rows) == sorted(both.split(","))
    assert len(browser.get(bff(source, "/api/session")).json()["studies"]) == 2


def _live_session(source: SourceStack, browser: ScriptedBrowser) -> Session:
    """The session this browser's cookie names, as the store holds it (not touched)."""
    sessions = services_of(source.app).sessions
    session = sessions.load(browser.client.cookies.get(sessions.cookie_name), touch=False)
    assert session is not None
    return session
