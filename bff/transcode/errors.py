"""Transcoding's own errors: a codec layer knows nothing of HTTP (issue 12). The callers
translate them at their seam (the series retrieval, the export, the Source API) into
:mod:`bff.errors`. All are plain ``Exception`` subclasses with a text argument, so they
cross the process pool's pickling unchanged.

    TranscodeError            the instance cannot be served as asked
    ├── CorruptPixelData      malformed DICOM, pixel module or compressed frame
    ├── NoDecoder             no backend decodes this transfer syntax here
    └── TranscodeFailed       a worker's unexpected failure (as text), or a dead worker
"""

from __future__ import annotations


class TranscodeError(Exception):
    pass


class CorruptPixelData(TranscodeError):
    pass


class NoDecoder(TranscodeError):
    """No backend can decode this transfer syntax here (a deployment problem)."""


class TranscodeFailed(TranscodeError):
    """A worker's error, as text: always picklable (a codec's own exception type may not
    be, and an unpicklable error breaks the whole pool)."""
