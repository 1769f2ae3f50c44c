"""Browser-side defences on every answer (issue 13, item 8), set in one place: a pure ASGI
middleware that adds the security headers to each response's start.

- ``Content-Security-Policy``: only this origin's scripts (OHIF's two inline boot
  scripts allowed by their hash, computed from the build at start: no
  ``'unsafe-inline'`` for scripts, no ``eval``), WebAssembly for the image decoders,
  workers from this origin (the boot service worker, OHIF's decoders), forms posting only
  here and to the configured identity providers (a login form's redirect),
  ``frame-ancestors 'none'``. A worker runs under the policy of its own script's
  response: JavaScript files get the same policy plus ``'unsafe-eval'``, because stock
  OHIF's image decoding worker (cornerstone's emscripten codecs) evaluates strings; the
  pages themselves never allow it (measured in Chromium: without it no image decodes);
- ``X-Frame-Options: DENY`` (older browsers), ``Referrer-Policy: no-referrer`` (a report
  link's identifiers never leave in a Referer), ``X-Content-Type-Options: nosniff``;
- ``Strict-Transport-Security`` when the deployment serves https (production).

A route may set its own value of one of these headers: it is kept.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.S)
HSTS = "max-age=31536000; includeSubDomains"


def inline_script_hashes(index_html: Path) -> list[str]:
    """CSP sources allowing the inline scripts of OHIF's index.html, by their SHA-256."""
    if not index_html.is_file():
        return []
    return [
        "'sha256-" + base64.b64encode(hashlib.sha256(body).digest()).decode() + "'"
        for body in INLINE_SCRIPT.findall(index_html.read_bytes())
    ]


def origin_of(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}"


def content_security_policy(
    script_hashes: Iterable[str], form_targets: Iterable[str], *, worker: bool = False
) -> str:
    """The pages' policy; ``worker``: the policy of a script file (a worker's own)."""
    evaluation = ["'unsafe-eval'"] if worker else []
    directives = {
        "default-src": "'self'",
        "script-src": " ".join(["'self'", "'wasm-unsafe-eval'", *evaluation, *script_hashes]),
        "style-src": "'self' 'unsafe-inline'",
        "img-src": "'self' data: blob:",
        "font-src": "'self' data:",
        "connect-src": "'self' blob: data:",
        "worker-src": "'self' blob:",
        # OHIF's PDF viewport: an <object> showing the document it fetched (a blob).
        # Chromium's PDF viewer loads it as a frame: without frame-src (default-src
        # 'self') it is refused and only the object's fallback text shows.
        "object-src": "'self' blob:",
        "frame-src": "'self' blob:",
        "base-uri": "'self'",
        "form-action": " ".join(["'self'", *sorted(set(form_targets))]),
        "frame-ancestors": "'none'",
    }
    return "; ".join(f"{name} {value}" for name, value in directives.items())


class SecurityHeaders:
    def __init__(self, app: ASGIApp, *, csp: str, worker_csp: str, hsts: bool) -> None:
        self.app = app
        self.csp = (b"content-security-policy", csp.encode("latin-1"))
        self.worker_csp = (b"content-security-policy", worker_csp.encode("latin-1"))
        headers = [
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"no-referrer"),
            (b"x-content-type-options", b"nosniff"),
        ]
        if hsts:
            headers.append((b"strict-transport-security", HSTS.encode("latin-1")))
        self.headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.get("headers", [])
                present = {name.lower(): value for name, value in headers}
                script = b"javascript" in present.get(b"content-type", b"")
                policy = self.worker_csp if script else self.csp
                extra = [(n, v) for n, v in (policy, *self.headers) if n not in present]
                message["headers"] = [*headers, *extra]
            await send(message)

        await self.app(scope, receive, with_headers)
