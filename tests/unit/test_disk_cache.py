"""bff.dicomweb.disk_cache: a second opening skips transcoding (issue 5), never stale,
bounded, private, and a damaged entry only costs a transcoding."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import pytest

from bff.dicomweb.cache import FrameCache
from bff.dicomweb.disk_cache import DiskFrameCache, entry_key
from bff.dicomweb.retrieve import Retriever
from bff.transcode import EncodeParams, TranscodedInstance
from tests.unit.test_retrieve import SERIES, STUDY, RecordingPool, series_upstream


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def transcoded(
    sop_uid: str, frames: tuple[bytes, ...] = (b"\x00\x01" * 50, b"two")
) -> TranscodedInstance:
    return TranscodedInstance(
        study_uid=STUDY,
        series_uid=SERIES,
        sop_uid=sop_uid,
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        transfer_syntax_uid="1.2.840.10008.1.2.4.81",
        frames=frames,
        source_transfer_syntax_uid="1.2.840.10008.1.2.4.80",
        source_pixel_bytes=524288,
        served_bytes=sum(len(f) for f in frames),
        lossy=True,
        lossy_method="ISO_14495_1",
        attribute_overrides={"00280101": {"vr": "US", "Value": [16]}},
    )


def opened(directory: Path, max_bytes: int = 10**6) -> DiskFrameCache:
    cache = DiskFrameCache(directory, max_bytes)
    cache.open()
    return cache


def test_entries_round_trip_and_survive_a_restart(tmp_path: Path) -> None:
    directory = tmp_path / "frames"
    cache = opened(directory)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700  # it holds images
    key = entry_key(b"source instance", EncodeParams(codec="jpegls"))
    assert cache.get(key) is None
    cache.put(key, transcoded("1.1"))
    assert cache.get(key) == transcoded("1.1")
    restarted = opened(directory)
    assert len(restarted) == 1 and restarted.get(key) == transcoded("1.1")


def test_key_is_the_source_content_and_the_encoding(tmp_path: Path) -> None:
    params = EncodeParams(codec="jpegls")
    assert entry_key(b"a", params) == entry_key(b"a", EncodeParams(codec="jpegls"))
    assert entry_key(b"a", params) != entry_key(b"b", params)  # changed in the PACS
    assert entry_key(b"a", params) != entry_key(b"a", EncodeParams(codec="htj2k"))
    assert entry_key(b"a", params) != entry_key(b"a", EncodeParams(quality="high", codec="jpegls"))
    assert entry_key(b"a", params) != entry_key(b"a", EncodeParams(serve="browser", codec="jpegls"))


def test_size_is_bounded_least_recently_used_first(tmp_path: Path) -> None:
    big = (b"x" * 300,)
    probe = opened(tmp_path / "probe")
    probe.put("0" * 40, transcoded("1.0", big))
    entry = probe.nbytes  # one entry, header included
    cache = opened(tmp_path / "frames", max_bytes=3 * entry + entry // 2)
    keys = [entry_key(str(n).encode(), EncodeParams()) for n in range(4)]
    for n, key in enumerate(keys[:3]):
        cache.put(key, transcoded(f"1.{n}", big))
    assert cache.get(keys[0]) is not None  # now the most recently used
    cache.put(keys[3], transcoded("1.3", big))
    assert cache.nbytes <= 3 * entry + entry // 2 and len(cache) == 3
    assert cache.get(keys[1]) is None  # the least recently used went
    assert cache.get(keys[0]) is not None and cache.get(keys[3]) is not None
    files = list((tmp_path / "frames").glob("*/*.inst"))
    assert len(files) == len(cache)


def test_damaged_entry_is_dropped_not_served(tmp_path: Path) -> None:
    cache = opened(tmp_path / "frames")
    key = entry_key(b"s", EncodeParams())
    cache.put(key, transcoded("1.1"))
    (path,) = (tmp_path / "frames").glob("*/*.inst")
    path.write_bytes(path.read_bytes()[:-3])  # truncated
    assert cache.get(key) is None
    assert not path.exists() and len(cache) == 0


@pytest.mark.anyio
async def test_second_opening_after_a_restart_skips_transcoding(tmp_path: Path) -> None:
    sops = [f"1.2.3.4.{n}" for n in range(1, 11)]

    def retriever(pool: RecordingPool, disk: DiskFrameCache) -> Retriever:
        return Retriever(
            FrameCache(10**6),  # a new process: nothing in memory
            pool,  # type: ignore[arg-type]
            EncodeParams(),
            frame_timeout=5,
            max_part_bytes=10**6,
            workers=2,
            disk=disk,
        )

    first_pool = RecordingPool()
    first = retriever(first_pool, opened(tmp_path / "frames"))
    upstream, _ = series_upstream(sops)
    served = [(await first.frame(upstream, STUDY, SERIES, sop, 1)).data for sop in sops]
    retrieval = first.find(upstream.origin, STUDY, SERIES)
    assert retrieval is not None
    await retrieval.done.wait()
    await asyncio.gather(*retrieval._writes)
    assert sorted(first_pool.order) == sorted(sops)

    second_pool = RecordingPool()
    second = retriever(second_pool, opened(tmp_path / "frames"))
    upstream, requests = series_upstream(sops)
    again = [(await second.frame(upstream, STUDY, SERIES, sop, 1)).data for sop in sops]
    assert again == served
    assert second_pool.order == []  # nothing transcoded
    assert requests  # the series still came from the PACS: a changed instance is seen
