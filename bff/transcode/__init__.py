"""Transcoding of PACS instances into the frames the BFF serves (HTJ2K lossy by default).

Modules: :mod:`.model` (value objects, syntax tables), :mod:`.pixels` (frame layout),
:mod:`.decoders` (one module per backend) and :mod:`.registry` (their order),
:mod:`.encoder` (HTJ2K), :mod:`.instance` (the per-instance decision), :mod:`.pool`
(the only module that knows about processes), :mod:`.errors` (its own errors, which
the callers translate at their seam). See docs/transcoding.md.
"""

from bff.transcode.encoder import decode_served_frame
from bff.transcode.errors import CorruptPixelData, NoDecoder, TranscodeError, TranscodeFailed
from bff.transcode.instance import transcode_instance
from bff.transcode.model import HTJ2K_LOSSY, EncodeParams, TranscodedInstance
from bff.transcode.pool import TranscodePool

__all__ = [
    "HTJ2K_LOSSY",
    "CorruptPixelData",
    "EncodeParams",
    "NoDecoder",
    "TranscodeError",
    "TranscodeFailed",
    "TranscodePool",
    "TranscodedInstance",
    "decode_served_frame",
    "transcode_instance",
]
