"""Look at a Part-10 file's file meta before pydicom reads its data set (issue 13).

A file in Deflated Explicit VR Little Endian (``1.2.840.10008.1.2.1.99``; also JPIP
Referenced Deflate ``1.2.840.10008.1.2.4.95``) holds its whole data set deflated after the
file meta. ``pydicom.dcmread`` inflates it in one piece, with no bound on the output and
whatever ``stop_before_pixels`` says: half a megabyte can become half a gigabyte. So an
intake of outside bytes (a KOS uploaded or handed over, a KOS given to the CLI, an
instance sent by a remote Source) reads the file meta first, here, and refuses or sets
aside such a file before anything is inflated.

The file meta is read exactly as ``dcmread`` reads it (pydicom's own reader of group
0002, with its fall-back for files that wrongly write it in implicit VR), so what is
checked here is what ``dcmread`` would act on.
"""

from __future__ import annotations

from typing import BinaryIO

from pydicom.dataset import FileMetaDataset
from pydicom.filereader import _read_file_meta_info, read_preamble

#: Transfer syntaxes whose data set is deflated (PS3.5 A.5, A.7).
DEFLATED_SYNTAXES = frozenset({"1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.4.95"})


class DeflatedDataset(ValueError):
    """The file's data set is deflated; it was not inflated."""


def file_meta(fp: BinaryIO, *, force: bool = False) -> FileMetaDataset:
    """The file meta group of the Part-10 file in ``fp`` (empty when there is none and
    ``force``); ``fp`` is put back where it was. Raises what pydicom raises on garbage
    (``InvalidDicomError`` without the ``DICM`` prefix unless ``force``)."""
    start = fp.tell()
    try:
        read_preamble(fp, force)
        return _read_file_meta_info(fp)
    finally:
        fp.seek(start)


def transfer_syntax(meta: FileMetaDataset) -> str:
    """The file meta's TransferSyntaxUID, '' when absent."""
    return str(meta.get("TransferSyntaxUID", "") or "").strip()


def refuse_deflated(fp: BinaryIO, *, force: bool = False) -> FileMetaDataset:
    """The file meta of ``fp``, or :class:`DeflatedDataset` when its data set is deflated.
    ``fp`` is put back where it was, ready for ``dcmread``."""
    meta = file_meta(fp, force=force)
    syntax = transfer_syntax(meta)
    if syntax in DEFLATED_SYNTAXES:
        raise DeflatedDataset(f"transfer syntax {syntax} (deflated): not inflated")
    return meta
