"""The BFF serves every corpus object (tests/corpus.py: Tableau 4 of DB.VI-CS.30, the Basic
Image Review variants of DB.VI-CS.31) in a form OHIF displays, without a browser.

For each image: the series metadata names a transfer syntax cornerstone decodes, keeps the
pixel module OHIF needs (and the functional groups of multi-frame objects), points the
pixel data at the BFF; every frame is answered in that syntax, and decodes to the
original pixels (exactly when served lossless, within a bound when lossy). The PDF's
(0042,0011) bulk data is served through the BFF, byte for byte.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pydicom
import pytest
from numpy.typing import NDArray

from bff.app import create_app
from bff.transcode import decode_served_frame
from bff.transcode.plan import PALETTE_TAGS
from tests.conftest import Pacs, make_settings
from tests.corpus import (
    BIR_VARIANTS,
    OTHER,
    SOP_CLASSES,
    CorpusObject,
    colour,
    palette_rgb,
    tiny_pdf,
    write_corpus,
)
from tests.servers import live_server

pytestmark = pytest.mark.integration

#: OHIF's frame Accept header (ohif-config/app-config.js acceptHeader, in order).
OHIF_ACCEPT = ", ".join(
    f"multipart/related; type=application/octet-stream; transfer-syntax={ts}"
    for ts in ("1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.203", "*")
)
#: What the BFF may serve and cornerstone 3.x decodes (JPEG-LS, HTJ2K, JPEG baseline as
#: stored, native little endian).
DECODABLE = {
    "1.2.840.10008.1.2.4.81": "lossy",
    "1.2.840.10008.1.2.4.203": "lossy",
    "1.2.840.10008.1.2.4.201": "lossless",
    "1.2.840.10008.1.2.4.50": "lossy",
    "1.2.840.10008.1.2.1": "lossless",
}
IMAGES = [s for s in SOP_CLASSES + BIR_VARIANTS if s.kind == "image"]
MULTI_FRAME_FUNCTIONAL_GROUPS = ("52009229", "52009230")  # Shared / Per-frame


@pytest.fixture(scope="module")
def corpus(pacs: Pacs, tmp_path_factory: pytest.TempPathFactory) -> dict[str, CorpusObject]:
    objects = write_corpus(tmp_path_factory.mktemp("corpus"), seed=5)
    pacs.process.upload([o.path for o in objects])
    return {o.key: o for o in objects}


@pytest.fixture(scope="module")
def client(pacs: Pacs) -> Iterator[httpx.Client]:
    with (
        live_server(create_app(make_settings(pacs.dicomweb_url))) as url,
        httpx.Client(base_url=url, timeout=30) as http,
    ):
        yield http


def first(row: dict[str, Any], tag: str) -> Any:
    return (row.get(tag, {}).get("Value") or [None])[0]


def metadata(client: httpx.Client, obj: CorpusObject) -> dict[str, Any]:
    response = client.get(
        f"/dicomweb/studies/{obj.study_uid}/series/{obj.series_uid}/metadata",
        headers={"Accept": "application/dicom+json"},
    )
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()
    assert [first(r, "00080018") for r in rows] == [obj.sop_uid]
    return rows[0]


def parts(response: httpx.Response) -> list[tuple[str, bytes]]:
    """(Content-Type, body) of each part of a multipart/related answer."""
    match = re.search(r'boundary="?([^";]+)"?', response.headers["content-type"])
    assert match, response.headers["content-type"]
    delimiter = b"--" + match.group(1).encode()
    out = []
    for chunk in response.content.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, body = chunk.partition(b"\r\n\r\n")
        content_type = next(
            (
                line.split(b":", 1)[1].strip().decode()
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-type:")
            ),
            "",
        )
        out.append((content_type, body.removesuffix(b"\r\n")))
    return out


def original_frames(obj: CorpusObject) -> NDArray[Any]:
    """The source pixels, (frames, rows, cols[, 3]) RGB or grey, as stored; a palette
    image's as the 8-bit RGB it shows (served so, issue 14)."""
    ds = pydicom.dcmread(obj.path)
    if ds.file_meta.TransferSyntaxUID.is_compressed:  # the JPEG baseline variants
        return colour(obj.number_of_frames)
    if ds.PhotometricInterpretation == "PALETTE COLOR":
        return palette_rgb(obj.path)
    # pydicom's numpy handler: planes interleaved.
    arr = np.asarray(ds.pixel_array)
    return arr.reshape((obj.number_of_frames, *arr.shape[-3 if ds.SamplesPerPixel == 3 else -2 :]))


def served_frame(body: bytes, syntax: str, row: dict[str, Any]) -> NDArray[Any]:
    if syntax != "1.2.840.10008.1.2.1":
        return decode_served_frame(body, syntax)
    bits = int(first(row, "00280100"))
    kind = "i" if first(row, "00280103") == 1 else "u"
    shape: tuple[int, ...] = (int(first(row, "00280010")), int(first(row, "00280011")))
    if int(first(row, "00280002") or 1) == 3:
        shape = (*shape, 3)
    return np.frombuffer(body, f"<{kind}{bits // 8}").reshape(shape)


@pytest.mark.parametrize("key", [s.key for s in IMAGES])
def test_frames_are_served_as_ohif_needs(
    key: str, corpus: dict[str, CorpusObject], client: httpx.Client
) -> None:
    obj = corpus[key]
    row = metadata(client, obj)
    syntax = first(row, "00020010")
    assert syntax in DECODABLE, f"{obj.label}: served as {syntax}"
    assert first(row, "00080016") == obj.sop_class_uid
    assert int(first(row, "00280008") or 1) == obj.number_of_frames
    for tag in ("00280010", "00280011", "00280100", "00280101", "00280004", "00280002"):
        assert tag in row, f"{obj.label}: metadata without {tag}"
    if "52009229" in row or obj.key.startswith(("enhanced", "breast")):
        for tag in MULTI_FRAME_FUNCTIONAL_GROUPS:
            assert tag in row, f"{obj.label}: metadata without functional groups {tag}"
    bulk = row["7FE00010"]["BulkDataURI"]
    assert bulk.startswith(f"{client.base_url}/dicomweb/studies/{obj.study_uid}/"), bulk

    numbers = ",".join(str(n) for n in range(1, obj.number_of_frames + 1))
    response = client.get(
        f"/dicomweb/studies/{obj.study_uid}/series/{obj.series_uid}/instances/{obj.sop_uid}"
        f"/frames/{numbers}",
        headers={"Accept": OHIF_ACCEPT},
    )
    assert response.status_code == 200, response.text
    answered = parts(response)
    assert len(answered) == obj.number_of_frames
    originals = original_frames(obj)
    for index, (content_type, body) in enumerate(answered):
        assert f"transfer-syntax={syntax}" in content_type
        frame = served_frame(body, syntax, row).astype(np.float64)
        source = originals[index].astype(np.float64)
        if obj.key.startswith("bir-palette"):
            assert first(row, "00280004") == "YBR_RCT", row["00280004"]
            assert not set(PALETTE_TAGS) & set(row), "palette attributes left"
            assert np.array_equal(frame, source), "palette colours must be exact"
            continue
        assert frame.shape == source.shape, (frame.shape, source.shape)
        value_range = float(source.max() - source.min()) or 1.0
        difference = np.abs(frame - source)
        if syntax == "1.2.840.10008.1.2.4.203" and frame.ndim == 3:
            # imagecodecs' HTJ2K decoder wraps 8-bit colour overshoots (255.6 -> 0) where
            # cornerstone's OpenJPH build clamps (seen in Chromium): compare modulo 256.
            difference = np.minimum(difference, 256 - difference)
        error = difference / value_range
        if DECODABLE[syntax] == "lossless" and first(row, "00282110") != "01":
            assert error.max() == 0, f"{obj.label}: lossless frame {index + 1} differs"
        else:  # lossy: our quality bound, or JPEG baseline's own loss
            assert error.mean() < 0.02 and error.max() < 0.25, (error.mean(), error.max())
        assert frame.std() > 0, f"{obj.label}: frame {index + 1} is uniform"


def test_pdf_bulk_data_is_served_through_the_bff(
    corpus: dict[str, CorpusObject], client: httpx.Client
) -> None:
    """(0042,0011) Encapsulated Document: a BulkDataURI of the BFF (never the PACS), and
    the PDF itself behind it, as OHIF's PDF viewport asks for it."""
    obj = corpus["pdf"]
    row = metadata(client, obj)
    assert first(row, "00420012") == "application/pdf"
    assert "7FE00010" not in row
    uri = row["00420011"]["BulkDataURI"]
    assert uri.startswith(f"{client.base_url}/dicomweb/studies/{obj.study_uid}/series/"), uri
    response = client.get(
        uri, headers={"Accept": "multipart/related; type=application/octet-stream"}
    )
    assert response.status_code == 200, response.text
    body = response.content
    if response.headers["content-type"].startswith("multipart/"):
        body = parts(response)[0][1]
    assert body.rstrip(b"\0") == tiny_pdf()


@pytest.mark.parametrize("key", ["raw", *(s.key for s in OTHER)])
def test_objects_without_pixels_have_metadata_and_no_frames(
    key: str, corpus: dict[str, CorpusObject], client: httpx.Client
) -> None:
    obj = corpus[key]
    row = metadata(client, obj)
    assert first(row, "00080016") == obj.sop_class_uid
    assert "7FE00010" not in row


def test_an_image_the_bff_cannot_serve_keeps_its_syntax_in_the_metadata(
    corpus: dict[str, CorpusObject], client: httpx.Client
) -> None:
    """JPEG 2000 Part 2 (4.92): no decoder here. The metadata says so (its own syntax,
    not one the BFF serves), which is how the page lists it in French instead of
    showing a blank viewport; its frames fail with an error, never wrong pixels."""
    obj = corpus["unserved-syntax"]
    row = metadata(client, obj)
    assert first(row, "00020010") == "1.2.840.10008.1.2.4.92"
    response = client.get(
        f"/dicomweb/studies/{obj.study_uid}/series/{obj.series_uid}/instances/{obj.sop_uid}"
        "/frames/1",
        headers={"Accept": OHIF_ACCEPT},
    )
    assert response.status_code >= 400
