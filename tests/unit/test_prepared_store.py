"""bff.dicomweb.prepared (issue 16): what the store answers is the facade's framing of the
frame, read back the same after a restart; a missing entry answers nothing (the live path
takes over); the bound is never passed."""

from __future__ import annotations

from pathlib import Path

import pytest

from bff.dicomweb.multipart import MultipartParser, parse_content_type
from bff.dicomweb.prepared import PreparedStore, StoreFull
from bff.transcode import TranscodedInstance

FORM, ORIGIN, STUDY, SERIES = "1|balanced|lossy|jpegls", "*", "1.2.3", "1.2.3.4"
SYNTAX = "1.2.840.10008.1.2.4.81"


def instance(sop_uid: str, frames: tuple[bytes, ...]) -> TranscodedInstance:
    return TranscodedInstance(
        study_uid=STUDY,
        series_uid=SERIES,
        sop_uid=sop_uid,
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        transfer_syntax_uid=SYNTAX,
        frames=frames,
        source_transfer_syntax_uid="1.2.840.10008.1.2.4.80",
        source_pixel_bytes=1000 * len(frames),
        served_bytes=sum(map(len, frames)),
        lossy=True,
        lossy_method="ISO_14495_1",
        attribute_overrides={},
    )


def parsed(body: bytes, media_type: str) -> tuple[str, bytes]:
    kind, params = parse_content_type(media_type)
    assert kind == "multipart/related" and params["transfer-syntax"] == SYNTAX
    parser = MultipartParser(params["boundary"], max_part_bytes=1 << 20)
    parts = parser.feed(body)
    parser.finalize()
    assert len(parts) == 1
    return parts[0].headers["content-type"], parts[0].body


def test_frames_answer_as_the_facade_frames_them_and_survive_a_restart(tmp_path: Path) -> None:
    frames = (b"\xff\x4f first frame \r\n--", b"second", b"")
    store = PreparedStore(tmp_path / "p", 1 << 20)
    store.open()
    store.put(FORM, ORIGIN, instance("1.2.3.4.5", frames))
    for restarted in (False, True):
        if restarted:
            store = PreparedStore(tmp_path / "p", 1 << 20)
            store.open()
        assert store.frame_count(FORM, ORIGIN, STUDY, SERIES, "1.2.3.4.5") == 3
        for number, frame in enumerate(frames, start=1):
            prepared = store.frame(FORM, ORIGIN, STUDY, SERIES, "1.2.3.4.5", number)
            assert prepared is not None and prepared.data == frame
            part_type, body = parsed(prepared.body, prepared.media_type)
            assert body == frame
            assert part_type == f"application/octet-stream; transfer-syntax={SYNTAX}"
        assert store.frame(FORM, ORIGIN, STUDY, SERIES, "1.2.3.4.5", 4) is None
        assert store.frame("other form", ORIGIN, STUDY, SERIES, "1.2.3.4.5", 1) is None
    assert (tmp_path / "p").stat().st_mode & 0o777 == 0o700


def test_a_series_is_prepared_only_when_complete_and_whole(tmp_path: Path) -> None:
    store = PreparedStore(tmp_path, 1 << 20)
    store.open()
    store.put(FORM, ORIGIN, instance("1.2.3.4.5", (b"a",)))
    assert store.series_facts(FORM, ORIGIN, STUDY, SERIES) is None  # not marked complete
    store.complete(FORM, ORIGIN, STUDY, SERIES, {"1.2.3.4.5": {"n_frames": 1}})
    assert store.series_facts(FORM, ORIGIN, STUDY, SERIES) == {"1.2.3.4.5": {"n_frames": 1}}
    # An entry deleted behind the store's back: no longer prepared, nothing answered.
    entry = next((tmp_path).glob("*/*.prep"))
    entry.unlink()
    assert store.frame(FORM, ORIGIN, STUDY, SERIES, "1.2.3.4.5", 1) is None
    reopened = PreparedStore(tmp_path, 1 << 20)
    reopened.open()
    assert reopened.series_facts(FORM, ORIGIN, STUDY, SERIES) is None
    assert reopened.drop_series(FORM, ORIGIN, STUDY, SERIES) == 0


def test_the_bound_is_never_passed(tmp_path: Path) -> None:
    store = PreparedStore(tmp_path, 1500)
    store.open()
    store.put(FORM, ORIGIN, instance("1.2.3.4.5", (b"x" * 500,)))
    with pytest.raises(StoreFull):
        store.put(FORM, ORIGIN, instance("1.2.3.4.6", (b"y" * 900,)))
    assert 0 < store.nbytes <= 1500 and len(store) == 1
    freed = store.drop_series(FORM, ORIGIN, STUDY, SERIES)
    assert freed > 500 and store.nbytes == 0 and len(store) == 0
