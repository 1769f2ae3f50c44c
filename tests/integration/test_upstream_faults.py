"""Upstream faults a real Orthanc cannot be made to produce on demand.

The double is a real HTTP server speaking DICOMweb: it forwards to the real Orthanc and
only spoils the series stream (truncated after some instances, or stalled).
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from bff.app import create_app
from bff.dicomweb.multipart import MultipartParser, encode_part, parse_content_type
from bff.dicomweb.upstream import DicomwebUpstream
from bff.services import services_of
from tests.conftest import Pacs, make_settings
from tests.integration.test_facade import FRAME_ACCEPT, ct_series
from tests.servers import free_port, live_server

pytestmark = pytest.mark.integration


def spoiling_pacs(
    orthanc_url: str, *, keep_parts: int, stall: bool, hung_up: threading.Event | None = None
) -> Starlette:
    """``hung_up``: set when the client closes a stalled stream (it gave up waiting)."""

    async def forward(request: Request) -> Response:
        path = request.url.path
        is_series_retrieve = re.fullmatch(r"/dicom-web/studies/[0-9.]+/series/[0-9.]+", path)
        async with httpx.AsyncClient(base_url=orthanc_url, timeout=30) as client:
            upstream = await client.get(
                path,
                params=dict(request.query_params),
                headers={"Accept": request.headers.get("accept", "*/*")},
            )
        if not is_series_retrieve:
            return Response(
                upstream.content,
                upstream.status_code,
                media_type=upstream.headers.get("content-type"),
            )
        _, params = parse_content_type(upstream.headers["content-type"])
        parser = MultipartParser(params["boundary"], max_part_bytes=64 * 1024**2)
        parts = parser.feed(upstream.content)
        boundary = params["boundary"]

        async def body() -> AsyncIterator[bytes]:
            for part in parts[:keep_parts]:
                yield encode_part(part.body, part.headers["content-type"], boundary)
            if stall:
                try:
                    await asyncio.sleep(3600)
                finally:  # cancelled: the client hung up
                    if hung_up is not None:
                        hung_up.set()
            # Truncated: half of the next part, then the stream ends without its closing
            # delimiter.
            nxt = encode_part(parts[keep_parts].body, "application/dicom", boundary)
            yield nxt[: len(nxt) // 2]

        return StreamingResponse(body(), media_type=upstream.headers["content-type"])

    return Starlette(routes=[Route("/dicom-web/{path:path}", forward)])


def _uids(bff_url: str, study_uid: str) -> tuple[str, list[str]]:
    with httpx.Client(base_url=bff_url, timeout=30) as client:
        series_uid, _ = ct_series(client, study_uid)
        rows = client.get(f"/dicomweb/studies/{study_uid}/series/{series_uid}/metadata").json()
    return series_uid, [r["00080018"]["Value"][0] for r in rows]


def test_truncated_stream_fails_only_the_frames_not_delivered(pacs: Pacs) -> None:
    keep = 5
    with live_server(spoiling_pacs(pacs.process.base_url, keep_parts=keep, stall=False)) as fake:
        settings = make_settings(fake + "/dicom-web")
        with live_server(create_app(settings)) as bff_url:
            study_uid = pacs.study.study_uid
            series_uid, sops = _uids(bff_url, study_uid)
            statuses = {}
            for sop_uid in sops:
                response = httpx.get(
                    f"{bff_url}/dicomweb/studies/{study_uid}/series/{series_uid}"
                    f"/instances/{sop_uid}/frames/1",
                    headers={"Accept": FRAME_ACCEPT},
                    timeout=30,
                )
                statuses[sop_uid] = (response.status_code, response.headers.get("x-error-code"))
    ok = [s for s, (status, _) in statuses.items() if status == 200]
    failed = {code for status, code in statuses.values() if status != 200}
    assert len(ok) == keep
    assert failed == {"E506"}
    assert all(status in (200, 502) for status, _ in statuses.values())


def test_stalled_stream_is_given_up_on_and_the_waiting_frame_answered(pacs: Pacs) -> None:
    """The PACS stops sending mid-series (for an hour): the BFF gives up on the stream on
    its read timeout (it hangs up, the double sees it) and the viewer's frame request is
    answered with an error instead of waiting for the PACS."""
    hung_up = threading.Event()
    spoiled = spoiling_pacs(pacs.process.base_url, keep_parts=2, stall=True, hung_up=hung_up)
    with live_server(spoiled) as fake:
        settings = make_settings(
            fake + "/dicom-web", upstream_read_timeout=2.0, frame_wait_timeout=4.0
        )
        with live_server(create_app(settings)) as bff_url:
            study_uid = pacs.study.study_uid
            series_uid, sops = _uids(bff_url, study_uid)
            response = httpx.get(
                f"{bff_url}/dicomweb/studies/{study_uid}/series/{series_uid}"
                f"/instances/{sops[-1]}/frames/1",
                headers={"Accept": FRAME_ACCEPT},
                timeout=30,  # a deadline for the answer, far below the stall
            )
            # The stream was closed by the BFF, not by the end of the stall.
            assert hung_up.wait(30), "the BFF never gave up on the stalled stream"
    assert response.status_code in (502, 504)
    assert response.json()["code"] in ("E504", "E506")


class CountingTransport(httpx.AsyncBaseTransport):
    """httpx's own transport, counting the requests it is handed (each attempt)."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.attempts = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.attempts += 1
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_pacs_down_gives_a_clear_502_at_the_first_attempt(pacs: Pacs) -> None:
    """Nothing listens where the PACS should be: one attempt (a refused connection is not
    asked again), and a clear French error at once."""
    dead = f"http://127.0.0.1:{free_port()}/dicom-web"
    settings = make_settings(dead)
    app = create_app(settings)
    transport = CountingTransport()
    counted = DicomwebUpstream(
        dead,
        origin="*",
        connect_timeout=settings.upstream_connect_timeout,
        read_timeout=settings.upstream_read_timeout,
        transport=transport,
    )
    with live_server(app) as bff_url:
        locations = services_of(app).origins.locations
        assert isinstance(locations, dict)
        real, locations["*"] = locations["*"], counted
        try:
            response = httpx.get(
                f"{bff_url}/dicomweb/studies/{pacs.study.study_uid}/series", timeout=30
            )
        finally:
            locations["*"] = real
    asyncio.run(counted.aclose())
    assert response.status_code == 502
    body = response.json()
    assert body["code"] == "E503"
    assert "injoignable" in body["message"]
    assert transport.attempts == 1
