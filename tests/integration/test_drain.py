"""Graceful drain on SIGTERM (issue 15 item 2), on a real ``drimbox-viewer serve``
process: readiness turns 503 at once while requests are still served, a study download
in flight finishes, then the process exits 0.

The download is held in flight by a real HTTP server in front of Orthanc that stops
forwarding the series stream after its first bytes until the test opens its gate (the
PACS being slow is a fault the real Orthanc cannot be made to produce on demand)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import threading
import zipfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO

import httpx
import pytest

from bff.settings import PROJECT_ROOT
from tests.conftest import Pacs
from tests.servers import BodyFilter, counting_proxy, free_port, live_server
from tests.waiting import poll

pytestmark = pytest.mark.integration


class Gate:
    def __init__(self) -> None:
        self.held = threading.Event()  # a series stream is waiting at the gate
        self.open = threading.Event()


def hold_first_series(gate: Gate) -> BodyFilter:
    """The first series retrieval (``.../studies/{s}/series/{x}``) pauses after its first
    chunk until the gate opens; everything else passes."""

    async def body(path: str, raw: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        parts = path.rstrip("/").split("/")
        hold = len(parts) >= 2 and parts[-2] == "series" and not gate.held.is_set()
        if hold:
            gate.held.set()
        first = True
        async for chunk in raw:
            yield chunk
            if first and hold:
                first = False
                await asyncio.to_thread(gate.open.wait, 120)

    return body


@pytest.fixture()
def gate_and_proxy(pacs: Pacs) -> Iterator[tuple[Gate, str]]:
    gate = Gate()
    proxy = counting_proxy(pacs.process.base_url, [], body=hold_first_series(gate))
    with live_server(proxy, lifespan="off") as url:
        try:
            yield gate, url
        finally:
            gate.open.set()


def serve(tmp_path: Path, pacs_url: str, port: int, stderr: IO[bytes]) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DRIMBOX_UPSTREAM_URL": pacs_url + "/dicom-web",
        "DRIMBOX_OPEN_ACCESS": "true",
        "DRIMBOX_ARCHIVE_URL": f"sqlite:///{tmp_path / 'archive.db'}",
        "DRIMBOX_AUDIT_LOG": str(tmp_path / "audit.jsonl"),
        "DRIMBOX_FRAME_DISK_CACHE_DIR": str(tmp_path / "frames"),
        "DRIMBOX_PREPARED_DIR": str(tmp_path / "prepared"),
        "DRIMBOX_TRANSCODE_WORKERS": "1",
        "DRIMBOX_LOG_FORMAT": "json",
        "DRIMBOX_DRAIN_NOTICE_S": "0",
        "DRIMBOX_DRAIN_GRACE_S": "120",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "bff", "serve", "--port", str(port)],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )


def log_lines(tmp_path: Path) -> list[dict[str, object]]:
    text = (tmp_path / "stderr.log").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_sigterm_drains_a_download_in_flight_and_exits_0(
    pacs: Pacs, gate_and_proxy: tuple[Gate, str], tmp_path: Path
) -> None:
    gate, proxy = gate_and_proxy
    port = free_port()
    with (tmp_path / "stderr.log").open("wb") as stderr:
        process = serve(tmp_path, proxy, port, stderr)
    base = f"http://127.0.0.1:{port}"
    try:
        started = poll(lambda: _status(base + "/livez") == 200, timeout=60)
        assert started, (tmp_path / "stderr.log").read_text()
        assert httpx.get(base + "/readyz", timeout=10).json()["status"] == "ready"
        received = io.BytesIO()
        first_bytes = threading.Event()
        outcome: dict[str, object] = {}

        def download() -> None:
            url = f"{base}/api/download/{pacs.study.study_uid}"
            with httpx.stream("GET", url, timeout=120) as response:
                outcome["status"] = response.status_code
                for chunk in response.iter_raw():
                    received.write(chunk)
                    first_bytes.set()

        reader = threading.Thread(target=download)
        reader.start()
        assert first_bytes.wait(60) and gate.held.wait(60)  # the download is in flight
        process.send_signal(signal.SIGTERM)
        draining = poll(lambda: _status(base + "/readyz") == 503)
        assert draining, "readiness never turned 503 after SIGTERM"
        assert httpx.get(base + "/readyz").json() == {"status": "draining"}
        assert _status(base + "/livez") == 200  # new requests are still served
        assert process.poll() is None  # waiting for the download
        gate.open.set()
        reader.join(120)
        assert outcome["status"] == 200
        with zipfile.ZipFile(received) as archive:  # complete: its central directory reads
            names = archive.namelist()
        assert "DICOMDIR" in names
        assert sum(name.startswith("DICOM/") and not name.endswith("/") for name in names) >= 40
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    lines = log_lines(tmp_path)  # JSON logs: one object per line
    drain = [line for line in lines if str(line["message"]).startswith("SIGTERM: draining")]
    assert len(drain) == 1 and "1 request(s) in flight" in str(drain[0]["message"])
    assert any(line["message"] == "drained: no request in flight, stopping" for line in lines)
    downloads = [line for line in lines if line.get("route") == "download"]
    assert [d["status"] for d in downloads] == [200]
    assert all(line.get("request_id") for line in downloads)


def _status(url: str) -> int:
    try:
        return httpx.get(url, timeout=5).status_code
    except httpx.HTTPError:
        return 0
