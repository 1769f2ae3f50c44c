"""Series retrievals: one upstream request, awaited instances first, partial failures."""

from __future__ import annotations

import asyncio
import io
import ssl
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian

from bff.dicomweb import series_metadata
from bff.dicomweb.cache import FrameCache, FrameKey
from bff.dicomweb.metadata_ahead import TTL_S, MetadataAhead
from bff.dicomweb.multipart import closing_delimiter, encode_part
from bff.dicomweb.retrieve import Retriever
from bff.dicomweb.series_metadata import RewriteContext
from bff.dicomweb.upstream import DicomwebUpstream, ErrorPolicy
from bff.errors import IncompleteSeries, NotFound, ViewerError
from bff.origins.conformance import ConsumerErrorPolicy
from bff.origins.errors import MESSAGES
from bff.transcode import EncodeParams, TranscodedInstance
from tests.clock import ManualClock

STUDY, SERIES = "1.2.3", "1.2.3.4"
BOUNDARY = "b0undary"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def instance(sop_uid: str) -> bytes:
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.2")
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = STUDY, SERIES
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


class RecordingPool:
    """Stands in for the process pool: records the order, takes a little time."""

    def __init__(self) -> None:
        self.order: list[str] = []

    async def run(self, function: Any, *args: Any, urgent: bool = False) -> Any:
        return function(*args)  # in-process: the metadata preparation

    async def transcode(self, data: bytes, params: EncodeParams) -> TranscodedInstance:
        ds = pydicom.dcmread(io.BytesIO(data))
        await asyncio.sleep(0.01)
        self.order.append(str(ds.SOPInstanceUID))
        return TranscodedInstance(
            study_uid=STUDY,
            series_uid=SERIES,
            sop_uid=str(ds.SOPInstanceUID),
            sop_class_uid=str(ds.SOPClassUID),
            transfer_syntax_uid="1.2.840.10008.1.2.4.203",
            frames=(b"frame-" + str(ds.SOPInstanceUID).encode(),),
            source_transfer_syntax_uid=ExplicitVRLittleEndian,
            source_pixel_bytes=60,
            served_bytes=10,
            lossy=True,
            lossy_method="ISO_15444_15",
            attribute_overrides={},
        )


def series_upstream(
    sops: list[str],
    *,
    truncate_after: int | None = None,
    fail_after: int | None = None,
    failure: Exception | None = None,
    policy: ErrorPolicy | None = None,
) -> tuple[DicomwebUpstream, list[str]]:
    """A series stream; ``truncate_after``: ends cleanly mid-part there (no closing
    delimiter); ``fail_after``: the transport raises ``failure`` there, mid-part."""
    requests: list[str] = []

    async def body() -> AsyncIterator[bytes]:
        for index, sop_uid in enumerate(sops):
            if index in (truncate_after, fail_after):
                yield encode_part(instance(sop_uid), "application/dicom", BOUNDARY)[:100]
                if failure is not None and index == fail_after:
                    raise failure
                return
            yield encode_part(instance(sop_uid), "application/dicom", BOUNDARY)
            await asyncio.sleep(0)
        yield closing_delimiter(BOUNDARY)

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request.url.path)
        content_type = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
        return httpx.Response(200, headers={"Content-Type": content_type}, content=body())

    upstream = DicomwebUpstream(
        "http://pacs/dicom-web",
        origin="pacs-a",
        transport=httpx.MockTransport(handler),
        policy=policy,
    )
    return upstream, requests


def make_retriever(
    pool: RecordingPool, workers: int = 1, clock: ManualClock | None = None
) -> Retriever:
    return Retriever(
        FrameCache(10**6),
        pool,  # type: ignore[arg-type]  # the pool's interface, in-process
        EncodeParams(),
        frame_timeout=5,
        max_part_bytes=10**6,
        workers=workers,
        clock=clock or ManualClock(),
    )


@pytest.mark.anyio
async def test_one_upstream_request_and_awaited_instances_first() -> None:
    sops = [f"1.2.3.4.{n}" for n in range(1, 41)]
    upstream, requests = series_upstream(sops)
    pool = RecordingPool()
    retriever = make_retriever(pool)
    middle, last = sops[20], sops[-1]
    frames = await asyncio.gather(
        retriever.frame(upstream, STUDY, SERIES, middle, 1),
        retriever.frame(upstream, STUDY, SERIES, last, 1),
        *(retriever.frame(upstream, STUDY, SERIES, sop, 1) for sop in sops[:3]),
    )
    assert frames[0].data == f"frame-{middle}".encode()
    assert frames[1].data == f"frame-{last}".encode()
    # The awaited middle and last slices were not left for their turn in arrival order.
    assert pool.order.index(middle) < 20
    assert pool.order.index(last) < 39
    retrieval = retriever.find("pacs-a", STUDY, SERIES)
    assert retrieval is not None
    await retrieval.done.wait()
    assert requests == [f"/dicom-web/studies/{STUDY}/series/{SERIES}"]
    assert sorted(pool.order) == sorted(sops)
    await upstream.aclose()


@pytest.mark.anyio
async def test_truncated_stream_keeps_what_it_delivered() -> None:
    sops = [f"1.2.3.4.{n}" for n in range(1, 11)]
    upstream, _ = series_upstream(sops, truncate_after=6)
    retriever = make_retriever(RecordingPool(), workers=2)
    delivered = await retriever.frame(upstream, STUDY, SERIES, sops[0], 1)
    assert delivered.data == f"frame-{sops[0]}".encode()
    with pytest.raises(IncompleteSeries):
        await retriever.frame(upstream, STUDY, SERIES, sops[8], 1)
    # Delivered frames stay available after the failure.
    again = await retriever.frame(upstream, STUDY, SERIES, sops[5], 1)
    assert again.data == f"frame-{sops[5]}".encode()
    await upstream.aclose()


def _tls_failure() -> Exception:
    failure = httpx.ReadError("record layer failure")
    failure.__cause__ = ssl.SSLError(1, "[SSL: DECRYPTION_FAILED_OR_BAD_RECORD_MAC]")
    return failure


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("truncate", "failure", "code"),
    [
        (False, httpx.RemoteProtocolError("incomplete chunked read"), "E201"),
        (False, httpx.ReadTimeout("no byte within the Source timeout"), "E201"),
        (False, _tls_failure(), "E202"),
        (True, None, "E207"),
    ],
    ids=["connection dropped", "read timeout", "TLS", "answer ends mid-series"],
)
async def test_a_source_failing_mid_series_keeps_its_tableau_2_code(
    truncate: bool, failure: Exception | None, code: str
) -> None:
    """DB.VI-CO.27 (issue 14 item 3): a remote Source that fails after some instances came
    fails the frames it never sent with the Tableau 2 code of the failure, not E506; the
    instances it sent are still served."""
    sops = [f"1.2.3.4.{n}" for n in range(1, 11)]
    upstream, _ = series_upstream(
        sops,
        truncate_after=6 if truncate else None,
        fail_after=None if truncate else 6,
        failure=failure,
        policy=ConsumerErrorPolicy(),
    )
    retriever = make_retriever(RecordingPool(), workers=2)
    delivered = await retriever.frame(upstream, STUDY, SERIES, sops[0], 1)
    assert delivered.data == f"frame-{sops[0]}".encode()
    with pytest.raises(ViewerError) as raised:
        await retriever.frame(upstream, STUDY, SERIES, sops[8], 1)
    assert (raised.value.code, raised.value.message) == (code, MESSAGES[code])
    retrieval = retriever.find("pacs-a", STUDY, SERIES)
    assert retrieval is not None and retrieval.received == 6
    assert retrieval.failure().code == code  # what the progress panel shows
    again = await retriever.frame(upstream, STUDY, SERIES, sops[5], 1)
    assert again.data == f"frame-{sops[5]}".encode()
    await upstream.aclose()


@pytest.mark.anyio
async def test_unknown_instance_and_frame_past_the_end_are_not_found() -> None:
    sops = [f"1.2.3.4.{n}" for n in range(1, 4)]
    upstream, _ = series_upstream(sops)
    retriever = make_retriever(RecordingPool())
    with pytest.raises(NotFound):
        await retriever.frame(upstream, STUDY, SERIES, "9.9.9", 1)
    with pytest.raises(NotFound):
        await retriever.frame(upstream, STUDY, SERIES, sops[0], 2)
    await upstream.aclose()


@pytest.mark.anyio
async def test_evicted_frame_is_fetched_again_at_instance_level() -> None:
    sops = [f"1.2.3.4.{n}" for n in range(1, 4)]
    upstream, requests = series_upstream(sops)
    retriever = make_retriever(RecordingPool())
    await retriever.frame(upstream, STUDY, SERIES, sops[0], 1)
    retrieval = retriever.find("pacs-a", STUDY, SERIES)
    assert retrieval is not None
    await retrieval.done.wait()
    retriever.cache.discard_series("pacs-a", STUDY, SERIES)
    assert retriever.cache.get(FrameKey("pacs-a", STUDY, SERIES, sops[1], 1)) is None
    frame = await retriever.frame(upstream, STUDY, SERIES, sops[1], 1)
    assert frame.data == f"frame-{sops[1]}".encode()
    assert requests[-1] == f"/dicom-web/studies/{STUDY}/series/{SERIES}/instances/{sops[1]}"
    await upstream.aclose()


def metadata_upstream() -> tuple[DicomwebUpstream, list[str]]:
    requests: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request.url.path)
        return httpx.Response(200, json=[])

    upstream = DicomwebUpstream(
        "http://pacs/dicom-web", origin="pacs-a", transport=httpx.MockTransport(handler)
    )
    return upstream, requests


@pytest.mark.anyio
async def test_metadata_asked_while_signing_in_is_used_once_by_the_grant() -> None:
    """Issue 5: Retriever.warm_metadata asks the PACS once, starts no retrieval; the grant
    takes that answer instead of asking again (once); an answer older than TTL_S after
    its last use is dropped (bff/dicomweb/metadata_ahead.py, clock injected)."""
    upstream, requests = metadata_upstream()
    retriever = make_retriever(RecordingPool())
    now = [0.0]
    retriever.ahead = MetadataAhead(clock=lambda: now[0])
    key = ("pacs-a", STUDY, SERIES)
    retriever.warm_metadata(upstream, STUDY, SERIES)
    retriever.warm_metadata(upstream, STUDY, SERIES)  # the link opened twice
    asked = retriever.ahead.asked(key)
    assert asked is not None and await asked == b"[]"
    assert requests == [f"/dicom-web/studies/{STUDY}/series/{SERIES}/metadata"]
    assert retriever.find("pacs-a", STUDY, SERIES) is None  # no retrieval before the grant
    taken = retriever.ahead.take(key)
    assert taken is asked and retriever.ahead.take(key) is None  # once
    # Too old: dropped, asked again.
    other = ("pacs-a", STUDY, "1.2.9")
    retriever.warm_metadata(upstream, STUDY, "1.2.9")
    first = retriever.ahead.asked(other)
    assert first is not None
    await first
    now[0] += TTL_S + 1
    assert retriever.ahead.asked(other) is None and len(retriever.ahead) == 0
    retriever.warm_metadata(upstream, STUDY, "1.2.9")
    again = retriever.ahead.asked(other)
    assert again is not None and again is not first
    await again
    assert [r.endswith("/metadata") for r in requests[1:]].count(True) == 2
    await retriever.aclose()
    await upstream.aclose()


@pytest.mark.anyio
async def test_alone_fetches_one_instance_until_the_series_streams() -> None:
    """DB.VI-CS.05: a frame asked ``alone`` (the thumbnail of a series pulled only when
    the user displays it) fetches that instance only; once the series streams, frames
    come from the series retrieval as usual."""
    sops = [f"1.2.3.4.{n}" for n in range(1, 6)]
    upstream, requests = series_upstream(sops)
    retriever = make_retriever(RecordingPool())
    series = f"/dicom-web/studies/{STUDY}/series/{SERIES}"
    thumbnail = await retriever.frame(upstream, STUDY, SERIES, sops[2], 1, alone=True)
    assert thumbnail.data == f"frame-{sops[2]}".encode()
    assert requests == [f"{series}/instances/{sops[2]}"]
    assert retriever.find("pacs-a", STUDY, SERIES) is None
    # (This stand-in answers every path with the whole series: forget what it sent.)
    retriever.cache.discard_series("pacs-a", STUDY, SERIES)
    shown = await retriever.frame(upstream, STUDY, SERIES, sops[0], 1)
    assert shown.data == f"frame-{sops[0]}".encode()
    assert requests[1:] == [series]
    again = await retriever.frame(upstream, STUDY, SERIES, sops[4], 1, alone=True)
    assert again.data == f"frame-{sops[4]}".encode()
    assert requests[1:] == [series]  # from the series stream
    await retriever.aclose()
    await upstream.aclose()


@pytest.mark.anyio
async def test_metadata_of_a_series_not_pulled_does_not_wait_for_its_images(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """DB.VI-CS.05: the metadata answer of a series not pulled until the user displays
    it is built at once (no image is on its way to wait for: OHIF's first image waits for
    every series' metadata); a series due to stream still waits for its first instance
    (what its files say goes into the answer). The wait is made endless here: only the
    first instance can end it."""
    monkeypatch.setattr(series_metadata, "RATIO_WAIT_S", 3600)
    upstream, requests = series_upstream([f"1.2.3.4.{n}" for n in range(1, 4)])
    retriever = make_retriever(RecordingPool())
    context = RewriteContext("http://bff/dicomweb", STUDY, upstream.base_url, "browser", "", "")
    raw: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    raw.set_result(b"[]")
    idle = retriever.ensure(upstream, STUDY, "1.2.3.5", start=False)
    prepared = await asyncio.wait_for(retriever.prepare_answer(idle, raw, context), 30)
    assert prepared.rows == 0 and requests == []
    due = retriever.ensure(upstream, STUDY, SERIES, start=False)
    metadata: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    answer = retriever.prepare_answer(due, metadata, context)
    due.start_after(metadata)
    metadata.set_result(b"[]")
    await asyncio.wait_for(answer, 30)
    assert due.first_delivered.is_set() and due.delivered
    await retriever.aclose()
    await upstream.aclose()
