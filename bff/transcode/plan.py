"""What the BFF will serve for an instance: one pure decision, shared by the transcoder
(which then does it) and the metadata rewrite (which describes it before it is done).

- no pixel data (SR, KOS, PDF...)            -> no frames
- already lossy, browser-decodable          -> frames unchanged, same syntax, lossy
  (4.50, 8-bit 4.51, 4.81, 4.91, 4.203, video: the whole bit stream as one "frame")
- 12-bit JPEG 4.51                          -> HTJ2K lossless 4.201, still flagged lossy
  (OHIF's 12-bit JPEG decoder shifts pixels by about +15, FACTS 3)
- lossless source, PALETTE COLOR            -> looked up in its palette, HTJ2K lossless
  4.201 of 8-bit RGB (YBR_RCT), the palette attributes gone: stock OHIF cannot show every
  palette (implicit VR through Orthanc, segmented tables; bff/transcode/palette.py), also
  for the Consumer
- grey, 1 bit stored (BitsAllocated 1 or 8) -> HTJ2K lossless 4.201 of one byte a pixel
  (0/1), BitsAllocated/Stored 8 (cornerstone's WADO-RS path does not unpack 1-bit native
  frames, and any lossy step on two levels is the whole range), also for the Consumer
- lossless source, 32-bit / float,
  YBR_FULL_422 native, other sample counts  -> native 1.2.1 frames, not lossy
- lossless source, otherwise                -> HTJ2K lossy 4.203, full bit depth and sign
- anything else                             -> unsupported
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from bff.transcode.model import (
    BROWSER_LOSSLESS,
    EXPLICIT_VR_LE,
    HTJ2K_LOSSLESS,
    HTJ2K_LOSSY,
    JPEG_EXTENDED,
    JPEGLS_NEAR_LOSSLESS,
    LOSSLESS_SOURCES,
    LOSSY_METHODS,
    NATIVE_SYNTAXES,
    PASS_THROUGH_SYNTAXES,
)
from bff.transcode.pixels import PixelDescription

# Syntaxes whose "lossy" name may hide a reversible codestream: trust (0028,2110) "00".
MAYBE_LOSSLESS = frozenset({"1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.91", HTJ2K_LOSSY})


class Action(Enum):
    NONE = "none"
    PASS_THROUGH = "pass-through"
    HTJ2K_LOSSLESS = "htj2k-lossless"
    NATIVE = "native"
    HTJ2K_LOSSY = "htj2k-lossy"
    PALETTE_RGB = "palette-rgb"
    JPEGLS_NEAR = "jpegls-near"
    UNSUPPORTED = "unsupported"


@dataclass(frozen=True)
class Plan:
    action: Action
    transfer_syntax_uid: str
    lossy: bool
    lossy_method: str | None
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict, hash=False)
    #: DICOM JSON tags that no longer describe the served frames (dropped from metadata)
    removed: tuple[str, ...] = ()


#: A binary image served as one byte a pixel (DB.VI-CS.30: Multi-frame Single Bit SC;
#: DB.VI-CS.31: Bits Stored 1 in Bits Allocated 8): the codestream's precision.
BINARY_OVERRIDES: dict[str, dict[str, Any]] = {
    "00280100": {"vr": "US", "Value": [8]},
    "00280101": {"vr": "US", "Value": [8]},
    "00280102": {"vr": "US", "Value": [7]},
}


#: A palette image served as the colours it shows: 8-bit RGB in a reversible HTJ2K
#: codestream with the RCT (PS3.5 8.2.4: YBR_RCT), interleaved.
PALETTE_RGB_OVERRIDES: dict[str, dict[str, Any]] = {
    "00280002": {"vr": "US", "Value": [3]},
    "00280004": {"vr": "CS", "Value": ["YBR_RCT"]},
    "00280006": {"vr": "US", "Value": [0]},
    "00280100": {"vr": "US", "Value": [8]},
    "00280101": {"vr": "US", "Value": [8]},
    "00280102": {"vr": "US", "Value": [7]},
    "00280103": {"vr": "US", "Value": [0]},
}
#: The palette's descriptors, UID and tables (plain and segmented, alpha included).
PALETTE_TAGS: tuple[str, ...] = (
    "00281101",
    "00281102",
    "00281103",
    "00281104",
    "00281199",
    "00281201",
    "00281202",
    "00281203",
    "00281204",
    "00281221",
    "00281222",
    "00281223",
    "00281224",
)


def _palette(desc: PixelDescription) -> bool:
    return (
        desc.photometric == "PALETTE COLOR"
        and desc.samples_per_pixel == 1
        and desc.bits_allocated in (8, 16)
    )


def _binary(desc: PixelDescription) -> bool:
    """One grey sample with 1 bit stored (BitsAllocated 1, or 8 with BitsStored 1)."""
    return (
        desc.samples_per_pixel == 1
        and desc.bits_allocated in (1, 8)
        and (desc.bits_allocated == 1 or desc.bits_stored == 1)
        and desc.photometric in ("MONOCHROME1", "MONOCHROME2")
    )


def lossy_encodable(desc: PixelDescription) -> bool:
    """HTJ2K lossy only where it is safe: 8/16-bit, grey or 3-sample RGB-like."""
    if desc.bits_allocated not in (8, 16):
        return False  # 1-bit masks and 32-bit (RT dose, float-like) stay native
    if desc.samples_per_pixel == 1:
        return desc.photometric in ("MONOCHROME1", "MONOCHROME2")
    return desc.samples_per_pixel == 3 and desc.photometric in (
        "RGB",
        "YBR_FULL",
        "YBR_RCT",  # decoders return RGB for the J2K colour transforms
        "YBR_ICT",
    )


def lossy_overrides(desc: PixelDescription) -> dict[str, dict[str, Any]]:
    """What changes in the pixel module once frames are HTJ2K lossy."""
    overrides: dict[str, dict[str, Any]] = {}
    if desc.samples_per_pixel == 3:
        # J2K lossy colour with the ICT (PS3.5 8.2.4 / A.4.4): YBR_ICT, interleaved.
        overrides["00280004"] = {"vr": "CS", "Value": ["YBR_ICT"]}
        overrides["00280006"] = {"vr": "US", "Value": [0]}
    precision = desc.bits_allocated  # imagecodecs writes 8 or 16-bit components
    if desc.bits_stored != precision:
        # The codestream precision is BitsAllocated and lossy values may use all of it.
        overrides["00280101"] = {"vr": "US", "Value": [precision]}
        overrides["00280102"] = {"vr": "US", "Value": [precision - 1]}
    return overrides


def plan(
    source_ts: str,
    desc: PixelDescription | None,
    *,
    source_lossy: bool = False,
    says_lossless: bool = False,
    method_before: str | None = None,
    serve: str = "lossy",
    codec: str = "htj2k",
) -> Plan:
    """The decision for one instance (``desc`` None: the instance has no PixelData).

    ``serve='browser'`` (the Consumer): lossless syntaxes the browser decodes pass through,
    native ones are served native; nothing is made lossy."""
    if desc is None:
        method = method_before if source_lossy else None
        return Plan(Action.NONE, source_ts, source_lossy, method)
    if source_ts in PASS_THROUGH_SYNTAXES and not (
        source_ts == JPEG_EXTENDED and desc.bits_stored > 8
    ):
        lossy = not (source_ts in MAYBE_LOSSLESS and says_lossless)
        return Plan(
            Action.PASS_THROUGH, source_ts, lossy, LOSSY_METHODS[source_ts] if lossy else None
        )
    if source_ts == JPEG_EXTENDED:  # 12-bit JPEG: keep its pixels exactly
        return Plan(Action.HTJ2K_LOSSLESS, HTJ2K_LOSSLESS, True, "ISO_10918_1")
    if source_ts not in LOSSLESS_SOURCES:
        return Plan(Action.UNSUPPORTED, source_ts, False, None)
    kept_method = method_before if source_lossy else None
    if _palette(desc):
        return Plan(
            Action.PALETTE_RGB,
            HTJ2K_LOSSLESS,
            source_lossy,
            kept_method,
            {tag: dict(value) for tag, value in PALETTE_RGB_OVERRIDES.items()},
            PALETTE_TAGS,
        )
    if _binary(desc) and not (serve == "browser" and source_ts in BROWSER_LOSSLESS):
        return Plan(
            Action.HTJ2K_LOSSLESS,
            HTJ2K_LOSSLESS,
            source_lossy,
            kept_method,
            {tag: dict(value) for tag, value in BINARY_OVERRIDES.items()},
        )
    if serve == "browser" and source_ts in BROWSER_LOSSLESS:
        return Plan(Action.PASS_THROUGH, source_ts, source_lossy, kept_method)
    if serve == "browser" and source_ts in NATIVE_SYNTAXES:
        return Plan(Action.NATIVE, EXPLICIT_VR_LE, source_lossy, kept_method)
    if not lossy_encodable(desc):
        return Plan(Action.NATIVE, EXPLICIT_VR_LE, source_lossy, kept_method)
    if codec == "jpegls" and desc.samples_per_pixel == 1 and not desc.signed:
        return Plan(
            Action.JPEGLS_NEAR, JPEGLS_NEAR_LOSSLESS, True, "ISO_14495_1", lossy_overrides(desc)
        )
    return Plan(Action.HTJ2K_LOSSY, HTJ2K_LOSSY, True, "ISO_15444_15", lossy_overrides(desc))


_PIXEL_MODULE_TAGS = {
    "Rows": "00280010",
    "Columns": "00280011",
    "BitsAllocated": "00280100",
    "BitsStored": "00280101",
    "SamplesPerPixel": "00280002",
    "PixelRepresentation": "00280103",
    "PlanarConfiguration": "00280006",
    "PhotometricInterpretation": "00280004",
    "NumberOfFrames": "00280008",
}


class _JsonAttributes:
    """Read a DICOM JSON instance through the ``ds.get(keyword)`` shape PixelDescription uses."""

    def __init__(self, instance: Mapping[str, Any]) -> None:
        self._instance = instance

    def get(self, keyword: str, default: Any = None) -> Any:
        values = self._instance.get(_PIXEL_MODULE_TAGS[keyword], {}).get("Value") or [default]
        return values[0]

    def __getattr__(self, keyword: str) -> Any:
        if keyword not in _PIXEL_MODULE_TAGS:
            raise AttributeError(keyword)
        value = self.get(keyword)
        if value is None:
            raise AttributeError(keyword)
        return value


def plan_from_json(
    instance: Mapping[str, Any], *, serve: str = "lossy", codec: str = "htj2k"
) -> Plan:
    """The plan for an instance described by its DICOM JSON metadata."""

    def first(tag: str) -> Any:
        return (instance.get(tag, {}).get("Value") or [None])[0]

    source_ts = str(first("00020010") or EXPLICIT_VR_LE)
    methods = instance.get("00282114", {}).get("Value") or []
    flag = first("00282110")
    desc = None
    # Some PACS leave PixelData out of the metadata: an image module means pixels.
    if "7FE00010" in instance or "00280010" in instance:
        try:
            desc = PixelDescription.from_dataset(_JsonAttributes(instance))
        except Exception:
            return Plan(Action.UNSUPPORTED, source_ts, False, None)
    return plan(
        source_ts,
        desc,
        source_lossy=flag == "01",
        says_lossless=flag == "00",
        method_before=str(methods[-1]) if methods else None,
        serve=serve,
        codec=codec,
    )
