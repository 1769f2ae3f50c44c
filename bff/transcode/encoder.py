"""HTJ2K and JPEG-LS encoding of decoded frames (imagecodecs) and decoding of served frames.

How lossy a frame may be is :mod:`bff.transcode.fidelity`'s decision: a step in stored
pixel values (HTJ2K quantization step; JPEG-LS NEAR, :func:`jpegls_near`). OpenJPH has no
rate control: ``level`` is the irreversible quantization step as a fraction of the
codestream's full range (2**bits, bits = 8 * itemsize: imagecodecs always writes 8, 16 or
32-bit components), so a step means the same error whatever the container: constant
quality, variable size.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from bff.transcode.model import (
    EXPLICIT_VR_LE,
    HTJ2K_LOSSLESS,
    HTJ2K_LOSSLESS_RPCL,
    HTJ2K_LOSSY,
    JPEG2000,
    JPEG2000_LOSSLESS,
    JPEG_BASELINE,
    JPEG_EXTENDED,
    JPEG_LOSSLESS,
    JPEG_LOSSLESS_SV1,
    JPEGLS_LOSSLESS,
    JPEGLS_NEAR_LOSSLESS,
)

# JPEG-LS NEAR per step: balanced 20 HU (RMSE 9.7 HU, ratio 30 on the benchmark CT; at
# worst, errors spread uniformly, 11.8 HU), chosen over 15 HU (RMSE 7.5, ratio 20)
# because the wire shrinks by a third and encoding and browser decoding by a quarter:
# the whole CT at 20 Mbit/s fell from 23 s to 19.6 s, under DB.VI-SO.38's 20 s (issue 5,
# docs/transcoding.md). 'high' (NEAR 8 HU) is there for deployments that want less.
JPEGLS_NEAR_PER_STEP = 1.0
# Wavelet decompositions (OpenJPH default 5; see docs/transcoding.md for 5 vs fewer).
DECOMPOSITIONS = 5


def encode_htj2k_lossy(frame: NDArray[Any], step: float) -> bytes:
    """Irreversible 9/7 HTJ2K; 3-sample frames get the ICT (served as YBR_ICT)."""
    import imagecodecs

    full_range = float(2 ** (8 * frame.dtype.itemsize))
    return bytes(
        imagecodecs.htj2k_encode(
            frame,
            level=step / full_range,
            reversible=False,
            resolutions=DECOMPOSITIONS,
            rgb=frame.ndim == 3,
        )
    )


def jpegls_near(step: float) -> int:
    """NEAR for a quantization step: the step itself (balanced: 20 HU; docs/transcoding.md)."""
    # Display conformance (issue 6): CharLS refuses NEAR > 255 (a 16-bit frame using the
    # full 0..65535 range gives ~328 at 'balanced'; the error breaks the process pool).
    return min(255, max(1, round(step * JPEGLS_NEAR_PER_STEP)))


def encode_jpegls_near(frame: NDArray[Any], step: float) -> bytes:
    """JPEG-LS near-lossless (ISO 14495-1), grey unsigned frames: every pixel within
    NEAR (:func:`jpegls_near`) of the original (a bounded error), and 3-5x cheaper for
    the browser to decode than HTJ2K (docs/transcoding.md)."""
    import imagecodecs

    near = jpegls_near(step)
    return bytes(imagecodecs.jpegls_encode(frame, level=near))


def encode_htj2k_lossless(frame: NDArray[Any], *, rct: bool = False) -> bytes:
    """Reversible 5/3 HTJ2K; ``rct``: a 3-sample frame with the reversible colour transform
    (served as YBR_RCT), else no colour transform."""
    import imagecodecs

    return bytes(
        imagecodecs.htj2k_encode(frame, reversible=True, resolutions=DECOMPOSITIONS, rgb=rct)
    )


_SELF_DESCRIBING = {
    HTJ2K_LOSSY: "htj2k_decode",
    HTJ2K_LOSSLESS: "htj2k_decode",
    HTJ2K_LOSSLESS_RPCL: "htj2k_decode",
    JPEG2000: "jpeg2k_decode",
    JPEG2000_LOSSLESS: "jpeg2k_decode",
    JPEG_BASELINE: "jpeg8_decode",
    JPEG_EXTENDED: "jpeg8_decode",
    JPEG_LOSSLESS: "jpeg8_decode",
    JPEG_LOSSLESS_SV1: "jpeg8_decode",
    JPEGLS_LOSSLESS: "jpegls_decode",
    JPEGLS_NEAR_LOSSLESS: "jpegls_decode",
}


def decode_served_frame(frame: bytes, transfer_syntax_uid: str) -> NDArray[Any]:
    """Decode a served (compressed) frame back to pixels, as the library gives them.

    For tests and the bench. Native frames (1.2.1) carry no shape: use numpy with the
    instance's Rows/Columns instead.
    """
    import imagecodecs

    name = _SELF_DESCRIBING.get(transfer_syntax_uid)
    if name is None:
        what = "native frames need Rows/Columns" if transfer_syntax_uid == EXPLICIT_VR_LE else ""
        raise ValueError(f"cannot decode a {transfer_syntax_uid} frame alone {what}".strip())
    result: NDArray[Any] = np.asarray(getattr(imagecodecs, name)(frame))
    return result
