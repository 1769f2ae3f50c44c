"""Value objects and transfer syntax tables of the transcoding layer.

Served syntaxes (the caller advertises them to OHIF):

- :data:`HTJ2K_LOSSY` (4.203) for every lossless source we re-encode lossy;
- :data:`HTJ2K_LOSSLESS` (4.201) for PALETTE COLOR images (as the RGB they show) and for
  12-bit JPEG (4.51) sources, which the stock OHIF decoder shifts by about +15;
- :data:`EXPLICIT_VR_LE` (native) for 1-bit and 32-bit images and for layouts HTJ2K does
  not carry (YBR_FULL_422 native, float pixel data);
- the source syntax itself for already-lossy sources browsers decode (pass-through).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

HTJ2K_LOSSY = "1.2.840.10008.1.2.4.203"
HTJ2K_LOSSLESS = "1.2.840.10008.1.2.4.201"
HTJ2K_LOSSLESS_RPCL = "1.2.840.10008.1.2.4.202"

IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_VR_BE = "1.2.840.10008.1.2.2"
RLE_LOSSLESS = "1.2.840.10008.1.2.5"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"
JPEG_LOSSLESS = "1.2.840.10008.1.2.4.57"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
JPEGLS_LOSSLESS = "1.2.840.10008.1.2.4.80"
JPEGLS_NEAR_LOSSLESS = "1.2.840.10008.1.2.4.81"
JPEG2000_LOSSLESS = "1.2.840.10008.1.2.4.90"
JPEG2000 = "1.2.840.10008.1.2.4.91"

NATIVE_SYNTAXES = frozenset({IMPLICIT_VR_LE, EXPLICIT_VR_LE, DEFLATED_LE, EXPLICIT_VR_BE})

# Lossless compressed syntaxes (all of them decoded by the browser, too).
LOSSLESS_COMPRESSED = frozenset(
    {
        RLE_LOSSLESS,
        JPEG_LOSSLESS,
        JPEG_LOSSLESS_SV1,
        JPEGLS_LOSSLESS,
        JPEG2000_LOSSLESS,
        HTJ2K_LOSSLESS,
        HTJ2K_LOSSLESS_RPCL,
    }
)
# Sources whose pixels are exact: decoded, then re-encoded lossy.
LOSSLESS_SOURCES = NATIVE_SYNTAXES | LOSSLESS_COMPRESSED

# MPEG-2, H.264 and HEVC: one bit stream for the whole clip (not split into frames).
VIDEO_SYNTAXES = frozenset(
    {f"1.2.840.10008.1.2.4.{n}" for n in (100, 101, 102, 103, 104, 105, 106, 107, 108)}
)

# Already-lossy (or possibly lossy) syntaxes the browser decodes: served unchanged.
PASS_THROUGH_SYNTAXES = (
    frozenset({JPEG_BASELINE, JPEG_EXTENDED, JPEGLS_NEAR_LOSSLESS, JPEG2000, HTJ2K_LOSSY})
    | VIDEO_SYNTAXES
)

# (0028,2114) Lossy Image Compression Method defined terms, by transfer syntax.
LOSSY_METHODS: dict[str, str] = {
    JPEG_BASELINE: "ISO_10918_1",
    JPEG_EXTENDED: "ISO_10918_1",
    JPEGLS_NEAR_LOSSLESS: "ISO_14495_1",
    JPEG2000: "ISO_15444_1",
    HTJ2K_LOSSY: "ISO_15444_15",
    "1.2.840.10008.1.2.4.100": "ISO_13818_2",
    "1.2.840.10008.1.2.4.101": "ISO_13818_2",
    **{f"1.2.840.10008.1.2.4.{n}": "ISO_14496_10" for n in (102, 103, 104, 105, 106)},
    "1.2.840.10008.1.2.4.107": "ISO_23008_2",
    "1.2.840.10008.1.2.4.108": "ISO_23008_2",
}

QUALITIES = ("high", "balanced", "small")
SERVE_MODES = ("lossy", "browser")
LOSSY_CODECS = ("htj2k", "jpegls")

#: Lossless encapsulated syntaxes the browser (cornerstone) decodes itself.
BROWSER_LOSSLESS = LOSSLESS_COMPRESSED


@dataclass(frozen=True)
class EncodeParams:
    """How lossy the served frames may be; see docs/transcoding.md for the measured table."""

    quality: str = "balanced"  # 'high' | 'balanced' | 'small'
    #: 'lossy': lossless sources are served HTJ2K lossy (the Source viewer, spec 4.3.2);
    #: 'browser': what the browser decodes is served as received, only the rest is
    #: transcoded (the Consumer viewer, DB.VI-CO: images as the Source sent them).
    serve: str = "lossy"
    #: The lossy codec: 'htj2k' (1.2.840.10008.1.2.4.203) or 'jpegls' (JPEG-LS
    #: near-lossless 1.2.840.10008.1.2.4.81, for unsigned grey images; others stay HTJ2K).
    codec: str = "htj2k"

    def __post_init__(self) -> None:
        if self.quality not in QUALITIES:
            raise ValueError(f"quality must be one of {QUALITIES}, not {self.quality!r}")
        if self.codec not in LOSSY_CODECS:
            raise ValueError(f"codec must be one of {LOSSY_CODECS}, not {self.codec!r}")
        if self.serve not in SERVE_MODES:
            raise ValueError(f"serve must be one of {SERVE_MODES}, not {self.serve!r}")


@dataclass(frozen=True)
class TranscodedInstance:
    """One DICOM instance as the BFF serves it, frame by frame."""

    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str  # syntax of the served frames
    frames: tuple[bytes, ...]  # index 0 = frame 1; empty without pixel data (SR, KOS, PDF)
    source_transfer_syntax_uid: str
    source_pixel_bytes: int  # rows*cols*spp*bitsAllocated/8*frames
    served_bytes: int  # sum of len(frames)
    lossy: bool  # served frames are lossy (ours or already lossy in the source)
    lossy_method: str | None  # (0028,2114) defined term of the last lossy step
    # DICOM JSON model attributes describing the served frames, keyed "GGGGEEEE"
    # (PhotometricInterpretation, PlanarConfiguration, BitsStored, HighBit when they
    # change); never the transfer syntax or lossy attributes (the caller sets those).
    attribute_overrides: dict[str, dict[str, Any]] = field(hash=False)

    @property
    def compression_ratio(self) -> float:
        """Uncompressed pixel bytes / served bytes (0.0 without pixel data)."""
        return self.source_pixel_bytes / self.served_bytes if self.served_bytes else 0.0
