"""Sending instances to the practice's PACS (DB.VI-CO.42): STOW-RS or DIMSE C-STORE.

Both take Part-10 files exactly as the Source sent them (the stored, lossless syntax:
nothing is decoded nor re-encoded) and count what the destination acknowledged. One
:class:`Sender` interface, two implementations (STYLE.md, "Variation behind an
interface"); the export job (:mod:`bff.export.jobs`) never asks which one it holds.

- :class:`StowSender`: ``POST <url>/studies``, ``multipart/related;
  type="application/dicom"``, instances in batches of at most ``batch_bytes`` (one batch
  in memory at a time); the answer's ReferencedSOPSequence / FailedSOPSequence (PS3.18
  10.5.3, read up to 4 MiB) say what was stored. A batch answered 4xx (but 409) stops the export as
  refused (E463); a 5xx, no connection or no answer in time, as unreachable (E462).
- :class:`CStoreSender`: pynetdicom in a worker thread. The association proposes one
  presentation context per (SOP class, transfer syntax) met so far, each with the
  instance's own syntax only (lossless as stored, never transcoded); an instance whose
  pair was not negotiated yet opens a new association proposing it too. A context the
  PACS rejects: that instance is refused (counted), the export goes on. Every network
  wait (connection, ACSE, DIMSE) is bounded by DRIMBOX_EXPORT_TIMEOUT.

Failures are our errors (:mod:`bff.errors`), translated here at the seam.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
from abc import ABC, abstractmethod
from dataclasses import dataclass
from io import BytesIO
from typing import Any

import httpx
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from bff.dicomweb.multipart import closing_delimiter, encode_part, new_boundary
from bff.errors import DestinationRefused, ExportFailed, UpstreamProtocolError
from bff.settings import ExportDestination

log = logging.getLogger(__name__)

DICOM_JSON = "application/dicom+json"
REFERENCED_SOP_SEQUENCE = "00081199"
FAILED_SOP_SEQUENCE = "00081198"
#: PS3.4 B.2.3: C-STORE warnings (the instance is stored).
STORE_WARNINGS = frozenset({0x0001, 0xB000, 0xB006, 0xB007})
#: pynetdicom proposes at most 128 presentation contexts per association.
MAX_CONTEXTS = 128


@dataclass
class Tally:
    """What the destination acknowledged so far."""

    stored: int = 0
    refused: int = 0


class Sender(ABC):
    """One export's connection to its destination."""

    def __init__(self) -> None:
        self.tally = Tally()

    @abstractmethod
    async def send(self, data: bytes) -> None:
        """Send one Part-10 instance (possibly batched: counted once acknowledged)."""

    @abstractmethod
    async def finish(self) -> None:
        """Send what is still batched and close the connection."""

    @abstractmethod
    async def aclose(self) -> None:
        """Close without sending what is batched (a failed or cancelled export)."""


# -- STOW-RS --------------------------------------------------------------------------------


def _auth_header(auth: str) -> dict[str, str]:
    if not auth:
        return {}
    if auth.lower().startswith("bearer "):
        return {"Authorization": auth}
    import base64

    return {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()}


def _count_items(body: Any, tag: str) -> int | None:
    if not isinstance(body, dict):
        return None
    element = body.get(tag)
    if not isinstance(element, dict):
        return 0
    value = element.get("Value")
    return len(value) if isinstance(value, list) else 0


#: The most of a STOW-RS answer read (its JSON lists one short item per instance).
MAX_ANSWER_BYTES = 4 * 1024**2


async def _read_capped(response: httpx.Response, limit: int) -> bytes:
    """The answer's body, or b'' when it is larger than ``limit`` (not read further)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            return b""
        chunks.append(chunk)
    return b"".join(chunks)


class StowSender(Sender):
    """STOW-RS to ``<url>/studies`` (PS3.18 10.5), in bounded batches."""

    def __init__(
        self,
        destination: ExportDestination,
        *,
        auth: str,
        timeout: float,
        batch_bytes: int,
        verify: ssl.SSLContext | bool = True,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__()
        self.destination = destination
        self._url = destination.url + "/studies"
        self._headers = {"Accept": DICOM_JSON, **_auth_header(auth)}
        self._batch_bytes = batch_bytes
        self._batch: list[bytes] = []
        self._size = 0
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(timeout), follow_redirects=False, verify=verify
        )
        self._own_client = client is None

    async def send(self, data: bytes) -> None:
        if self._batch and self._size + len(data) > self._batch_bytes:
            await self._post()
        self._batch.append(data)
        self._size += len(data)

    async def finish(self) -> None:
        try:
            if self._batch:
                await self._post()
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        self._batch, self._size = [], 0
        if self._own_client:
            await self._client.aclose()

    async def _post(self) -> None:
        batch, self._batch, self._size = self._batch, [], 0
        boundary = new_boundary()
        body = b"".join(encode_part(d, "application/dicom", boundary) for d in batch)
        body += closing_delimiter(boundary)
        content_type = f'multipart/related; type="application/dicom"; boundary={boundary}'
        headers = {**self._headers, "Content-Type": content_type}
        try:
            async with self._client.stream("POST", self._url, content=body, headers=headers) as r:
                status = r.status_code
                content = await _read_capped(r, MAX_ANSWER_BYTES)
        except httpx.TimeoutException as exc:
            raise ExportFailed(f"STOW-RS to {self.destination.name}: no answer: {exc}") from exc
        except httpx.HTTPError as exc:
            raise ExportFailed(f"STOW-RS to {self.destination.name}: {exc!r}") from exc
        try:
            parsed: Any = json.loads(content) if content else None
        except ValueError:
            parsed = None
        stored = _count_items(parsed, REFERENCED_SOP_SEQUENCE)
        failed = _count_items(parsed, FAILED_SOP_SEQUENCE)
        if status >= 500:
            raise ExportFailed(f"STOW-RS to {self.destination.name}: HTTP {status}")
        if 200 <= status < 300 or status == 409:
            if stored is None:  # no JSON answer: 2xx means all stored
                stored = len(batch) if status < 300 else 0
            stored = min(stored, len(batch))
            self.tally.stored += stored
            self.tally.refused += len(batch) - stored
            if failed:
                log.info(
                    "STOW-RS to %s: %d of %d instances refused (HTTP %d)",
                    self.destination.name,
                    len(batch) - stored,
                    len(batch),
                    status,
                )
            return
        self.tally.refused += len(batch)
        raise DestinationRefused(f"STOW-RS to {self.destination.name}: HTTP {status}")


# -- C-STORE --------------------------------------------------------------------------------


def read_instance(data: bytes) -> Dataset:
    """A Part-10 instance as a dataset (pixel data kept as its encapsulated bytes)."""
    try:
        ds = pydicom.dcmread(BytesIO(data), force=True)
    except (InvalidDicomError, EOFError, ValueError, OSError, KeyError) as exc:
        raise UpstreamProtocolError(f"unreadable DICOM instance: {exc}") from exc
    meta = getattr(ds, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta or "SOPClassUID" not in ds:
        raise UpstreamProtocolError("DICOM instance without SOP class or transfer syntax")
    return ds


class CStoreSender(Sender):
    """DIMSE C-STORE with pynetdicom (its calls run in a worker thread)."""

    def __init__(self, destination: ExportDestination, *, timeout: float) -> None:
        super().__init__()
        self.destination = destination
        self._timeout = timeout
        self._contexts: list[tuple[str, str]] = []
        self._assoc: Any = None
        self._accepted: set[tuple[str, str]] = set()

    def _ae(self) -> Any:
        from pynetdicom import AE

        ae = AE(ae_title=self.destination.calling_ae)
        for timeout in ("acse_timeout", "dimse_timeout", "network_timeout", "connection_timeout"):
            setattr(ae, timeout, self._timeout)
        for sop_class, syntax in self._contexts:
            ae.add_requested_context(sop_class, syntax)
        return ae

    def _reachable(self) -> None:
        """Connect once first: pynetdicom 3.0 leaks its socket when the connection is
        refused (its shutdown of an unconnected socket raises before the close)."""
        address = (self.destination.host, self.destination.port)
        try:
            socket.create_connection(address, timeout=self._timeout).close()
        except OSError as exc:
            raise ExportFailed(f"C-STORE to {self.destination.name}: {exc!r}") from exc

    def _associate(self) -> None:
        self._release()
        self._reachable()
        assoc = self._ae().associate(
            self.destination.host, self.destination.port, ae_title=self.destination.called_ae
        )
        if assoc.is_rejected:
            raise DestinationRefused(f"C-STORE to {self.destination.name}: association rejected")
        if not assoc.is_established:
            raise ExportFailed(f"C-STORE to {self.destination.name}: no association")
        self._assoc = assoc
        self._accepted = {
            (str(cx.abstract_syntax), str(cx.transfer_syntax[0])) for cx in assoc.accepted_contexts
        }

    def _release(self) -> None:
        assoc, self._assoc = self._assoc, None
        if assoc is not None and assoc.is_established:
            assoc.release()

    def _store(self, data: bytes) -> None:
        ds = read_instance(data)
        pair = (str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID))
        if self._assoc is None or (pair not in self._accepted and pair not in self._contexts):
            if pair not in self._contexts:
                self._contexts = [*self._contexts, pair][-MAX_CONTEXTS:]
            self._associate()
        if pair not in self._accepted:
            # The PACS takes neither this SOP class nor this syntax: never transcoded.
            self.tally.refused += 1
            return
        try:
            status = self._assoc.send_c_store(ds)
        except (RuntimeError, ValueError, AttributeError) as exc:
            raise ExportFailed(f"C-STORE to {self.destination.name}: {exc!r}") from exc
        code = getattr(status, "Status", None)
        if code is None:  # no answer: timeout, abort, connection lost
            self._assoc = None
            raise ExportFailed(f"C-STORE to {self.destination.name}: no answer")
        if code == 0x0000 or code in STORE_WARNINGS:
            self.tally.stored += 1
        else:
            log.info("C-STORE to %s: status 0x%04X", self.destination.name, code)
            self.tally.refused += 1

    async def send(self, data: bytes) -> None:
        await asyncio.to_thread(self._store, data)

    async def finish(self) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await asyncio.to_thread(self._release)


def tls_context(destination: ExportDestination) -> ssl.SSLContext | bool:
    """What an https destination's certificate is checked against: its ``ca_file``, else
    the system's trust store (always checked, host name included)."""
    if not destination.ca_file:
        return True
    return ssl.create_default_context(cafile=destination.ca_file)


def make_sender(
    destination: ExportDestination,
    *,
    auth: str,
    timeout: float,
    batch_bytes: int,
    verify: ssl.SSLContext | bool = True,
) -> Sender:
    if destination.protocol == "stow":
        return StowSender(
            destination, auth=auth, timeout=timeout, batch_bytes=batch_bytes, verify=verify
        )
    return CStoreSender(destination, timeout=timeout)
