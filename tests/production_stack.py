"""The production-like stack the stack tests run on this machine (issue 15, item 3).

Debian's nginx as the balancer (``deploy/nginx/drimbox-viewer.conf`` rendered here:
TLS 1.2/1.3 with HTTP/2, SNI routing, round robin for pages and a consistent hash of the
study UID for images), two ``drimbox-viewer serve`` replicas in production mode (separate
processes, own ports, settings from the environment and secret files only), a throw-away
PostgreSQL, the session's Orthanc behind a counting proxy (what each replica asks the
PACS), and the local identity provider behind the balancer under a realistic name.

Names: the stack answers as ``vi1.drimbox.test`` (the viewer's location),
``idp.drimbox.test`` (the identity provider) and ``db1.drimbox.test`` (the Source API), on
the balancer's port. Chromium resolves them with ``--host-resolver-rules``; the replicas'
own calls to the identity provider go through an egress proxy (HTTP CONNECT, honoured by
httpx through ``HTTPS_PROXY``, as a hospital's outbound proxy would be) which resolves
them; they trust the test CA through ``SSL_CERT_FILE``. Production checks are unchanged:
the issuers are https and not loopback names.

Every certificate, key and secret is generated at test time under the stack's directory.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from bff.auth.oidc import generate_encryption_key
from bff.demo.dataset import DemoStudy
from bff.demo.pki import issue, make_ca, make_test_pki, make_whitelist_signer
from bff.demo.stack import CLIENT_ID, DEMO_CDA_ID, DEMO_USERS_FILE, publish_demo_kos
from bff.demo.whitelist import write_test_whitelist
from bff.idp.app import IdpClient, create_idp_app
from bff.idp.users import load_users
from bff.settings import PROJECT_ROOT
from tests.servers import counting_proxy, free_port, live_server
from tests.waiting import poll

DOMAIN = "drimbox.test"
LOCATION = f"vi1.{DOMAIN}"
IDP_HOST = f"idp.{DOMAIN}"
SOURCE_API_HOST = f"db1.{DOMAIN}"
TEMPLATE = PROJECT_ROOT / "deploy" / "nginx" / "drimbox-viewer.conf"
NGINX = Path("/usr/sbin/nginx")
SERVE = PROJECT_ROOT / ".venv" / "bin" / "drimbox-viewer"
START_TIMEOUT = 60.0


def render_balancer(values: dict[str, str]) -> str:
    """The balancer template with every marker replaced (a marker left is an error)."""
    text = TEMPLATE.read_text(encoding="utf-8")
    for name, value in values.items():
        text = text.replace(f"@{name}@", value)
    left = sorted(set(re.findall(r"@[A-Z_]+@", text)))
    if left:
        raise ValueError(f"markers left in the balancer configuration: {left}")
    return text


def spki_pin(cert_path: Path) -> str:
    """base64(SHA-256(SubjectPublicKeyInfo)) of a certificate: what Chromium's
    ``--ignore-certificate-errors-spki-list`` pins (that key only, not a blanket ignore)."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


# -- the egress proxy ----------------------------------------------------------------------


class EgressProxy:
    """An HTTP CONNECT proxy (RFC 9110 §9.3.6) on loopback for the replicas' outbound
    calls: it resolves the stack's names to this machine and tunnels bytes, nothing else
    (TLS stays end to end between the replica and the balancer)."""

    def __init__(self, domain: str) -> None:
        self.domain = domain
        self.port = free_port()
        self.tunnels = 0
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", self.port)
        )
        self._started.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()
            self._loop.run_until_complete(server.wait_closed())
            self._loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            method, target, _ = head.split(b"\r\n", 1)[0].decode("ascii").split(" ", 2)
            host, _, port = target.rpartition(":")
            if method != "CONNECT" or not (host == self.domain or host.endswith("." + self.domain)):
                writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
                return
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", int(port))
            self.tunnels += 1
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            await asyncio.gather(
                _pipe(reader, up_writer), _pipe(up_reader, writer), return_exceptions=True
            )
        except (OSError, ValueError, asyncio.IncompleteReadError, TimeoutError):
            pass
        finally:
            writer.close()

    def __enter__(self) -> EgressProxy:
        self._thread.start()
        self._started.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        with contextlib.suppress(OSError):
            writer.close()


# -- replicas and balancer -----------------------------------------------------------------


@dataclass
class Replica:
    """One ``drimbox-viewer serve`` process (production mode)."""

    name: str
    port: int
    source_api_port: int
    env: dict[str, str]
    log: Path
    metrics_port: int = 0
    process: subprocess.Popen[bytes] | None = None
    _log_file: IO[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def metrics(self) -> str:
        """The replica's Prometheus exposition (its internal metrics listener)."""
        answer = httpx.get(
            f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10, trust_env=False
        )
        answer.raise_for_status()
        return answer.text

    def start(self) -> None:
        self._log_file = self.log.open("ab")
        self.process = subprocess.Popen(
            [str(SERVE), "serve"],
            env=self.env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.wait_ready()

    def wait_ready(self) -> None:
        """Until /readyz says 200 (database, pool and cache answer: issue 15 item 4)."""

        def ready() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"replica {self.name} exited: {self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                answer = httpx.get(self.url + "/readyz", timeout=2, trust_env=False)
                return answer.status_code == 200
            return False

        if not poll(ready, START_TIMEOUT, interval=0.2):
            raise RuntimeError(f"replica {self.name} did not start: {self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: no drain, no goodbye (a crashed machine)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)
        self._close_log()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        self._close_log()

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"


@dataclass
class Balancer:
    """Debian's nginx with the rendered template."""

    prefix: Path
    public_port: int
    internal_port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def conf(self) -> Path:
        return self.prefix / "nginx.conf"

    def start(self, text: str) -> None:
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            path = self.prefix / "tmp" / sub
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(0o777)  # nginx's workers run as nobody
        self.conf.write_text(text, encoding="utf-8")
        check = subprocess.run(
            [str(NGINX), "-t", "-q", "-p", str(self.prefix), "-c", str(self.conf)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if check.returncode != 0:
            raise RuntimeError(f"nginx refuses the configuration: {check.stderr}")
        self.process = subprocess.Popen(
            [str(NGINX), "-p", str(self.prefix), "-c", str(self.conf), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,  # nginx writes its own error.log
            start_new_session=True,
        )
        process = self.process

        def listening() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"nginx exited: {self.error_log()}")
            with contextlib.suppress(OSError), socketpair_probe(self.public_port):
                return True
            return False

        if not poll(listening, START_TIMEOUT, interval=0.1):
            raise RuntimeError("nginx did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful: finish the requests
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=20)

    def access_log(self) -> list[str]:
        with contextlib.suppress(OSError):
            return (self.prefix / "access.log").read_text(errors="replace").splitlines()
        return []

    def error_log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.prefix / "error.log").read_text(errors="replace")[-4000:]
        return "(no error log)"


@contextlib.contextmanager
def socketpair_probe(port: int) -> Iterator[None]:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=1):
        yield


# -- the whole stack -----------------------------------------------------------------------


@dataclass
class Stack:
    work: Path
    study: DemoStudy
    balancer: Balancer
    replicas: list[Replica]
    proxy: EgressProxy
    ca_cert: Path
    server_cert: Path
    #: Orthanc paths asked by the replicas, as they arrive (the counting proxy)
    pacs_asked: list[str]
    handover_secret: str
    consumer_kos: Path
    client_tls: tuple[Path, Path]
    #: the CA of the Source API's server certificate (DRIM-M PKI, not the public one)
    source_ca: Path
    database_url: str

    @property
    def origin(self) -> str:
        return f"https://{LOCATION}:{self.balancer.public_port}"

    def link(self) -> str:
        from bff.access.params import AccessionNumber, ViewerLink

        link = ViewerLink(
            study_uid=self.study.study_uid,
            accession=AccessionNumber(self.study.accession_number, self.study.accession_issuer),
            cda_id=DEMO_CDA_ID,
        )
        return f"{self.origin}/IHEInvokeImageDisplay?{link.query()}"

    def chromium_args(self) -> list[str]:
        """Chromium reaches the stack's names on this machine and trusts the balancer's
        certificate by its public key only."""
        return [
            f"--host-resolver-rules=MAP *.{DOMAIN} 127.0.0.1",
            f"--ignore-certificate-errors-spki-list={spki_pin(self.server_cert)}",
        ]

    def tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_cert))

    def series_retrievals(self) -> dict[str, int]:
        """Series-level WADO-RS retrievals the replicas asked Orthanc, by series UID."""
        pattern = re.compile(r"/dicom-web/studies/[0-9.]+/series/([0-9.]+)$")
        counts: dict[str, int] = {}
        for path in list(self.pacs_asked):
            match = pattern.search(path)
            if match:
                counts[match.group(1)] = counts.get(match.group(1), 0) + 1
        return counts

    def upstreams_of(self, fragment: str) -> set[str]:
        """The replicas (host:port) the balancer sent the requests whose path holds
        ``fragment`` to (its access log: ``$upstream_addr`` last)."""
        found: set[str] = set()
        for line in self.balancer.access_log():
            if fragment in line:
                found.update(a.strip() for a in line.rsplit(" ", 1)[-1].split(","))
        return found


def _replica_env(
    *,
    name: str,
    port: int,
    source_api_port: int,
    metrics_port: int,
    work: Path,
    files: dict[str, Path],
    pacs_url: str,
    public_port: int,
    internal_port: int,
    proxy: EgressProxy,
    ca_cert: Path,
    extra: dict[str, str],
) -> dict[str, str]:
    issuer = f"https://{IDP_HOST}:{public_port}"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(work),
        "LANG": "C.UTF-8",
        # The hospital's egress proxy for the identity providers; the PACS, the database
        # and the balancer's internal listener are reached directly.
        "HTTPS_PROXY": proxy.url,
        "NO_PROXY": "127.0.0.1,localhost",
        "SSL_CERT_FILE": str(ca_cert),
        "DRIMBOX_MODE": "production",
        "DRIMBOX_HOST": "127.0.0.1",
        "DRIMBOX_PORT": str(port),
        "DRIMBOX_LOCATIONS": f"{LOCATION}={pacs_url}",
        "DRIMBOX_TRUSTED_HOSTS": SOURCE_API_HOST,
        "DRIMBOX_FORWARDED_ALLOW_IPS": "127.0.0.1",
        "DRIMBOX_OWNER_URL": f"http://127.0.0.1:{internal_port}",
        "DRIMBOX_ARCHIVE_URL_FILE": str(files["database_url"]),
        "DRIMBOX_SESSION_SECRET_FILE": str(files["session_secret"]),
        # Sessions, logins under way and hand-overs, shared by the replicas (issue 15
        # item 1), their tokens sealed with the state key.
        "DRIMBOX_STATE_URL_FILE": str(files["database_url"]),
        "DRIMBOX_STATE_KEY_FILE": str(files["state_key"]),
        # The hash-chained audit table (issue 15 item 5), its pseudonyms' key.
        "DRIMBOX_AUDIT_URL_FILE": str(files["database_url"]),
        "DRIMBOX_AUDIT_KEY_FILE": str(files["audit_key"]),
        "DRIMBOX_PSC_ISSUER": f"{issuer}/psc",
        "DRIMBOX_FCP_ISSUER": f"{issuer}/fcp",
        "DRIMBOX_PSC_CLIENT_ID": CLIENT_ID,
        "DRIMBOX_FCP_CLIENT_ID": CLIENT_ID,
        "DRIMBOX_PSC_CLIENT_SECRET_FILE": str(files["client_secret"]),
        "DRIMBOX_FCP_CLIENT_SECRET_FILE": str(files["client_secret"]),
        "DRIMBOX_FCP_ENCRYPTION_KEY_FILE": str(files["fcp_key"]),
        "DRIMBOX_AUDIT_LOG": str(work / f"audit-{name}.jsonl"),
        # One disk frame cache on a volume both replicas mount, one size accountant in it
        # (issue 15 item 2): a study that moves to the other replica is not transcoded again.
        "DRIMBOX_FRAME_DISK_CACHE_DIR": str(work / "frame-cache"),
        "DRIMBOX_FRAME_DISK_CACHE_SHARED": "true",
        # The exams prepared at publication (issue 16): one store on a volume shared by
        # the replicas, each KOS prepared by one of them (the lease in the database).
        "DRIMBOX_PREPARED_DIR": str(work / "prepared"),
        "DRIMBOX_PREPARE_SCAN_INTERVAL": "1",
        "DRIMBOX_METRICS_PORT": str(metrics_port),
        "DRIMBOX_TRANSCODE_WORKERS": "1",
        "DRIMBOX_UPSTREAM_CONNECT_TIMEOUT": "2",
        "DRIMBOX_UPSTREAM_READ_TIMEOUT": "20",
        "DRIMBOX_FRAME_WAIT_TIMEOUT": "30",
        # Source role: the mutual-TLS listener behind the balancer's TCP passthrough.
        "DRIMBOX_SOURCE_API_PORT": str(source_api_port),
        "DRIMBOX_TLS_CERT": str(files["source_cert"]),
        "DRIMBOX_TLS_KEY": str(files["source_key"]),
        "DRIMBOX_TLS_CLIENT_CA": str(files["client_ca"]),
        # Consumer role: hand-overs from the Consumer DRIMbox.
        "DRIMBOX_CONSUMER_ENABLED": "true",
        "DRIMBOX_CONSUMER_HANDOVER_SECRET_FILE": str(files["handover_secret"]),
        "DRIMBOX_SOURCE_CLIENT_CERT": str(files["client_cert"]),
        "DRIMBOX_SOURCE_CLIENT_KEY": str(files["client_key"]),
        "DRIMBOX_SOURCE_CA_BUNDLE": str(files["source_ca"]),
        "DRIMBOX_WHITELIST_FILE": str(files["whitelist"]),
        "DRIMBOX_WHITELIST_SIGNER_CERT": str(files["whitelist_signer"]),
        "DRIMBOX_LOG_LEVEL": "INFO",
    }
    env.update(extra)
    return env


def _secret_file(directory: Path, name: str, value: str) -> Path:
    path = directory / name
    path.write_text(value, encoding="utf-8")
    path.chmod(0o600)
    return path


@contextlib.contextmanager
def running_stack(
    work: Path,
    study: DemoStudy,
    pacs_dicomweb_url: str,
    database_url: str,
    *,
    replica_env: dict[str, str] | None = None,
) -> Iterator[Stack]:
    """The whole stack in ``work``; ``replica_env``: more environment for the replicas
    (e.g. the shared session store's settings)."""
    from bff.demo.kos import retarget_kos

    secrets_dir = work / "secrets"
    secrets_dir.mkdir(mode=0o700, parents=True)
    public_port, http_internal, source_internal, owner_port = (free_port() for _ in range(4))
    # Test PKI: the balancer's certificate for the stack's names; the Source API's
    # (mutual TLS, terminated by the replicas) and a Consumer client certificate.
    ca = make_ca(work / "pki" / "public-ca", "DRIMbox stack test CA")
    server = issue(
        work / "pki",
        ca,
        common_name=LOCATION,
        dns_names=[LOCATION, IDP_HOST],
        server=True,
        name="balancer",
    )
    drim = make_test_pki(work / "pki" / "drimbox", server_names=(SOURCE_API_HOST,))
    signer = make_whitelist_signer(work / "pki" / "whitelist")
    whitelist = work / "whitelist.xml"
    write_test_whitelist(whitelist, [SOURCE_API_HOST, "consumer.localhost"], signer)
    consumer_kos = work / "kos-for-consumer.dcm"
    consumer_kos.write_bytes(
        retarget_kos(study.kos_path.read_bytes(), f"https://{SOURCE_API_HOST}/api/source")
    )
    client_secret = secrets.token_urlsafe(32)
    handover_secret = secrets.token_urlsafe(32)
    fcp_key = generate_encryption_key()
    files = {
        "database_url": _secret_file(secrets_dir, "database-url", database_url),
        "session_secret": _secret_file(secrets_dir, "session-secret", secrets.token_urlsafe(48)),
        "client_secret": _secret_file(secrets_dir, "oidc-client-secret", client_secret),
        "fcp_key": _secret_file(
            secrets_dir, "fcp-encryption-key.jwk", json.dumps(fcp_key.as_dict(private=True))
        ),
        "handover_secret": _secret_file(secrets_dir, "handover-secret", handover_secret),
        "audit_key": _secret_file(secrets_dir, "audit-key", secrets.token_urlsafe(48)),
        "state_key": _secret_file(
            secrets_dir, "state-key", base64.b64encode(secrets.token_bytes(32)).decode()
        ),
        "source_cert": drim["server"].cert,
        "source_key": drim["server"].key,
        "client_ca": drim["client"].ca_cert,
        "client_cert": drim["client"].cert,
        "client_key": drim["client"].key,
        "source_ca": drim["server"].ca_cert,
        "whitelist": whitelist,
        "whitelist_signer": signer.cert,
    }

    asked: list[str] = []
    origin = f"https://{LOCATION}:{public_port}"
    idp_port = free_port()
    with contextlib.ExitStack() as stack:
        proxy = stack.enter_context(EgressProxy(DOMAIN))
        pacs_url = stack.enter_context(
            live_server(
                counting_proxy(pacs_dicomweb_url.removesuffix("/dicom-web"), asked),
                lifespan="off",
            )
        )
        idp_transport = httpx.AsyncHTTPTransport(
            proxy=proxy.url, verify=ssl.create_default_context(cafile=str(ca[0]))
        )
        idp = create_idp_app(
            load_users(DEMO_USERS_FILE),
            {
                CLIENT_ID: IdpClient(
                    client_id=CLIENT_ID,
                    client_secret=client_secret,
                    redirect_uris=(f"{origin}/auth/callback",),
                    post_logout_redirect_uris=(f"{origin}/auth/logged-out",),
                    jwks_uri=f"{origin}/auth/jwks",
                )
            },
            issuer_base=f"https://{IDP_HOST}:{public_port}",
            http_transport=idp_transport,
        )
        stack.enter_context(live_server(idp, port=idp_port))
        replicas = []
        for name in ("a", "b"):
            port, source_api_port, metrics_port = free_port(), free_port(), free_port()
            env = _replica_env(
                name=name,
                port=port,
                source_api_port=source_api_port,
                metrics_port=metrics_port,
                work=work,
                files=files,
                pacs_url=pacs_url + "/dicom-web",
                public_port=public_port,
                internal_port=owner_port,
                proxy=proxy,
                ca_cert=ca[0],
                extra=replica_env or {},
            )
            log = work / f"replica-{name}.log"
            replicas.append(Replica(name, port, source_api_port, env, log, metrics_port))
        balancer = Balancer(work / "nginx", public_port, owner_port)
        balancer.prefix.mkdir()
        servers = "\n        ".join(
            f"server {r.address} max_fails=1 fail_timeout=10s;" for r in replicas
        )
        source_servers = "\n        ".join(
            f"server 127.0.0.1:{r.source_api_port} max_fails=1 fail_timeout=10s;" for r in replicas
        )
        text = render_balancer(
            {
                "PUBLIC_PORT": f"127.0.0.1:{public_port}",
                "HTTP_INTERNAL_PORT": str(http_internal),
                "SOURCE_API_INTERNAL_PORT": str(source_internal),
                "INTERNAL_LISTEN": f"127.0.0.1:{owner_port}",
                "PREFIX": str(balancer.prefix),
                "SERVER_NAMES": LOCATION,
                "SOURCE_API_NAME": SOURCE_API_HOST,
                "CERT": str(server.cert),
                "KEY": str(server.key),
                "REPLICAS": servers,
                "SOURCE_API_REPLICAS": source_servers,
                "MAX_BODY": str(16 * 1024**2 + 64 * 1024),
                "EXTRA": _idp_server(http_internal, idp_port, server.cert, server.key),
            }
        )
        try:
            # The operator's migration step (compose.yaml's one-shot 'migrate'), then the
            # publication of the demo KOS in the archive (DB.SO.22).
            migrate(replicas[0].env, work / "migrate.log")
            publish_demo_kos(database_url, study.kos_path, location=LOCATION, cda_id=DEMO_CDA_ID)
            for replica in replicas:
                replica.start()
            balancer.start(text)
            wait_prepared(database_url, study)
            yield Stack(
                work=work,
                study=study,
                balancer=balancer,
                replicas=replicas,
                proxy=proxy,
                ca_cert=ca[0],
                server_cert=server.cert,
                pacs_asked=asked,
                handover_secret=handover_secret,
                consumer_kos=consumer_kos,
                client_tls=(drim["client"].cert, drim["client"].key),
                source_ca=drim["server"].ca_cert,
                database_url=database_url,
            )
        finally:
            balancer.stop()
            for replica in replicas:
                replica.stop()
            idp_transport_close(idp_transport)


def wait_prepared(database_url: str, study: DemoStudy) -> None:
    """The demo KOS, published before the replicas started, prepared by one of them."""
    from bff.archive.store import ArchiveStore

    archive = ArchiveStore(database_url)
    try:

        def prepared() -> bool:
            found = archive.preparations().get(study.kos_sop_uid)
            return found is not None and found.state == "prepared"

        assert poll(prepared, timeout=180), archive.preparations()
    finally:
        archive.close()


def migrate(env: dict[str, str], log: Path) -> None:
    """``drimbox-viewer db upgrade`` with the replicas' settings."""
    done = subprocess.run(
        [str(SERVE), "db", "upgrade"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    log.write_text(done.stdout + done.stderr, encoding="utf-8")
    if done.returncode != 0:
        raise RuntimeError(f"db upgrade failed: {done.stdout}{done.stderr}")


def idp_transport_close(transport: httpx.AsyncHTTPTransport) -> None:
    """Close it on an event loop of its own: this thread may run one already (Playwright's
    sync API keeps its loop up for the whole run), where ``asyncio.run`` is refused."""

    def close() -> None:
        with contextlib.suppress(RuntimeError):
            asyncio.run(transport.aclose())

    closer = threading.Thread(target=close, name="idp-transport-close")
    closer.start()
    closer.join()


def _idp_server(internal_port: int, idp_port: int, cert: Path, key: Path) -> str:
    """The test-only server block: the identity provider behind the balancer under its
    name (a real provider is the Internet's, never behind our balancer)."""
    return f"""server {{
        listen 127.0.0.1:{internal_port} ssl http2 proxy_protocol;
        server_name {IDP_HOST};
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-Proto https;
            proxy_pass http://127.0.0.1:{idp_port};
        }}
    }}"""


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
