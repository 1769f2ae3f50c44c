"""The Consumer viewer: a KOS handed over by the Consumer DRIMbox, images streamed from a
DRIMbox Source (this project) over real mutual TLS, out of order (spec 4.2.1, 4.3.1;
DB.VI-CS.05, .06, .17, .18); and every error of Tableau 2 (DB.VI-CO.27) produced by a
real peer: a refused port, a bad certificate, a host outside the whitelist, and a
misbehaving Source speaking HTTPS."""

from __future__ import annotations

import concurrent.futures
import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import imagecodecs
import numpy as np
import pydicom
import pytest
from pydicom.encaps import generate_frames

from bff.services import services_of
from tests.access import LoopbackTransport, psc_access_token
from tests.consumer_stack import (
    DrimmStack,
    FakeSourceMode,
    fake_source_app,
    from_test_ca,
    mtls,
    source_requests,
)
from tests.integration.test_facade import FRAME_ACCEPT, read_frame
from tests.servers import free_port, live_server
from tests.waiting import poll

pytestmark = pytest.mark.integration


class ConsumerBrowser:
    def __init__(self, drimm: DrimmStack) -> None:
        self.drimm = drimm
        self.client = httpx.Client(transport=LoopbackTransport(), timeout=60)

    def open(self, kos: bytes, *, series: str | None = None, token: str | None = None) -> str:
        """Hand the KOS over as the Consumer DRIMbox would; follow the one-time URL."""
        params = {"series": series} if series else {}
        answer = self.client.post(
            self.drimm.consumer_url + "/api/consumer/kos",
            params=params,
            content=kos,
            headers={
                "Authorization": f"Bearer {self.drimm.handover_secret}",
                "X-PSC-Access-Token": token or psc_access_token(self.drimm.stack),
                "Content-Type": "application/dicom",
            },
        )
        assert answer.status_code == 201, answer.text
        opened = self.client.get(answer.json()["viewer_url"])
        assert opened.status_code == 303, opened.text
        return str(opened.headers["location"])

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.client.get(self.drimm.consumer_url + path, **kwargs)

    def close(self) -> None:
        self.client.close()


@pytest.fixture
def browser(drimm: DrimmStack) -> Any:
    b = ConsumerBrowser(drimm)
    yield b
    b.close()


def axial(drimm: DrimmStack) -> str:
    return drimm.study.series_uids[-1]


def metadata(browser: ConsumerBrowser, study_uid: str, series_uid: str) -> httpx.Response:
    return browser.get(f"/dicomweb/studies/{study_uid}/series/{series_uid}/metadata")


def original(path: Any) -> np.ndarray:
    ds = pydicom.dcmread(path)
    return np.asarray(
        imagecodecs.jpegls_decode(next(generate_frames(ds.PixelData, number_of_frames=1)))
    )


def test_study_level_opening_streams_from_the_source_over_mutual_tls(
    drimm: DrimmStack, browser: ConsumerBrowser
) -> None:
    study = drimm.study
    viewer = browser.open(drimm.kos_for(drimm.source_api))
    assert viewer == f"/viewer?StudyInstanceUIDs={study.study_uid}"
    assert browser.get(viewer).status_code == 200
    rows = browser.get(f"/dicomweb/studies?StudyInstanceUID={study.study_uid}").json()
    assert rows[0]["00100010"]["Value"][0]["Alphabetic"] == "PAT-TROIS^DOMINIQUE"
    series = browser.get(f"/dicomweb/studies/{study.study_uid}/series").json()
    assert sorted(s["0020000E"]["Value"][0] for s in series) == sorted(study.series_uids)
    assert {s["00080060"]["Value"][0] for s in series} == {"CT"}
    info = browser.get("/api/session").json()
    assert info["studies"][0]["institution"] == "Centre de radiologie Ambroise"
    assert info["reopen"] == "consumer"  # issue 14: the session's end points back there

    meta = metadata(browser, study.study_uid, axial(drimm))
    assert meta.status_code == 200
    instances = sorted(meta.json(), key=lambda r: r["00200013"]["Value"][0])
    # Served as the Source sent them: JPEG-LS lossless, which the browser decodes.
    assert {r["00020010"]["Value"][0] for r in instances} == {"1.2.840.10008.1.2.4.80"}
    uids = [r["00080018"]["Value"][0] for r in instances]
    n = len(uids)
    order = [n // 2, 0, n - 1, *[i for i in range(n) if i not in (n // 2, 0, n - 1)][::-1]]
    files = {
        str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID): p
        for p in study.instance_files
    }

    def fetch(index: int) -> tuple[int, str, bytes]:
        url = (
            f"/dicomweb/studies/{study.study_uid}/series/{axial(drimm)}"
            f"/instances/{uids[index]}/frames/1"
        )
        response = browser.get(url, headers={"Accept": FRAME_ACCEPT})
        assert response.status_code == 200, response.text
        return (index, *read_frame(response))

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        results = list(pool.map(fetch, order))
    for index, syntax, body in results:
        assert syntax == "1.2.840.10008.1.2.4.80"
        served = np.asarray(imagecodecs.jpegls_decode(body))
        assert np.array_equal(served, original(files[uids[index]]))  # lossless, exact

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        progress = browser.get("/api/progress").json()["series"]
        entry = next(s for s in progress if s["series_uid"] == axial(drimm))
        if entry["complete"]:
            break
        time.sleep(0.2)
    assert entry["received"] == entry["total"] == n and entry["error"] is None
    assert entry["lossy"] is False  # served as received: lossless (DB.VI-CS.26)


def progress_of(browser: ConsumerBrowser, series_uid: str) -> dict[str, Any]:
    series = browser.get("/api/progress").json()["series"]
    return dict(next(s for s in series if s["series_uid"] == series_uid))


def test_series_level_opening_pulls_that_series_and_the_others_when_displayed(
    drimm: DrimmStack, browser: ConsumerBrowser
) -> None:
    """DB.VI-CS.05 (issue 14 item 4): opened at series level, the Consumer pulls that
    series from the Source and no other; the others stay in the series tree (their
    metadata read, .06), a thumbnail asks its one instance alone, and a series is pulled
    whole once the user displays it (a second instance asked). Counted on the wire: the
    requests the Consumer sends the real Source with this session's token."""
    study = drimm.study
    topogram, chosen = study.series_uids[0], axial(drimm)
    token = psc_access_token(drimm.stack)
    source = urlsplit(drimm.source_api).path + f"/studies/{study.study_uid}/series/"
    with source_requests(drimm, token) as asked:
        viewer = browser.open(drimm.kos_for(drimm.source_api), series=chosen, token=token)
        assert viewer == (
            f"/viewer?StudyInstanceUIDs={study.study_uid}&initialSeriesInstanceUID={chosen}"
        )
        assert browser.get(viewer).status_code == 200
        assert poll(lambda: progress_of(browser, chosen)["complete"], 30)
        # The series tree lists every series; OHIF reads each one's metadata.
        listed = browser.get(f"/dicomweb/studies/{study.study_uid}/series").json()
        assert {s["0020000E"]["Value"][0] for s in listed} == set(study.series_uids)
        meta = metadata(browser, study.study_uid, topogram)
        assert meta.status_code == 200
        assert source + chosen in asked
        assert source + topogram not in asked, asked  # metadata only, no image
        waiting = progress_of(browser, topogram)
        assert waiting["on_demand"] and waiting["received"] == 0, waiting

        sops = sorted(r["00080018"]["Value"][0] for r in meta.json())
        assert len(sops) == 2

        def frame(sop_uid: str) -> int:
            path = f"/dicomweb/studies/{study.study_uid}/series/{topogram}"
            path += f"/instances/{sop_uid}/frames/1"
            return browser.get(path, headers={"Accept": FRAME_ACCEPT}).status_code

        # Its thumbnail: that one instance, asked alone.
        assert frame(sops[1]) == 200
        assert source + f"{topogram}/instances/{sops[1]}" in asked
        assert source + topogram not in asked, asked
        # The user displays it: another instance asked, the series is pulled whole.
        assert frame(sops[0]) == 200
        assert source + topogram in asked
        assert poll(lambda: progress_of(browser, topogram)["complete"], 30)
        assert progress_of(browser, topogram)["on_demand"] is False
    assert [p for p in asked if not p.endswith("/metadata")].count(source + chosen) == 1


def test_metadata_is_built_from_the_instances_when_the_source_has_no_metadata(
    drimm: DrimmStack, browser: ConsumerBrowser
) -> None:
    drimm.fake.mode = "ok"
    browser.open(drimm.kos_for(drimm.fake_api()))
    meta = metadata(browser, drimm.study.study_uid, axial(drimm))
    assert meta.status_code == 200
    rows = meta.json()
    assert len(rows) == drimm.study.n_instances - 2  # the axial series (2 topograms apart)
    assert all("00280010" in r and "00200032" in r for r in rows)


def expect_error(browser: ConsumerBrowser, drimm: DrimmStack, code: str) -> None:
    """The code and its French message reach the viewer: the DICOMweb answer OHIF gets,
    and the progress panel shown around OHIF."""
    meta = metadata(browser, drimm.study.study_uid, axial(drimm))
    if meta.status_code == 200:  # the error shows on the frames of the series
        sop = meta.json()[0]["00080018"]["Value"][0]
        meta = browser.get(
            f"/dicomweb/studies/{drimm.study.study_uid}/series/{axial(drimm)}"
            f"/instances/{sop}/frames/1",
            headers={"Accept": FRAME_ACCEPT},
        )
    assert meta.status_code in (502, 504), meta.headers
    body = meta.json()
    assert body["code"] == code
    from bff.origins.errors import MESSAGES

    assert body["message"] == MESSAGES[code]
    expect_in_progress(browser, code)


def expect_in_progress(browser: ConsumerBrowser, code: str) -> None:
    """The progress panel around OHIF shows ``code`` and its French message."""
    from bff.origins.errors import MESSAGES

    def errors() -> list[dict[str, str]]:
        series = browser.get("/api/progress").json()["series"]
        return [s["error"] for s in series if s["error"]]

    shown = poll(lambda: [e for e in errors() if e["code"] == code], 15, 0.2)
    assert shown, f"{code} not in the progress panel: {errors()}"
    assert shown[0]["message"] == MESSAGES[code]


@pytest.mark.parametrize(
    ("mode", "code"),
    [
        ("status:403", "E204"),
        ("status:404", "E205"),
        ("status:410", "E206"),
        ("status:502", "E207"),
        ("status:504", "E208"),
        ("status:406", "E209"),
        ("sop_class", "E301"),
        ("syntax", "E302"),
    ],
)
def test_source_answers_map_to_tableau_2(
    drimm: DrimmStack, browser: ConsumerBrowser, mode: str, code: str
) -> None:
    drimm.fake.mode = mode
    browser.open(drimm.kos_for(drimm.fake_api()))
    expect_error(browser, drimm, code)


def test_refused_connection_is_e201(drimm: DrimmStack, browser: ConsumerBrowser) -> None:
    browser.open(drimm.kos_for(f"https://localhost:{drimm.spare_ports[0]}/api/source"))
    expect_error(browser, drimm, "E201")


def test_untrusted_source_certificate_is_e202(
    drimm: DrimmStack, browser: ConsumerBrowser, tmp_path: Any
) -> None:
    """A Source whose certificate does not chain to the configured CA bundle."""
    import ssl as ssl_module

    from bff.origins.conformance import accept_header  # noqa: F401
    from tests.consumer_stack import fake_source_app, mtls
    from tests.servers import live_server

    port = drimm.spare_ports[1]
    files = drimm.pki["untrusted_server"]
    options = mtls(files, drimm.pki["client"].ca_cert)
    options["ssl_cert_reqs"] = ssl_module.CERT_NONE
    with live_server(
        fake_source_app(drimm.study, drimm.fake), port=port, lifespan="off", **options
    ):
        drimm.fake.mode = "ok"
        browser.open(drimm.kos_for(f"https://localhost:{port}/api/source"))
        expect_error(browser, drimm, "E202")


def test_source_outside_the_whitelist_is_e203_and_never_contacted(
    drimm: DrimmStack, browser: ConsumerBrowser
) -> None:
    before = len(drimm.fake.requests)
    base = drimm.fake_api().replace("https://localhost:", "https://127.0.0.1:")
    browser.open(drimm.kos_for(base))
    expect_error(browser, drimm, "E203")
    assert len(drimm.fake.requests) == before


def _with_retrieve_urls(kos: bytes, change: Callable[[str], str]) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(kos))
    for study in ds.CurrentRequestedProcedureEvidenceSequence:
        for series in study.ReferencedSeriesSequence:
            series.RetrieveURL = change(series.RetrieveURL)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


@pytest.mark.parametrize(
    "variant", ["unlisted port", "user info", "query", "fragment", "http", "viewer host"]
)
def test_retrieve_urls_the_whitelist_does_not_cover_are_e203_and_never_contacted(
    drimm: DrimmStack, browser: ConsumerBrowser, variant: str
) -> None:
    """Issue 13 item 6: scheme, host and port must be exactly a whitelisted Source's (443,
    or DRIMBOX_SOURCE_PORTS here), with no user info, query or fragment; otherwise E203
    and nothing leaves: the stand-in Source, which would answer, is never asked."""
    drimm.fake.mode = "ok"
    stand_in = FakeSourceMode()
    port = free_port()  # not in DRIMBOX_SOURCE_PORTS
    options = mtls(drimm.pki["server"], drimm.pki["client"].ca_cert)
    base = drimm.fake_api()
    before = len(drimm.fake.requests)
    with live_server(fake_source_app(drimm.study, stand_in), port=port, lifespan="off", **options):
        kos = drimm.kos_for(base)
        if variant == "unlisted port":
            kos = drimm.kos_for(base.replace(f":{drimm.fake_port}/", f":{port}/"))
        elif variant == "user info":
            kos = drimm.kos_for(base.replace("https://", "https://consumer:secret@"))
        elif variant == "query":
            kos = _with_retrieve_urls(kos, lambda url: url + "?x=1")
        elif variant == "fragment":
            kos = _with_retrieve_urls(kos, lambda url: url + "#x")
        elif variant == "http":
            kos = drimm.kos_for(base.replace("https://", "http://"))
        else:
            kos = drimm.kos_for(base.replace("https://localhost:", "https://vi-localhost:"))
        browser.open(kos)
        expect_error(browser, drimm, "E203")
        assert stand_in.requests == []
    assert len(drimm.fake.requests) == before
    refused = [
        e
        for e in read_audit(drimm.work / "consumer-audit.jsonl")
        if e["event"] == "consumer_source_refused"
    ]
    assert refused and refused[-1]["code"] == "E203"


def test_source_with_another_operator_certificate_never_gets_the_token(
    drimm: DrimmStack, browser: ConsumerBrowser
) -> None:
    """Issue 13 item 6: a Source on a whitelisted host and port, whose certificate chains
    to the trusted CA and is valid for the host, but whose subject is not the entry's
    DNCertificatOperateur: refused (E203) after the handshake, before the request is
    written. The stand-in, which would answer, never receives a request (hence never the
    Authorization header)."""
    impostor = from_test_ca(
        drimm.pki, drimm.work / "pki", "localhost", server=True, organization="Imposteur"
    )
    stand_in = FakeSourceMode()
    port = drimm.spare_ports[2]
    options = mtls(impostor, drimm.pki["client"].ca_cert)
    with live_server(fake_source_app(drimm.study, stand_in), port=port, lifespan="off", **options):
        browser.open(drimm.kos_for(f"https://localhost:{port}/t/api/source"))
        expect_error(browser, drimm, "E203")
        assert stand_in.requests == []
    refused = [
        e
        for e in read_audit(drimm.work / "consumer-audit.jsonl")
        if e["event"] == "consumer_source_refused" and e.get("port") == port
    ]
    assert refused, "no audit entry"
    assert refused[-1]["peer_certificate_dn"] == "CN=localhost,O=Imposteur,C=FR"
    assert refused[-1]["expected_dn"] == "CN=localhost,O=DRIMbox viewer tests,C=FR"


def test_the_source_audit_names_the_consumer_certificate(
    drimm: DrimmStack, browser: ConsumerBrowser
) -> None:
    """Issue 13 item 7: the Source API checked the Consumer's client certificate against
    the whitelist, and its audit trail records the certificate's subject."""
    browser.open(drimm.kos_for(drimm.source_api))
    assert metadata(browser, drimm.study.study_uid, axial(drimm)).status_code == 200
    entries = [
        e for e in read_audit(drimm.work / "source-audit.jsonl") if e["event"] == "source_metadata"
    ]
    assert entries
    assert entries[-1]["peer_certificate_dn"] == "CN=consumer.localhost,O=DRIMbox viewer tests,C=FR"
    assert entries[-1]["whitelist_id"] == "DRIMBOX-TEST-002"


def read_audit(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize(("mode", "code"), [("drop", "E201"), ("truncate", "E207")])
def test_a_source_failing_mid_series_shows_its_tableau_2_code(
    drimm: DrimmStack, browser: ConsumerBrowser, mode: str, code: str
) -> None:
    """DB.VI-CO.27 (issue 14 item 3): a Source that drops the connection in the middle of
    a series is E201, one whose answer ends there (without the closing delimiter: how the
    Source API reports that its PACS failed once streaming began) E207, never E506 (not a
    Tableau 2 code); the images received before the cut stay viewable."""
    drimm.fake.mode = mode
    browser.open(drimm.kos_for(drimm.fake_api()))
    meta = metadata(browser, drimm.study.study_uid, axial(drimm))
    # Metadata built from the 3 instances received before the cut.
    assert meta.status_code == 200 and len(meta.json()) == 3
    sop = meta.json()[0]["00080018"]["Value"][0]
    series = f"/dicomweb/studies/{drimm.study.study_uid}/series/{axial(drimm)}"
    frame = browser.get(f"{series}/instances/{sop}/frames/1", headers={"Accept": FRAME_ACCEPT})
    assert frame.status_code == 200
    expect_in_progress(browser, code)


def test_stalled_source_times_out(drimm: DrimmStack, browser: ConsumerBrowser) -> None:
    drimm.fake.mode = "stall"
    base = drimm.fake_api()
    browser.open(drimm.kos_for(base))
    meta = metadata(browser, drimm.study.study_uid, axial(drimm))
    # A part is complete when the next delimiter arrives: the double stalls before the
    # fourth part, so two instances are whole; the rest is lost. (Had the Consumer waited
    # for the end of the stall, the third would be whole too.)
    assert meta.status_code == 200 and len(meta.json()) == 2
    # The Consumer hung up on the stalled stream (its timeout), the double saw it.
    stream = base.removeprefix(f"https://localhost:{drimm.fake_port}")
    stream += f"/studies/{drimm.study.study_uid}/series/{axial(drimm)}"
    assert poll(lambda: stream in drimm.fake.hung_up, 30), drimm.fake.hung_up


def test_handover_asks_the_metadata_ahead_and_pulls_no_image_before_the_opening(
    drimm: DrimmStack, browser: ConsumerBrowser
) -> None:
    """Issue 5 (DB.VI-CO.39): the Source is asked for the series metadata at hand-over,
    while the browser comes; no image is pulled until the one-time URL is opened."""
    drimm.fake.mode = "ok"
    source = drimm.fake_api()  # a Source of its own: its keys are this test's
    before = len(drimm.fake.requests)
    answer = browser.client.post(
        drimm.consumer_url + "/api/consumer/kos",
        content=drimm.kos_for(source),
        headers={
            "Authorization": f"Bearer {drimm.handover_secret}",
            "X-PSC-Access-Token": psc_access_token(drimm.stack),
            "Content-Type": "application/dicom",
        },
    )
    assert answer.status_code == 201

    def asked() -> list[str]:
        return drimm.fake.requests[before:]

    # The hand-over's own work on the Source: its series metadata requests, all answered.
    retriever = services_of(drimm.consumer_app).retriever

    def asked_ahead() -> list[Any]:
        entries = retriever.ahead._entries.items()
        return [e.raw for k, e in entries if k[0].startswith(source) and e.raw is not None]

    assert poll(lambda: len(asked_ahead()) == len(drimm.study.series_uids), 30)
    assert poll(lambda: all(task.done() for task in asked_ahead()), 30)
    assert any(p.endswith("/metadata") for p in asked()), asked()
    assert all(p.endswith("/metadata") for p in asked()), asked()  # no series pulled
    # ... and no series stream waits to start before the opening.
    for key, retrieval in list(retriever._retrievals.items()):
        assert not key.origin.startswith(source) or not retrieval.started

    assert browser.client.get(answer.json()["viewer_url"]).status_code == 303
    pulled = poll(lambda: any(not p.endswith("/metadata") for p in asked()), 10)
    assert pulled, asked()  # pulled once opened
    meta = metadata(browser, drimm.study.study_uid, axial(drimm))
    assert meta.status_code == 200 and len(meta.json()) == drimm.study.n_instances - 2


def test_handover_needs_the_secret_and_is_single_use(
    drimm: DrimmStack, browser: ConsumerBrowser
) -> None:
    kos = drimm.kos_for(drimm.source_api)
    refused = browser.client.post(
        drimm.consumer_url + "/api/consumer/kos",
        content=kos,
        headers={"Authorization": "Bearer wrong", "X-PSC-Access-Token": "t"},
    )
    assert refused.status_code == 403
    answer = browser.client.post(
        drimm.consumer_url + "/api/consumer/kos",
        content=kos,
        headers={"Authorization": f"Bearer {drimm.handover_secret}", "X-PSC-Access-Token": "t"},
    )
    url = answer.json()["viewer_url"]
    assert browser.client.get(url).status_code == 303
    assert browser.client.get(url).status_code == 401
