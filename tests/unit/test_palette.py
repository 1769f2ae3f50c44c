"""PALETTE COLOR images are served as the RGB they show (issue 14, DB.VI-CS.30/31): the
lookup is done in the BFF from the instance's own palette, whatever the PACS's metadata
left out (implicit VR) and whether the tables are plain or segmented, and the metadata
describes RGB with no palette left for OHIF to read."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
from numpy.typing import NDArray
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels.processing import apply_color_lut
from pydicom.uid import UID, generate_uid

from bff.dicomweb.metadata import rewrite_instance
from bff.transcode import EncodeParams, decode_served_frame, transcode_instance
from bff.transcode.errors import CorruptPixelData
from bff.transcode.palette import Palette
from bff.transcode.plan import PALETTE_TAGS
from tests.corpus import BIR_VARIANTS, palette_rgb, write_corpus

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
HTJ2K_LOSSLESS = "1.2.840.10008.1.2.4.201"
PACS = "http://pacs.local:8042/dicom-web"
BFF = "https://vi1.example/dicomweb/studies/1.2/series/1.3/instances/1.4"


def palette_image(
    indices: NDArray[Any],
    tables: NDArray[Any],
    *,
    first_mapped: int = 0,
    bits: int = 16,
    syntax: str = EXPLICIT_LE,
    data_width: int | None = None,
) -> bytes:
    """A Part-10 PALETTE COLOR image; ``tables`` (3, entries) are written plain."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = UID(syntax)
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = UID("1.2.840.10008.5.1.4.1.1.7")
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = "OT"
    ds.Rows, ds.Columns = indices.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "PALETTE COLOR"
    ds.BitsAllocated = ds.BitsStored = 8 * indices.dtype.itemsize
    ds.HighBit, ds.PixelRepresentation = ds.BitsStored - 1, 0
    order: Literal[">", "<"] = ">" if syntax == EXPLICIT_BE else "<"
    ds.PixelData = indices.astype(indices.dtype.newbyteorder(order)).tobytes()
    width = data_width or bits // 8
    entries = tables.shape[1]
    for colour, table in zip(("Red", "Green", "Blue"), tables, strict=True):
        setattr(
            ds, f"{colour}PaletteColorLookupTableDescriptor", [entries % 65536, first_mapped, bits]
        )
        setattr(
            ds, f"{colour}PaletteColorLookupTableData", table.astype(f"{order}u{width}").tobytes()
        )
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def served_rgb(data: bytes, serve: str = "lossy") -> NDArray[Any]:
    inst = transcode_instance(data, EncodeParams("small", serve=serve))
    assert inst.transfer_syntax_uid == HTJ2K_LOSSLESS
    assert (inst.lossy, inst.lossy_method) == (False, None)
    return decode_served_frame(inst.frames[0], inst.transfer_syntax_uid)


RNG = np.random.default_rng(14)
INDICES_8 = RNG.integers(0, 256, (24, 40), dtype=np.uint8)
TABLES_16 = RNG.integers(0, 65536, (3, 256), dtype=np.uint16)


@pytest.mark.parametrize("syntax", [EXPLICIT_LE, IMPLICIT_LE, EXPLICIT_BE])
def test_plain_16_bit_palette_is_served_as_its_colours(syntax: str) -> None:
    """Implicit VR (the descriptors' "US or SS") and big endian read like explicit VR."""
    rgb = served_rgb(palette_image(INDICES_8, TABLES_16, syntax=syntax))
    assert rgb.shape == (24, 40, 3) and rgb.dtype == np.uint8
    assert np.array_equal(rgb, (TABLES_16.T >> 8)[INDICES_8])


def test_the_colours_are_pydicoms_for_a_plain_palette() -> None:
    """An independent reference: pydicom's ``apply_color_lut`` (high byte of 16 bits)."""
    data = palette_image(INDICES_8, TABLES_16, syntax=IMPLICIT_LE)
    import pydicom

    ds = pydicom.dcmread(BytesIO(data))
    assert np.array_equal(served_rgb(data), apply_color_lut(ds.pixel_array, ds) >> 8)


def test_values_outside_the_table_take_its_first_and_last_entries() -> None:
    """PS3.3 C.7.6.3.1.5: below the first mapped value, the first entry; past the end,
    the last one (16-bit indices, 100 entries from 1000)."""
    indices = np.array([[0, 999, 1000, 1050, 1099, 1100, 65535]], np.uint16)
    tables = np.stack([np.arange(100) * 600, np.arange(100) * 300, 65535 - np.arange(100)])
    rgb = served_rgb(palette_image(indices, tables, first_mapped=1000))
    positions = [0, 0, 0, 50, 99, 99, 99]
    assert np.array_equal(rgb[0], (tables.T >> 8)[positions])


def test_8_bit_entries_packed_or_in_16_bit_words() -> None:
    """8-bit entries, as 8-bit data or padded in 16-bit words (PS3.3 C.7.6.3.1.5 note),
    taken as they are; 4096 of them (pydicom's own lookup wraps past 256 there)."""
    indices = (np.arange(64 * 64).reshape(64, 64)).astype(np.uint16)
    tables = np.stack([np.arange(4096) % 256, np.arange(4096) // 16, 255 - np.arange(4096) % 256])
    for width in (1, 2):
        rgb = served_rgb(palette_image(indices, tables, bits=8, data_width=width))
        assert np.array_equal(rgb, tables.T[indices]), width


def test_segmented_palettes_of_the_corpus_are_expanded(tmp_path: Path) -> None:
    """Discrete, linear and indirect segments (PS3.3 C.7.9.2), 65536 entries, next to the
    implicit-VR object: exactly what pydicom's ``apply_color_lut`` gives."""
    specs = tuple(s for s in BIR_VARIANTS if s.key.startswith("bir-palette"))
    for obj in write_corpus(tmp_path, seed=1, specs=specs):
        rgb = served_rgb(obj.path.read_bytes())
        assert np.array_equal(rgb, palette_rgb(obj.path)[0]), obj.key
        assert len(np.unique(rgb.reshape(-1, 3), axis=0)) >= 32, obj.key


def test_the_consumer_serves_a_palette_as_rgb_too() -> None:
    """serve='browser' passes lossless syntaxes the browser decodes through, but not a
    palette: an RLE palette image (which cornerstone would decode, then fail to colour
    without its descriptors) is looked up as for the Source."""
    import pydicom
    from pydicom.uid import RLELossless

    ds = pydicom.dcmread(BytesIO(palette_image(INDICES_8, TABLES_16, syntax=IMPLICIT_LE)))
    ds.compress(RLELossless, INDICES_8)
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    rgb = served_rgb(out.getvalue(), serve="browser")
    assert np.array_equal(rgb, (TABLES_16.T >> 8)[INDICES_8])


def test_a_palette_image_without_its_palette_is_corrupt() -> None:
    ds = Dataset()
    ds.RedPaletteColorLookupTableDescriptor = [256, 0, 16]
    with pytest.raises(CorruptPixelData):
        Palette.from_dataset(ds)
    with pytest.raises(CorruptPixelData):
        Palette.from_dataset(Dataset())


def orthanc_row(**extra: Any) -> dict[str, Any]:
    """A palette image's row as Orthanc 1.10 gives it for an implicit-VR file: no
    descriptors (their VR is ambiguous), the tables as bulk data of the PACS."""
    row = {
        "00020010": {"vr": "UI", "Value": [IMPLICIT_LE]},
        "00080018": {"vr": "UI", "Value": ["1.4"]},
        "00280002": {"vr": "US", "Value": [1]},
        "00280004": {"vr": "CS", "Value": ["PALETTE COLOR"]},
        "00280010": {"vr": "US", "Value": [64]},
        "00280011": {"vr": "US", "Value": [64]},
        "00280100": {"vr": "US", "Value": [16]},
        "00280101": {"vr": "US", "Value": [16]},
        "00280102": {"vr": "US", "Value": [15]},
        "00280103": {"vr": "US", "Value": [0]},
        "00281201": {"vr": "OW", "BulkDataURI": f"{PACS}/studies/1.2/bulk/00281201"},
        "7FE00010": {"vr": "OW", "BulkDataURI": f"{PACS}/studies/1.2/bulk/7fe00010"},
    }
    row.update(extra)
    return row


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"00281101": {"vr": "US", "Value": [0, 0, 16]}},
        {"00281221": {"vr": "OW", "InlineBinary": "AAAB"}},
    ],
    ids=["descriptors-left-out", "explicit", "segmented"],
)
def test_metadata_describes_rgb_and_no_palette(extra: dict[str, Any]) -> None:
    """What OHIF reads: 8-bit colour (YBR_RCT: the reversible transform in the
    codestream), interleaved, no palette attribute to fetch or to miss."""
    for serve in ("lossy", "browser"):
        out = rewrite_instance(
            orthanc_row(**extra), instance_url=BFF, upstream_base=PACS, ratio=None, serve=serve
        )
        assert out["00020010"]["Value"] == [HTJ2K_LOSSLESS]
        assert out["00280004"]["Value"] == ["YBR_RCT"]
        for tag, value in {"00280002": 3, "00280006": 0, "00280100": 8, "00280101": 8}.items():
            assert out[tag]["Value"] == [value], tag
        assert not set(PALETTE_TAGS) & set(out)
        assert "00282110" not in out
        assert out["7FE00010"]["BulkDataURI"] == f"{BFF}/bulk/7fe00010"
