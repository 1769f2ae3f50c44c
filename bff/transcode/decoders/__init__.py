"""Decoder backends, one module per library, each with the same three-name contract.

``is_available(transfer_syntax_uid) -> bool``
    the backend handles this syntax and its library can be imported here;
``DEPENDENCIES``
    what it needs, as a sentence naming the package (used in the "missing" error);
``decode_frame(frame, desc, transfer_syntax_uid) -> ndarray``
    a module-level function (picklable) from one frame's bytes to its pixels, in the
    library's own layout; :func:`bff.transcode.pixels.conform` finishes the job.

The order in which they are tried lives in :mod:`bff.transcode.registry`.
"""

from __future__ import annotations

import importlib


def imagecodecs_has(codec: str) -> bool:
    """Whether imagecodecs is importable and was built with ``codec`` (e.g. "JPEGLS")."""
    try:
        imagecodecs = importlib.import_module("imagecodecs")
    except ImportError:
        return False
    return bool(getattr(getattr(imagecodecs, codec, None), "available", False))
