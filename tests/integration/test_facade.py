"""OHIF's request sequence through the BFF against a real Orthanc (DB.VI-CS.17, 4.3.2)."""

from __future__ import annotations

import concurrent.futures
import random
from pathlib import Path
from typing import Any

import httpx
import imagecodecs
import numpy as np
import pydicom
import pytest
from pydicom.encaps import generate_frames
from pydicom.uid import UID

from bff.app import create_app
from bff.dicomweb.multipart import MultipartParser, parse_content_type
from bff.transcode import decode_served_frame
from tests.conftest import Pacs, make_settings, original_frames
from tests.servers import counting_proxy, live_server

#: The demo CT is unsigned grey: served JPEG-LS near-lossless (DRIMBOX_LOSSY_CODEC=jpegls).
SERVED = "1.2.840.10008.1.2.4.81"

pytestmark = pytest.mark.integration

FRAME_ACCEPT = "multipart/related; type=application/octet-stream; transfer-syntax=*"
#: Bound on the served error, in stored values (= HU with slope 1), 'balanced' quality.
MAX_ABS_ERROR = 200
MAX_RMSE = 12.0


def ct_series(client: httpx.Client, study_uid: str) -> tuple[str, list[dict[str, Any]]]:
    series = client.get(f"/dicomweb/studies/{study_uid}/series").json()
    ct = [s for s in series if s["00080060"]["Value"][0] == "CT"]
    ct.sort(key=lambda s: -int(s.get("00201209", {}).get("Value", [0])[0]))
    return ct[0]["0020000E"]["Value"][0], series


def read_frame(response: httpx.Response) -> tuple[str, bytes]:
    media_type, params = parse_content_type(response.headers["content-type"])
    assert media_type == "multipart/related"
    parser = MultipartParser(params["boundary"], max_part_bytes=64 * 1024**2)
    parts = parser.feed(response.content)
    parser.finalize()
    assert len(parts) == 1
    _, part_params = parse_content_type(parts[0].headers["content-type"])
    return part_params["transfer-syntax"], parts[0].body


def original_pixels(path: Path) -> np.ndarray:
    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.80"
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    return np.asarray(imagecodecs.jpegls_decode(frame))


def test_ohif_sequence_frames_out_of_order_while_streaming(pacs: Pacs, bff_url: str) -> None:
    study = pacs.study
    with httpx.Client(base_url=bff_url, timeout=60) as client:
        # Study QIDO, as OHIF validates the study (twice).
        for _ in range(2):
            rows = client.get("/dicomweb/studies", params={"StudyInstanceUID": study.study_uid})
            assert rows.status_code == 200
            assert [r["0020000D"]["Value"][0] for r in rows.json()] == [study.study_uid]
        series_uid, all_series = ct_series(client, study.study_uid)
        # Topogram and axial CT; the DRIM-M manifest (KO) is not offered as a series.
        assert sorted(s["00080060"]["Value"][0] for s in all_series) == ["CT", "CT"]
        study_row = client.get(
            "/dicomweb/studies", params={"StudyInstanceUID": study.study_uid}
        ).json()[0]
        assert "KO" not in study_row.get("00080061", {}).get("Value", [])
        metadata = client.get(f"/dicomweb/studies/{study.study_uid}/series/{series_uid}/metadata")
        assert metadata.status_code == 200
        instances = metadata.json()
        assert metadata.headers["content-type"].startswith("application/dicom+json")

    # The served metadata describes what is served (spec 4.3.2: lossy streaming).
    for instance in instances:
        assert instance["00020010"]["Value"] == [SERVED]
        assert instance["00282110"]["Value"] == ["01"]
        assert instance["00282114"]["Value"][-1] == "ISO_14495_1"
        assert float(instance["00282112"]["Value"][-1]) >= 4
        pixel = instance["7FE00010"]
        assert "InlineBinary" not in pixel
        assert pixel["BulkDataURI"].startswith(bff_url + "/dicomweb/")
        assert pacs.process.base_url not in str(instance)

    instances.sort(key=lambda i: i["00200013"]["Value"][0])
    uids = [i["00080018"]["Value"][0] for i in instances]
    n = len(uids)
    # OHIF's volume order: middle, first, last, then the rest in a random order.
    rest = [i for i in range(n) if i not in (n // 2, 0, n - 1)]
    random.Random(3).shuffle(rest)
    order = [n // 2, 0, n - 1, *rest]
    originals = original_frames(study)

    def fetch(index: int) -> tuple[int, str, bytes]:
        url = (
            f"{bff_url}/dicomweb/studies/{study.study_uid}/series/{series_uid}"
            f"/instances/{uids[index]}/frames/1"
        )
        response = httpx.get(url, headers={"Accept": FRAME_ACCEPT}, timeout=60)
        assert response.status_code == 200, response.text
        syntax, body = read_frame(response)
        return index, syntax, body

    with concurrent.futures.ThreadPoolExecutor(8) as executor:
        results = list(executor.map(fetch, order))
    assert sorted(r[0] for r in results) == list(range(n))
    for index, syntax, body in results:
        assert syntax == SERVED
        served = decode_served_frame(body, syntax)
        original = original_pixels(originals[uids[index]])
        assert served.shape == original.shape
        assert served.dtype == original.dtype
        diff = served.astype(np.float64) - original.astype(np.float64)
        assert float(np.sqrt(np.mean(diff**2))) <= MAX_RMSE
        assert float(np.abs(diff).max()) <= MAX_ABS_ERROR


def test_unknown_uids_are_not_found(pacs: Pacs, bff_url: str) -> None:
    study = pacs.study
    with httpx.Client(base_url=bff_url, timeout=30) as client:
        unknown = "1.2.3.4.5.6.7.8.9"
        response = client.get(f"/dicomweb/studies/{study.study_uid}/series/{unknown}/metadata")
        assert response.status_code == 404
        assert response.json()["code"] == "E404"
        series_uid, _ = ct_series(client, study.study_uid)
        frame = client.get(
            f"/dicomweb/studies/{study.study_uid}/series/{series_uid}/instances/{unknown}/frames/1"
        )
        assert frame.status_code == 404
        bad = client.get("/dicomweb/studies/not-a-uid/series")
        assert bad.status_code == 400
        assert "not-a-uid" not in bad.text
        # A frame number past the end of a single-frame instance.
        metadata = client.get(f"/dicomweb/studies/{study.study_uid}/series/{series_uid}/metadata")
        sop_uid = metadata.json()[0]["00080018"]["Value"][0]
        past = client.get(
            f"/dicomweb/studies/{study.study_uid}/series/{series_uid}/instances/{sop_uid}/frames/2"
        )
        assert past.status_code == 404


def test_frames_are_cached_and_answered_without_refetch(pacs: Pacs) -> None:
    """A frame asked again is answered from the cache: the PACS (behind a counting proxy)
    is asked nothing more for it."""
    study = pacs.study
    asked: list[str] = []
    with (
        live_server(counting_proxy(pacs.process.base_url, asked), lifespan="off") as proxy,
        live_server(create_app(make_settings(proxy + "/dicom-web"))) as bff_url,
        httpx.Client(base_url=bff_url, timeout=30) as client,
    ):
        series_uid, _ = ct_series(client, study.study_uid)
        metadata = client.get(f"/dicomweb/studies/{study.study_uid}/series/{series_uid}/metadata")
        sop_uid = metadata.json()[0]["00080018"]["Value"][0]
        url = (
            f"/dicomweb/studies/{study.study_uid}/series/{series_uid}/instances/{sop_uid}/frames/1"
        )
        first = client.get(url, headers={"Accept": FRAME_ACCEPT})
        assert first.status_code == 200
        before = list(asked)
        second = client.get(url, headers={"Accept": FRAME_ACCEPT})
        assert second.status_code == 200
        assert asked == before  # the second answer asked the PACS nothing
    assert read_frame(first)[1] == read_frame(second)[1]
    series_path = f"/dicom-web/studies/{study.study_uid}/series/{series_uid}"
    assert asked.count(series_path) == 1  # one series retrieval served both
    assert not [path for path in asked if sop_uid in path]  # no instance-level refetch


def test_thumbnails_bulk_data_and_study_metadata(pacs: Pacs, bff_url: str) -> None:
    """Thumbnails (DB.VI-CS.16), pixel bulk data as served, study-level metadata."""
    study = pacs.study
    with httpx.Client(base_url=bff_url, timeout=30) as client:
        series_uid, _ = ct_series(client, study.study_uid)
        thumb = client.get(f"/dicomweb/studies/{study.study_uid}/series/{series_uid}/thumbnail")
        assert thumb.status_code == 200
        assert thumb.headers["content-type"] == "image/jpeg"
        assert thumb.content[:2] == b"\xff\xd8"
        rows = client.get(f"/dicomweb/studies/{study.study_uid}/metadata").json()
        assert {r["0020000D"]["Value"][0] for r in rows} == {study.study_uid}
        image = next(r for r in rows if r.get("0020000E", {}).get("Value") == [series_uid])
        bulk_uri = image["7FE00010"]["BulkDataURI"]
        assert bulk_uri.startswith(bff_url)
        bulk = client.get(bulk_uri, headers={"Accept": FRAME_ACCEPT})
        assert bulk.status_code == 200
        syntax, body = read_frame(bulk)
        assert syntax == SERVED
        assert decode_served_frame(body, syntax).shape == (512, 512)


def test_multiframe_colour_instance_is_served_frame_by_frame(
    pacs: Pacs, bff_url: str, tmp_path: Path
) -> None:
    """Multi-frame and colour (DB.VI-CS.31 pixel variants): 1-based frames, RGB kept."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    rng = np.random.default_rng(5)
    base = np.zeros((3, 96, 128, 3), np.uint8)
    for index in range(3):  # each frame a different, smooth colour pattern
        base[index, ..., index] = np.linspace(40, 220, 128, dtype=np.uint8)[None, :]
        base[index, ..., (index + 1) % 3] = 60 + 40 * index
    frames = np.clip(base + rng.normal(0, 2, base.shape), 0, 255).astype(np.uint8)
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.3.1")
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID, ds.PatientName, ds.Modality = "MF-TEST", "MULTI^FRAME", "US"
    ds.Rows, ds.Columns, ds.NumberOfFrames = 96, 128, 3
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = frames.tobytes()
    path = tmp_path / "us.dcm"
    ds.save_as(path, enforce_file_format=True)
    pacs.process.upload([path])

    base_url = (
        f"{bff_url}/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}"
    )
    for frame_number in (3, 1, 2):
        response = httpx.get(
            f"{base_url}/frames/{frame_number}", headers={"Accept": FRAME_ACCEPT}, timeout=30
        )
        assert response.status_code == 200
        syntax, body = read_frame(response)
        served = decode_served_frame(body, syntax)
        assert served.shape == (96, 128, 3)
        error = np.abs(served.astype(int) - frames[frame_number - 1].astype(int)).mean()
        assert error < 4, f"frame {frame_number} differs by {error}"
    past = httpx.get(f"{base_url}/frames/4", headers={"Accept": FRAME_ACCEPT}, timeout=30)
    assert past.status_code == 404
