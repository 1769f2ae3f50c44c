"""JPEG (ISO 10918) with imagecodecs' libjpeg-turbo: baseline, 12-bit extended, lossless.

libjpeg-turbo 3 decodes the lossless process (4.57 any predictor, 4.70 SV1) at 2 to 16
bits (FACTS: 1.7 ms a 512x512 CT slice), so it is tried before the other backends.
"""

from __future__ import annotations

from typing import Any

from numpy.typing import NDArray

from bff.transcode.decoders import imagecodecs_has
from bff.transcode.model import JPEG_BASELINE, JPEG_EXTENDED, JPEG_LOSSLESS, JPEG_LOSSLESS_SV1
from bff.transcode.pixels import PixelDescription

DEPENDENCIES = "imagecodecs (JPEG8, libjpeg-turbo 3)"
TRANSFER_SYNTAXES = frozenset({JPEG_BASELINE, JPEG_EXTENDED, JPEG_LOSSLESS, JPEG_LOSSLESS_SV1})


def is_available(transfer_syntax_uid: str) -> bool:
    return transfer_syntax_uid in TRANSFER_SYNTAXES and imagecodecs_has("JPEG8")


def decode_frame(frame: bytes, desc: PixelDescription, transfer_syntax_uid: str) -> NDArray[Any]:
    import imagecodecs

    if desc.samples_per_pixel == 3 and desc.photometric == "RGB":
        # Components stored as RGB: no YCbCr -> RGB conversion on the way out.
        return imagecodecs.jpeg8_decode(frame, colorspace="RGB", outcolorspace="RGB")
    return imagecodecs.jpeg8_decode(frame)
