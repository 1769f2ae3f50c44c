"""The series to display first, chosen at opening (issue 6: DB.VI-SO.189; docs/series.md).

The identity dialog shown at opening (ohif-config/panel/) lists the exam's
series when it has several; the user picks one, the BFF retrieves it first (POST
/api/priority/<study>/<series>, behind the facade's access check) and the viewer reopens
on it (OHIF's initialSeriesInstanceUID). Chromium, a session granted one 3-series study
(the grant as the access path leaves it: docs/access.md)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydicom.uid import generate_uid
from starlette.applications import Starlette

from bff.app import create_app
from bff.auth.sessions import COOKIE_NAME, OpenedStudy, Session
from bff.services import services_of
from bff.settings import PROJECT_ROOT
from tests.conftest import Pacs, make_settings
from tests.e2e.conftest import record_fetches, wait_answered
from tests.e2e.test_series_rules import shown
from tests.series_data import MANIFEST, Study, add_kos, add_series
from tests.servers import live_server

pytestmark = pytest.mark.e2e

CHOICE = "#drimbox-series-choice button.drimbox-series-choice"
DISPLAY: dict[str, str | list[str] | None] = {
    "birth_name": "SERIES",
    "given_names": ["RULES"],
    "sex": "F",
    "birth_date": "19790328",
    "institution": "Centre de radiologie du test",
    "accession_number": "ACN-SR",
}


@dataclass(frozen=True)
class Viewer:
    url: str
    app: Starlette
    study: Study  # three series
    single: Study  # one series
    spare: Study  # two series, never opened in Chromium
    outside: Study  # in the PACS, never granted


@pytest.fixture(scope="module")
def viewer(pacs: Pacs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Viewer]:
    if not (PROJECT_ROOT / "ohif-dist" / "index.html").is_file():
        pytest.skip("ohif-dist/ is missing: run scripts/fetch-ohif")
    out: Path = tmp_path_factory.mktemp("series-choice")
    study, single, spare, outside = (Study(generate_uid()) for _ in range(4))
    for number, name in ((1, "Crâne"), (2, "Thorax"), (3, "Abdomen")):
        add_series(study, out, number, name, 6, seed=number)
    add_kos(
        study, out, MANIFEST, [(study.study_uid, s.series_uid, s.sop_uids[0]) for s in study.series]
    )
    add_series(single, out, 1, "Seule", 2)
    add_series(spare, out, 1, "Première", 2)
    add_series(spare, out, 2, "Seconde", 2)
    add_series(outside, out, 1, "Autre", 2)
    pacs.process.upload(study.files + single.files + spare.files + outside.files)
    app = create_app(make_settings(pacs.dicomweb_url, open_access=False))
    with live_server(app) as url:
        # These tests grant sessions directly (granted_session), without a KOS in the
        # archive: every grant's KOS counts as published (bff/access/published.py).
        services_of(app).published._state_of = _published
        yield Viewer(url, app, study, single, spare, outside)


async def _published(kos_sop_uid: str) -> str:
    return "published"


def granted_session(viewer: Viewer, study: Study) -> tuple[Session, str]:
    """A signed-in session granted ``study`` (what /auth/callback leaves), and its cookie."""
    store = services_of(viewer.app).sessions
    session = store.create()
    session.profile, session.provider, session.subject = "professional", "psc", "test"
    session.user_display = "Dr Test"
    session.open_study(OpenedStudy("*", study.study_uid, generate_uid(), DISPLAY))
    store.save(session)  # what /auth/callback stores (issue 15)
    return session, store.cookie_value(session)


def test_the_series_picked_at_opening_is_shown_first(viewer: Viewer, page: Any) -> None:
    _, cookie = granted_session(viewer, viewer.study)
    page.context.add_cookies([{"name": COOKIE_NAME, "value": cookie, "url": viewer.url}])
    study = viewer.study
    page.goto(f"{viewer.url}/viewer?StudyInstanceUIDs={study.study_uid}")
    dialog = page.get_by_role("dialog", name="Identité du patient")
    dialog.wait_for(timeout=30_000)
    dialog.get_by_text("Choisir la série à afficher en premier").wait_for(timeout=30_000)
    choices = dialog.locator(CHOICE)
    labels = [choices.nth(i).inner_text() for i in range(choices.count())]
    assert labels == [
        "Série 1 — Crâne (CT, 6 images)",
        "Série 2 — Thorax (CT, 6 images)",
        "Série 3 — Abdomen (CT, 6 images)",
    ], labels
    third = study.series[2].series_uid
    with page.expect_response(lambda r: "/api/priority/" in r.url) as answer:
        choices.nth(2).click()
    assert answer.value.status == 202
    assert answer.value.url.endswith(f"/api/priority/{study.study_uid}/{third}")
    page.wait_for_url(f"**initialSeriesInstanceUID={third}", timeout=30_000)
    # The viewer shows the chosen series first (without a choice: series 1, the lowest).
    overlay = shown(page, "Abdomen")
    assert "Série : 3" in overlay["topLeft"]
    # The identity was just acknowledged: not shown again for this reopening, still reachable.
    assert not page.get_by_role("dialog", name="Identité du patient").is_visible()
    page.get_by_role("button", name="Patient : SERIES RULES").click()
    current = dialog.locator(f'{CHOICE}[aria-current="true"]')
    assert current.inner_text().startswith("Série 3 — Abdomen")


def test_a_study_with_one_series_offers_no_choice(viewer: Viewer, page: Any) -> None:
    _, cookie = granted_session(viewer, viewer.single)
    page.context.add_cookies([{"name": COOKIE_NAME, "value": cookie, "url": viewer.url}])
    record_fetches(page)
    page.goto(f"{viewer.url}/viewer?StudyInstanceUIDs={viewer.single.study_uid}")
    page.get_by_role("dialog", name="Identité du patient").wait_for(timeout=30_000)
    # The dialog offers the choice from the study's series search: once it has read it.
    wait_answered(page, f"/dicomweb/studies/{viewer.single.study_uid}/series")
    assert page.locator("#drimbox-series-choice").count() == 0


def test_priority_outside_the_grant_is_not_found_and_starts_nothing(viewer: Viewer) -> None:
    session, cookie = granted_session(viewer, viewer.spare)
    other = viewer.outside
    retriever = services_of(viewer.app).retriever
    headers = {"X-CSRF-Token": session.csrf_token}
    with httpx.Client(base_url=viewer.url, cookies={COOKIE_NAME: cookie}) as client:
        answer = client.post(
            f"/api/priority/{other.study_uid}/{other.series[0].series_uid}", headers=headers
        )
        assert answer.status_code == 404
        assert answer.json()["code"]
        # No session at all: 401 E401 before any decision (issue 14: the session's end).
        anonymous = httpx.post(
            f"{viewer.url}/api/priority/{other.study_uid}/{other.series[0].series_uid}"
        )
        assert anonymous.status_code == 401 and anonymous.json()["code"] == "E401"
        # Inside the grant, without the session's CSRF token: refused, nothing started.
        study = viewer.spare
        forged = client.post(f"/api/priority/{study.study_uid}/{study.series[1].series_uid}")
        assert forged.status_code == 400
        assert retriever.find("*", study.study_uid, study.series[1].series_uid) is None
        # Inside the grant, with it: accepted, and that series' retrieval is running.
        granted = client.post(
            f"/api/priority/{study.study_uid}/{study.series[1].series_uid}", headers=headers
        )
        assert granted.status_code == 202
        assert retriever.find("*", study.study_uid, study.series[1].series_uid) is not None
    assert retriever.find("*", other.study_uid, other.series[0].series_uid) is None
