"""Operability pieces (issue 15 item 4): request ids, JSON logs, route families, the
readiness checks' bounds and sharing. The real-server tests are in
tests/integration/test_operations.py and test_drain.py."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import pytest

from bff.logs import configure_logging
from bff.requestid import accept_or_new, bind_request_id, reset_request_id
from bff.web.drain import Drain
from bff.web.metrics import Metrics, route_family
from bff.web.probes import Readiness, answer
from tests.clock import ManualClock


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_a_well_formed_request_id_is_kept_anything_else_replaced() -> None:
    assert accept_or_new("0123456789abcdef0123456789abcdef") == "0123456789abcdef0123456789abcdef"
    assert accept_or_new("7f1c2a9e-1b2c-4d5e-8f90-123456789abc").startswith("7f1c2a9e")
    for hostile in (None, "", "short", "x" * 65, "abc\ndef-ghijk", "<script>alert(1)</script>"):
        fresh = accept_or_new(hostile)
        assert fresh != hostile and len(fresh) == 32


def test_route_families_never_carry_a_uid() -> None:
    frames = "/dicomweb/studies/1.2.3/series/1.2.3.4/instances/1.2.3.4.5/frames/1"
    assert route_family(frames) == "dicomweb_frames"
    assert route_family("/dicomweb/studies/1.2.3/series/1.2.3.4/metadata") == "dicomweb_metadata"
    assert route_family("/dicomweb/studies/1.2.3/metadata") == "dicomweb_metadata"
    assert route_family("/dicomweb/studies") == "dicomweb_other"
    assert route_family("/auth/callback") == "auth"
    assert route_family("/api/download/1.2.3") == "download"
    assert route_family("/api/source/studies/1.2.3/series/4") == "source_api"
    assert route_family("/api/admin/kos") == "admin_api"
    assert route_family("/api/session") == "api"
    assert route_family("/IHEInvokeImageDisplay") == "page"
    assert route_family("/viewer") == "page"
    assert route_family("/app.bundle.0f6159c501addfe9.js") == "static"
    assert route_family("/readyz") == "probe"
    metrics = Metrics()
    metrics.login("an-attacker-chosen-name", "whatever")
    text = metrics.exposition().decode()
    assert 'drimbox_logins_total{outcome="error",provider="unknown"} 1.0' in text
    assert "an-attacker-chosen-name" not in text


def test_json_logs_one_object_per_line_with_the_request_id() -> None:
    stream = io.StringIO()
    handler = configure_logging("INFO", "json", stream)
    token = bind_request_id("req-0123456789")
    try:
        logging.getLogger("bff.test").info("hello %s", "world")
        fields = {"method": "GET", "path": "/auth/callback", "status": 303}
        logging.getLogger("bff.access").info("line", extra={"access": fields})
    finally:
        reset_request_id(token)
        logging.getLogger().removeHandler(handler)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "hello world" and first["request_id"] == "req-0123456789"
    assert first["level"] == "INFO" and first["logger"] == "bff.test" and "time" in first
    assert second["path"] == "/auth/callback" and second["status"] == 303


@pytest.mark.anyio
async def test_readiness_shares_one_run_and_bounds_each_check() -> None:
    clock = ManualClock()
    asked = 0
    hang = asyncio.Event()

    async def database() -> None:
        nonlocal asked
        asked += 1

    async def pacs() -> None:
        await hang.wait()  # never answers

    readiness = Readiness({"database": database}, {"pacs:vi1": pacs}, timeout=0.05, clock=clock)
    results = await asyncio.gather(*(readiness.result() for _ in range(20)))
    assert readiness.runs == 1 and asked == 1  # a probe storm asks once
    assert all(r is results[0] for r in results)
    assert results[0].ready  # a silent PACS is a warning, not unreadiness
    assert results[0].warnings == {"pacs:vi1": "timeout"}
    await readiness.result()
    assert readiness.runs == 1  # within the TTL
    clock.advance(readiness.ttl + 0.1)
    await readiness.result()
    assert readiness.runs == 2


@pytest.mark.anyio
async def test_a_failing_hard_check_or_a_drain_is_503() -> None:
    async def broken() -> None:
        raise OSError("disk full: /secret/path")

    result = await Readiness({"disk_cache": broken}, {}).result()
    status, body = answer(result, draining=False)
    assert status == 503 and body["checks"] == {"disk_cache": "error"}
    assert "secret" not in json.dumps(body)  # details go to the log only
    assert answer(result, draining=True) == (503, {"status": "draining"})
    assert answer(None, draining=False) == (503, {"status": "starting"})


@pytest.mark.anyio
async def test_drain_waits_for_requests_in_flight() -> None:
    drain = Drain()
    drain.entered()
    assert not await drain.idle(0)  # the grace spent with one in flight
    waiting = asyncio.create_task(drain.idle(30))
    await asyncio.sleep(0)
    drain.left()
    assert await waiting


@pytest.mark.anyio
async def test_upstream_calls_carry_the_request_id_and_report_failures() -> None:
    """The transport under the PACS client and the Consumer's client towards Sources
    (bff/dicomweb/observe.py): the unit part; tests/integration/test_operations.py sees
    the id arrive at a real server in front of Orthanc."""
    import httpx

    from bff.dicomweb.observe import ObservedTransport

    seen: list[str | None] = []
    errors: list[tuple[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("x-request-id"))
        if request.url.path == "/down":
            raise httpx.ConnectError("refused", request=request)
        if request.url.path == "/slow":
            raise httpx.ReadTimeout("slow", request=request)
        return httpx.Response(503 if request.url.path == "/busy" else 200)

    transport = ObservedTransport(
        httpx.MockTransport(handler), "source", lambda u, c: errors.append((u, c))
    )
    async with httpx.AsyncClient(transport=transport, base_url="https://source") as client:
        token = bind_request_id("req-abcdef0123")
        try:
            assert (await client.get("/ok")).status_code == 200
            assert (await client.get("/busy")).status_code == 503
            for path in ("/down", "/slow"):
                with pytest.raises(httpx.TransportError):
                    await client.get(path)
        finally:
            reset_request_id(token)
        await client.get("/ok")  # outside a request: no header
    assert seen == ["req-abcdef0123"] * 4 + [None]
    assert errors == [("source", "503"), ("source", "connect"), ("source", "timeout")]
