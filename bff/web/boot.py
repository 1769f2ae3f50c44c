"""OHIF's boot files, fetched ahead (issue 5: first image within DB.VI-SO.37's 4 s).

Stock OHIF boots in waves: ``index.html`` loads ``app.bundle.js`` (17 MB), which, once
run, asks for a first wave of chunks, whose code asks for the next wave, four waves in
all before its first DICOMweb request. Each wave waits for the previous one to arrive
and run. Without touching OHIF, the BFF tells the browser about all of them up front:

- on OHIF's ``index.html``, a ``Link: <...>; rel=preload`` header for every boot file, so
  the browser fetches them in parallel while ``app.bundle.js`` is being compiled;
- on the pages shown before the viewer (the profile choice, while the user decides and
  signs in), ``<link rel="prefetch">`` for the same files: by the time the viewer
  opens, they are in the browser's cache (5 MB: 2 s at 20 Mbit/s);
- on those pages too, a service worker (``/drimbox-boot-sw.js``, registered by
  ``/drimbox/boot-register.js``) that keeps the same files in CacheStorage and answers
  the viewer's requests for them from there. Fetched from the HTTP cache, OHIF's 17 MB
  still has to be parsed and compiled on every opening (about 1.5 s of OHIF's 2-2.5 s
  boot on 2 cores); Chromium compiles a script put in CacheStorage while a service
  worker installs and keeps that code with it (v8.dev/blog/code-caching-for-devs), so
  the viewer's first run already starts from compiled code. The worker answers nothing
  else: the static routes send ``/dicomweb/`` and ``/api/`` to the network without
  waking it, and its fetch handler answers only the listed files. OHIF's own
  ``init-service-worker.js`` unregisters every registration once the viewer runs
  (pages it already controls keep it); the next profile page registers it again.

The list is ``ohif-config/boot-files.txt``, one file name of ``ohif-dist/`` per line, for
the pinned OHIF version: ``tests/e2e/test_boot_files.py`` checks it against what OHIF
really loads and rewrites it with ``DRIMBOX_WRITE_BOOT_FILES=1``. Only plain file names
of files present in the build are kept, so a stale entry costs nothing but a hint.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

BOOT_FILES = "boot-files.txt"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}\.(js|css|woff2)$")
#: ``as`` of a preload / prefetch, by extension (fonts are always fetched in CORS mode).
_KIND = {".js": "script", ".css": "style", ".woff2": "font"}


def load_boot_files(ohif_config: Path, ohif_dist: Path) -> tuple[str, ...]:
    """The boot files listed in ``ohif-config/boot-files.txt`` that exist in the build."""
    listing = ohif_config / BOOT_FILES
    if not listing.is_file():
        return ()
    names: list[str] = []
    for line in listing.read_text(encoding="utf-8").splitlines():
        name = line.strip()
        if not name or name.startswith("#") or not _NAME.match(name):
            continue
        if (ohif_dist / name).is_file() and name not in names:
            names.append(name)
    return tuple(names)


def _attributes(name: str) -> tuple[str, bool]:
    kind = _KIND[Path(name).suffix]
    return kind, kind == "font"


def preload_header(names: tuple[str, ...]) -> str:
    """A ``Link`` header value preloading every boot file ('' when there is none)."""
    links = []
    for name in names:
        kind, cors = _attributes(name)
        links.append(f"</{name}>; rel=preload; as={kind}" + ("; crossorigin" if cors else ""))
    return ", ".join(links)


def before_viewer_head(names: tuple[str, ...]) -> str:
    """What a page shown before the viewer adds to its head: ``<link rel="prefetch">``
    for every boot file, and the script registering the boot service worker."""
    tags = []
    for name in names:
        kind, cors = _attributes(name)
        extra = " crossorigin" if cors else ""
        tags.append(f'<link rel="prefetch" href="/{name}" as="{kind}"{extra}>')
    if names:
        tags.append(f'<script src="{REGISTER_PATH}" async></script>')
    return "\n".join(tags)


SERVICE_WORKER_PATH = "/drimbox-boot-sw.js"
REGISTER_PATH = "/drimbox/boot-register.js"
#: CacheStorage names of the boot worker start with this; the rest is the list's digest.
CACHE_PREFIX = "drimbox-ohif-"
#: Requests the boot worker never sees (Chromium's static routing: not even woken up).
NETWORK_ONLY = ("/dicomweb/*", "/api/*", "/auth/*", "/consumer/*")

REGISTER_JS = f"""// DRIMbox: registers the boot service worker (bff/web/boot.py). No-op where
// service workers are unavailable: the page's prefetch links still warm the HTTP cache.
'use strict';
if ('serviceWorker' in navigator) {{
  navigator.serviceWorker.register('{SERVICE_WORKER_PATH}', {{ scope: '/' }}).catch(() => {{}});
}}
"""

_WORKER_JS = """// DRIMbox boot service worker (bff/web/boot.py): OHIF's boot files from
// CacheStorage, compiled once when they are cached; nothing else is answered here.
'use strict';
const CACHE = %(cache)s;
const FILES = %(files)s;
const PATHS = new Set(FILES);
const NETWORK_ONLY = %(network_only)s;

self.addEventListener('install', (event) => {
  if (event.addRoutes) {
    const routes = NETWORK_ONLY.map((pathname) => ({
      condition: { urlPattern: { pathname } }, source: 'network' }));
    event.waitUntil(event.addRoutes(routes).catch(() => {}));
  }
  event.waitUntil(
    caches.open(CACHE).then((cache) => cache.addAll(FILES)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
  event.waitUntil(caches.keys().then((keys) => Promise.all(keys
    .filter((key) => key.startsWith(%(prefix)s) && key !== CACHE)
    .map((key) => caches.delete(key)))));
});

self.addEventListener('fetch', (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== 'GET' || url.origin !== self.location.origin
      || url.search || !PATHS.has(url.pathname)) {
    return; // the browser fetches it as if there were no worker
  }
  event.respondWith(caches.open(CACHE)
    .then((cache) => cache.match(event.request))
    .then((cached) => cached || fetch(event.request)));
});
"""


def service_worker_js(names: tuple[str, ...]) -> str:
    """The boot service worker for these boot files (a new list: a new cache, the old one
    deleted when the new worker activates)."""
    files = ["/" + name for name in names]
    digest = hashlib.sha256("\n".join(files).encode()).hexdigest()[:16]
    return _WORKER_JS % {
        "cache": json.dumps(CACHE_PREFIX + digest),
        "files": json.dumps(files),
        "network_only": json.dumps(list(NETWORK_ONLY)),
        "prefix": json.dumps(CACHE_PREFIX),
    }
