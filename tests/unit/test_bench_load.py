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


# --- the wrk frame phase (bench/wrk.py) ---------------------------------------------------


def _viewer_tables(script: str) -> tuple[list[list[str]], list[tuple[int, str | None]]]:
    """The PATHS and VIEWERS tables of a generated script, read back."""
    import re

    paths_block = script.split("local PATHS = {\n", 1)[1].split("\n}\n", 1)[0]
    lists = [re.findall(r'"([^"]*)",', group) for group in paths_block.split("  },")[:-1]]
    rows = re.findall(r"\{ list = (\d+), cookie = (nil|\"[^\"]*\") \}", script)
    viewers = [(int(n), None if c == "nil" else c.strip('"')) for n, c in rows]
    return lists, viewers


def test_the_wrk_script_gives_each_thread_its_viewers_frames_in_ohifs_order() -> None:
    from bench.wrk import WrkViewer, lua_script

    sops = [f"1.2.{n}" for n in range(5)]
    paths = tuple(
        u.removeprefix("http://vi1.localhost:8080")
        for u in frame_urls("http://vi1.localhost:8080", "1.9", "1.8", sops)
    )
    other = tuple(reversed(paths))
    script = lua_script(
        [WrkViewer(paths, "s=one"), WrkViewer(paths, "s=two"), WrkViewer(other, "s=three")],
        host="vi1.localhost:8080",
    )
    lists, viewers = _viewer_tables(script)
    # middle-out (2, 3, 1, 4, 0), each distinct list written once
    assert lists[0] == [
        f"/dicomweb/studies/1.9/series/1.8/instances/1.2.{n}/frames/1" for n in (2, 3, 1, 4, 0)
    ]
    assert lists == [list(paths), list(other)]
    # thread k is viewer k: its list and its own Cookie header
    assert viewers == [(1, "s=one"), (1, "s=two"), (2, "s=three")]
    assert 'thread:set("viewer", numbered)' in script
    assert 'if spec.cookie then headers["Cookie"] = spec.cookie end' in script
    assert f'local ACCEPT = "{FRAME_ACCEPT}"' in script
    assert 'local HOST = "vi1.localhost:8080"' in script


def test_the_static_run_sends_no_cookie_and_hostile_values_are_refused() -> None:
    from bench.wrk import WrkViewer, lua_script, lua_string

    script = lua_script([WrkViewer(("/a", "/b"), None)] * 2, host="127.0.0.1:81")
    _, viewers = _viewer_tables(script)
    assert viewers == [(1, None), (1, None)]
    assert 'Cookie"] = "' not in script
    assert lua_string('a"b\\c') == '"a\\"b\\\\c"'
    with pytest.raises(ValueError):
        lua_string("s=1\r\nX-Injected: 1")
    with pytest.raises(ValueError):
        lua_script([WrkViewer((), "s=1")], host="h")


def test_the_viewer_and_done_lines_parse_into_the_load_keys() -> None:
    from bench.wrk import WrkOutcome, parse_done_line, parse_viewer_line, summary

    one = parse_viewer_line(
        "drimbox-wrk-viewer viewer=1 frames=3 bytes=3000000 errors=0 first_us=10000000 "
        "last_us=11000000 latencies_us=10000,20000,30000\n"
    )
    two = parse_viewer_line(
        "drimbox-wrk-viewer viewer=2 frames=3 bytes=1000000 errors=0 first_us=10500000 "
        "last_us=12000000 latencies_us=40000,50000,500000"
    )
    done = parse_done_line(
        "drimbox-wrk-done requests=6 bytes=4001000 duration_us=2100000 p50_us=45000 "
        "p99_us=900000 connect=0 read=1 write=0 status=0 timeout=0"
    )
    assert one is not None and two is not None and done is not None
    assert one.latencies_us == (10000, 20000, 30000) and two.first_us == 10_500_000
    assert done.socket_errors["read"] == 1 and done.p99_us == 900_000
    assert parse_viewer_line("Running 11m test @ http://127.0.0.1:8/") is None
    assert parse_done_line("drimbox-wrk-done requests=x") is None

    out = summary(WrkOutcome(viewers=2, lines={1: one, 2: two}, done=done, client_cpu_s=0.5))
    # frames/s over the viewers' lines: 6 frames from 10.0 s (first request) to 12.0 s
    # (last answer), not wrk's duration (2.1 s)
    assert out["frames"] == 6 and out["wall_s"] == 2.0 and out["frames_per_s"] == 3.0
    assert out["mb_per_s"] == 2.0
    # p50/p99 of the per-request latencies (nearest rank); wrk's histogram beside them
    assert out["p50_ms"] == 30.0 and out["p99_ms"] == 500.0
    assert out["wrk_p50_ms"] == 45.0 and out["wrk_p99_ms"] == 900.0
    assert out["client_cpu_s"] == 0.5
    assert out["errors"] == ["wrk socket errors: {'read': 1}"]


def test_a_viewer_without_its_line_or_with_errors_is_reported() -> None:
    from bench.wrk import WrkOutcome, parse_viewer_line, summary

    bad = parse_viewer_line(
        "drimbox-wrk-viewer viewer=1 frames=2 bytes=20 errors=2 first_us=1 last_us=2 latencies_us="
    )
    assert bad is not None and bad.latencies_us == ()
    out = summary(WrkOutcome(viewers=2, lines={1: bad}, done=None))
    assert out["errors"] == [
        "viewer 1: 2 answers not a 200 multipart/related frame",
        "viewer 2: no line from wrk (its frames did not all come)",
    ]
    # no per-request latency (a server that does not echo X-Request-ID): no p50/p99 but
    # wrk's, and here no wrk line either
    assert out["latency_source"] == "wrk-histogram" and out["p99_ms"] is None


def test_the_wrk_load_keys_keep_the_issue_keys() -> None:
    from bench.load import keys_of
    from bench.wrk import WrkOutcome, parse_viewer_line, summary

    line = parse_viewer_line(
        "drimbox-wrk-viewer viewer=1 frames=4 bytes=4000000 errors=0 first_us=0 "
        "last_us=2000000 latencies_us=10000,20000,30000,500000"
    )
    assert line is not None
    bff = summary(WrkOutcome(viewers=1, lines={1: line}))
    out = keys_of(bff, 1.0, {"frames_per_s": 8.0})
    assert set(LOAD_KEYS) <= set(out)
    assert out["frames_per_s"] == 2.0 and out["bff_cpu_ms_per_frame"] == 250.0
    assert out["nginx_frames_per_s"] == 8.0


def test_the_cookie_header_follows_the_jar() -> None:
    import httpx

    from bench.wrk import cookie_header

    jar = httpx.Cookies()
    jar.set("drimbox_session", "abc", domain="vi1.localhost")
    jar.set("idp", "zzz", domain="localhost.local", path="/")
    assert cookie_header(jar, "http://vi1.localhost:8080/dicomweb/x") == "drimbox_session=abc"
    assert cookie_header(httpx.Cookies(), "http://vi1.localhost:8080/x") is None


def test_wrk_runs_one_thread_per_viewer_with_six_connections_each() -> None:
    from bench.wrk import wrk_command

    command = wrk_command(Path("/w/s.lua"), "http://127.0.0.1:8/", 20, 600.0)
    options = {
        flag: command[command.index(flag) + 1] for flag in ("-t", "-c", "-d", "--timeout", "-s")
    }
    assert options["-t"] == "20" and options["-c"] == "120"  # the browser's six per viewer
    assert options["--timeout"] == "120s"  # no wrk-side timeout within the bench's bound
    assert options["-d"] == "660s"  # past the bench's bound: the bench stops wrk
    assert options["-s"] == "/w/s.lua" and "--latency" in command
    assert command[-1] == "http://127.0.0.1:8/"
