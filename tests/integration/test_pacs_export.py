"""Export from the Consumer viewer to the practice's PACS (DB.VI-CO.42), against a second
real Orthanc: STOW-RS to its DICOMweb plugin and C-STORE to its DICOM port. The images
arrive as the Source holds them (same transfer syntax, pixel data bit-identical), counted
at the destination; a destination down, a study or series outside the grant, a missing
CSRF token, an unknown destination and a second export at once are refused or reported
with their code and French message, and nothing is sent."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bff.demo.dataset import DemoStudy
from bff.demo.orthanc import OrthancProcess
from bff.dicomweb.multipart import MultipartParser, parse_content_type
from tests.access import LoopbackTransport, ScriptedBrowser
from tests.conftest import Pacs
from tests.consumer_stack import (
    EXPORT_CSTORE,
    EXPORT_CSTORE_DOWN,
    EXPORT_CSTORE_REFUSED,
    EXPORT_STOW,
    EXPORT_STOW_DOWN,
    EXPORT_STOW_PARTIAL,
    EXPORT_STOW_REFUSED,
    EXPORT_STOW_TLS,
    EXPORT_STOW_TLS_UNTRUSTED,
    DrimmStack,
    export_destinations,
    practice_pacs,
)
from tests.integration.test_consumer import ConsumerBrowser, read_audit
from tests.servers import live_server
from tests.source_stack import LOCATION, running_source
from tests.waiting import poll

pytestmark = pytest.mark.integration

IDENTITY_VALUES = ("PAT-TROIS", "DOMINIQUE", "279035121518989")


@pytest.fixture(scope="module")
def cabinet(
    drimm: DrimmStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OrthancProcess]:
    with practice_pacs(drimm, tmp_path_factory.mktemp("cabinet")) as process:
        yield process


@pytest.fixture
def practice(cabinet: OrthancProcess) -> OrthancProcess:
    """The practice's PACS, emptied for each test."""
    with httpx.Client(base_url=cabinet.base_url, timeout=30) as client:
        for study in client.get("/studies").json():
            client.delete(f"/studies/{study}").raise_for_status()
    return cabinet


@pytest.fixture
def browser(drimm: DrimmStack) -> Iterator[ConsumerBrowser]:
    b = ConsumerBrowser(drimm)
    yield b
    b.close()


def stored_instances(pacs: OrthancProcess, study_uid: str) -> dict[str, pydicom.Dataset]:
    """SOP Instance UID -> the file the destination holds, read back from it."""
    out: dict[str, pydicom.Dataset] = {}
    with httpx.Client(base_url=pacs.base_url, timeout=30) as client:
        found = client.post(
            "/tools/find",
            json={"Level": "Instance", "Query": {"StudyInstanceUID": study_uid}},
        ).json()
        for orthanc_id in found:
            data = client.get(f"/instances/{orthanc_id}/file").content
            ds = pydicom.dcmread(io.BytesIO(data))
            out[str(ds.SOPInstanceUID)] = ds
    return out


def last_export_audit(drimm: DrimmStack) -> dict[str, Any]:
    entries = read_audit(drimm.work / "consumer-audit.jsonl")
    return [e for e in entries if e["event"] == "pacs_export"][-1]


def originals(drimm: DrimmStack, series_uid: str | None = None) -> dict[str, pydicom.Dataset]:
    out: dict[str, pydicom.Dataset] = {}
    for path in drimm.study.instance_files:
        ds = pydicom.dcmread(path)
        if series_uid is None or str(ds.SeriesInstanceUID) == series_uid:
            out[str(ds.SOPInstanceUID)] = ds
    return out


def opened(drimm: DrimmStack, browser: ConsumerBrowser) -> tuple[str, str]:
    """Open the demo exam's KOS on the Consumer; (study UID, the session's CSRF token)."""
    browser.open(drimm.kos_for(drimm.source_api))
    session = browser.get("/api/session").json()
    return drimm.study.study_uid, str(session["csrf"])


def start(
    browser: ConsumerBrowser,
    study_uid: str,
    csrf: str | None,
    destination: str,
    series_uid: str | None = None,
) -> httpx.Response:
    body: dict[str, Any] = {"destination": destination}
    if series_uid:
        body["series_uid"] = series_uid
    headers = {"X-CSRF-Token": csrf} if csrf is not None else {}
    return browser.client.post(
        browser.drimm.consumer_url + f"/api/pacs-export/{study_uid}", json=body, headers=headers
    )


def current_job(browser: ConsumerBrowser, study_uid: str) -> dict[str, Any] | None:
    """The user's last export of this study (jobs are kept per user, across tests)."""
    job: dict[str, Any] | None = browser.get(f"/api/pacs-export/{study_uid}").json()["job"]
    return job


def finished(browser: ConsumerBrowser, study_uid: str) -> dict[str, Any]:
    """The export's job once it is no longer running (polled like the viewer does)."""

    def job() -> dict[str, Any] | None:
        answer = browser.get(f"/api/pacs-export/{study_uid}").json()["job"]
        return answer if answer and answer["state"] != "running" else None

    result = poll(job, timeout=60)
    assert result, "the export did not finish"
    return result


def assert_lossless_copies(
    held: dict[str, pydicom.Dataset], expected: dict[str, pydicom.Dataset]
) -> None:
    assert set(held) == set(expected)
    for sop_uid, original in expected.items():
        copy = held[sop_uid]
        assert copy.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
        assert copy.PixelData == original.PixelData  # the codestreams, bit for bit
        assert copy.SeriesInstanceUID == original.SeriesInstanceUID


def test_stow_rs_exports_the_whole_exam_losslessly(
    drimm: DrimmStack, browser: ConsumerBrowser, practice: OrthancProcess
) -> None:
    """DB.VI-CO.42 over STOW-RS: every image of the KOS, as stored, counted at the PACS."""
    study_uid, csrf = opened(drimm, browser)
    offered = browser.get(f"/api/pacs-export/{study_uid}")
    assert offered.status_code == 200
    names = [d["name"] for d in offered.json()["destinations"]]
    assert names[0] == "PACS du cabinet" and "Station du cabinet (DICOM)" in names
    answer = start(browser, study_uid, csrf, EXPORT_STOW)
    assert answer.status_code == 202, answer.text
    assert answer.json()["state"] == "running"
    job = finished(browser, study_uid)
    expected = originals(drimm)
    assert job["state"] == "done", job
    assert job["sent"] == job["total"] == len(expected)
    assert job["message"] == f"Export terminé : {len(expected)} images envoyées à PACS du cabinet."
    assert_lossless_copies(stored_instances(practice, study_uid), expected)
    entry = [
        e for e in read_audit(drimm.work / "consumer-audit.jsonl") if e["event"] == "pacs_export"
    ][-1]
    assert entry["destination"] == "PACS du cabinet" and entry["protocol"] == "stow"
    assert entry["study_uid"] == study_uid and entry["outcome"] == "done"
    assert entry["sent"] == len(expected) and entry["refused"] == 0
    assert not any(value in str(entry) for value in IDENTITY_VALUES)


def test_c_store_exports_one_series_losslessly(
    drimm: DrimmStack, browser: ConsumerBrowser, practice: OrthancProcess
) -> None:
    """DB.VI-CO.42 over DIMSE C-STORE, the series shown only: the PACS holds it alone,
    in its stored transfer syntax (the presentation context proposes no other)."""
    study_uid, csrf = opened(drimm, browser)
    series_uid = drimm.study.series_uids[-1]
    answer = start(browser, study_uid, csrf, EXPORT_CSTORE, series_uid)
    assert answer.status_code == 202, answer.text
    job = finished(browser, study_uid)
    expected = originals(drimm, series_uid)
    assert job["state"] == "done", job
    assert job["series_uid"] == series_uid
    assert job["sent"] == job["total"] == len(expected)
    assert job["message"] == (
        f"Export terminé : {len(expected)} images envoyées à Station du cabinet (DICOM)."
    )
    assert_lossless_copies(stored_instances(practice, study_uid), expected)


@pytest.mark.parametrize("destination", [EXPORT_STOW_DOWN, EXPORT_CSTORE_DOWN])
def test_a_destination_down_is_e462_in_french(
    drimm: DrimmStack, browser: ConsumerBrowser, destination: str
) -> None:
    study_uid, csrf = opened(drimm, browser)
    assert start(browser, study_uid, csrf, destination).status_code == 202
    job = finished(browser, study_uid)
    assert job["state"] == "failed"
    assert job["code"] == "E462"
    assert job["sent"] == 0
    assert job["message"].startswith("Le PACS de destination est injoignable.")
    entry = [
        e for e in read_audit(drimm.work / "consumer-audit.jsonl") if e["event"] == "pacs_export"
    ][-1]
    assert entry["outcome"] == "E462"


@pytest.mark.parametrize("destination", [EXPORT_STOW_REFUSED, EXPORT_CSTORE_REFUSED])
def test_a_destination_that_refuses_is_e463_in_french(
    drimm: DrimmStack, browser: ConsumerBrowser, practice: OrthancProcess, destination: str
) -> None:
    """The practice's Orthanc answering 404 to STOW-RS on a path it does not serve, or
    rejecting the association to an AE title it is not."""
    study_uid, csrf = opened(drimm, browser)
    assert start(browser, study_uid, csrf, destination).status_code == 202
    job = finished(browser, study_uid)
    assert job["state"] == "failed" and job["code"] == "E463", job
    assert job["sent"] == 0
    assert job["message"].startswith("Le PACS de destination a refusé les images.")
    assert last_export_audit(drimm)["outcome"] == "E463"
    assert stored_instances(practice, study_uid) == {}


def partial_stow_app(received: list[str]) -> Starlette:
    """A STOW-RS double (the partial refusal a real Orthanc does not produce): parses the
    multipart body and stores every instance but the first of each request, answering
    202 with ReferencedSOPSequence and FailedSOPSequence (PS3.18 10.5.3)."""

    async def stow(request: Request) -> Response:
        _, params = parse_content_type(request.headers["content-type"])
        parser = MultipartParser(params["boundary"], max_part_bytes=64 * 1024**2)
        parts = parser.feed(await request.body())
        parser.finalize()
        uids = [str(pydicom.dcmread(io.BytesIO(p.body)).SOPInstanceUID) for p in parts]
        received.extend(uids)

        def item(uid: str) -> dict[str, Any]:
            return {"00081155": {"vr": "UI", "Value": [uid]}}

        body = {
            "00081198": {"vr": "SQ", "Value": [item(u) for u in uids[:1]]},
            "00081199": {"vr": "SQ", "Value": [item(u) for u in uids[1:]]},
        }
        return JSONResponse(body, 202, media_type="application/dicom+json")

    return Starlette(routes=[Route("/dicom-web/studies", stow, methods=["POST"])])


def test_a_partial_refusal_is_e464_with_what_was_sent(
    drimm: DrimmStack, browser: ConsumerBrowser
) -> None:
    received: list[str] = []
    study_uid, csrf = opened(drimm, browser)
    with live_server(partial_stow_app(received), port=drimm.export_double_port, lifespan="off"):
        assert start(browser, study_uid, csrf, EXPORT_STOW_PARTIAL).status_code == 202
        job = finished(browser, study_uid)
    n = drimm.study.n_instances
    assert len(received) == n  # every instance went out, in batches
    assert job["state"] == "failed" and job["code"] == "E464", job
    assert job["sent"] + job["refused"] == n and 0 < job["refused"] < n
    assert job["message"] == (
        "L'export est incomplet : une partie des images a été refusée par le PACS de "
        "destination. Prévenez l'administrateur de votre PACS. "
        f"({job['sent']} images envoyées à PACS partiel.)"
    )


def test_an_https_destination_is_checked_against_its_ca_file(
    drimm: DrimmStack, browser: ConsumerBrowser
) -> None:
    """STOW-RS over https: the PACS certificate must chain to the destination's
    'ca_file' (here the test CA: the double is reached and answers); without it, the
    system's trust store refuses the test CA: E462, nothing reaches the double."""
    received: list[str] = []
    study_uid, csrf = opened(drimm, browser)
    tls: dict[str, Any] = {
        "ssl_certfile": str(drimm.pki["server"].cert),
        "ssl_keyfile": str(drimm.pki["server"].key),
    }
    with live_server(partial_stow_app(received), port=drimm.export_tls_port, lifespan="off", **tls):
        assert start(browser, study_uid, csrf, EXPORT_STOW_TLS_UNTRUSTED).status_code == 202
        untrusted = finished(browser, study_uid)
        assert untrusted["code"] == "E462" and received == []
        assert start(browser, study_uid, csrf, EXPORT_STOW_TLS).status_code == 202
        trusted = finished(browser, study_uid)
    assert trusted["code"] == "E464", trusted  # the double's answer: the link worked
    assert len(received) == drimm.study.n_instances


def test_a_series_outside_the_kos_cannot_be_exported(
    drimm: DrimmStack, browser: ConsumerBrowser, practice: OrthancProcess
) -> None:
    study_uid, csrf = opened(drimm, browser)
    before = current_job(browser, study_uid)
    answer = start(browser, study_uid, csrf, EXPORT_STOW, "1.2.3.4.5.6.7")
    assert answer.status_code == 404 and answer.json()["code"] == "E404"
    assert current_job(browser, study_uid) == before  # no export started
    assert stored_instances(practice, study_uid) == {}


def test_a_study_outside_the_grant_cannot_be_exported(
    drimm: DrimmStack, browser: ConsumerBrowser, practice: OrthancProcess
) -> None:
    _, csrf = opened(drimm, browser)
    other = "1.2.250.1.213.4.5.2.1.999"
    assert browser.get(f"/api/pacs-export/{other}").status_code == 404
    answer = start(browser, other, csrf, EXPORT_STOW)
    assert answer.status_code == 404 and answer.json()["code"] == "E404"
    assert stored_instances(practice, drimm.study.study_uid) == {}


def test_no_session_no_csrf_no_destination(
    drimm: DrimmStack, browser: ConsumerBrowser, practice: OrthancProcess
) -> None:
    study_uid, csrf = opened(drimm, browser)
    before = current_job(browser, study_uid)
    missing = start(browser, study_uid, None, EXPORT_STOW)
    assert missing.status_code == 400 and missing.json()["code"] == "E400"
    forged = start(browser, study_uid, "not-the-token", EXPORT_STOW)
    assert forged.status_code == 400
    unknown = start(browser, study_uid, csrf, "99")
    assert unknown.status_code == 400 and unknown.json()["code"] == "E460"
    assert "destination" in unknown.json()["message"]
    with httpx.Client(transport=LoopbackTransport(), timeout=10) as anonymous:
        answer = anonymous.post(
            drimm.consumer_url + f"/api/pacs-export/{study_uid}",
            json={"destination": EXPORT_STOW},
            headers={"X-CSRF-Token": csrf},
        )
    assert answer.status_code == 401 and answer.json()["code"] == "E401"
    assert current_job(browser, study_uid) == before  # no export started
    assert stored_instances(practice, study_uid) == {}


def test_one_export_at_a_time_per_user(
    drimm: DrimmStack, browser: ConsumerBrowser, practice: OrthancProcess
) -> None:
    """E461 while the user's export runs: a Source that stalls keeps it running."""
    drimm.fake.mode = "stall"
    try:
        browser.open(drimm.kos_for(drimm.fake_api()))
        csrf = str(browser.get("/api/session").json()["csrf"])
        study_uid = drimm.study.study_uid
        assert start(browser, study_uid, csrf, EXPORT_STOW).status_code == 202
        second = start(browser, study_uid, csrf, EXPORT_CSTORE)
        assert second.status_code == 429 and second.json()["code"] == "E461"
        job = finished(browser, study_uid)
        # The Source stopped sending: its Tableau 2 code, nothing complete sent.
        assert job["state"] == "failed" and job["code"].startswith("E2"), job
    finally:
        drimm.fake.mode = "ok"


def test_the_source_viewer_offers_no_export(
    drimm: DrimmStack,
    pacs: Pacs,
    other_study: DemoStudy,
    practice: OrthancProcess,
    tmp_path: Path,
) -> None:
    """Only the Consumer exports (DB.VI-CO.42): a professional on the Source viewer, on a
    deployment with a destination configured, gets 404 and nothing is sent."""
    destinations = export_destinations(*drimm.export_ports, drimm.export_down_port)
    with running_source(pacs, other_study, tmp_path, export_destinations=destinations) as source:
        browser = ScriptedBrowser()
        try:
            assert browser.sign_in(source.link(), "psc", "dr.radiologue").status_code == 303
            base = source.stack.bff_url(LOCATION)
            csrf = browser.get(base + "/api/session").json()["csrf"]
            study_uid = source.study.study_uid
            assert browser.get(base + f"/api/pacs-export/{study_uid}").status_code == 404
            answer = browser.client.post(
                base + f"/api/pacs-export/{study_uid}",
                json={"destination": EXPORT_STOW},
                headers={"X-CSRF-Token": csrf},
            )
            assert answer.status_code == 404 and answer.json()["code"] == "E404"
        finally:
            browser.close()
    assert stored_instances(practice, pacs.study.study_uid) == {}


def test_only_the_series_asked_is_sent_whatever_the_source_sends(
    drimm: DrimmStack, browser: ConsumerBrowser, practice: OrthancProcess
) -> None:
    """A Source that sends other series' instances in a series' answer: only the
    instances of the series asked (of the KOS) reach the practice's PACS."""
    drimm.fake.mode = "extra"
    try:
        browser.open(drimm.kos_for(drimm.fake_api()))
        csrf = str(browser.get("/api/session").json()["csrf"])
        study_uid = drimm.study.study_uid
        series_uid = drimm.study.series_uids[-1]
        assert start(browser, study_uid, csrf, EXPORT_STOW, series_uid).status_code == 202
        job = finished(browser, study_uid)
    finally:
        drimm.fake.mode = "ok"
    expected = originals(drimm, series_uid)
    assert len(expected) < drimm.study.n_instances
    assert job["state"] == "done" and job["sent"] == len(expected), job
    assert_lossless_copies(stored_instances(practice, study_uid), expected)
