"""Typed, frozen settings read once from the environment (and secret files).

Every setting has a name, a default that works for the demo, and help text; the
table in ``docs/configuration.md`` is checked against :data:`SETTINGS` by a test.
Environment variables are ``DRIMBOX_<NAME>``; a variable ``DRIMBOX_<NAME>_FILE``
names a file whose content is used instead (for secrets).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bff.machine import available_cpus, available_memory

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
        "FRAME_DISK_CACHE_DIR",
        str(PROJECT_ROOT / "var" / "frame-cache"),
        "Directory of the disk cache of transcoded instances (a second opening of an exam "
        "skips transcoding; entries are addressed by a digest of the source instance, so "
        "never stale). Created private (0700): it holds images. Empty disables it.",
    ),
    _s(
        "FRAME_DISK_CACHE_BYTES",
        str(4 * 1024**3),
        "Upper bound, in bytes, of that disk cache (least recently used entries go first).",
    ),
    _s(
        "PREPARE_AT_PUBLICATION",
        "true",
        "'true': when a KOS is published (kos add, admin API) the BFF transcodes every "
        "instance of its series in the background, below the viewers' openings, into "
        "DRIMBOX_PREPARED_DIR; an opening of a prepared exam then streams and transcodes "
        "nothing (issue 16, docs/transcoding.md). 'false': nothing is prepared (what was "
        "prepared earlier is still served).",
    ),
    _s(
        "PREPARED_DIR",
        str(PROJECT_ROOT / "var" / "prepared"),
        "Directory of the exams prepared at publication (each frame's answer as served). "
        "Created private (0700): it holds images. Empty disables preparation and the store.",
    ),
    _s(
        "PREPARED_BYTES",
        str(16 * 1024**3),
        "Upper bound, in bytes, of that directory: about 24 MB per 1300-slice CT "
        "(docs/performance.md). A preparation that would pass it stops ('full' in kos list); "
        "a prepared exam is never evicted for another.",
    ),
    _s(
        "PREPARE_SCAN_INTERVAL",
        "30",
        "Seconds between two looks at the KOS archive for publications made by another "
        "process (kos add); the admin API's publications are prepared at once.",
    ),
    _s(
        "MAX_PART_BYTES",
        str(512 * 1024**2),
        "Largest single DICOM instance accepted from the upstream multipart stream.",
    ),
    _s(
        "TRANSCODE_WORKERS",
        "0",
        "Processes in the transcoding pool; 0 means one per CPU this process may use: the "
        "smallest of the cgroup CPU limit (a container's, cgroup v2 cpu.max or v1 CFS "
        "quota, rounded up) and the CPU affinity (bff/machine.py).",
    ),
    _s(
        "LOSSY_QUALITY",
        "balanced",
        "Lossy HTJ2K setting for served frames: 'high', 'balanced' or 'small' "
        "(see docs/transcoding.md for the measured ratio and error of each).",
    ),
    _s(
        "LOSSY_CODEC",
        "jpegls",
        "Lossy codec of the Source viewer's frames: 'jpegls' (JPEG-LS near-lossless, "
        "1.2.840.10008.1.2.4.81: every pixel within a bound, 3-5x cheaper for the browser "
        "to decode; unsigned grey images, the others are served HTJ2K) or 'htj2k' (HTJ2K "
        "lossy 1.2.840.10008.1.2.4.203 for everything). See docs/performance.md.",
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
        "ARCHIVE_URL",
        f"sqlite:///{PROJECT_ROOT / 'var' / 'archive.db'}",
        "Database of the KOS archive (DB.SO.22) every access check reads: "
        "'sqlite:///<path>' or 'postgresql+psycopg://user:password@host/db'. "
        "Prefer DRIMBOX_ARCHIVE_URL_FILE when the URL holds a password.",
    ),
    _s(
        "STATE_URL",
        "memory",
        "Where sessions, logins under way and Consumer hand-overs are kept (issue 15): "
        "'memory' (this process only: a restart signs everyone out; demo) or a database "
        "URL every replica shares, e.g. the archive's 'postgresql+psycopg://...' "
        "(required in production). Prefer DRIMBOX_STATE_URL_FILE when it holds a password.",
    ),
    _s(
        "STATE_KEY_FILE",
        "",
        "File holding the AES-256-GCM key (32 random bytes, raw or base64) sealing the "
        "stored sessions' tokens. Empty: a random key per start (demo). Required in "
        "production.",
    ),
    _s(
        "STATE_OLD_KEY_FILES",
        "",
        "Comma-separated files of earlier state keys, still accepted to open what they "
        "sealed (key rotation: new key in STATE_KEY_FILE, the old one here until the "
        "sessions it sealed have expired).",
    ),
    _s(
        "SESSION_TOUCH_INTERVAL",
        "30",
        "Seconds between two writes of a session's activity to the state store (not one "
        "per image request); an idle session may end this much before its idle timeout.",
    ),
    _s(
        "ADMIN_SECRET",
        "",
        "Shared secret of the KOS admin API (/api/admin/kos, header "
        "'Authorization: Bearer <secret>', at least 16 characters); empty disables the "
        "API. Use DRIMBOX_ADMIN_SECRET_FILE in production.",
    ),
    _s(
        "LOCATIONS",
        "",
        "The viewer's locations (DB.VI-SO.07, .127): comma-separated 'host=DICOMweb URL' "
        "pairs, one per connected PACS, the host being the FQDN from the national "
        "registry, e.g. 'vi1.999.mesimagesmedicales.fr=https://pacs1/dicom-web,"
        "vi2.999.mesimagesmedicales.fr=https://pacs2/dicom-web'. Empty: one location "
        "answering on any host name, the PACS of DRIMBOX_UPSTREAM_URL (archive location '*').",
    ),
    _s(
        "TRUSTED_HOSTS",
        "",
        "Host names accepted in the Host header besides the locations' (DRIMBOX_LOCATIONS), "
        "comma-separated: e.g. the name Consumers reach the Source API by, when it is not "
        "a location. Any other host is refused (400 E416) before any route runs: the host "
        "builds the OIDC redirect URI and the DICOMweb roots. With DRIMBOX_LOCATIONS and "
        "this both empty every host is accepted (refused in production mode).",
    ),
    _s(
        "OPEN_ACCESS",
        "false",
        "'true' lets a request without a session see every study (the DICOMweb facade's "
        "own tests only). Refused in production mode.",
    ),
    _s(
        "SESSION_SECRET",
        "",
        "Key signing the session cookie. Empty: a random key per start (sessions do not "
        "survive a restart). Use DRIMBOX_SESSION_SECRET_FILE in production.",
    ),
    _s(
        "COOKIE_SECURE",
        "auto",
        "Secure flag of the session cookie: 'true', 'false', or 'auto' (true in production "
        "mode, false in demo mode so that http://*.localhost works).",
    ),
    _s("SESSION_IDLE_TIMEOUT", "1800", "Seconds of inactivity after which a session ends."),
    _s("SESSION_MAX_AGE", "43200", "Seconds after which a session ends whatever its activity."),
    _s(
        "MAX_SESSIONS",
        "20000",
        "Sessions kept at once, and as many login round trips under way (an anonymous "
        "view writes neither); beyond, a new sign-in gets a French 'try again later' (503 "
        "E507) until expired ones are purged (every minute).",
    ),
    _s(
        "FRAME_WAITS_PER_SESSION",
        "128",
        "Frame requests one session may have waiting at once (429 E429 beyond).",
    ),
    _s(
        "LINK_ATTEMPTS_PER_CLIENT",
        "120",
        "Report links opened and logins started per client address in 10 minutes "
        "(429 E429 beyond): slows down guessing of exam identifiers.",
    ),
    _s(
        "FAILED_CHECKS_PER_SUBJECT",
        "20",
        "Refused link checks per signed-in person in 10 minutes (429 E429 beyond).",
    ),
    _s(
        "MAX_FORM_BYTES",
        str(64 * 1024),
        "Largest request body, in bytes, of every route but the KOS uploads (forms, "
        "logins, logout, JSON): a larger one is refused (413 E440) before it is read.",
    ),
    _s(
        "MAX_KOS_BYTES",
        str(16 * 1024**2),
        "Largest KOS file, in bytes, taken by the routes that receive one (the Consumer's "
        "hand-over and opening form, the admin API's publication); their request body may "
        "be this plus DRIMBOX_MAX_FORM_BYTES (the form around the file), 413 E440 beyond.",
    ),
    _s(
        "PSC_ISSUER",
        "http://localhost:9000/psc",
        "ProSantéConnect issuer (or the editor's Proxy e-Santé in front of it), whose "
        "/.well-known/openid-configuration is read. Default: the local demo provider.",
    ),
    _s("PSC_CLIENT_ID", "drimbox-viewer", "Client id registered at ProSantéConnect."),
    _s(
        "PSC_CLIENT_SECRET",
        "",
        "Client secret at ProSantéConnect (DRIMBOX_PSC_CLIENT_SECRET_FILE in production). "
        "Empty disables the professional login.",
    ),
    _s(
        "FCP_ISSUER",
        "http://localhost:9000/fcp",
        "FranceConnect+ issuer. Default: the local demo provider.",
    ),
    _s("FCP_CLIENT_ID", "drimbox-viewer", "Client id registered at FranceConnect+."),
    _s(
        "FCP_CLIENT_SECRET",
        "",
        "Client secret at FranceConnect+ (DRIMBOX_FCP_CLIENT_SECRET_FILE in production). "
        "Empty disables the patient login.",
    ),
    _s(
        "FCP_ACR_VALUES",
        "eidas2",
        "acr_values asked of FranceConnect+ ('eidas2' or 'eidas3'); the returned acr must "
        "be eidas2 or eidas3.",
    ),
    _s(
        "FCP_ENCRYPTION_KEY",
        "",
        "Our private RSA key (PEM or JWK) FranceConnect+ encrypts id_token and userinfo to; "
        "its public part is served at /auth/jwks. Empty: a throw-away key per start (demo "
        "only; refused in production). Use DRIMBOX_FCP_ENCRYPTION_KEY_FILE.",
    ),
    _s(
        "FC_ENABLED",
        "false",
        "'true' also offers patients FranceConnect with two-factor authentication "
        "(DB.VI-SO.137, optional).",
    ),
    _s("FC_ISSUER", "http://localhost:9000/fc", "FranceConnect issuer (when FC_ENABLED)."),
    _s("FC_CLIENT_ID", "drimbox-viewer", "Client id registered at FranceConnect."),
    _s("FC_CLIENT_SECRET", "", "Client secret at FranceConnect (use the _FILE form)."),
    _s("OIDC_TIMEOUT", "10", "Seconds to wait for an identity provider's answer."),
    _s(
        "OIDC_MAX_AUTH_AGE",
        "43200",
        "Seconds: a login is refused (E432) when the id_token's auth_time (the moment the "
        "person authenticated at the provider, when the provider says it) is older.",
    ),
    _s(
        "OIDC_MAX_TOKEN_AGE",
        "300",
        "Seconds: a login is refused (E432) when the id_token's iat (its issue time) is "
        "older; a fresh login's token is seconds old.",
    ),
    _s(
        "AUDIT_LOG",
        str(PROJECT_ROOT / "var" / "audit.jsonl"),
        "File of the audit trail (JSON lines): links opened, access granted or refused "
        "with its code, logouts, admin actions, Source API retrievals with the professional "
        "and client asking. Never tokens or patient identity values.",
    ),
    _s(
        "AUDIT_URL",
        "",
        "Database of the append-only, hash-chained audit table (issue 15), e.g. the "
        "archive's PostgreSQL; read with 'drimbox-viewer audit query|verify'. Empty: "
        "no table (the JSON-lines file only; demo). Required in production.",
    ),
    _s(
        "AUDIT_KEY_FILE",
        "",
        "File holding the key (32 bytes or more) of the audit's pseudonyms: actor = "
        "HMAC of the signed-in subject, session = HMAC of the session id. Empty: a "
        "random key per start (demo). Required in production.",
    ),
    _s(
        "SOURCE_API_PORT",
        "0",
        "Source role: port of the mutual-TLS listener serving Consumer DRIMboxes "
        "(/api/source/studies/...). 0 disables it. Needs TLS_CERT, TLS_KEY, TLS_CLIENT_CA.",
    ),
    _s(
        "SOURCE_API_CLIENTS",
        "drimbox-viewer",
        "Source role: comma-separated ProSantéConnect client ids (the Consumer DRIMboxes' "
        "editors, or their Proxy e-Santé) whose tokens the Source API accepts; a token "
        "issued to any other client is refused (403). Empty: every token is refused.",
    ),
    _s("TLS_CERT", "", "Source role: server certificate (PEM) of the mutual-TLS listener."),
    _s("TLS_KEY", "", "Source role: the private key (PEM file path) of that certificate."),
    _s(
        "TLS_CLIENT_CA",
        "",
        "Source role: CA bundle (PEM) that Consumer client certificates must chain to "
        "(IGC-Santé in production).",
    ),
    _s(
        "CONSUMER_ENABLED",
        "false",
        "'true' runs the Consumer viewer (opening a KOS from the DMP, /consumer).",
    ),
    _s(
        "CONSUMER_HANDOVER_SECRET",
        "",
        "Consumer role: secret of the server-to-server hand-over API (POST /api/consumer/kos, "
        "'Authorization: Bearer <secret>'); empty disables it. Use the _FILE form.",
    ),
    _s("SOURCE_CLIENT_CERT", "", "Consumer role: our client certificate (PEM) for Sources."),
    _s("SOURCE_CLIENT_KEY", "", "Consumer role: its private key (PEM)."),
    _s(
        "SOURCE_CA_BUNDLE",
        "",
        "Consumer role: CA bundle (PEM) Source server certificates must chain to; empty: "
        "the system's trust store.",
    ),
    _s(
        "WHITELIST_FILE",
        "",
        "The ANS whitelist XML (ListeBlancheDRIM-M), XAdES-signed by ANS; checked at start "
        "against DRIMBOX_WHITELIST_SIGNER_CERT (an unsigned or tampered list: no start). "
        "Consumer role: a Source not listed is refused (E203). Source role: a Consumer whose "
        "client certificate is not a listed operator certificate is refused (403 S403L). "
        "Empty: every Source and every Consumer is refused; required in production mode.",
    ),
    _s(
        "WHITELIST_SIGNER_CERT",
        "",
        "The ANS signing certificate(s) (PEM) the whitelist signature must verify with; "
        "pinned, not a CA (IGC-Santé certifies every health organisation). Several may be "
        "listed (the next one before a rollover). Required with DRIMBOX_WHITELIST_FILE.",
    ),
    _s(
        "SOURCE_PORTS",
        "443",
        "Consumer role: the ports a whitelisted Source may be reached on (comma-separated). "
        "The whitelist names hosts only and DRIMboxes answer on 443; other ports are for "
        "test and demo set-ups (the demo's Source listens on 8443). Only 443 in production.",
    ),
    _s(
        "MEDICAL_DEVICE",
        "false",
        "'true' when the deployment is referenced as a medical device (DB.VI-CS.184): the "
        "non-diagnostic mention is then hidden while every image shown is lossless "
        "(DB.VI-CS.26). The Source serves lossy images: there the mention always shows.",
    ),
    _s(
        "CONSUMER_DEMO_KOS",
        "",
        "Demo mode only: a KOS file the Consumer page offers to open in one click.",
    ),
    _s(
        "CONSUMER_IMAGES",
        "lossless",
        "Consumer role: what the radiologist's browser gets. 'lossless': the images as the "
        "Source sends them (diagnostic quality; 200 MB for a 1300-slice CT, 80 s at 20 "
        "Mbit/s). 'lossy': transcoded like the Source viewer's (DRIMBOX_LOSSY_*), for a "
        "slow link to the browser; the non-diagnostic mention then shows (DB.VI-CS.26).",
    ),
    _s(
        "SOURCE_TIMEOUT",
        "60",
        "Consumer role: seconds to wait for a Source's next bytes (spec note to DB.VI-SO.28).",
    ),
    _s(
        "LOCAL_PATIENT_ID_URL",
        "",
        "Consumer role (DB.VI-CS.32): DICOMweb root (QIDO-RS and WADO-RS) of the practice's "
        "own PACS, where the patient of an opened KOS is looked up by the KOS's INS to show "
        "the practice's local patient id in place of the Source's (docs/consumer.md). "
        "Empty: no look-up, the Source's id is shown.",
    ),
    _s(
        "LOCAL_PATIENT_ID_AUTH",
        "",
        "Credentials for that PACS, as DRIMBOX_UPSTREAM_AUTH ('user:password' or 'Bearer "
        "<token>'). Prefer DRIMBOX_LOCAL_PATIENT_ID_AUTH_FILE.",
    ),
    _s(
        "LOCAL_PATIENT_ID_ISSUERS",
        ",".join(
            (
                "1.2.250.1.213.1.4.8",
                "1.2.250.1.213.1.4.9",
                "1.2.250.1.213.1.4.10",
                "1.2.250.1.213.1.4.11",
            )
        ),
        "Comma-separated OIDs an INS must be issued under, in the practice's PACS, for a "
        "patient to match (INS-NIR, INS-NIA and their test OIDs by default; keep only "
        "1.2.250.1.213.1.4.8 and .9 in production). The KOS's own INS OID must match too.",
    ),
    _s(
        "LOCAL_PATIENT_ID_TIMEOUT",
        "3",
        "Seconds the whole look-up of the local patient id may take at an opening; beyond, "
        "the viewer opens with the Source's id (the look-up never blocks the images).",
    ),
    _s(
        "EXPORT_DESTINATIONS",
        "",
        "Consumer role (DB.VI-CO.42): the practice's PACS the radiologist may export an "
        "exam to, a JSON list; each entry has a 'name' (shown to the user, French) and a "
        "'protocol': 'stow' with 'url' (the DICOMweb base, STOW-RS to <url>/studies) and an "
        "optional 'auth_file' (a file holding 'user:password' or 'Bearer <token>') and "
        "'ca_file' (PEM bundle an https PACS certificate must chain to; default: the "
        "system's), or "
        "'cstore' with 'host', 'port', 'called_ae' and 'calling_ae' (DIMSE C-STORE). "
        "Empty: no export. Prefer DRIMBOX_EXPORT_DESTINATIONS_FILE. See docs/export.md.",
    ),
    _s(
        "EXPORT_TIMEOUT",
        "30",
        "Seconds an export waits for its destination PACS: connection, association, each "
        "answer (STOW-RS, C-STORE).",
    ),
    _s(
        "EXPORT_MAX_JOBS",
        "2",
        "PACS exports running at once on this server (one per user at most); beyond: E461.",
    ),
    _s(
        "EXPORT_BATCH_BYTES",
        str(32 * 1024**2),
        "Largest STOW-RS request of an export, in bytes (instances are sent in batches).",
    ),
    _s(
        "OWNER_URL",
        "",
        "Several replicas behind the balancer (docs/deployment.md): base URL of the "
        "balancer's internal listener that sends a study's image requests to the replica "
        "owning it (consistent hash of the study UID). The grant then asks that owner to "
        "start the exam's retrieval (POST /api/prefetch/{study}, with the new session), so "
        "only the owner streams it from the PACS. Empty: the granting replica starts it.",
    ),
    _s(
        "FORWARDED_ALLOW_IPS",
        "127.0.0.1",
        "Addresses of the reverse proxies (the balancer) whose X-Forwarded-For and "
        "X-Forwarded-Proto the BFF believes, comma-separated (uvicorn's forwarded_allow_ips); "
        "from any other peer those headers are ignored. '*' is refused in production mode.",
    ),
    _s(
        "MODE",
        "demo",
        "'demo' (the local identity provider may be used, relaxed cookie) or 'production'.",
    ),
    _s("LOG_LEVEL", "INFO", "Python logging level."),
    _s(
        "LOG_FORMAT",
        "auto",
        "Application and access log format on standard error: 'json' (one object per "
        "line: time, level, logger, message, request_id, and the access log's fields), "
        "'text', or 'auto' (json in production mode, text in demo mode). See "
        "docs/operations.md.",
    ),
    _s(
        "METRICS_PORT",
        "0",
        "Port of the internal listener serving Prometheus /metrics (and /livez, /readyz) "
        "on DRIMBOX_METRICS_HOST, for the monitoring network only. 0: no such listener; "
        "then /metrics is served on the main listener in demo mode only (never in "
        "production mode: the main listener is public).",
    ),
    _s(
        "METRICS_HOST",
        "127.0.0.1",
        "Address of the metrics listener (an internal interface; '0.0.0.0' in a container "
        "whose port only the monitoring network reaches).",
    ),
    _s(
        "READAHEAD_BUDGET_BYTES",
        "0",
        "Bytes of received, not yet transcoded instances held by all series retrievals "
        "together (each also holds at most 384 MiB); a retrieval over the budget goes on "
        "with one instance in hand (reading the PACS as the pool frees room). 0: a quarter "
        "of the memory this process may use (cgroup limit, else physical), at least 64 MiB.",
    ),
    _s(
        "DRAIN_NOTICE_S",
        "5",
        "On SIGTERM: seconds /readyz answers 503 while requests are still served, so that "
        "the balancer's probe sees it and sends new users elsewhere, before the listener "
        "closes (see docs/operations.md).",
    ),
    _s(
        "DRAIN_GRACE_S",
        "30",
        "On SIGTERM: the most seconds in-flight requests (a study download, a series "
        "stream) are given to finish; the process then exits 0. A second SIGTERM or "
        "SIGINT stops at once.",
    ),
)

_BY_NAME = {s.name: s for s in SETTINGS}
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
#: A host name or IP address as DRIMBOX_TRUSTED_HOSTS lists it (no port, IPv6 unbracketed).
OID = re.compile(r"[0-9]+(?:\.[0-9]+)+")
#: The INS test OIDs (INS-NIR and INS-NIA of the DRIM-M samples), never trusted in production.
TEST_INS_OIDS = frozenset({"1.2.250.1.213.1.4.10", "1.2.250.1.213.1.4.11"})
HOST_NAME = re.compile(r"[a-z0-9.-]+|[0-9a-f:.]*:[0-9a-f:.]*")


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
    frame_disk_cache_dir: str
    frame_disk_cache_bytes: int
    prepare_at_publication: bool
    prepared_dir: str
    prepared_bytes: int
    prepare_scan_interval: float
    max_part_bytes: int
    transcode_workers: int
    lossy_quality: str
    lossy_codec: str
    ohif_dist: Path
    ohif_config: Path
    archive_url: str = field(repr=False)
    state_url: str = field(repr=False)
    state_key_file: str
    state_old_key_files: str
    session_touch_interval: float
    admin_secret: str = field(repr=False)
    locations: str
    trusted_hosts: str
    open_access: bool
    session_secret: str = field(repr=False)
    cookie_secure: str
    session_idle_timeout: float
    session_max_age: float
    max_sessions: int
    frame_waits_per_session: int
    link_attempts_per_client: int
    failed_checks_per_subject: int
    max_form_bytes: int
    max_kos_bytes: int
    psc_issuer: str
    psc_client_id: str
    psc_client_secret: str = field(repr=False)
    fcp_issuer: str
    fcp_client_id: str
    fcp_client_secret: str = field(repr=False)
    fcp_acr_values: str
    fcp_encryption_key: str = field(repr=False)
    fc_enabled: bool
    fc_issuer: str
    fc_client_id: str
    fc_client_secret: str = field(repr=False)
    oidc_timeout: float
    oidc_max_auth_age: float
    oidc_max_token_age: float
    audit_log: Path
    audit_url: str = field(repr=False)
    audit_key_file: str
    source_api_port: int
    source_api_clients: str
    tls_cert: str
    tls_key: str
    tls_client_ca: str
    consumer_enabled: bool
    consumer_handover_secret: str = field(repr=False)
    source_client_cert: str
    source_client_key: str
    source_ca_bundle: str
    whitelist_file: str
    whitelist_signer_cert: str
    source_ports: str
    medical_device: bool
    consumer_demo_kos: str
    consumer_images: str
    source_timeout: float
    local_patient_id_url: str
    local_patient_id_auth: str = field(repr=False)
    local_patient_id_issuers: str
    local_patient_id_timeout: float
    export_destinations: str
    export_timeout: float
    export_max_jobs: int
    export_batch_bytes: int
    owner_url: str
    forwarded_allow_ips: str
    mode: str
    log_level: str
    log_format: str
    metrics_port: int
    metrics_host: str
    readahead_budget_bytes: int
    drain_notice_s: float
    drain_grace_s: float

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
        if self.cookie_secure not in {"auto", "true", "false"}:
            raise ValueError("DRIMBOX_COOKIE_SECURE must be 'auto', 'true' or 'false'")
        if self.fcp_acr_values not in {"eidas2", "eidas3"}:
            raise ValueError("DRIMBOX_FCP_ACR_VALUES must be 'eidas2' or 'eidas3'")
        self.location_map()  # raises on a malformed DRIMBOX_LOCATIONS
        self.host_names()  # raises on a malformed DRIMBOX_TRUSTED_HOSTS
        if any(not OID.fullmatch(i) for i in self.local_patient_id_issuer_set()):
            raise ValueError("DRIMBOX_LOCAL_PATIENT_ID_ISSUERS must be OIDs")
        if not 0 < self.local_patient_id_timeout <= 30:
            raise ValueError("DRIMBOX_LOCAL_PATIENT_ID_TIMEOUT must be in (0, 30] seconds")
        if self.mode == "production":
            self._validate_production()
        if self.lossy_codec not in {"htj2k", "jpegls"}:
            raise ValueError("DRIMBOX_LOSSY_CODEC must be 'htj2k' or 'jpegls'")
        if self.consumer_images not in {"lossless", "lossy"}:
            raise ValueError("DRIMBOX_CONSUMER_IMAGES must be 'lossless' or 'lossy'")
        if self.lossy_quality not in {"high", "balanced", "small"}:
            raise ValueError("DRIMBOX_LOSSY_QUALITY must be 'high', 'balanced' or 'small'")
        if (
            self.cache_max_bytes <= 0
            or self.max_part_bytes <= 0
            or self.frame_disk_cache_bytes <= 0
            or self.prepared_bytes <= 0
            or self.max_form_bytes <= 0
            or self.max_kos_bytes <= 0
        ):
            raise ValueError("byte limits must be positive")
        if not 0 < self.prepare_scan_interval <= 86400:
            raise ValueError("DRIMBOX_PREPARE_SCAN_INTERVAL must be in (0, 86400] seconds")
        if self.oidc_max_auth_age <= 0 or self.oidc_max_token_age <= 0:
            raise ValueError("DRIMBOX_OIDC_MAX_AUTH_AGE and _MAX_TOKEN_AGE must be positive")
        if self.admin_secret and len(self.admin_secret) < 16:
            raise ValueError("DRIMBOX_ADMIN_SECRET must be empty or at least 16 characters")
        if self.whitelist_file and not self.whitelist_signer_cert:
            # Issue 13 item 6: no unsigned whitelist in any mode (the demo signs its own).
            raise ValueError("DRIMBOX_WHITELIST_SIGNER_CERT is required with a whitelist")
        self.source_port_set()  # raises on a malformed DRIMBOX_SOURCE_PORTS
        self.export_destination_list()  # raises on a malformed DRIMBOX_EXPORT_DESTINATIONS
        if self.export_timeout <= 0 or self.export_max_jobs <= 0 or self.export_batch_bytes <= 0:
            raise ValueError("DRIMBOX_EXPORT_TIMEOUT, _MAX_JOBS and _BATCH_BYTES must be positive")
        if self.owner_url and not self.owner_url.startswith(("http://", "https://")):
            raise ValueError("DRIMBOX_OWNER_URL must be an http(s) URL")
        self._validate_operations()

    def _validate_operations(self) -> None:
        """Issue 15 items 2 and 4: logs, metrics listener, readahead budget, drain."""
        if self.log_format not in {"auto", "json", "text"}:
            raise ValueError("DRIMBOX_LOG_FORMAT must be 'auto', 'json' or 'text'")
        if not 0 <= self.metrics_port < 65536:
            raise ValueError("DRIMBOX_METRICS_PORT must be a port number (0: none)")
        if self.metrics_port and self.metrics_port in {self.port, self.source_api_port}:
            # The metrics listener is the internal one: never a public listener's port.
            raise ValueError(
                "DRIMBOX_METRICS_PORT must differ from DRIMBOX_PORT and DRIMBOX_SOURCE_API_PORT"
            )
        if self.readahead_budget_bytes < 0:
            raise ValueError("DRIMBOX_READAHEAD_BUDGET_BYTES must be 0 (auto) or positive")
        if self.drain_notice_s < 0 or self.drain_grace_s < 0:
            raise ValueError("DRIMBOX_DRAIN_NOTICE_S and DRIMBOX_DRAIN_GRACE_S must be >= 0")

    def _validate_production(self) -> None:
        if self.open_access:
            raise ValueError("DRIMBOX_OPEN_ACCESS is refused in production mode")
        if self.cookie_secure == "false":
            raise ValueError("DRIMBOX_COOKIE_SECURE=false is refused in production mode")
        if not self.session_secret:
            raise ValueError("DRIMBOX_SESSION_SECRET is required in production mode")
        if self.host_names() is None:
            raise ValueError(
                "DRIMBOX_LOCATIONS or DRIMBOX_TRUSTED_HOSTS is required in production mode "
                "(the host names the viewer answers on)"
            )
        if self.fcp_client_secret and not self.fcp_encryption_key:
            raise ValueError("DRIMBOX_FCP_ENCRYPTION_KEY is required in production mode")
        if (self.consumer_enabled or self.source_api_port) and not self.whitelist_file:
            raise ValueError("DRIMBOX_WHITELIST_FILE is required in production mode")
        if "*" in {ip.strip() for ip in self.forwarded_allow_ips.split(",")}:
            raise ValueError("DRIMBOX_FORWARDED_ALLOW_IPS='*' is refused in production mode")
        if self.source_port_set() != {443}:
            raise ValueError("DRIMBOX_SOURCE_PORTS other than 443 is refused in production mode")
        test_ins = self.local_patient_id_issuer_set() & TEST_INS_OIDS
        if self.local_patient_id_url and test_ins:
            # A test INS (DRIM-M samples) must never name a real patient (DB.VI-CS.32).
            raise ValueError(
                "DRIMBOX_LOCAL_PATIENT_ID_ISSUERS holds test INS OIDs "
                f"({', '.join(sorted(test_ins))}): refused in production mode"
            )
        for destination in self.export_destination_list():
            if destination.auth_file and not destination.url.startswith("https://"):
                host = (urlsplit(destination.url).hostname or "").lower()
                if host not in LOOPBACK_HOSTS:
                    # Credentials would cross the network in clear text.
                    raise ValueError(
                        f"export destination {destination.name!r}: credentials over plain "
                        "http are refused in production mode (use https)"
                    )
        issuers = [self.psc_issuer, self.fcp_issuer, *([self.fc_issuer] if self.fc_enabled else [])]
        for issuer in issuers:
            host = (urlsplit(issuer).hostname or "").lower()
            if (
                host in LOOPBACK_HOSTS
                or host.endswith(".localhost")
                or not issuer.startswith("https://")
            ):
                # The local demo identity provider is for demo and test configurations only.
                raise ValueError(f"identity provider {issuer!r} is refused in production mode")
        if self.state_url == "memory":
            # A restart (an upgrade) would sign everyone out, and replicas would not
            # know each other's sessions: production shares its state (issue 15).
            raise ValueError("DRIMBOX_STATE_URL (a shared database) is required in production mode")
        if not self.state_key_file:
            raise ValueError("DRIMBOX_STATE_KEY_FILE is required in production mode")
        if not self.audit_url or not self.audit_key_file:
            # A hospital's audit trail: tamper-evident, shared, with pseudonymous actors.
            raise ValueError(
                "DRIMBOX_AUDIT_URL and DRIMBOX_AUDIT_KEY_FILE are required in production mode"
            )
        for name, path in self.data_paths().items():
            # Issue 15: production never writes into the code (the checkout, or the
            # installed package's directory): explicit data paths, e.g. /var/lib/...
            if path.resolve().is_relative_to(PROJECT_ROOT):
                raise ValueError(
                    f"DRIMBOX_{name} is inside the code directory ({PROJECT_ROOT}): "
                    "production mode needs data paths outside it (e.g. /var/lib/drimbox-viewer)"
                )

    def data_paths(self) -> dict[str, Path]:
        """The files and directories the BFF writes, by setting name."""
        paths = {"AUDIT_LOG": self.audit_log}
        if self.frame_disk_cache_dir:
            paths["FRAME_DISK_CACHE_DIR"] = Path(self.frame_disk_cache_dir)
        if self.prepared_dir:  # issue 16: the exams prepared at publication
            paths["PREPARED_DIR"] = Path(self.prepared_dir)
        databases = {
            "ARCHIVE_URL": self.archive_url,
            "STATE_URL": self.state_url,
            "AUDIT_URL": self.audit_url,
        }
        for name, url in databases.items():
            if url.startswith("sqlite:///"):
                paths[name] = Path(url.removeprefix("sqlite:///"))
        return paths

    def location_map(self) -> dict[str, str]:
        """Host name -> DICOMweb URL of its PACS ('*' -> DRIMBOX_UPSTREAM_URL when empty)."""
        if not self.locations.strip():
            return {"*": self.upstream_url}
        mapping: dict[str, str] = {}
        for item in self.locations.split(","):
            host, sep, url = item.strip().partition("=")
            host = host.strip().lower()
            if not sep or not host or not url.strip().startswith(("http://", "https://")):
                raise ValueError(f"DRIMBOX_LOCATIONS: malformed entry {item.strip()!r}")
            mapping[host] = url.strip()
        return mapping

    def source_port_set(self) -> frozenset[int]:
        """The ports a whitelisted Source may be reached on (DRIMBOX_SOURCE_PORTS)."""
        try:
            ports = frozenset(int(p) for p in self.source_ports.split(",") if p.strip())
        except ValueError:
            raise ValueError("DRIMBOX_SOURCE_PORTS: comma-separated port numbers") from None
        if not ports or not all(0 < p < 65536 for p in ports):
            raise ValueError("DRIMBOX_SOURCE_PORTS: comma-separated port numbers")
        return ports

    def host_names(self) -> frozenset[str] | None:
        """The host names a request may name in its Host header: the locations' and
        DRIMBOX_TRUSTED_HOSTS; None (any) when both are empty (one location answering on
        any host name: the demo's and the tests' default)."""
        names = {h for h in self.location_map() if h != "*"}
        for item in self.trusted_hosts.split(","):
            name = item.strip().lower()
            if not name:
                continue
            if not HOST_NAME.fullmatch(name):
                raise ValueError(f"DRIMBOX_TRUSTED_HOSTS: malformed host name {name!r}")
            names.add(name)
        return frozenset(names) if names else None

    def local_patient_id_issuer_set(self) -> frozenset[str]:
        """The INS OIDs a practice PACS's INS must be issued under (DB.VI-CS.32)."""
        return frozenset(i.strip() for i in self.local_patient_id_issuers.split(",") if i.strip())

    def export_destination_list(self) -> tuple[ExportDestination, ...]:
        """The PACS an exam may be exported to (DRIMBOX_EXPORT_DESTINATIONS, DB.VI-CO.42)."""
        return parse_export_destinations(self.export_destinations)

    def source_api_client_ids(self) -> frozenset[str]:
        """The PSC client ids whose tokens the Source API accepts."""
        return frozenset(c.strip() for c in self.source_api_clients.split(",") if c.strip())

    @property
    def secure_cookie(self) -> bool:
        return self.cookie_secure == "true" or (
            self.cookie_secure == "auto" and self.mode == "production"
        )

    @property
    def workers(self) -> int:
        return self.transcode_workers or available_cpus()

    @property
    def readahead_budget(self) -> int:
        """DRIMBOX_READAHEAD_BUDGET_BYTES, 0 resolved for this machine."""
        return self.readahead_budget_bytes or max(64 * 1024**2, available_memory() // 4)

    @property
    def resolved_log_format(self) -> str:
        if self.log_format != "auto":
            return self.log_format
        return "json" if self.mode == "production" else "text"

    def metrics_on_main_listener(self) -> bool:
        """/metrics on the public listener: demo mode without a metrics listener only."""
        return self.mode == "demo" and not self.metrics_port


@dataclass(frozen=True)
class ExportDestination:
    """One PACS an exam may be exported to (DB.VI-CO.42): STOW-RS or C-STORE."""

    #: its position in the list ('1', '2', ...): what the browser names it by
    id: str
    #: shown to the user (French), e.g. 'PACS du cabinet'
    name: str
    #: 'stow' (DICOMweb STOW-RS) or 'cstore' (DIMSE C-STORE)
    protocol: str
    url: str = ""
    #: a file holding 'user:password' (HTTP Basic) or 'Bearer <token>', read at start
    auth_file: str = field(default="", repr=False)
    #: PEM bundle an https destination's certificate must chain to ('' : the system's)
    ca_file: str = ""
    host: str = ""
    port: int = 0
    called_ae: str = ""
    calling_ae: str = ""


#: At most this many destinations (a list for people to choose from).
MAX_EXPORT_DESTINATIONS = 20
_AE_TITLE = re.compile(r"[\x20-\x5b\x5d-\x7e]{1,16}")  # PS3.5 AE: no backslash, 16 chars
_STOW_KEYS = frozenset({"name", "protocol", "url", "auth_file", "ca_file"})
_CSTORE_KEYS = frozenset({"name", "protocol", "host", "port", "called_ae", "calling_ae"})


def parse_export_destinations(raw: str) -> tuple[ExportDestination, ...]:
    """DRIMBOX_EXPORT_DESTINATIONS, checked (ValueError naming the entry otherwise)."""
    if not raw.strip():
        return ()
    import json

    try:
        entries = json.loads(raw)
    except ValueError:
        raise ValueError("DRIMBOX_EXPORT_DESTINATIONS: not JSON") from None
    if not isinstance(entries, list) or not 0 < len(entries) <= MAX_EXPORT_DESTINATIONS:
        raise ValueError(
            f"DRIMBOX_EXPORT_DESTINATIONS: a JSON list of 1 to {MAX_EXPORT_DESTINATIONS} entries"
        )
    out: list[ExportDestination] = []
    for index, entry in enumerate(entries, 1):
        where = f"DRIMBOX_EXPORT_DESTINATIONS entry {index}"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: not an object")
        name = entry.get("name")
        if (
            not isinstance(name, str)
            or not name.strip()
            or len(name) > 64
            or any(ord(c) < 32 or ord(c) == 127 for c in name)
        ):
            raise ValueError(f"{where}: 'name' must be 1 to 64 printable characters")
        if name.strip() in {d.name for d in out}:
            raise ValueError(f"{where}: the name {name!r} is used twice")
        protocol = entry.get("protocol")
        if protocol == "stow":
            unknown = set(entry) - _STOW_KEYS
            url = entry.get("url")
            auth_file = entry.get("auth_file", "")
            ca_file = entry.get("ca_file", "")
            if (
                not isinstance(url, str)
                or not isinstance(auth_file, str)
                or not isinstance(ca_file, str)
            ):
                raise ValueError(f"{where}: 'url', 'auth_file' and 'ca_file' are strings")
            if ca_file and not url.startswith("https://"):
                raise ValueError(f"{where}: 'ca_file' is for an https 'url'")
            parts = urlsplit(url)
            if (
                parts.scheme not in {"http", "https"}
                or not parts.hostname
                or parts.username is not None
                or parts.query
                or parts.fragment
            ):
                raise ValueError(
                    f"{where}: 'url' must be an http(s) URL without user info, query or "
                    "fragment (credentials go in 'auth_file')"
                )
            destination = ExportDestination(
                str(index),
                name.strip(),
                "stow",
                url=url.rstrip("/"),
                auth_file=auth_file,
                ca_file=ca_file,
            )
        elif protocol == "cstore":
            unknown = set(entry) - _CSTORE_KEYS
            host, port = entry.get("host"), entry.get("port")
            called, calling = entry.get("called_ae"), entry.get("calling_ae")
            if not isinstance(host, str) or not host.strip() or any(c in host for c in "/ @"):
                raise ValueError(f"{where}: 'host' must be a host name or address")
            if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
                raise ValueError(f"{where}: 'port' must be a port number")
            for key, value in (("called_ae", called), ("calling_ae", calling)):
                if not isinstance(value, str) or not (_AE_TITLE.fullmatch(value) and value.strip()):
                    raise ValueError(f"{where}: {key!r} must be an AE title (1 to 16 characters)")
            destination = ExportDestination(
                str(index),
                name.strip(),
                "cstore",
                host=host.strip(),
                port=port,
                called_ae=str(called).strip(),
                calling_ae=str(calling).strip(),
            )
        else:
            raise ValueError(f"{where}: 'protocol' must be 'stow' or 'cstore'")
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
        out.append(destination)
    return tuple(out)


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
    if kind == "bool":
        value = raw.strip().lower()
        if value not in {"true", "false", "1", "0", "yes", "no"}:
            raise ValueError(f"not a boolean: {raw!r}")
        return value in {"true", "1", "yes"}
    return raw


def markdown_table() -> str:
    """The settings table of docs/configuration.md (a test keeps the two in step)."""
    lines = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    for s in SETTINGS:
        shown = s.default.replace(str(PROJECT_ROOT), "<project>")
        default = f"`{shown}`" if shown else "(empty)"
        lines.append(f"| `DRIMBOX_{s.name}` | {default} | {s.help} |")
    return "\n".join(lines)
