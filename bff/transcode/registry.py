"""Which decoder backend decodes which transfer syntax, tried in a stated order.

Order (first available wins):

=========================  ==========================================================
1.2 / 1.2.1 / 1.2.1.99     native (numpy)
1.2.2                      native (numpy, big endian)
1.2.5 RLE                  rle (imagecodecs PackBits + numpy)
4.50 / 4.51                jpeg (libjpeg-turbo)
4.57 / 4.70                jpeg (libjpeg-turbo, 1.7 ms), then ljpeg (liblj92)
4.80 / 4.81                jpegls (CharLS)
4.90 / 4.91                jpeg2000 (OpenJPEG)
4.201 / 4.202 / 4.203      htj2k (OpenJPH), then jpeg2000 (OpenJPEG)
=========================  ==========================================================

pydicom is only used to parse the dataset and split encapsulated frames; its pixel
plugins are never asked (with pylibjpeg installed it would pick it first, 4x slower).
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

from numpy.typing import NDArray

from bff.transcode.decoders import htj2k, jpeg, jpeg2000, jpegls, ljpeg, native, rle
from bff.transcode.errors import CorruptPixelData, NoDecoder
from bff.transcode.pixels import PixelDescription, conform

DecodeFrame = Callable[[bytes, PixelDescription, str], NDArray[Any]]

BACKEND_ORDER: tuple[ModuleType, ...] = (native, rle, jpeg, ljpeg, jpegls, htj2k, jpeg2000)


def backends_for(transfer_syntax_uid: str) -> list[ModuleType]:
    """Backends that handle ``transfer_syntax_uid``, in the order they are tried."""
    return [b for b in BACKEND_ORDER if transfer_syntax_uid in b.TRANSFER_SYNTAXES]


def get_decoder(transfer_syntax_uid: str) -> DecodeFrame:
    """The first available backend's ``decode_frame``, or :class:`NoDecoder` saying what
    to install."""
    candidates = backends_for(transfer_syntax_uid)
    for backend in candidates:
        if backend.is_available(transfer_syntax_uid):
            decode: DecodeFrame = backend.decode_frame
            return decode
    if not candidates:
        raise NoDecoder(f"no decoder knows transfer syntax {transfer_syntax_uid}")
    needs = " or ".join(b.DEPENDENCIES for b in candidates)
    raise NoDecoder(f"cannot decode transfer syntax {transfer_syntax_uid}: install {needs}")


def decode_frame(frame: bytes, desc: PixelDescription, transfer_syntax_uid: str) -> NDArray[Any]:
    """Decode one frame with the preferred backend and conform it to ``desc``."""
    decode = get_decoder(transfer_syntax_uid)
    try:
        arr = decode(frame, desc, transfer_syntax_uid)
    except (RuntimeError, ValueError) as exc:  # imagecodecs' errors are RuntimeErrors
        raise CorruptPixelData(f"{transfer_syntax_uid} frame does not decode: {exc}") from exc
    return conform(arr, desc)
