"""Serving the stock OHIF build at the origin root, plus our ``/app-config.js``.

OHIF's ``index.html`` hard-codes ``/app-config.js`` and its bundles at ``/``, and OHIF is a
single-page app: any route it owns (``/viewer``, ``/segmentation``...) must answer
``index.html``. These routes are mounted LAST, after ``/dicomweb`` and ``/api``.

Caching (file names as shipped by ``@ohif/app`` 3.13.2, see scripts/fetch-ohif):

* content-hashed names (``app.bundle.0f6159c501addfe9.js``, ``89.bundle.<16 hex>.js``,
  ``<16 hex>.wasm``, ``<16 hex>.woff2``) never change: one year, ``immutable``;
* ``index.html``, ``/app-config.js`` and the page around OHIF (``/drimbox/panel/*``):
  ``no-cache`` (revalidated on every load, so a new OHIF build or a new configuration is
  picked up at once);
* anything else (``1602.css``, ``ort/*.wasm``, icons...): a short ``max-age`` plus ETag.

Pre-compressed siblings (``<file>.br`` / ``<file>.gz``, written by scripts/fetch-ohif) are
served when the browser accepts them; other text-like answers are gzipped on the fly by
:func:`compression_middleware`, which never touches multipart/related frames (already
compressed pixel data) nor images.
"""

from __future__ import annotations

import mimetypes
import os
import re
from pathlib import Path, PurePosixPath

from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware, GZipResponder
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bff.errors import NotFound, ViewerError
from bff.settings import Settings
from bff.web.boot import (
    REGISTER_JS,
    REGISTER_PATH,
    SERVICE_WORKER_PATH,
    load_boot_files,
    preload_header,
    service_worker_js,
)
from bff.web.errors import render_error

CACHE_IMMUTABLE = "public, max-age=31536000, immutable"
CACHE_SHORT = "public, max-age=300"
CACHE_NO_CACHE = "no-cache"

# Path prefixes owned by the API: an unknown path below them is a 404, never index.html.
API_PREFIXES = ("/dicomweb", "/api")
#: Probe-like paths the SPA fallback must never answer with OHIF's page (200): the probes
#: themselves are answered before the routes (bff/web/observe.py); /metrics is not public
#: in production; /healthz is no probe of ours (a balancer asking it gets a 404).
PROBE_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/metrics"})

# A content hash right before the extension: ``app.bundle.0f6159c501addfe9.js``,
# ``0ddf166f7a343eda.wasm``, ``a34f9d1faa5f3315.woff2`` (rspack's [contenthash:16]).
_HASHED_NAME = re.compile(r"(?:^|\.)[0-9a-f]{16,}\.[A-Za-z0-9]+$")
# The last path segment has an extension: "looks like a file" (so no SPA fallback).
_FILE_LIKE = re.compile(r"\.[A-Za-z0-9]{1,8}$")

_MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".json": "application/json",
    ".jsonc": "application/json",
    ".map": "application/json",
    ".webapp": "application/x-web-app-manifest+json",
    ".wasm": "application/wasm",
    ".svg": "image/svg+xml",
    ".woff2": "font/woff2",
    ".woff": "font/woff",
    ".ico": "image/x-icon",
    ".png": "image/png",
    ".xml": "application/xml",
}

#: The page around OHIF (ohif-config/panel/): ES modules and their stylesheet, served at
#: ``/drimbox/panel/<name>`` with ``no-cache`` like ``/app-config.js``. A fixed list: nothing
#: else of ohif-config/ (package.json, node_modules/, tests/) is ever served, and a name is
#: never a path. ``main.js`` is the entry module app-config.js loads; it imports the others.
PANEL_FILES = frozenset(
    {
        "api.js",
        "backoff.js",
        "codes.js",
        "dom.js",
        "download.js",
        "format.js",
        "http-errors.js",
        "identity.js",
        "main.js",
        "mention.js",
        "notice.js",
        "pacs-export.js",
        "panel.css",
        "progress.js",
        "series-choice.js",
        "session.js",
        "tools.js",
        "unsupported.js",
    }
)
PANEL_PREFIX = "/drimbox/panel/"

# Pre-compressed siblings, best first.
_PRECOMPRESSED = (("br", ".br"), ("gzip", ".gz"))

_MISSING_DIST_PAGE = """<!doctype html>
<html lang="fr"><head><meta charset="utf-8"><title>Visionneuse indisponible</title></head>
<body>
<h1>Visionneuse indisponible</h1>
<p>Les fichiers de la visionneuse (OHIF) ne sont pas installés sur ce serveur.</p>
<p>Administrateur : exécutez <code>scripts/fetch-ohif</code> depuis la racine du projet,
puis rechargez cette page.</p>
</body></html>
"""


class OhifSite:
    """The stock OHIF build and our files around it: its routes, and its index.html for
    the routes the BFF guards before handing them to OHIF. Its boot files are read once,
    here, for the preload header and the boot worker (bff/web/boot.py)."""

    def __init__(self, settings: Settings) -> None:
        self.dist = settings.ohif_dist
        self.config = settings.ohif_config
        self.boot_files = load_boot_files(settings.ohif_config, settings.ohif_dist)
        self.preload = preload_header(self.boot_files)

    def index(self, request: Request) -> Response:
        """OHIF's index.html, with its boot files announced for preloading."""
        index = self.dist / "index.html"
        if not index.is_file():
            return HTMLResponse(
                _MISSING_DIST_PAGE,
                status_code=503,
                headers={"Cache-Control": "no-store", "Retry-After": "60"},
            )
        extra = {"Link": self.preload} if self.preload else None
        return _file_response(request, index, CACHE_NO_CACHE, ".html", extra)

    def routes(self) -> list[BaseRoute]:
        """Routes serving ``/app-config.js`` and the OHIF build; mount them after the API."""
        app_config = self.config / "app-config.js"
        worker = service_worker_js(self.boot_files)

        async def serve_app_config(request: Request) -> Response:
            if not app_config.is_file():
                return render_error(
                    request,
                    503,
                    ViewerError.code,
                    "La configuration de la visionneuse est absente.",
                )
            return _file_response(request, app_config, CACHE_NO_CACHE, ".js")

        async def serve_panel(request: Request) -> Response:
            # Our own modules around OHIF, from ohif-config/panel/ (a fixed list: nothing
            # else leaks; JavaScript as text/javascript, which module scripts require).
            name: str = request.path_params["name"]
            if name not in PANEL_FILES:
                return _not_found(request)
            path = self.config / "panel" / name
            return _file_response(request, path, CACHE_NO_CACHE, path.suffix)

        async def serve_dist(request: Request) -> Response:
            return _serve_dist(request, self, request.path_params["path"])

        async def serve_boot_worker(request: Request) -> Response:
            # bff/web/boot.py: no-cache, so that a new OHIF (a new list) replaces the worker.
            return Response(
                worker, media_type=_MEDIA_TYPES[".js"], headers={"Cache-Control": CACHE_NO_CACHE}
            )

        async def serve_boot_register(request: Request) -> Response:
            return Response(
                REGISTER_JS,
                media_type=_MEDIA_TYPES[".js"],
                headers={"Cache-Control": CACHE_NO_CACHE},
            )

        return [
            Route("/app-config.js", serve_app_config, methods=["GET", "HEAD"]),
            Route(PANEL_PREFIX + "{name}", serve_panel, methods=["GET", "HEAD"]),
            Route(SERVICE_WORKER_PATH, serve_boot_worker, methods=["GET", "HEAD"]),
            Route(REGISTER_PATH, serve_boot_register, methods=["GET", "HEAD"]),
            Route("/{path:path}", serve_dist, methods=["GET", "HEAD"]),
        ]


def static_routes(settings: Settings) -> list[BaseRoute]:
    """The OHIF site's routes (:class:`OhifSite`)."""
    return OhifSite(settings).routes()


def _serve_dist(request: Request, site: OhifSite, raw_path: str) -> Response:
    url_path = "/" + raw_path
    if _is_api_path(url_path):
        return _not_found(request)
    relative = _safe_relative(raw_path)
    if relative is None:
        return _not_found(request)
    dist = site.dist
    if relative.parts and (dist / "index.html").is_file():
        candidate = _inside(dist, dist.joinpath(*relative.parts))
        if candidate is not None and candidate.is_file() and candidate.name != "index.html":
            cache = CACHE_IMMUTABLE if _HASHED_NAME.search(candidate.name) else CACHE_SHORT
            return _file_response(request, candidate, cache, candidate.suffix.lower())
        if (candidate is None or not candidate.is_file()) and _FILE_LIKE.search(relative.name):
            return _not_found(request)
    # index.html, and the SPA fallback: OHIF's router owns every other path (/viewer...).
    return site.index(request)


def _is_api_path(url_path: str) -> bool:
    return url_path in PROBE_PATHS or any(
        url_path == p or url_path.startswith(p + "/") for p in API_PREFIXES
    )


def _safe_relative(raw_path: str) -> PurePosixPath | None:
    """The request path as a relative path, or None if it tries to leave the root.

    ``raw_path`` is already percent-decoded by the server, so ``%2e%2e`` arrives as ``..``.
    Dot segments, hidden files (``.ohif-integrity``), backslashes and NULs are refused.
    """
    if "\\" in raw_path or "\x00" in raw_path:
        return None
    parts = [p for p in raw_path.split("/") if p]
    if any(p.startswith(".") for p in parts):
        return None
    return PurePosixPath(*parts)


def _inside(root: Path, candidate: Path) -> Path | None:
    """``candidate`` with symlinks resolved, if it stays below ``root``."""
    try:
        resolved = candidate.resolve()
        root_resolved = root.resolve()
    except (OSError, RuntimeError):
        return None
    return resolved if resolved.is_relative_to(root_resolved) else None


def _media_type(suffix: str) -> str:
    if suffix in _MEDIA_TYPES:
        return _MEDIA_TYPES[suffix]
    guessed, _ = mimetypes.guess_type("x" + suffix)
    return guessed or "application/octet-stream"


def _accepted_encodings(request: Request) -> set[str]:
    accepted: set[str] = set()
    for item in request.headers.get("accept-encoding", "").split(","):
        token, _, params = item.partition(";")
        token = token.strip().lower()
        q = params.strip().lower()
        if token and not (q.startswith("q=") and _is_zero(q[2:])):
            accepted.add(token)
    return accepted


def _is_zero(value: str) -> bool:
    try:
        return float(value) == 0.0
    except ValueError:
        return False


def _file_response(
    request: Request,
    path: Path,
    cache_control: str,
    suffix: str,
    extra_headers: dict[str, str] | None = None,
) -> Response:
    media_type = _media_type(suffix)
    headers = {"Cache-Control": cache_control, "X-Content-Type-Options": "nosniff"}
    headers.update(extra_headers or {})
    served = path
    accepted = _accepted_encodings(request)
    for encoding, extension in _PRECOMPRESSED:
        sibling = path.with_name(path.name + extension)
        if encoding in accepted and sibling.is_file():
            served = sibling
            headers["Content-Encoding"] = encoding
            break
    if served is not path or _compressible(media_type):
        headers["Vary"] = "Accept-Encoding"
    try:
        stat = os.stat(served)
    except OSError:
        return _not_found(request)
    response = FileResponse(served, stat_result=stat, media_type=media_type, headers=headers)
    etag = response.headers.get("etag")
    if etag and _etag_matches(request.headers.get("if-none-match", ""), etag):
        kept = {k: v for k, v in response.headers.items() if k.lower() in _NOT_MODIFIED_KEEP}
        return Response(status_code=304, headers=kept)
    return response


_NOT_MODIFIED_KEEP = frozenset({"cache-control", "etag", "vary", "last-modified"})


def _etag_matches(if_none_match: str, etag: str) -> bool:
    if not if_none_match:
        return False
    wanted = etag.removeprefix("W/")
    tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
    return "*" in tags or wanted in tags


def _not_found(request: Request) -> Response:
    # Rendered here rather than raised: these routes must also work in apps that did not
    # install the exception handlers (the e2e shell server).
    return render_error(request, NotFound.status, NotFound.code, NotFound.message)


# --- compression ------------------------------------------------------------------------

_COMPRESSIBLE_EXACT = frozenset(
    {
        "application/javascript",
        "application/json",
        "application/manifest+json",
        "application/wasm",
        "application/x-web-app-manifest+json",
        "application/xml",
        "image/svg+xml",
    }
)


def _compressible(content_type: str) -> bool:
    """Allow-list: text, JS, JSON (incl. ``application/dicom+json``), SVG, XML, WASM.

    Everything else is passed through untouched: ``multipart/related`` frames (HTJ2K is
    already compressed, and cornerstone's stream reader compares the bytes it reads with
    ``Content-Length``), images, fonts, ``application/dicom``, octet streams.
    """
    media_type = content_type.partition(";")[0].strip().lower()
    if media_type.startswith("text/"):
        return media_type != "text/event-stream"
    return (
        media_type in _COMPRESSIBLE_EXACT
        or media_type.endswith("+json")
        or media_type.endswith("+xml")
    )


class _SelectiveGZipResponder(GZipResponder):
    """starlette's GZipResponder, bypassed entirely for non-compressible responses."""

    def __init__(self, app: ASGIApp, minimum_size: int, compresslevel: int) -> None:
        super().__init__(app, minimum_size, compresslevel=compresslevel)
        self._passthrough = False

    async def send_with_compression(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = Headers(raw=message.get("headers", []))
            self._passthrough = "content-encoding" in headers or not _compressible(
                headers.get("content-type", "")
            )
        if self._passthrough:
            await self.send(message)
            return
        await super().send_with_compression(message)


class SelectiveGZipMiddleware(GZipMiddleware):
    """GZip only text-like answers (see :func:`_compressible`); never multipart frames."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or "gzip" not in Headers(scope=scope).get("accept-encoding", ""):
            await self.app(scope, receive, send)
            return
        responder = _SelectiveGZipResponder(self.app, self.minimum_size, self.compresslevel)
        await responder(scope, receive, send)


def compression_middleware() -> Middleware:
    """On-the-fly gzip for text-like answers of 1 KiB or more (level 6: cheap on 2 cores)."""
    return Middleware(SelectiveGZipMiddleware, minimum_size=1024, compresslevel=6)
