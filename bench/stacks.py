"""The stacks the bench opens: Source (identity provider + BFF), Consumer (Consumer BFF ->
Source BFF over real mutual TLS -> PACS) and the baseline (stock OHIF straight on the
PACS through a same-origin proxy). Each BFF runs as its own process (bench.serve), fresh
for every run (cold caches), so its RSS and CPU time can be read from /proc."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from bench.procstat import TreeSampler
from bff.settings import PROJECT_ROOT

SOURCE_LOCATION = "vi1.localhost"
CONSUMER_HOST = "co.localhost"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes] | None, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


def settings_env(values: dict[str, object]) -> dict[str, str]:
    """Python setting names -> DRIMBOX_* environment variables."""
    env: dict[str, str] = {}
    for name, value in values.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        env[f"DRIMBOX_{name.upper()}"] = text
    return env


TUNABLE_SETTINGS = frozenset(
    {"DRIMBOX_LOSSY_CODEC", "DRIMBOX_LOSSY_QUALITY", "DRIMBOX_TRANSCODE_WORKERS"}
)


class ServerProcess:
    """``python -m bench.serve ...`` in its own process group, sampled from /proc."""

    def __init__(self, args: list[str], port: int, env: dict[str, str], log: Path) -> None:
        self.args, self.port, self.env, self.log = args, port, env, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.sampler: TreeSampler | None = None

    def __enter__(self) -> ServerProcess:
        # The caller's DRIMBOX_* settings are dropped, except the codec knobs under test.
        clean = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("DRIMBOX_") or k in TUNABLE_SETTINGS
        }
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bench.serve", *self.args],
                env={**clean, **self.env},
                cwd=PROJECT_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            _wait_port(self.port, self.proc)
        except Exception:
            self.__exit__()
            raise
        self.sampler = TreeSampler(self.proc.pid).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.sampler is not None:
            self.sampler.stop()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # uvicorn shuts its pool down on SIGTERM
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def stats(self) -> dict[str, Any]:
        if self.sampler is None:
            return {}
        self.sampler.sample()
        return {
            "peak_rss_bytes": self.sampler.peak_rss_bytes,
            "main_peak_rss_bytes": self.sampler.main_peak_rss_bytes,
            "cpu_s": round(self.sampler.cpu_seconds, 2),
            "processes": len(self.sampler.hwm),
        }


@contextmanager
def thread_server(app: Any, port: int) -> Iterator[str]:
    """A small in-process server (the identity provider: only the login goes through it)."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("identity provider did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def baseline_config(directory: Path) -> Path:
    """ohif-config/app-config.js pointed at the same-origin PACS proxy, OHIF's default
    Accept header (no HTJ2K), without our panel script: the stock viewer on the PACS."""
    directory.mkdir(parents=True, exist_ok=True)
    text = (PROJECT_ROOT / "ohif-config" / "app-config.js").read_text(encoding="utf-8")
    replaced = {
        r"window\.location\.origin \+ '/dicomweb'": "window.location.origin + '/dicom-web'",
        r"(?m)^\s*acceptHeader:.*\n": "",
        r"document\.head\.appendChild\(panel\);": "",
    }
    for pattern, new in replaced.items():
        text, count = re.subn(pattern, new, text)
        if count != 1:
            raise RuntimeError(f"app-config.js changed: {pattern!r} found {count} times")
    (directory / "app-config.js").write_text(text, encoding="utf-8")
    (directory / "drimbox-panel.js").write_text("", encoding="utf-8")
    return directory


def write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def http_ok(url: str, host: str | None = None) -> bool:
    try:
        headers = {"Host": host} if host else {}
        return httpx.get(url, headers=headers, timeout=5).status_code < 500
    except httpx.HTTPError:
        return False
