"""The logic of the load benchmark and of the bench's JSON (issue 16 items 5 and 6): the
frame order, the percentiles, the keys. The benchmark's numbers are never asserted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.__main__ import LOAD_KEYS, ROW_KEYS, RUNS, _summary, plan
from bench.load import (
    FRAME_ACCEPT,
    LoadResult,
    ViewerRun,
    check_multipart,
    combine,
    frame_urls,
    instance_order,
    load_keys,
    middle_out,
    nginx_static_conf,
    percentile,
)


def test_middle_out_starts_at_the_middle_and_alternates_nearest_first() -> None:
    assert middle_out(7) == [3, 4, 2, 5, 1, 6, 0]
    assert middle_out(6) == [3, 4, 2, 5, 1, 0]
    assert middle_out(1) == [0]
    assert middle_out(0) == []


def test_middle_out_from_a_given_slice_covers_every_frame_once() -> None:
    assert middle_out(5, start=0) == [0, 1, 2, 3, 4]
    assert middle_out(5, start=4) == [4, 3, 2, 1, 0]
    order = middle_out(1300, start=17)
    assert sorted(order) == list(range(1300))
    with pytest.raises(ValueError):
        middle_out(5, start=5)


def test_percentile_is_the_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([5.0, 1.0, 3.0], 50) == 3.0
    assert percentile([2.0], 99) == 2.0
    assert percentile([], 50) is None
    with pytest.raises(ValueError):
        percentile(values, 0)


def test_frames_follow_the_stack_order_of_the_metadata() -> None:
    metadata = [
        {"00080018": {"Value": [f"1.2.{n}"]}, "00200013": {"Value": [n]}} for n in (3, 1, 2)
    ]
    assert instance_order(metadata) == ["1.2.1", "1.2.2", "1.2.3"]
    urls = frame_urls("http://h", "1.9", "1.8", instance_order(metadata))
    assert urls == [
        "http://h/dicomweb/studies/1.9/series/1.8/instances/1.2.2/frames/1",
        "http://h/dicomweb/studies/1.9/series/1.8/instances/1.2.3/frames/1",
        "http://h/dicomweb/studies/1.9/series/1.8/instances/1.2.1/frames/1",
    ]


def test_the_frame_accept_is_ohifs() -> None:
    assert FRAME_ACCEPT.startswith(
        "multipart/related; type=application/octet-stream; transfer-syntax=1.2.840.10008.1.2.4.81"
    )
    assert FRAME_ACCEPT.endswith("transfer-syntax=*")


def test_combine_spans_first_asked_to_last_received_over_every_viewer() -> None:
    a = ViewerRun(latencies_s=[0.1, 0.2], frame_bytes=100, first_frame_at=10.0, last_frame_at=12.0)
    b = ViewerRun(latencies_s=[0.3], frame_bytes=50, first_frame_at=10.5, last_frame_at=14.0)
    c = ViewerRun(error="RuntimeError: frame answered HTTP 403")
    result = combine(3, [a, b, c])
    assert result.frames == 3 and result.bytes == 150 and result.wall_s == 4.0
    assert result.errors == ["RuntimeError: frame answered HTTP 403"]


def test_load_keys_shape_from_a_tiny_fake_run() -> None:
    bff = LoadResult(2, 4, 2.0, 4_000_000, [0.01, 0.02, 0.03, 0.5], [])
    nginx = LoadResult(2, 4, 0.5, 4_000_000, [0.001] * 4, [])
    out = load_keys(bff, 1.0, nginx)
    assert set(LOAD_KEYS) <= set(out)
    assert out["viewers"] == 2
    assert out["frames_per_s"] == 2.0
    assert out["mb_per_s"] == 2.0
    assert out["p50_ms"] == 20.0 and out["p99_ms"] == 500.0
    assert out["bff_cpu_s"] == 1.0 and out["bff_cpu_ms_per_frame"] == 250.0
    assert out["nginx_frames_per_s"] == 8.0
    assert load_keys(bff, None, None)["nginx_frames_per_s"] is None


def test_every_row_has_the_issue_keys_and_the_bffs_cpu() -> None:
    samples: list[dict[str, Any]] = [
        {"t_first_s": 3.0, "t_all_s": 15.0, "wire_bytes": 10, "bff": {"cpu_s": 2.0}},
        {"t_first_s": 2.0, "t_all_s": 17.0, "wire_bytes": 10, "bff": {"cpu_s": 4.0}},
    ]
    row = _summary(samples)
    assert set(ROW_KEYS) <= set(row)
    assert row["t_first_s"] == 2.5 and row["cpu_s"] == 3.0
    baseline = _summary(
        [{"t_first_s": 5.0, "t_all_s": 20.0, "wire_bytes": 1, "proxy": {"cpu_s": 1}}]
    )
    assert baseline["cpu_s"] == 1


def test_the_runs_of_the_issue_and_the_plan() -> None:
    for run in ("source", "source_prepared", "source_http2", "consumer", "consumer_lossy"):
        assert run in RUNS
    assert "baseline" in RUNS
    assert plan(None, None) == (list(RUNS), 20)
    assert plan(None, 2) == ([], 2)
    assert plan("source,baseline", None) == (["source", "baseline"], 0)
    assert plan("source", 5) == (["source"], 5)


def test_nginx_serves_the_frames_as_one_multipart_type() -> None:
    conf = nginx_static_conf(Path("/p"), Path("/r"), 8)
    assert "listen 127.0.0.1:8;" in conf and "root /r;" in conf and "sendfile on;" in conf
    assert "boundary=drimbox-bench-static" in conf


def test_the_http2_row_counts_the_protocols_of_the_balancers_log() -> None:
    from bench.balancer import protocols

    log = [
        '127.0.0.1 [2026-12-05T20:31:00+00:00] "GET /viewer HTTP/2.0" 200 10 0.001 study=- x',
        '127.0.0.1 [2026-12-05T20:31:00+00:00] "GET /dicomweb/studies/1.2 HTTP/2.0" 200 1 0.0',
        '127.0.0.1 [2026-12-05T20:31:00+00:00] "GET / HTTP/1.1" 200 1 0.0 study=- x',
        "garbage",
    ]
    assert protocols(log) == {"HTTP/2.0": 2, "HTTP/1.1": 1}


def test_a_malformed_frame_answer_fails_the_load_run() -> None:
    kind = 'multipart/related; type="application/octet-stream"; boundary=b1'
    check_multipart(kind, b"--b1\r\nContent-Type: x\r\n\r\ndata\r\n--b1--\r\n", "u")
    with pytest.raises(RuntimeError, match="does not open with its boundary"):
        check_multipart(kind, b'{"version":1}\n--b1\r\n', "u")
    with pytest.raises(RuntimeError, match="not multipart/related"):
        check_multipart("application/json", b"{}", "u")


def test_a_get_is_sent_again_once_on_a_connection_closed_under_it() -> None:
    import asyncio

    import httpx

    from bench.load import get

    calls: list[int] = []

    def closing_once(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 1:  # the keep-alive connection the server closed
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        if len(calls) >= 3:
            raise httpx.RemoteProtocolError("again")
        return httpx.Response(200, content=b"ok")

    async def scenario() -> tuple[int, int]:
        run = ViewerRun()
        async with httpx.AsyncClient(transport=httpx.MockTransport(closing_once)) as client:
            answer = await get(client, "http://h/x", run)
            with pytest.raises(httpx.RemoteProtocolError):  # only once: the next one fails
                await get(client, "http://h/y", run)
        return answer.status_code, run.retries

    assert asyncio.run(scenario()) == (200, 2)
