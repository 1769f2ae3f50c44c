"""Real servers for tests: uvicorn in a background thread on a free loopback port, and a
forwarding proxy that counts what a real upstream (Orthanc) is asked."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def live_server(
    app: Any,
    *,
    port: int | None = None,
    timeout: float = 30,
    lifespan: Literal["auto", "on", "off"] = "on",
    also: list[dict[str, Any]] | None = None,
    **tls: Any,
) -> Iterator[str]:
    """Serve ``app`` on loopback; yields its base URL. ``tls``: uvicorn's ssl_* options
    (e.g. a mutual-TLS listener: ssl_certfile, ssl_keyfile, ssl_ca_certs, ssl_cert_reqs).
    ``also``: more listeners in the same event loop (uvicorn.Config arguments: port, ssl_*,
    and ``app`` when not ``app``, e.g. :func:`bff.source.listener.source_api_options`)."""
    port = port or free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan=lifespan,
        timeout_graceful_shutdown=2,
        **tls,
    )
    server = uvicorn.Server(config)
    others = [
        uvicorn.Server(
            uvicorn.Config(
                **{
                    "app": app,
                    "host": "127.0.0.1",
                    "log_level": "warning",
                    "lifespan": "off",
                    "timeout_graceful_shutdown": 2,
                    **extra,
                }
            )
        )
        for extra in also or []
    ]

    async def serve_all() -> None:
        await asyncio.gather(server.serve(), *(o.serve() for o in others))

    thread = threading.Thread(target=lambda: asyncio.run(serve_all()), daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not (server.started and all(o.started for o in others)):
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        for o in others:
            o.should_exit = True
        server.should_exit = True
        thread.join(timeout=15)


#: What a proxy may do to an answer's bytes on their way: (request path, body) -> body.
BodyFilter = Callable[[str, AsyncIterator[bytes]], AsyncIterator[bytes]]


def counting_proxy(target: str, asked: list[str], body: BodyFilter | None = None) -> Starlette:
    """A real HTTP server in front of ``target`` (e.g. Orthanc): forwards every GET as it
    streams, and appends its path (with the query, if any) to ``asked`` as it arrives.
    ``body``: passes each answer's bytes on (e.g. holds them, for a slow PACS). Serve it
    with ``lifespan="off"``."""

    async def forward(request: Request) -> Response:
        query = request.url.query
        asked.append(request.url.path + (f"?{query}" if query else ""))
        client = httpx.AsyncClient(base_url=target, timeout=60)
        upstream = await client.send(
            client.build_request(
                "GET",
                request.url.path,
                params=request.query_params,
                headers={"Accept": request.headers.get("accept", "*/*")},
            ),
            stream=True,
        )

        async def close() -> None:
            await upstream.aclose()
            await client.aclose()

        headers = {
            k: v
            for k, v in upstream.headers.items()
            if k.lower() in ("content-type", "content-encoding")
        }
        raw = upstream.aiter_raw()
        return StreamingResponse(
            body(request.url.path, raw) if body is not None else raw,
            upstream.status_code,
            headers=headers,
            background=BackgroundTask(close),
        )

    return Starlette(routes=[Route("/{path:path}", forward)])
