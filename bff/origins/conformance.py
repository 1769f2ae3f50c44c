"""What the Consumer accepts from a DRIMbox Source.

- The DRIM-M transfer syntaxes it asks for (FACTS.md section 1), with q-values; a Source
  answering anything else is E302.
- The SOP classes of spec Tableau 4 (DB.VI-CS.30), plus any image meeting the IHE Basic
  Image Review characteristics quoted under DB.VI-CS.31; anything else is E301.
"""

from __future__ import annotations

import httpx
from pydicom.dataset import Dataset

from bff.dicomweb.key_images import KEY_IMAGE_TITLES, KOS_SOP_CLASS_UID
from bff.dicomweb.upstream import ErrorPolicy
from bff.errors import UpstreamProtocolError, ViewerError
from bff.origins.errors import STATUS_CODES, SourceError, is_tls_failure

#: (transfer syntax, q) in the order the Consumer prefers them.
DRIMM_TRANSFER_SYNTAXES: tuple[tuple[str, float], ...] = (
    ("1.2.840.10008.1.2.4.80", 1.0),  # JPEG-LS lossless: what the browser decodes fastest
    ("1.2.840.10008.1.2.4.70", 0.9),
    ("1.2.840.10008.1.2.4.91", 0.8),
    ("1.2.840.10008.1.2.4.50", 0.7),
    ("1.2.840.10008.1.2.4.51", 0.6),
    ("1.2.840.10008.1.2.4.100", 0.5),
    ("1.2.840.10008.1.2.4.101", 0.5),
    ("1.2.840.10008.1.2.4.102", 0.5),
    ("1.2.840.10008.1.2.4.103", 0.5),
    ("1.2.840.10008.1.2.1", 0.4),
)
ACCEPTED = frozenset(ts for ts, _ in DRIMM_TRANSFER_SYNTAXES)

TABLE_4 = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.1",
        "1.2.840.10008.5.1.4.1.1.1.1",
        "1.2.840.10008.5.1.4.1.1.1.2",
        "1.2.840.10008.5.1.4.1.1.2",
        "1.2.840.10008.5.1.4.1.1.2.1",
        "1.2.840.10008.5.1.4.1.1.3.1",
        "1.2.840.10008.5.1.4.1.1.4",
        "1.2.840.10008.5.1.4.1.1.4.1",
        "1.2.840.10008.5.1.4.1.1.4.3",
        "1.2.840.10008.5.1.4.1.1.6.1",
        "1.2.840.10008.5.1.4.1.1.6.2",
        "1.2.840.10008.5.1.4.1.1.7",
        "1.2.840.10008.5.1.4.1.1.7.1",
        "1.2.840.10008.5.1.4.1.1.7.2",
        "1.2.840.10008.5.1.4.1.1.7.3",
        "1.2.840.10008.5.1.4.1.1.7.4",
        "1.2.840.10008.5.1.4.1.1.12.1",
        "1.2.840.10008.5.1.4.1.1.12.1.1",
        "1.2.840.10008.5.1.4.1.1.12.2",
        "1.2.840.10008.5.1.4.1.1.12.2.1",
        "1.2.840.10008.5.1.4.1.1.13.1.3",
        "1.2.840.10008.5.1.4.1.1.20",
        "1.2.840.10008.5.1.4.1.1.104.1",
        "1.2.840.10008.5.1.4.1.1.128",
        "1.2.840.10008.5.1.4.1.1.130",
    }
)
BIR_PHOTOMETRIC = frozenset(
    {
        "MONOCHROME1",
        "MONOCHROME2",
        "RGB",
        "PALETTE COLOR",
        "YBR_FULL",
        "YBR_FULL_422",
        "YBR_ICT",
        "YBR_RCT",
    }
)


def accept_header() -> str:
    """The series retrieval's Accept: every DRIM-M syntax with its q-value."""
    return ", ".join(
        f'multipart/related; type="application/dicom"; transfer-syntax={ts}; q={q:g}'
        for ts, q in DRIMM_TRANSFER_SYNTAXES
    )


def basic_image_review(ds: Dataset) -> bool:
    """DB.VI-CS.31: an image the viewer must show whatever its SOP class."""
    try:
        bits_allocated = int(ds.BitsAllocated)
        bits_stored = int(ds.get("BitsStored", bits_allocated))
        samples = int(ds.get("SamplesPerPixel", 1))
        photometric = str(ds.PhotometricInterpretation).strip()
        int(ds.Rows), int(ds.Columns)
    except (AttributeError, TypeError, ValueError):
        return False
    if bits_allocated == 8 and bits_stored not in (1, 8):
        return False
    if bits_allocated == 16 and not 9 <= bits_stored <= 16:
        return False
    if bits_allocated not in (8, 16) or samples not in (1, 3):
        return False
    return photometric in BIR_PHOTOMETRIC


def key_image_note(ds: Dataset) -> bool:
    """DB.VI-CO.197: a Key Image Note (a KOS whose title is a key-image title, not the
    DRIM-M manifest): not shown itself, read for the key images it selects."""
    if str(ds.get("SOPClassUID", "")) != KOS_SOP_CLASS_UID:
        return False
    titles = ds.get("ConceptNameCodeSequence") or []
    if not titles:
        return False
    title = titles[0]
    return (
        str(title.get("CodeValue", "")) in KEY_IMAGE_TITLES
        and str(title.get("CodingSchemeDesignator", "")) == "DCM"
    )


def check_instance(header: Dataset) -> None:
    """E302 for a syntax outside the DRIM-M list, E301 for an unsupported object."""
    meta = getattr(header, "file_meta", None)
    transfer_syntax = str(getattr(meta, "TransferSyntaxUID", "") or "")
    if transfer_syntax not in ACCEPTED:
        raise SourceError("E302", f"transfer syntax {transfer_syntax!r} not in the DRIM-M list")
    sop_class = str(header.get("SOPClassUID", ""))
    if sop_class not in TABLE_4 and not basic_image_review(header) and not key_image_note(header):
        raise SourceError("E301", f"SOP class {sop_class!r} not supported")


class ConsumerErrorPolicy(ErrorPolicy):
    """Failures of a remote Source, translated once, at the seam."""

    def for_exception(self, exc: httpx.HTTPError, what: str) -> ViewerError:
        if is_tls_failure(exc):
            return SourceError("E202", f"{what}: {exc!r}")
        if isinstance(exc, httpx.TimeoutException):
            return SourceError("E201", f"{what}: timeout {type(exc).__name__}")
        if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
            return SourceError("E201", f"{what}: {exc!r}")
        return SourceError("E201", f"{what}: {exc!r}")

    def for_status(self, status: int, what: str) -> ViewerError:
        code = STATUS_CODES.get(status, "E207" if status >= 500 else "E205")
        return SourceError(code, f"{what}: Source HTTP {status}")

    def check_part(self, header: Dataset) -> None:
        check_instance(header)

    def broken_series(self, error: ViewerError, received: int) -> ViewerError:
        """A Source failure keeps its Tableau 2 code mid-series too (DB.VI-CO.27; E506 is
        not one): a dropped connection E201, TLS E202, and so on. An answer that breaks
        off or stops being multipart is E207: the Source API ends its stream without the
        closing delimiter when its PACS fails once streaming has begun."""
        if isinstance(error, SourceError):
            return error
        if isinstance(error, UpstreamProtocolError):
            return SourceError("E207", error.detail)
        return super().broken_series(error, received)
