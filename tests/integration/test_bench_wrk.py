"""The wrk frame phase of ``scripts/bench --load`` (issue 16 item 5, bench/wrk.py) with
Debian's real wrk against a small real HTTP server (uvicorn): every viewer's frames once,
each with that viewer's Cookie, the script readable by its owner only and deleted after the
run, wrk stopped by SIGINT once every viewer's line is in. Counts only: no timing asserted."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bench.stacks import free_port, thread_server
from bench.wrk import WrkViewer, available, run_wrk, summary

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not available(), reason="needs Debian's wrk (scripts/install)"),
]

BODY = b"--b1\r\nContent-Type: application/octet-stream\r\n\r\nframe\r\n--b1--\r\n"
FRAME_TYPE = 'multipart/related; type="application/octet-stream"; boundary=b1'
#: Frame 3 of the viewer whose cookie is this one is refused (a non-frame answer).
REFUSED = ("s=two", "/f/3")


class FrameServer:
    """Answers /f/{n} with a one-part multipart/related frame, echoing X-Request-ID as the
    BFF does; records what each request carried and the modes of the wrk scripts present
    in ``work`` while it serves."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.seen: list[tuple[str, str | None, str | None, str]] = []
        self.script_modes: set[int] = set()
        self.lock = threading.Lock()
        self.app = Starlette(routes=[Route("/f/{n}", self.frame)])

    async def frame(self, request: Request) -> Response:
        cookie = request.headers.get("cookie")
        request_id = request.headers.get("x-request-id", "")
        with self.lock:
            self.seen.append((request.url.path, cookie, request.headers.get("host"), request_id))
            for script in self.work.glob("*.lua"):
                self.script_modes.add(script.stat().st_mode & 0o777)
        echo = {"x-request-id": request_id}
        if (cookie, request.url.path) == REFUSED:
            return Response(b'{"code":"E403"}', 403, media_type="application/json", headers=echo)
        return Response(BODY, media_type=FRAME_TYPE, headers=echo)


def test_wrk_replays_each_viewers_frames_once_with_its_cookie(tmp_path: Path) -> None:
    server = FrameServer(tmp_path)
    paths = tuple(f"/f/{n}" for n in (2, 3, 1, 4, 0))  # middle-out over 5 frames
    viewers = [WrkViewer(paths, "s=one"), WrkViewer(paths, "s=two")]
    port = free_port()
    with thread_server(server.app, port):
        outcome = run_wrk(
            f"http://127.0.0.1:{port}/",
            f"vi1.localhost:{port}",
            viewers,
            tmp_path,
            phase_timeout_s=60,
        )

    # every frame once per viewer, each with that viewer's cookie and the given Host
    assert Counter((path, cookie) for path, cookie, _, _ in server.seen) == {
        (path, cookie): 1 for path in paths for cookie in ("s=one", "s=two")
    }
    assert {host for _, _, host, _ in server.seen} == {f"vi1.localhost:{port}"}
    # thread k is viewer k: its request ids carry its number
    numbers = {"s=one": "1", "s=two": "2"}
    for _, cookie, _, request_id in server.seen:
        assert cookie is not None and request_id.split("-")[2] == numbers[cookie]

    # one line per viewer, then wrk stopped by SIGINT ran done() and exited
    assert sorted(outcome.lines) == [1, 2]
    assert [outcome.lines[v].frames for v in (1, 2)] == [5, 5]
    assert [len(outcome.lines[v].latencies_us) for v in (1, 2)] == [5, 5]
    assert outcome.lines[1].errors == 0 and outcome.lines[2].errors == 1  # the refused one
    assert outcome.lines[1].bytes == 5 * len(BODY)
    assert outcome.done is not None and outcome.done.requests == 10
    assert outcome.done.socket_errors == {
        "connect": 0,
        "read": 0,
        "write": 0,
        "status": 1,
        "timeout": 0,
    }
    assert outcome.returncode == 0
    assert outcome.client_cpu_s is not None

    # the script (session cookies) was private while it existed, and is gone
    assert server.script_modes == {0o600}
    assert list(tmp_path.glob("*.lua")) == []

    out = summary(outcome)
    assert out["frames"] == 10 and out["latency_source"] == "per-request"
    assert out["errors"] == ["viewer 2: 1 answers not a 200 multipart/related frame"]


def test_a_viewer_that_never_completes_is_an_error_not_a_hang(tmp_path: Path) -> None:
    """A frame that is never answered (until the test releases it): the bench stops wrk at
    its bound and reports the viewer, instead of waiting forever."""
    release = threading.Event()

    async def frame(request: Request) -> Response:
        return Response(BODY, media_type=FRAME_TYPE)

    async def hang(request: Request) -> Response:
        while not release.is_set():
            await asyncio.sleep(0.05)
        return Response(b"", 503)

    app = Starlette(routes=[Route("/f/{n}", frame), Route("/hang", hang)])
    port = free_port()
    with thread_server(app, port):
        try:
            outcome = run_wrk(
                f"http://127.0.0.1:{port}/",
                f"127.0.0.1:{port}",
                [WrkViewer(("/f/1", "/hang", "/f/2"), None)],
                tmp_path,
                phase_timeout_s=3,
            )
        finally:
            release.set()
    assert outcome.lines == {}
    assert outcome.errors[0] == "wrk: 0 of 1 viewers had all their frames after 3 s"
    assert summary(outcome)["errors"][-1].startswith("viewer 1: no line from wrk")
    assert outcome.returncode is not None  # stopped, not left running
    assert list(tmp_path.glob("*.lua")) == []
