"""The servers the bench measures, each in its own process (so that its RSS and CPU time
are its own, and the bench's Python does not share its GIL):

- ``python -m bench.serve bff``: the BFF with settings from the environment
  (``DRIMBOX_*``), plus the mutual-TLS Source API listener when
  ``DRIMBOX_SOURCE_API_PORT`` is set (as ``drimbox-viewer serve`` runs them);
  With ``BENCH_PROFILE=PATH``, the main process runs under cProfile (stats in PATH.<pid>);
- ``python -m bench.serve baseline --port P --pacs URL --config-dir D``: the stock OHIF
  build and a generated app-config.js, with a same-origin streaming reverse proxy to the
  PACS's DICOMweb (Orthanc 1.10 has no CORS): the "no BFF, lossless" baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from bff.settings import Settings
from bff.source.listener import source_api_options

#: Response headers of the PACS passed on by the baseline proxy.
PASSED_HEADERS = ("content-type", "content-length", "content-encoding")


def _config(app: Any, host: str, port: int, **extra: Any) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=2,
        **extra,
    )


async def _serve_all(configs: list[uvicorn.Config]) -> None:
    await asyncio.gather(*(uvicorn.Server(c).serve() for c in configs))


def run_bff() -> None:
    from bff.__main__ import _configure_logging
    from bff.app import create_app

    settings = Settings.from_env()
    _configure_logging(settings.log_level)
    # Whatever the level, the retrieval timings land in the bench's log of this server.
    for name in ("bff.dicomweb.retrieve", "bff.dicomweb.series_metadata", "bff.source.wado"):
        logging.getLogger(name).setLevel(logging.INFO)
    app = create_app(settings)
    configs = [_config(app, settings.host, settings.port)]
    if settings.source_api_port:
        options = source_api_options(app, settings)  # the same listener as the BFF's
        configs.append(_config(options.pop("app"), settings.host, options.pop("port"), **options))
    asyncio.run(_serve_all(configs))


def baseline_app(pacs_dicomweb: str, config_dir: Path) -> Starlette:
    """OHIF (stock build, generated config) + a streaming proxy ``/dicom-web/`` -> PACS."""
    from bff.web.static import static_routes

    settings = Settings.from_env({}, mode="demo", ohif_config=config_dir)
    client = httpx.AsyncClient(
        base_url=pacs_dicomweb.rstrip("/"),
        timeout=httpx.Timeout(60.0, connect=5.0),
        limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
    )

    async def proxy(request: Request) -> Response:
        path = request.path_params["path"]
        headers = {k: v for k, v in request.headers.items() if k.lower() == "accept"}
        upstream = client.build_request(
            "GET", f"/{path}", params=request.url.query or None, headers=headers
        )
        answer = await client.send(upstream, stream=True)

        async def body() -> AsyncIterator[bytes]:
            try:
                async for chunk in answer.aiter_raw():
                    yield chunk
            finally:
                await answer.aclose()

        passed = {k: v for k, v in answer.headers.items() if k.lower() in PASSED_HEADERS}
        return StreamingResponse(body(), status_code=answer.status_code, headers=passed)

    return Starlette(
        routes=[Route("/dicom-web/{path:path}", proxy), *static_routes(settings)],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.serve")
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("bff")
    base = sub.add_parser("baseline")
    base.add_argument("--port", type=int, required=True)
    base.add_argument("--pacs", required=True, help="the PACS's DICOMweb base URL")
    base.add_argument("--config-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.what == "bff":
        profile = os.environ.get("BENCH_PROFILE")
        if profile:  # cProfile of the BFF's main process (event loop), written on exit
            profile = f"{profile}.{os.getpid()}"
            profiler = cProfile.Profile()

            def dump(*_: object) -> None:
                # uvicorn re-raises SIGTERM once shut down: write the stats then.
                profiler.disable()
                profiler.dump_stats(profile)
                sys.exit(0)

            signal.signal(signal.SIGTERM, dump)
            profiler.runcall(run_bff)
            dump()
        else:
            run_bff()
    else:
        app = baseline_app(args.pacs, args.config_dir)
        asyncio.run(_serve_all([_config(app, "127.0.0.1", args.port)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
