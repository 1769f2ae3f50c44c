"""``create_app(settings)``: the BFF as a Starlette application. No I/O at import time.

The lifespan creates the shared things (upstream clients, the transcoding pool, the
frame cache, the retriever) and closes them.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException

from bff.dicomweb.cache import FrameCache
from bff.dicomweb.retrieve import Retriever
from bff.dicomweb.routes import dicomweb_routes
from bff.dicomweb.upstream import DicomwebUpstream
from bff.errors import ViewerError
from bff.settings import Settings
from bff.transcode import EncodeParams, TranscodePool
from bff.web import errors as web_errors
from bff.web.static import compression_middleware, static_routes

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        pool = TranscodePool(settings.workers)
        pool.warm_up()
        upstream = DicomwebUpstream(
            settings.upstream_url,
            origin="default",
            auth=settings.upstream_auth,
            connect_timeout=settings.upstream_connect_timeout,
            read_timeout=settings.upstream_read_timeout,
        )
        app.state.locations = {"*": upstream}
        app.state.retriever = Retriever(
            FrameCache(settings.cache_max_bytes),
            pool,
            EncodeParams(quality=settings.lossy_quality),
            frame_timeout=settings.frame_wait_timeout,
            max_part_bytes=settings.max_part_bytes,
            workers=settings.workers + 1,
        )
        try:
            yield
        finally:
            await app.state.retriever.aclose()
            await upstream.aclose()
            pool.close()

    app = Starlette(
        routes=[*dicomweb_routes(), *static_routes(settings)],
        middleware=[compression_middleware()],
        exception_handlers={
            ViewerError: web_errors.viewer_error,
            HTTPException: web_errors.http_error,
            Exception: web_errors.unexpected_error,
        },
        lifespan=lifespan,
    )
    app.state.settings = settings
    # Until the login flows exist, only the demo/test mode may open studies (issue 3).
    app.state.open_access = settings.mode == "demo"
    return app
