"""DB.VI-SO.189 (note 2): the series the user chose is transcoded before the study's other
series (Retriever.prefer), except instances a viewer is already waiting for."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian

from bff.dicomweb.cache import FrameCache
from bff.dicomweb.multipart import closing_delimiter, encode_part
from bff.dicomweb.retrieve import Retriever
from bff.dicomweb.upstream import DicomwebUpstream
from bff.transcode import EncodeParams, TranscodedInstance

STUDY = "1.2.3"
SERIES = ("1.2.3.1", "1.2.3.2", "1.2.3.3")
PER_SERIES = 12
BOUNDARY = "b0undary"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def sops_of(series_uid: str) -> list[str]:
    return [f"{series_uid}.{n}" for n in range(1, PER_SERIES + 1)]


def instance(series_uid: str, sop_uid: str) -> bytes:
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.2")
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = STUDY, series_uid
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


class OneWorkerPool:
    """Stands in for a one-process pool: one instance at a time, in the order asked."""

    def __init__(self) -> None:
        self.order: list[str] = []
        self._busy = asyncio.Lock()

    async def run(self, function: Any, *args: Any, urgent: bool = False) -> Any:
        return function(*args)  # in-process: the metadata preparation

    async def transcode(self, data: bytes, params: EncodeParams) -> TranscodedInstance:
        ds = pydicom.dcmread(io.BytesIO(data))
        async with self._busy:
            await asyncio.sleep(0.01)
            self.order.append(str(ds.SeriesInstanceUID))
        return TranscodedInstance(
            study_uid=STUDY,
            series_uid=str(ds.SeriesInstanceUID),
            sop_uid=str(ds.SOPInstanceUID),
            sop_class_uid=str(ds.SOPClassUID),
            transfer_syntax_uid=ExplicitVRLittleEndian,
            frames=(b"frame",),
            source_transfer_syntax_uid=ExplicitVRLittleEndian,
            source_pixel_bytes=5,
            served_bytes=5,
            lossy=False,
            lossy_method=None,
            attribute_overrides={},
        )


def study_upstream() -> DicomwebUpstream:
    async def body(series_uid: str) -> AsyncIterator[bytes]:
        for sop_uid in sops_of(series_uid):
            yield encode_part(instance(series_uid, sop_uid), "application/dicom", BOUNDARY)
            await asyncio.sleep(0)
        yield closing_delimiter(BOUNDARY)

    def handler(request: httpx.Request) -> httpx.Response:
        series_uid = request.url.path.rsplit("/", 1)[1]
        content_type = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
        return httpx.Response(200, headers={"Content-Type": content_type}, content=body(series_uid))

    return DicomwebUpstream(
        "http://pacs/dicom-web", origin="pacs-a", transport=httpx.MockTransport(handler)
    )


def make_retriever(pool: OneWorkerPool) -> Retriever:
    return Retriever(
        FrameCache(10**6),
        pool,  # type: ignore[arg-type]
        EncodeParams(),
        frame_timeout=5,
        max_part_bytes=10**6,
        workers=2,
    )


async def retrieve_all(prefer: str | None) -> tuple[list[str], OneWorkerPool, Retriever]:
    pool = OneWorkerPool()
    retriever = make_retriever(pool)
    upstream = study_upstream()
    retrievals = [retriever.ensure(upstream, STUDY, uid) for uid in SERIES]  # as at grant time
    if prefer is not None:
        await asyncio.sleep(0.01)  # the user chooses a moment later
        retriever.prefer(upstream, STUDY, prefer)
    await asyncio.wait_for(asyncio.gather(*(r.done.wait() for r in retrievals)), 10)
    await upstream.aclose()
    return pool.order, pool, retriever


def last_of(order: list[str], series_uid: str) -> int:
    return max(i for i, uid in enumerate(order) if uid == series_uid)


@pytest.mark.anyio
async def test_the_chosen_series_is_transcoded_first() -> None:
    chosen = SERIES[2]
    order, _, retriever = await retrieve_all(prefer=chosen)
    assert len(order) == 3 * PER_SERIES
    # Everything of the chosen series before the others' bulk: at most what was already in
    # the pool's hands when the choice came (2 workers x 2 other series) goes before.
    assert last_of(order, chosen) < PER_SERIES + 6, order
    assert all(retriever.find("pacs-a", STUDY, uid).error is None for uid in SERIES)  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_without_a_choice_the_series_share_the_pool() -> None:
    order, _, _ = await retrieve_all(prefer=None)
    assert last_of(order, SERIES[2]) > PER_SERIES + 6, order


@pytest.mark.anyio
async def test_prefer_starts_a_series_not_started_yet() -> None:
    pool = OneWorkerPool()
    retriever = make_retriever(pool)
    upstream = study_upstream()
    retrieval = retriever.prefer(upstream, STUDY, SERIES[1])
    assert retriever.find("pacs-a", STUDY, SERIES[1]) is retrieval
    await asyncio.wait_for(retrieval.done.wait(), 10)
    assert len(retrieval.delivered) == PER_SERIES
    await upstream.aclose()


@pytest.mark.anyio
async def test_a_frame_a_viewer_waits_for_is_not_held() -> None:
    """A thumbnail of another series is not held back behind the chosen series."""
    pool = OneWorkerPool()
    retriever = make_retriever(pool)
    upstream = study_upstream()
    retriever.prefer(upstream, STUDY, SERIES[2])
    await asyncio.sleep(0.01)
    other = SERIES[0]
    wanted = sops_of(other)[-1]
    await asyncio.wait_for(retriever.frame(upstream, STUDY, other, wanted, 1), 10)
    chosen = retriever.find("pacs-a", STUDY, SERIES[2])
    assert chosen is not None
    assert len(chosen.delivered) < PER_SERIES  # served while the chosen series still ran
    for uid in (SERIES[0], SERIES[2]):
        found = retriever.find("pacs-a", STUDY, uid)
        assert found is not None
        await asyncio.wait_for(found.done.wait(), 10)
    await upstream.aclose()
