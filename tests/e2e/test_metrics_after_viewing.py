"""Issue 15's done-when, in Chromium: after a viewing, ``/metrics`` shows the listed
series (request latency by route family, frame wait, cache hits and misses, pool queue
depth, readahead, upstream errors, logins), and every answer the browser got carried
its request id."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import Pacs
from tests.e2e.test_viewer import wait_for_image
from tests.integration.test_operations import metric

pytestmark = pytest.mark.e2e

LISTED = (
    "drimbox_http_request_duration_seconds_bucket",
    "drimbox_http_requests_in_flight",
    "drimbox_frame_wait_seconds_bucket",
    "drimbox_frame_cache_hits_total",
    "drimbox_frame_cache_misses_total",
    "drimbox_transcode_pool_jobs",
    "drimbox_readahead_reserved_bytes",
    "drimbox_upstream_errors_total",
    "drimbox_logins_total",
)


def test_metrics_after_a_viewing_in_chromium(pacs: Pacs, viewer_url: str, page: Any) -> None:
    study = pacs.study
    answers: list[Any] = []
    page.on("response", lambda r: answers.append(r) if r.url.startswith(viewer_url) else None)
    page.goto(
        f"{viewer_url}/viewer?StudyInstanceUIDs={study.study_uid}"
        f"&initialSeriesInstanceUID={study.series_uids[-1]}"
    )
    wait_for_image(page)
    text = httpx.get(viewer_url + "/metrics", timeout=30).text
    duration = "drimbox_http_request_duration_seconds_count"
    for route in ("page", "static", "dicomweb_metadata", "dicomweb_frames"):
        assert metric(text, duration, route=route, method="GET", status="2xx") >= 1, route
    # Every frame request looked in the memory cache (a hit, or a miss that waited).
    looked = metric(text, "drimbox_frame_cache_hits_total", cache="memory") + metric(
        text, "drimbox_frame_cache_misses_total", cache="memory"
    )
    frames = metric(text, duration, route="dicomweb_frames", method="GET", status="2xx")
    assert looked >= frames >= 1
    assert metric(text, "drimbox_transcode_pool_workers") >= 1
    for name in LISTED:
        assert name in text, name
    assert study.study_uid not in text  # no UID in any label
    # Every DICOMweb answer the browser got names its own request.
    dicomweb = [a for a in answers if "/dicomweb/" in a.url]
    assert dicomweb
    ids = [a.headers.get("x-request-id") for a in dicomweb]
    assert None not in ids and len(set(ids)) == len(ids)
