"""Display conformance fixes in bff/transcode (issue 6, DB.VI-CS.30 / DB.VI-CS.31), found
with the corpus of tests/corpus.py: each test fails if its fix is removed."""

from __future__ import annotations

from io import BytesIO
from typing import Any

import imagecodecs
import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from bff.dicomweb.metadata import rewrite_instance
from bff.transcode import EncodeParams, decode_served_frame, transcode_instance
from bff.transcode.encoder import encode_jpegls_near, jpegls_near
from bff.transcode.plan import Action, plan_from_json

SC = "1.2.840.10008.5.1.4.1.1.7"
HTJ2K_LOSSLESS = "1.2.840.10008.1.2.4.201"
J2K_PART2 = "1.2.840.10008.1.2.4.92"


def part10(
    pixels: np.ndarray[Any, Any] | bytes,
    *,
    rows: int,
    columns: int,
    bits: tuple[int, int],
    frames: int = 1,
    syntax: str = ExplicitVRLittleEndian,
) -> bytes:
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = UID(SC), generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = "OT"
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated, ds.BitsStored = bits
    ds.HighBit, ds.PixelRepresentation = bits[1] - 1, 0
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = pixels if isinstance(pixels, bytes) else pixels.tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID(SC)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = UID(syntax)
    if syntax != ExplicitVRLittleEndian:
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def metadata(**tags: Any) -> dict[str, Any]:
    """DICOM JSON of an instance with the pixel module keywords given as tags."""
    return {tag: {"vr": "US", "Value": [value]} for tag, value in tags.items()}


@pytest.mark.parametrize("serve", ["lossy", "browser"])
def test_bits_stored_1_in_bits_allocated_8_is_served_exact(serve: str) -> None:
    """DB.VI-CS.31 (Bits Stored 1 for Bits Allocated 8): JPEG-LS near-lossless with
    NEAR >= 1 would flip 0 and 1, the whole range; HTJ2K lossless keeps it."""
    binary = (np.indices((32, 32)).sum(axis=0) % 3 == 0).astype(np.uint8)
    data = part10(binary, rows=32, columns=32, bits=(8, 1))
    inst = transcode_instance(data, EncodeParams(serve=serve, codec="jpegls"))
    assert (inst.transfer_syntax_uid, inst.lossy) == (HTJ2K_LOSSLESS, False)
    assert np.array_equal(decode_served_frame(inst.frames[0], HTJ2K_LOSSLESS), binary)


def test_one_bit_metadata_says_what_the_frames_are() -> None:
    """The metadata rewrite (same plan) announces 8-bit HTJ2K lossless frames, for the
    Source and the Consumer alike (cornerstone cannot show 1-bit native WADO-RS frames)."""
    for serve in ("lossy", "browser"):
        row = metadata(
            **{"00280010": 16, "00280011": 16, "00280100": 1, "00280101": 1, "00280002": 1}
        )
        row["00280004"] = {"vr": "CS", "Value": ["MONOCHROME2"]}
        row["00020010"] = {"vr": "UI", "Value": [ExplicitVRLittleEndian]}
        decision = plan_from_json(row, serve=serve)
        assert decision.action is Action.HTJ2K_LOSSLESS
        rewrite_instance(
            row, instance_url="http://bff/i", upstream_base="http://pacs", ratio=None, serve=serve
        )
        assert row["00020010"]["Value"] == [HTJ2K_LOSSLESS]
        assert (row["00280100"]["Value"], row["00280101"]["Value"]) == ([8], [8])
        assert row["00280102"]["Value"] == [7]


def test_an_undecodable_syntax_gives_no_frames_and_keeps_its_syntax() -> None:
    """JPEG 2000 Part 2 (4.92): no decoder. The instance is delivered without frames and
    with its own syntax (frame requests end at once, the metadata does not claim a
    syntax the BFF serves, the page lists the image in French) instead of an error
    that left the metadata claiming JPEG-LS."""
    code = bytes(imagecodecs.jpeg2k_encode(np.zeros((8, 8), np.uint8), level=0))
    data = part10(encapsulate([code]), rows=8, columns=8, bits=(8, 8), syntax=J2K_PART2)
    inst = transcode_instance(data, EncodeParams(codec="jpegls"))
    assert inst.frames == ()
    assert inst.transfer_syntax_uid == inst.source_transfer_syntax_uid == J2K_PART2
    assert inst.lossy is False


def test_jpegls_near_never_exceeds_charls_limit() -> None:
    """A 16-bit frame over the full 0..65535 range: step ~437 at 'balanced', NEAR capped
    at 255 (CharLS refuses more, and its error breaks the worker pool)."""
    frame = (np.indices((32, 32)).sum(axis=0) * 1057 % 65536).astype(np.uint16)
    assert jpegls_near(20 / 3000 * 65535) == 255
    back = imagecodecs.jpegls_decode(encode_jpegls_near(frame, 20 / 3000 * 65535))
    assert int(np.abs(back.astype(int) - frame.astype(int)).max()) <= 255
