"""Study download (DB.VI-SO.176): a streamed ZIP in IHE PDI layout with a DICOMDIR,
lossless, the KOS included, behind the one access function. Real Orthanc, a real
sign-in at the local provider, dcmtk and dicom3tools as the standard readers."""

from __future__ import annotations

import asyncio
import io
import re
import shutil
import subprocess
import threading
import zipfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import imagecodecs
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)
from starlette.types import Receive, Scope, Send

from bff.app import create_app
from bff.dicomweb.upstream import DicomwebUpstream
from bff.export.routes import zip_filename
from bff.export.zipstream import ZipWriter
from bff.services import services_of
from bff.transcode.pixels import PixelDescription
from bff.transcode.registry import decode_frame
from tests.access import ScriptedBrowser
from tests.conftest import Pacs, make_settings
from tests.servers import live_server
from tests.source_stack import LOCATION, OTHER_LOCATION, SourceStack
from tests.waiting import poll

pytestmark = pytest.mark.integration

LOSSLESS = {
    "1.2.840.10008.1.2.5",
    "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.201",
    "1.2.840.10008.1.2.4.202",
}
NATIVE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}
COMPONENT = re.compile(r"^[A-Z0-9_]{1,8}$")


@dataclass(frozen=True)
class Download:
    path: Path
    root: Path  # unpacked
    names: list[str]
    headers: httpx.Headers


def _download(client: httpx.Client, url: str, target: Path) -> Download:
    with client.stream("GET", url) as response:
        assert response.status_code == 200, response.read()
        with target.open("wb") as out:
            for chunk in response.iter_raw():
                out.write(chunk)
        headers = response.headers
    root = target.with_suffix("")
    with zipfile.ZipFile(target) as archive:
        assert archive.testzip() is None
        names = archive.namelist()
        archive.extractall(root)
    return Download(target, root, names, headers)


@pytest.fixture(scope="module")
def granted(source: SourceStack) -> Iterator[ScriptedBrowser]:
    browser = ScriptedBrowser()
    done = browser.sign_in(source.link(), "fcp", "dominique.pat-trois")
    assert done.status_code == 303, done.text
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def demo_zip(
    source: SourceStack, granted: ScriptedBrowser, tmp_path_factory: pytest.TempPathFactory
) -> Download:
    url = source.stack.bff_url(LOCATION) + f"/api/download/{source.study.study_uid}"
    return _download(granted.client, url, tmp_path_factory.mktemp("zip") / "exam.zip")


def _files(root: Path) -> list[Path]:
    return sorted(p for p in (root / "DICOM").rglob("*") if p.is_file())


# -- the archive -------------------------------------------------------------------------


def test_download_is_a_named_attachment(demo_zip: Download) -> None:
    disposition = demo_zip.headers["content-disposition"]
    assert disposition == 'attachment; filename="examen-20250314-ACN101.zip"'
    assert demo_zip.headers["content-type"] == "application/zip"
    assert "content-encoding" not in demo_zip.headers  # never gzipped on the fly


def test_pdi_tree(source: SourceStack, demo_zip: Download) -> None:
    names = set(demo_zip.names)
    assert {"DICOMDIR", "README.TXT", "INDEX.HTM"} <= names
    files = [n for n in demo_zip.names if n.startswith("DICOM/") and not n.endswith("/")]
    # every image + the KOS, under DICOM/ with PS3.10 file IDs
    assert len(files) == source.study.n_instances + 1
    for name in files:
        components = name.split("/")
        assert components[0] == "DICOM"
        assert len(components) <= 8
        assert all(COMPONENT.match(c) for c in components), name
    assert len({tuple(n.split("/")[:4]) for n in files}) == 3  # 2 image series + KOS


def _walk(ds: Dataset) -> list[Dataset]:
    """Follow the DICOMDIR's offsets from the root entity (as a reader does): every
    record is reached exactly once, and each offset points at a record's item tag."""
    at = {int(r.seq_item_tell): r for r in ds.DirectoryRecordSequence}
    reached: list[Dataset] = []

    def chain(offset: int) -> None:
        while offset:
            record = at[offset]  # KeyError: an offset that is not a record
            reached.append(record)
            chain(int(record.OffsetOfReferencedLowerLevelDirectoryEntity))
            offset = int(record.OffsetOfTheNextDirectoryRecord)

    chain(int(ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity))
    last = at[int(ds.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity)]
    assert int(last.OffsetOfTheNextDirectoryRecord) == 0
    assert len(reached) == len(ds.DirectoryRecordSequence) == len({id(r) for r in reached})
    return reached


def test_dicomdir_references_every_file_and_only_existing_ones(demo_zip: Download) -> None:
    ds = pydicom.dcmread(demo_zip.root / "DICOMDIR")
    referenced = set()
    for instance in _walk(ds):
        if "ReferencedFileID" not in instance:
            continue
        path = demo_zip.root.joinpath(*instance.ReferencedFileID)
        assert path.is_file()
        referenced.add(path)
        on_disk = pydicom.dcmread(path, stop_before_pixels=True)
        assert on_disk.SOPInstanceUID == instance.ReferencedSOPInstanceUIDInFile
        assert on_disk.file_meta.TransferSyntaxUID == instance.ReferencedTransferSyntaxUIDInFile
    assert referenced == set(_files(demo_zip.root))
    kinds = [r.DirectoryRecordType for r in ds.DirectoryRecordSequence]
    assert kinds.count("PATIENT") == 1 and kinds.count("STUDY") == 1
    assert kinds.count("SERIES") == 3 and kinds.count("KEY OBJECT DOC") == 1


def test_kos_and_identity_as_the_pacs_holds_them(source: SourceStack, demo_zip: Download) -> None:
    by_uid = {
        str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID): p
        for p in _files(demo_zip.root)
    }
    assert source.study.kos_sop_uid in by_uid
    kos = pydicom.dcmread(by_uid[source.study.kos_sop_uid])
    assert kos.Modality == "KO"
    original = pydicom.dcmread(source.study.kos_path)
    assert kos == original  # the manifest exactly as published
    for path in source.study.instance_files:
        stored = pydicom.dcmread(path, stop_before_pixels=True)
        got = pydicom.dcmread(by_uid[str(stored.SOPInstanceUID)], stop_before_pixels=True)
        for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex"):
            assert got.get(keyword) == stored.get(keyword)


def test_pixels_bit_identical_and_lossless(source: SourceStack, demo_zip: Download) -> None:
    originals = {}
    for path in source.study.instance_files:
        ds = pydicom.dcmread(path)
        originals[str(ds.SOPInstanceUID)] = ds
    seen = 0
    for path in _files(demo_zip.root):
        ds = pydicom.dcmread(path)
        syntax = str(ds.file_meta.TransferSyntaxUID)
        if "PixelData" not in ds:
            assert ds.Modality == "KO"
            continue
        assert syntax in LOSSLESS
        original = originals[str(ds.SOPInstanceUID)]
        assert syntax == str(original.file_meta.TransferSyntaxUID) == JPEGLSLossless
        assert ds.PixelData == original.PixelData  # the JPEG-LS codestream as stored
        seen += 1
    assert seen == source.study.n_instances


def test_readme_and_index_in_french(source: SourceStack, demo_zip: Download) -> None:
    readme = (demo_zip.root / "README.TXT").read_bytes().decode("utf-8")
    index = (demo_zip.root / "INDEX.HTM").read_bytes().decode("utf-8")
    patient = source.study.patient
    for text in (readme, index):
        assert "PAT-TROIS" in text and "14/03/2025" in text
        assert "DICOMDIR" in text and "visionneuse DICOM" in text
        assert source.study.institution_name in text
        assert "Thorax-abdomen" in text
    assert f"({source.study.n_instances - 2} image(s))" in readme  # the axial series count
    assert "objet(s) clé" in readme
    assert "avec perte" not in readme  # nothing lossy in the demo study
    del patient


# -- standard readers --------------------------------------------------------------------


def test_dcmdump_reads_dicomdir_and_every_file(demo_zip: Download) -> None:
    if shutil.which("dcmdump") is None:
        pytest.skip("dcmtk is not installed")
    paths = [demo_zip.root / "DICOMDIR", *_files(demo_zip.root)]
    result = subprocess.run(["dcmdump", "-q", *map(str, paths)], capture_output=True, timeout=120)
    errors = result.stderr.decode("latin-1")
    assert result.returncode == 0, errors
    assert "E:" not in errors and "W:" not in errors, errors
    dump = subprocess.run(
        ["dcmdump", "-q", str(demo_zip.root / "DICOMDIR")], capture_output=True
    ).stdout.decode("latin-1")
    assert "DICOM\\PAT00001\\STU00001\\SER00001\\IMG00001" in dump
    assert "KEY OBJECT DOC" in dump


def test_dciodvfy_reports_no_error_on_dicomdir(demo_zip: Download) -> None:
    if shutil.which("dciodvfy") is None:
        pytest.skip("dicom3tools is not installed")
    result = subprocess.run(
        ["dciodvfy", str(demo_zip.root / "DICOMDIR")], capture_output=True, text=True, timeout=60
    )
    output = result.stdout + result.stderr
    assert "BasicDirectory" in output or "Directory" in output, output
    assert "Error" not in output, output


# -- scope -------------------------------------------------------------------------------


def test_scope_other_study_other_location_no_session(
    source: SourceStack, granted: ScriptedBrowser
) -> None:
    base = source.stack.bff_url(LOCATION)
    other = granted.get(f"{base}/api/download/{source.other_study.study_uid}")
    assert other.status_code == 404 and other.headers["x-error-code"] == "E404"
    assert source.other_study.study_uid not in other.text
    unknown = granted.get(f"{base}/api/download/1.2.3.4.5")
    assert unknown.status_code == 404
    # the same study through another location of the same BFF: the session cookie is
    # host-only, so there is no session there at all (401); forced, it is not granted (404)
    elsewhere_url = source.stack.bff_url(OTHER_LOCATION) + f"/api/download/{source.study.study_uid}"
    assert granted.get(elsewhere_url).status_code == 401
    cookie = granted.client.cookies["drimbox_session"]
    forced = granted.get(elsewhere_url, headers={"Cookie": f"drimbox_session={cookie}"})
    assert forced.status_code == 404
    anonymous = ScriptedBrowser()
    try:
        nobody = anonymous.get(f"{base}/api/download/{source.study.study_uid}")
    finally:
        anonymous.close()
    assert nobody.status_code == 401 and nobody.headers["x-error-code"] == "E401"
    assert granted.get(f"{base}/api/download/not-a-uid").status_code == 400
    # HEAD (the panel asks before showing its button): same checks, nothing retrieved
    head = granted.client.head(f"{base}/api/download/{source.study.study_uid}")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-disposition"].startswith("attachment;")
    assert "content-length" not in head.headers
    other_head = granted.client.head(f"{base}/api/download/{source.other_study.study_uid}")
    assert other_head.status_code == 404


# -- native and lossy instances (open-access BFF, the facade's test mode) ----------------


def _image(
    study_uid: str,
    series_uid: str,
    number: int,
    pixels: Any,
    syntax: str,
    pixel_data: bytes,
    **extra: Any,
) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.7")
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = UID(ds.SOPInstanceUID)
    ds.file_meta.TransferSyntaxUID = UID(syntax)
    ds.PatientName = "ÉLÈVE^Zoé"
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientID = "NATIVE-1"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20240102", "0900", "9", "ACN9"
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "OT", number, 1
    ds.Rows, ds.Columns = pixels.shape[:2]
    ds.SamplesPerPixel = 1 if pixels.ndim == 2 else 3
    ds.PhotometricInterpretation = "MONOCHROME2" if pixels.ndim == 2 else "RGB"
    if pixels.ndim == 3:
        ds.PlanarConfiguration = 0
    bits = pixels.dtype.itemsize * 8
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    ds.PixelData = pixel_data
    ds["PixelData"].VR = "OW" if bits > 8 else "OB"
    if syntax not in NATIVE:
        ds["PixelData"].is_undefined_length = True
    for key, value in extra.items():
        setattr(ds, key, value)
    return ds


@pytest.fixture(scope="module")
def mixed_study(pacs: Pacs, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A study with native unsigned, native signed, native RGB and lossy JPEG images."""
    rng = np.random.default_rng(3)
    study_uid = generate_uid()
    unsigned = rng.integers(0, 4096, (64, 48), dtype=np.uint16)
    signed = rng.integers(-2000, 2000, (40, 56), dtype=np.int16)
    rgb = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    grey8 = rng.integers(0, 256, (64, 64), dtype=np.uint8)
    jpeg = bytes(imagecodecs.jpeg8_encode(grey8, level=80))
    cases = {
        "unsigned": (unsigned, ExplicitVRLittleEndian, unsigned.tobytes(), {}),
        "signed": (signed, ExplicitVRLittleEndian, signed.tobytes(), {}),
        "rgb": (rgb, ExplicitVRLittleEndian, rgb.tobytes(), {}),
        "lossy": (
            grey8,
            JPEGBaseline8Bit,
            encapsulate([jpeg]),
            {"LossyImageCompression": "01", "LossyImageCompressionMethod": "ISO_10918_1"},
        ),
    }
    work = tmp_path_factory.mktemp("mixed")
    out: dict[str, Any] = {"study_uid": study_uid, "by_sop": {}}
    for number, (name, (pixels, syntax, data, extra)) in enumerate(cases.items(), start=1):
        ds = _image(study_uid, generate_uid(), number, pixels, syntax, data, **extra)
        path = work / f"{name}.dcm"
        ds.save_as(path, enforce_file_format=True)
        out["by_sop"][str(ds.SOPInstanceUID)] = (name, pixels, path)
    pacs.process.upload(p for _, _, p in out["by_sop"].values())
    return out


def test_native_compressed_losslessly_lossy_kept_as_stored(
    pacs: Pacs, bff_url: str, mixed_study: dict[str, Any], tmp_path: Path
) -> None:
    with httpx.Client(timeout=60) as client:
        result = _download(
            client, f"{bff_url}/api/download/{mixed_study['study_uid']}", tmp_path / "m.zip"
        )
    assert zip_filename({"00080020": {"Value": ["20240102"]}, "00080050": {"Value": ["ACN9"]}}) == (
        "examen-20240102-ACN9.zip"
    )
    expected = {"unsigned": JPEGLSLossless, "signed": RLELossless, "rgb": JPEGLSLossless}
    for path in _files(result.root):
        ds = pydicom.dcmread(path)
        name, pixels, original_path = mixed_study["by_sop"][str(ds.SOPInstanceUID)]
        assert str(ds.PatientName) == "ÉLÈVE^Zoé"  # identity as stored
        syntax = str(ds.file_meta.TransferSyntaxUID)
        if name == "lossy":
            assert syntax == JPEGBaseline8Bit
            assert ds.PixelData == pydicom.dcmread(original_path).PixelData
            continue
        assert syntax == expected[name], name
        assert syntax in LOSSLESS
        frame = next(generate_frames(ds.PixelData, number_of_frames=1))
        decoded = decode_frame(frame, PixelDescription.from_dataset(ds), syntax)
        assert np.array_equal(decoded, pixels), name  # bit-identical
    readme = (result.root / "README.TXT").read_text(encoding="utf-8")
    assert "1 image(s) sont conservées par le PACS sous une forme compressée avec perte" in readme
    assert "3 image(s) stockée(s) sans compression ont été compressées sans perte" in readme
    ds = pydicom.dcmread(result.root / "DICOMDIR")
    patient = next(r for r in ds.DirectoryRecordSequence if r.DirectoryRecordType == "PATIENT")
    assert str(patient.PatientName) == "ÉLÈVE^Zoé"
    if shutil.which("dciodvfy"):
        check = subprocess.run(
            ["dciodvfy", str(result.root / "DICOMDIR")], capture_output=True, text=True
        )
        assert "Error" not in check.stdout + check.stderr, check.stdout + check.stderr


# -- streaming: sent as it is built; a disconnect stops the retrieval -------------------


class CountingUpstream(DicomwebUpstream):
    """The real PACS client, recording each series stream: opened, chunks read, whether
    it ran to its end, whether it was closed. After its first chunk a stream holds until
    ``release`` is set, so the client can go away while the series is mid-flight."""

    def __init__(self, base_url: str, origin: str) -> None:
        super().__init__(base_url, origin=origin)
        self.events: list[dict[str, Any]] = []
        self.release = threading.Event()

    @asynccontextmanager
    async def stream(
        self, path: str, accept: str
    ) -> AsyncIterator[tuple[str, AsyncIterator[bytes]]]:
        event: dict[str, Any] = {"path": path, "chunks": 0, "exhausted": False, "closed": False}
        self.events.append(event)
        try:
            async with super().stream(path, accept) as (content_type, body):

                async def counted() -> AsyncIterator[bytes]:
                    async for chunk in body:
                        event["chunks"] += 1
                        yield chunk
                        while not self.release.is_set():
                            await asyncio.sleep(0.02)
                    event["exhausted"] = True

                yield content_type, counted()
        finally:
            event["closed"] = True

    def holding(self) -> bool:
        """A series stream is open, its first chunk read, held there."""
        return bool(self.events) and self.events[0]["chunks"] > 0


@dataclass(frozen=True)
class HeldExport:
    url: str  # the study's download
    upstream: CountingUpstream
    ended: threading.Event  # the BFF has finished answering a download request


@contextmanager
def held_export(pacs: Pacs) -> Iterator[HeldExport]:
    """A BFF whose PACS client holds each series stream after its first chunk."""
    app = create_app(make_settings(pacs.dicomweb_url))
    ended = threading.Event()

    async def watched(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await app(scope, receive, send)
        finally:
            if scope["type"] == "http" and scope["path"].startswith("/api/download/"):
                ended.set()

    counting = CountingUpstream(pacs.dicomweb_url, "*")
    with live_server(watched) as url:
        locations = services_of(app).origins.locations
        assert isinstance(locations, dict)
        real, locations["*"] = locations["*"], counting
        try:
            yield HeldExport(f"{url}/api/download/{pacs.study.study_uid}", counting, ended)
        finally:
            counting.release.set()
            locations["*"] = real
    asyncio.run(counting.aclose())


def test_the_archive_is_sent_as_it_is_built(pacs: Pacs) -> None:
    """The browser gets the ZIP's first bytes while the PACS is still sending the first
    series (held here after its first chunk): nothing waits for the whole study."""
    with (
        held_export(pacs) as held,
        httpx.Client(timeout=30) as client,
        client.stream("GET", held.url) as response,
    ):
        assert response.status_code == 200
        chunks = response.iter_raw()  # kept: dropping the iterator closes the connection
        assert next(chunks).startswith(b"PK\x03\x04")
        assert poll(held.upstream.holding), held.upstream.events
        assert not held.upstream.events[0]["exhausted"]


def test_client_disconnect_stops_the_upstream_retrieval(pacs: Pacs) -> None:
    with held_export(pacs) as held:
        client = httpx.Client(timeout=30)
        with client, client.stream("GET", held.url) as response:
            assert response.status_code == 200
            chunks = response.iter_raw()
            assert next(chunks).startswith(b"PK\x03\x04")
            assert poll(held.upstream.holding), "no series retrieval was started"
        # The client is gone while the series is held mid-flight (never released): the
        # BFF ends the download, and with it the PACS's stream.
        assert held.ended.wait(30), "the download went on after the client left"
        events = held.upstream.events
        assert all(e["closed"] for e in events), events
        # stopped: the series in flight never ran to its end, no other series started
        assert not any(e["exhausted"] for e in events), events
        assert len(events) == 1


# -- the ZIP writer's ZIP64 path (forced on a small archive) -----------------------------


def test_zip64_records_read_back() -> None:
    for limit in (0xFFFFFFFF, 1):
        writer = ZipWriter(zip64_limit=limit)
        out = bytearray(writer.directory("DICOM/"))
        files = {f"DICOM/F{i:07d}": bytes([i]) * (i * 97) for i in range(1, 20)}
        for name, data in files.items():
            header, body = writer.file(name, data)
            out += header + body
        out += writer.finish()
        archive = zipfile.ZipFile(io.BytesIO(bytes(out)))
        assert archive.testzip() is None
        assert {n: archive.read(n) for n in files} == files
        if limit == 1:
            assert b"PK\x06\x06" in out and b"PK\x06\x07" in out  # ZIP64 end records
