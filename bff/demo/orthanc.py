"""A real PACS for the demo and the integration tests: Debian's Orthanc 1.10 as a subprocess.

Configuration facts checked against Orthanc 1.10.1 + DICOMweb plugin 1.7 (Debian):

- there is no HTTP bind-address option in 1.10 (``HttpBind`` does not exist): Orthanc listens
  on every interface, and ``RemoteAccessAllowed: false`` makes it refuse non-loopback
  clients. The C-STORE SCP is switched off (``DicomServerEnabled: false``) unless a
  ``dicom_port`` is given (a destination PACS of the export, DB.VI-CO.42): it then accepts
  C-STORE from any AE (``DicomAlwaysAllowStore``), the stored syntax kept as received.
- ``MetadataWorkerThreadsCount`` does not exist in DICOMweb 1.7 (it came later); it is not set.
- ``StudiesMetadata``/``SeriesMetadata`` ``"Full"`` make ``/metadata`` read every instance.
- The GDCM plugin is NOT loaded by default: in 1.10.1 + GDCM plugin 1.5 its codecs overflow
  the stack of Orthanc's HTTP worker threads and segfault the whole server (seen in
  ``libgdcmMSFF`` when transcoding JPEG-LS to Little Endian or to JPEG 2000 over WADO-RS).
  Orthanc's built-in DCMTK decodes JPEG-LS fine; only JPEG 2000 output needs GDCM
  (``gdcm=True``, at your own risk).
- With several media ranges in Accept, DICOMweb 1.7 ignores q and uses the LAST one.
- WADO-RS retrieve with ``transfer-syntax=*`` returns the stored JPEG-LS as is; without a
  ``transfer-syntax`` parameter DICOMweb >= 1.5 transcodes to Explicit VR Little Endian
  (DICOM 2016c rule, see the plugin's NEWS) -- callers that want the stored bytes must
  send ``transfer-syntax=*``.
"""

from __future__ import annotations

import ctypes
import json
import signal
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

import httpx

ORTHANC_BINARY = "/usr/sbin/Orthanc"
PLUGIN_DIR = Path("/usr/share/orthanc/plugins")
DICOMWEB_PLUGIN = "libOrthancDicomWeb.so"
GDCM_PLUGIN = "libOrthancGdcm.so"
LOG_NAME = "orthanc.log"
CONFIG_NAME = "orthanc.json"


def free_loopback_port() -> int:
    """A TCP port free on 127.0.0.1 right now (racy by nature, fine for tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the parent dies, so no Orthanc outlives a demo or a
    test run that was killed (Linux prctl PR_SET_PDEATHSIG)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class OrthancProcess:
    """Start, query and stop one Orthanc whose storage and index live under ``workdir``."""

    def __init__(
        self,
        workdir: Path,
        *,
        http_port: int = 0,
        name: str = "DRIMBOX-DEMO",
        gdcm: bool = False,
        dicom_port: int = 0,
        aet: str = "ORTHANC",
    ) -> None:
        self.workdir = Path(workdir)
        self.gdcm = gdcm
        self.http_port = http_port or free_loopback_port()
        self.name = name
        #: the C-STORE SCP's port (0: no DICOM server) and AE title
        self.dicom_port = dicom_port
        self.aet = aet
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: object | None = None

    # -- configuration -----------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.base_url}/dicom-web"

    @property
    def log_path(self) -> Path:
        return self.workdir / LOG_NAME

    def config(self) -> dict[str, object]:
        """The JSON configuration written before start."""
        wanted = (DICOMWEB_PLUGIN, GDCM_PLUGIN) if self.gdcm else (DICOMWEB_PLUGIN,)
        plugins = [str(PLUGIN_DIR / so) for so in wanted if (PLUGIN_DIR / so).is_file()]
        config: dict[str, object] = {
            "Name": self.name,
            "StorageDirectory": str(self.workdir / "storage"),
            "IndexDirectory": str(self.workdir / "index"),
            "HttpPort": self.http_port,
            "HttpServerEnabled": True,
            "RemoteAccessAllowed": False,  # loopback clients only (no bind option in 1.10)
            "AuthenticationEnabled": False,
            "DicomServerEnabled": False,
            "HttpCompressionEnabled": False,
            "KeepAlive": True,
            "TcpNoDelay": True,
            "StorageCompression": False,
            "SaveJobs": False,
            "ConcurrentJobs": 1,
            "HttpThreadsCount": 16,
            "StableAge": 1,
            # Decode/transcode with Orthanc's own DCMTK first: GDCM's JPEG-LS decoder
            # overflows the stack of the HTTP worker threads and segfaults Orthanc (seen
            # with 1.10.1 + GDCM plugin 1.5 when transcoding JPEG-LS to Little Endian).
            "BuiltinDecoderTranscoderOrder": "Before",
            "Plugins": plugins,
            "DicomWeb": {
                "Enable": True,
                "Root": "/dicom-web/",
                "EnableWado": True,
                "WadoRoot": "/wado",
                "Ssl": False,
                "StudiesMetadata": "Full",
                "SeriesMetadata": "Full",
            },
        }
        if self.dicom_port:
            config.update(
                {
                    "DicomServerEnabled": True,
                    "DicomPort": self.dicom_port,
                    "DicomAet": self.aet,
                    "DicomCheckCalledAet": True,
                    "DicomAlwaysAllowStore": True,
                    "DicomScpTimeout": 30,
                }
            )
        if self.gdcm:
            # GDCM only for JPEG 2000 (which DCMTK cannot do), see above.
            config["Gdcm"] = {
                "Enable": True,
                "RestrictTransferSyntaxes": [
                    "1.2.840.10008.1.2.4.90",
                    "1.2.840.10008.1.2.4.91",
                    "1.2.840.10008.1.2.4.92",
                    "1.2.840.10008.1.2.4.93",
                ],
            }
        return config

    # -- lifecycle ---------------------------------------------------------------------

    def start(self, timeout: float = 30) -> None:
        if self._process is not None:
            raise RuntimeError("Orthanc already started")
        self.workdir.mkdir(parents=True, exist_ok=True)
        config_path = self.workdir / CONFIG_NAME
        config_path.write_text(json.dumps(self.config(), indent=2), encoding="utf-8")
        log = self.log_path.open("ab")
        self._log_file = log
        self._process = subprocess.Popen(
            [ORTHANC_BINARY, "--no-jobs", str(config_path)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=httpx.Timeout(2.0)) as client:
            while True:
                code = self._process.poll()
                if code is not None:
                    self._cleanup()
                    raise RuntimeError(
                        f"Orthanc exited with status {code} at start:\n{self.log_tail()}"
                    )
                try:
                    if client.get(f"{self.base_url}/system").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"Orthanc did not answer within {timeout} s:\n{self.log_tail()}"
                    )
                time.sleep(0.1)

    def stop(self, timeout: float = 10) -> None:
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=timeout)
        self._cleanup()

    def _cleanup(self) -> None:
        self._process = None
        log = self._log_file
        self._log_file = None
        if log is not None and hasattr(log, "close"):
            log.close()

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> OrthancProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- data --------------------------------------------------------------------------

    def _client(self, timeout: float = 30.0) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=httpx.Timeout(timeout, connect=5.0))

    def upload(self, files: Iterable[Path]) -> list[str]:
        """POST each Part-10 file to ``/instances``; return the Orthanc instance ids."""
        ids: list[str] = []
        with self._client() as client:
            for path in files:
                response = client.post(
                    "/instances",
                    content=Path(path).read_bytes(),
                    headers={"Content-Type": "application/dicom"},
                )
                if response.status_code != 200:
                    raise RuntimeError(
                        f"Orthanc refused {path}: HTTP {response.status_code} {response.text[:200]}"
                    )
                body = response.json()
                if body.get("Status") not in ("Success", "AlreadyStored"):
                    raise RuntimeError(f"Orthanc refused {path}: {body}")
                ids.append(str(body["ID"]))
        return ids

    def has_study(self, study_uid: str) -> bool:
        """Whether the study is stored (``/tools/find`` on StudyInstanceUID)."""
        with self._client(10.0) as client:
            response = client.post(
                "/tools/find",
                json={"Level": "Study", "Query": {"StudyInstanceUID": study_uid}},
            )
            response.raise_for_status()
            return len(response.json()) > 0
