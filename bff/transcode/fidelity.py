"""How lossy a served frame may be, by what the eye sees (issue 14; docs/transcoding.md).

The bound is one number per frame, in stored pixel values: JPEG-LS NEAR (every pixel
within it) or the HTJ2K quantization step. It is set against the display window each
modality is usually read at, never against the stored range: a 16-bit CR spreading over
25 600 values got NEAR 171 from the range, a visible step once the reader narrows the
window to the region he reads.

| group | window W (stored values) | balanced bound |
|---|---|---|
| CT (HU through the rescale) | 400 HU, soft tissue | 20 HU (calibrated, issue 5) |
| CR, DX, MG, RF, XA, IO, PX | the instance's window*, else the used range | W / 512 |
| US, grey | the instance's window*, else the used range | W / 128 |
| colour (RGB, YBR) | the used range | W / 128 |
| MR, and anything else | the instance's window*, else the used range | W / 256 |

\\* the narrowest Window Width (0028,1051; in the shared functional groups of an enhanced
image too) or the span of the VOI LUT (0028,3010), over |Rescale Slope|, and never wider
than the used range (the 1st to 99th percentile of the frame's values: burned-in text at
full scale does not widen it).

The fractions give at most 2 of the 256 grey levels a display shows at the narrowest
window usually set: a projection radiograph's default window spans the whole anatomy and
is narrowed about 4x to read a region (W / 512), an MR's about 2x (W / 256), ultrasound
and colour are read as they are (W / 128). CT keeps its calibrated 20 HU (RMSE 9.7 HU,
below CT's own noise and the 12 HU target, docs/transcoding.md). 'high' is 0.4x the
balanced bound and 'small' 2x, as for CT (8 / 20 / 40 HU).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

# Quantization step / NEAR of CT, in HU (calibrated: docs/transcoding.md, issue 5).
CT_STEP_HU: dict[str, float] = {"high": 8.0, "balanced": 20.0, "small": 40.0}
#: Each quality's bound against 'balanced' (the CT steps' proportions).
QUALITY_SCALE: dict[str, float] = {
    quality: step / CT_STEP_HU["balanced"] for quality, step in CT_STEP_HU.items()
}
#: The balanced bound as a fraction of the usual display window (module docstring).
WINDOW_FRACTION: dict[str, float] = {
    "projection": 1 / 512,
    "us": 1 / 128,
    "colour": 1 / 128,
    "other": 1 / 256,
}
#: Groups by Modality (0008,0060); any other grey image is "other".
MODALITY_GROUPS: dict[str, str] = {
    **dict.fromkeys(("CR", "DX", "MG", "RF", "XA", "IO", "PX"), "projection"),
    "US": "us",
}
#: The smallest bound (NEAR 1 once rounded).
MIN_STEP = 0.5


@dataclass(frozen=True)
class Fidelity:
    """What an instance's lossy bound is set against (from its header, once)."""

    group: str  # "ct" or a key of WINDOW_FRACTION
    slope: float = 1.0  # |RescaleSlope|: modality values (HU for CT) per stored value
    window: float | None = None  # the instance's narrowest window, in stored values

    @classmethod
    def from_dataset(cls, ds: Any, samples_per_pixel: int = 1) -> Fidelity:
        if samples_per_pixel > 1:
            return cls("colour")
        slope = _slope(ds)
        modality = str(ds.get("Modality", "")).strip().upper()
        if modality == "CT" or str(ds.get("RescaleType", "")).strip() == "HU":
            return cls("ct", slope)
        window = _window(ds)
        group = MODALITY_GROUPS.get(modality, "other")
        return cls(group, slope, window / slope if window else None)

    def step(self, quality: str, frame: NDArray[Any]) -> float:
        """The bound for ``frame`` at ``quality``, in stored values (>= :data:`MIN_STEP`)."""
        if self.group == "ct":
            return CT_STEP_HU[quality] / self.slope
        window = used_range(frame)
        if self.window:
            window = min(window, self.window)
        return max(window * WINDOW_FRACTION[self.group] * QUALITY_SCALE[quality], MIN_STEP)


def used_range(frame: NDArray[Any]) -> float:
    """1st to 99th percentile of the values (all samples), on every 4th row and column."""
    if not frame.size:
        return 0.0
    sample = frame[::4, ::4] if frame.ndim >= 2 else frame
    low, high = np.percentile(sample, (1, 99))
    return float(high - low)


def _slope(ds: Any) -> float:
    """|Rescale Slope| (top level, else the shared functional groups), 1 if none."""
    value = ds.get("RescaleSlope")
    if value is None:
        value = _shared(ds, "PixelValueTransformationSequence", "RescaleSlope")
    try:
        slope = abs(float(value))
    except (TypeError, ValueError):
        return 1.0
    return slope or 1.0


def _window(ds: Any) -> float | None:
    """The narrowest Window Width, else the first VOI LUT's span, in modality values."""
    widths = ds.get("WindowWidth")
    if widths is None:
        widths = _shared(ds, "FrameVOILUTSequence", "WindowWidth")
    values = []
    for width in _as_list(widths):
        try:
            values.append(float(width))
        except (TypeError, ValueError):
            continue
    values = [v for v in values if v > 0]
    if values:
        return min(values)
    luts = ds.get("VOILUTSequence")
    if luts:
        try:
            entries = int(luts[0].LUTDescriptor[0]) % 65536 or 65536
        except (AttributeError, IndexError, TypeError, ValueError):
            return None
        return float(entries)
    return None


def _shared(ds: Any, sequence: str, keyword: str) -> Any:
    try:
        return getattr(getattr(ds.SharedFunctionalGroupsSequence[0], sequence)[0], keyword)
    except (AttributeError, IndexError, KeyError, TypeError):
        return None


def _as_list(value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    if isinstance(value, str | bytes):
        return [value]
    try:
        return list(value)
    except TypeError:
        return [value]
