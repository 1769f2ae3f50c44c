"""Typed, frozen settings read once from the environment (and secret files).

Every setting has a name, a default that works for the demo, and help text; the
table in ``docs/configuration.md`` is checked against :data:`SETTINGS` by a test.
Environment variables are ``DRIMBOX_<NAME>``; a variable ``DRIMBOX_<NAME>_FILE``
names a file whose content is used instead (for secrets).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Setting:
    name: str
    default: str
    help: str


def _s(name: str, default: str, help: str) -> Setting:
    return Setting(name, default, help)


SETTINGS: tuple[Setting, ...] = (
    _s("HOST", "127.0.0.1", "Address the BFF listens on."),
    _s("PORT", "8080", "TCP port the BFF listens on."),
    _s(
        "UPSTREAM_URL",
        "http://127.0.0.1:8042/dicom-web",
        "Base URL of the upstream PACS's DICOMweb service (QIDO-RS and WADO-RS).",
    ),
    _s(
        "UPSTREAM_AUTH",
        "",
        "Optional credentials for the upstream PACS: 'user:password' for HTTP Basic, "
        "or 'Bearer <token>'. Prefer DRIMBOX_UPSTREAM_AUTH_FILE in production.",
    ),
    _s(
        "UPSTREAM_CONNECT_TIMEOUT",
        "5",
        "Seconds to wait for a TCP/TLS connection to the upstream PACS.",
    ),
    _s(
        "UPSTREAM_READ_TIMEOUT",
        "60",
        "Seconds to wait for the upstream PACS to send the next bytes of an answer.",
    ),
    _s(
        "FRAME_WAIT_TIMEOUT",
        "60",
        "Seconds a frame request waits for its frame to arrive and be transcoded.",
    ),
    _s(
        "CACHE_MAX_BYTES",
        str(2 * 1024**3),
        "Upper bound, in bytes, of the in-memory cache of transcoded frames shared by "
        "every viewer (least recently used frames are evicted first).",
    ),
    _s(
        "MAX_PART_BYTES",
        str(512 * 1024**2),
        "Largest single DICOM instance accepted from the upstream multipart stream.",
    ),
    _s(
        "TRANSCODE_WORKERS",
        "0",
        "Processes in the transcoding pool; 0 means one per CPU core.",
    ),
    _s(
        "LOSSY_QUALITY",
        "balanced",
        "Lossy HTJ2K setting for served frames: 'high', 'balanced' or 'small' "
        "(see docs/transcoding.md for the measured ratio and error of each).",
    ),
    _s(
        "OHIF_DIST",
        str(PROJECT_ROOT / "ohif-dist"),
        "Directory holding the stock OHIF build (filled by scripts/fetch-ohif).",
    ),
    _s(
        "OHIF_CONFIG",
        str(PROJECT_ROOT / "ohif-config"),
        "Directory holding our OHIF configuration (app-config.js and customizations).",
    ),
    _s(
        "MODE",
        "demo",
        "'demo' (access without login, for the local demo and tests) or 'production'.",
    ),
    _s("LOG_LEVEL", "INFO", "Python logging level."),
)

_BY_NAME = {s.name: s for s in SETTINGS}


def _read(env: Mapping[str, str], name: str) -> str:
    file_var = f"DRIMBOX_{name}_FILE"
    if env.get(file_var):
        return Path(env[file_var]).read_text(encoding="utf-8").strip()
    return env.get(f"DRIMBOX_{name}", _BY_NAME[name].default)


@dataclass(frozen=True)
class Settings:
    host: str
    port: int
    upstream_url: str
    upstream_auth: str = field(repr=False)
    upstream_connect_timeout: float
    upstream_read_timeout: float
    frame_wait_timeout: float
    cache_max_bytes: int
    max_part_bytes: int
    transcode_workers: int
    lossy_quality: str
    ohif_dist: Path
    ohif_config: Path
    mode: str
    log_level: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read every setting once; ``overrides`` (python names) win over the environment."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = overrides.pop(f.name) if f.name in overrides else _read(env, f.name.upper())
            values[f.name] = _convert(f.type, raw)
        if overrides:
            raise TypeError(f"unknown settings: {sorted(overrides)}")
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.mode not in {"demo", "production"}:
            raise ValueError("DRIMBOX_MODE must be 'demo' or 'production'")
        if self.lossy_quality not in {"high", "balanced", "small"}:
            raise ValueError("DRIMBOX_LOSSY_QUALITY must be 'high', 'balanced' or 'small'")
        if self.cache_max_bytes <= 0 or self.max_part_bytes <= 0:
            raise ValueError("byte limits must be positive")

    @property
    def workers(self) -> int:
        return self.transcode_workers or (os.cpu_count() or 1)


def _convert(kind: Any, raw: Any) -> Any:
    if not isinstance(raw, str):
        return raw
    kind = kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))
    if kind == "int":
        return int(raw)
    if kind == "float":
        return float(raw)
    if kind == "Path":
        return Path(raw)
    return raw


def markdown_table() -> str:
    """The settings table of docs/configuration.md (a test keeps the two in step)."""
    lines = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    for s in SETTINGS:
        default = f"`{s.default}`" if s.default else "(empty)"
        if s.name in {"OHIF_DIST", "OHIF_CONFIG"}:
            default = f"`<project>/{Path(s.default).name}`"
        lines.append(f"| `DRIMBOX_{s.name}` | {default} | {s.help} |")
    return "\n".join(lines)
