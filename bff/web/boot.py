"""OHIF's boot files, fetched ahead (issue 5: first image within DB.VI-SO.37's 4 s).

Stock OHIF boots in waves: ``index.html`` loads ``app.bundle.js`` (17 MB), which, once
run, asks for a first wave of chunks, whose code asks for the next wave, four waves in
all before its first DICOMweb request. Each wave waits for the previous one to arrive
and run. Without touching OHIF, the BFF tells the browser about all of them up front:

- on OHIF's ``index.html``, a ``Link: <...>; rel=preload`` header for every boot file, so
  the browser fetches them in parallel while ``app.bundle.js`` is being compiled;
- on the pages shown before the viewer (the profile choice, while the user decides and
  signs in), ``<link rel="prefetch">`` for the same files: by the time the viewer
  opens, they are in the browser's cache (5 MB: 2 s at 20 Mbit/s).

The list is ``ohif-config/boot-files.txt``, one file name of ``ohif-dist/`` per line, for
the pinned OHIF version: ``tests/e2e/test_boot_files.py`` checks it against what OHIF
really loads and rewrites it with ``DRIMBOX_WRITE_BOOT_FILES=1``. Only plain file names
of files present in the build are kept, so a stale entry costs nothing but a hint.
"""

from __future__ import annotations

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


def prefetch_tags(names: tuple[str, ...]) -> str:
    """``<link rel="prefetch">`` tags for a page shown before the viewer."""
    tags = []
    for name in names:
        kind, cors = _attributes(name)
        extra = " crossorigin" if cors else ""
        tags.append(f'<link rel="prefetch" href="/{name}" as="{kind}"{extra}>')
    return "\n".join(tags)
