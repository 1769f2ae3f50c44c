"""Operability (issue 15 item 4) against real parts: Orthanc, the local identity
provider, a real OIDC sign-in, a throw-away PostgreSQL. Probes, Prometheus metrics
after a viewing, the request id carried into the audit and upstream, the access log."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pydicom
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bff.app import create_app
from bff.demo.dataset import DemoStudy
from tests.access import ScriptedBrowser
from tests.conftest import Pacs, make_settings
from tests.integration.pg import find_bin_dir, temporary_postgres
from tests.servers import free_port, live_server
from tests.source_stack import LOCATION, SourceStack
from tests.waiting import poll

pytestmark = pytest.mark.integration

INTERNAL_HOST = "10.0.0.7:8080"  # what a balancer's probe may send as Host


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one series in a Prometheus exposition (0 when absent)."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        series, _, value = line.rpartition(" ")
        if series.split("{")[0] != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', series))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(value)
    return 0.0


def first_instance(study: DemoStudy) -> tuple[str, str]:
    ds = pydicom.dcmread(study.instance_files[0], stop_before_pixels=True)
    return str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)


def header_recording_proxy(target: str, seen: list[str | None]) -> Starlette:
    """A real HTTP server in front of Orthanc: forwards GETs, records each one's
    X-Request-ID header."""

    async def forward(request: Request) -> Response:
        seen.append(request.headers.get("x-request-id"))
        async with httpx.AsyncClient(base_url=target, timeout=60) as client:
            upstream = await client.get(
                request.url.path,
                params=request.query_params,
                headers={"Accept": request.headers.get("accept", "*/*")},
            )
        headers = {"content-type": upstream.headers.get("content-type", "")}
        return Response(upstream.content, upstream.status_code, headers=headers)

    return Starlette(routes=[Route("/{path:path}", forward)])


# -- probes -------------------------------------------------------------------------------


def test_probes_answer_whatever_the_host_and_never_the_ohif_page(pacs: Pacs) -> None:
    settings = make_settings(
        pacs.dicomweb_url, locations=f"{LOCATION}={pacs.dicomweb_url}", open_access=False
    )
    with live_server(create_app(settings)) as url, httpx.Client(base_url=url) as client:
        live = client.get("/livez", headers={"Host": INTERNAL_HOST})
        assert live.status_code == 200
        assert live.json() == {"status": "alive"}
        ready = client.get("/readyz", headers={"Host": INTERNAL_HOST})
        assert ready.status_code == 200, ready.text
        body = ready.json()
        assert body["status"] == "ready"
        assert body["checks"] == {"database": "ok", "transcode_pool": "ok", "disk_cache": "ok"}
        assert body["warnings"] == {}  # the PACS answers; no identity provider configured
        assert "http" not in ready.text  # no URL in the answer
        assert ready.headers["cache-control"] == "no-store"
        # Every other path still obeys the trusted hosts (400 E416)...
        assert client.get("/", headers={"Host": INTERNAL_HOST}).status_code == 400
        assert client.get("/readyz", headers={"Host": LOCATION}).json()["status"] == "ready"
        # The catch-all (OHIF's page, 200) answers no probe-like path: a balancer
        # configured with the old /healthz gets a 404, not a healthy-looking page.
        assert client.get("/healthz", headers={"Host": LOCATION}).status_code == 404


def test_metrics_listener_is_separate_and_the_public_one_has_none(pacs: Pacs) -> None:
    """With DRIMBOX_METRICS_PORT (always so in production) /metrics is a 404 on the
    main listener; the internal listener serves it (bff/__main__.py starts it)."""
    from bff.web.observe import Operations, operations_app

    ops = Operations()
    port = free_port()
    settings = make_settings(pacs.dicomweb_url, metrics_port=port)
    internal = f"http://127.0.0.1:{port}"
    # One event loop for both listeners, as bff/__main__.py runs them.
    also = [{"app": operations_app(ops), "port": port}]
    with live_server(create_app(settings, operations=ops), also=also) as url:
        public = httpx.get(url + "/metrics")
        assert public.status_code == 404
        assert "drimbox_" not in public.text
        scraped = httpx.get(internal + "/metrics")
        assert scraped.status_code == 200
        assert "drimbox_http_request_duration_seconds" in scraped.text
        assert httpx.get(internal + "/readyz").json()["status"] == "ready"
        assert httpx.get(internal + "/").status_code == 404


def test_unreachable_pacs_and_provider_are_warnings_not_unreadiness(pacs: Pacs) -> None:
    closed = free_port()
    settings = make_settings(
        f"http://127.0.0.1:{closed}/dicom-web",
        psc_client_secret="s" * 32,
        psc_issuer=f"http://127.0.0.1:{closed}/psc",
    )
    with live_server(create_app(settings)) as url:
        ready = httpx.get(url + "/readyz")
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["status"] == "ready"
    assert body["warnings"] == {"pacs:*": "error", "identity_provider:psc": "error"}
    assert str(closed) not in ready.text  # names, never addresses


@pytest.mark.skipif(find_bin_dir() is None, reason="PostgreSQL is not installed")
def test_a_database_outage_makes_the_replica_unready(pacs: Pacs, tmp_path: Path) -> None:
    cluster = temporary_postgres(tmp_path / "pg")
    archive_url = cluster.__enter__()
    running = True
    try:
        settings = make_settings(pacs.dicomweb_url, archive_url=archive_url)
        with live_server(create_app(settings)) as url:
            assert httpx.get(url + "/readyz").status_code == 200
            cluster.__exit__(None, None, None)  # the database goes away; the BFF runs on
            running = False
            ready = poll(lambda: (r := httpx.get(url + "/readyz")).status_code == 503 and r)
            assert ready, "readiness never failed with the database down"
            body = ready.json()
            assert body["status"] == "not_ready"
            assert body["checks"]["database"] != "ok"
            assert body["checks"]["transcode_pool"] == "ok"
            assert httpx.get(url + "/livez").status_code == 200  # alive all the same
    finally:
        if running:
            cluster.__exit__(None, None, None)


# -- metrics after a viewing, request id ------------------------------------------------


@pytest.fixture()
def observed_bff(pacs: Pacs) -> Iterator[tuple[str, list[str | None]]]:
    """A BFF whose PACS is Orthanc behind a proxy recording the request ids it gets."""
    seen: list[str | None] = []
    with live_server(header_recording_proxy(pacs.process.base_url, seen), lifespan="off") as px:
        settings = make_settings(px + "/dicom-web")
        with live_server(create_app(settings)) as url:
            yield url, seen


def test_metrics_show_the_listed_series_after_a_viewing(
    observed_bff: tuple[str, list[str | None]], pacs: Pacs
) -> None:
    url, _ = observed_bff
    study = pacs.study.study_uid
    series, sop = first_instance(pacs.study)
    root = f"{url}/dicomweb/studies/{study}/series/{series}"
    with httpx.Client(timeout=60) as client:
        frame = f"{root}/instances/{sop}/frames/1"
        assert client.get(frame).status_code == 200  # a fresh BFF: waits for its frame
        assert client.get(f"{root}/metadata").status_code == 200
        assert client.get(frame).status_code == 200  # from the memory cache
        missing = f"{url}/dicomweb/studies/{study}/series/1.2.3.999/metadata"
        assert client.get(missing).status_code >= 400  # Orthanc answers 404
        text = client.get(url + "/metrics").text
    duration = "drimbox_http_request_duration_seconds_count"
    assert metric(text, duration, route="dicomweb_frames", method="GET", status="2xx") == 2
    assert metric(text, duration, route="dicomweb_metadata", method="GET", status="2xx") == 1
    assert metric(text, "drimbox_frame_wait_seconds_count") >= 1
    assert metric(text, "drimbox_frame_cache_hits_total", cache="memory") >= 1
    assert metric(text, "drimbox_frame_cache_misses_total", cache="memory") >= 1
    assert 'drimbox_frame_cache_hits_total{cache="disk"}' in text
    assert metric(text, "drimbox_upstream_errors_total", upstream="pacs", code="404") >= 1
    assert metric(text, "drimbox_transcode_pool_workers") == 2
    assert "drimbox_transcode_pool_jobs " in text
    assert metric(text, "drimbox_readahead_budget_bytes") > 0
    assert "drimbox_logins_total" in text or "drimbox_logins" in text
    assert metric(text, "drimbox_draining") == 0
    # Low-cardinality labels: no UID anywhere in the exposition.
    assert study not in text and series not in text and sop not in text


def test_the_request_id_is_echoed_and_sent_upstream(
    observed_bff: tuple[str, list[str | None]], pacs: Pacs
) -> None:
    url, seen = observed_bff
    study = pacs.study.study_uid
    series, _ = first_instance(pacs.study)
    metadata = f"{url}/dicomweb/studies/{study}/series/{series}/metadata"
    given = "balancer-0123456789abcdef"
    answer = httpx.get(metadata, headers={"X-Request-ID": given}, timeout=60)
    assert answer.status_code == 200
    assert answer.headers["x-request-id"] == given
    assert given in seen  # the PACS was asked with the same id
    # A hostile id (too long, odd characters) is replaced, never echoed nor forwarded.
    hostile = "x" * 65
    other = httpx.get(url + "/livez", headers={"X-Request-ID": hostile})
    assert other.headers["x-request-id"] != hostile
    assert re.fullmatch(r"[0-9a-f]{32}", other.headers["x-request-id"])
    injected = httpx.get(url + "/api/session", headers={"X-Request-ID": "abc\tdef12345"})
    assert injected.headers["x-request-id"] != "abc\tdef12345"


# -- sign-in: logins by outcome, request id in the audit, access log ------------------------


def test_logins_by_outcome_audit_request_id_and_a_quiet_access_log(
    source: SourceStack, caplog: pytest.LogCaptureFixture
) -> None:
    base = f"http://{LOCATION}:{source.stack.bff_port}"
    browser = ScriptedBrowser()
    try:
        before = browser.get(base + "/metrics").text
        caplog.set_level(logging.INFO, logger="bff.access")
        done = browser.sign_in(source.link(), "fcp", "dominique.pat-trois")
        assert done.status_code == 303, done.text
        # A callback nobody started: a failed login (E43x), its query never logged.
        forged = browser.get(base + "/auth/callback?code=SECRETCODE&state=SECRETSTATE")
        assert forged.status_code >= 400
        after = browser.get(base + "/metrics").text
    finally:
        browser.close()
    name = "drimbox_logins_total"
    success = metric(after, name, provider="fcp", outcome="success")
    assert success == metric(before, name, provider="fcp", outcome="success") + 1
    failed = metric(after, name, provider="unknown", outcome="failed")
    assert failed == metric(before, name, provider="unknown", outcome="failed") + 1
    # The audit entries of the grant carry the request id of the callback request.
    granted = [e for e in source.audit() if e["event"] == "access_granted"][-1]
    assert re.fullmatch(r"[0-9a-f]{32}", granted["request_id"])

    def callbacks() -> list[dict[str, object]]:
        access = [r for r in caplog.records if r.name == "bff.access"]
        return [r.access for r in access if r.access["path"].startswith("/auth/callback")]  # type: ignore[attr-defined]

    # Each access line is written once its answer is sent: wait for both.
    assert poll(lambda: len(callbacks()) == 2), callbacks()
    access = [r for r in caplog.records if r.name == "bff.access"]
    assert granted["request_id"] in {fields["request_id"] for fields in callbacks()}
    for record in access:
        line = json.dumps(record.access) + record.getMessage()  # type: ignore[attr-defined]
        assert "SECRET" not in line and "code=" not in line and "state=" not in line
        assert "?" not in record.access["path"]  # type: ignore[attr-defined]
