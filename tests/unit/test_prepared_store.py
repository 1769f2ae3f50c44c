"""bff.dicomweb.prepared (issue 16): what the store answers is the facade's framing of the
frame, read back the same after a restart; a missing entry answers nothing (the live path
takes over); the bound is never passed."""

from __future__ import annotations

from pathlib import Path

import pytest

from bff.dicomweb import prepared
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


@pytest.mark.parametrize("sop_uid", ["../../escape", "1.2/3", "", "1." * 40 + "1"])
def test_an_instance_whose_uid_is_no_uid_is_refused(tmp_path: Path, sop_uid: str) -> None:
    """The SOP Instance UID names the entry's file: anything but a UID is refused, and
    nothing is written (hostile input from a PACS)."""
    store = PreparedStore(tmp_path / "p", 1 << 20)
    store.open()
    with pytest.raises(ValueError):
        store.put(FORM, ORIGIN, instance(sop_uid, (b"x",)))
    assert len(store) == 0 and store.nbytes == 0
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert [p for p in written if p.name not in {".lock", ".ledger"}] == []


# -- one store shared by several replicas (issues 15 and 16) ---------------------------------


def two_replicas(directory: Path, bound: int = 1 << 20) -> tuple[PreparedStore, PreparedStore]:
    a, b = PreparedStore(directory, bound), PreparedStore(directory, bound)
    a.open()
    b.open()
    return a, b


def test_an_instance_written_by_one_replica_is_answered_by_another(tmp_path: Path) -> None:
    """B's index was built before A wrote: B finds A's entry and series in the directory."""
    a, b = two_replicas(tmp_path / "p")
    assert b.frame(FORM, ORIGIN, STUDY, SERIES, "1.9.1", 1) is None  # not prepared yet
    a.put(FORM, ORIGIN, instance("1.9.1", (b"first-frame",)))
    a.complete(FORM, ORIGIN, STUDY, SERIES, {"1.9.1": {"n_frames": 1}})
    # B's miss is remembered briefly; past it, B looks again (its clock is not waited on).
    b._misses.clear()
    found = b.frame(FORM, ORIGIN, STUDY, SERIES, "1.9.1", 1)
    assert found is not None and found.data == b"first-frame"
    assert b.series_facts(FORM, ORIGIN, STUDY, SERIES) == {"1.9.1": {"n_frames": 1}}
    assert b.has_instance(FORM, ORIGIN, STUDY, SERIES, "1.9.1")


def test_a_miss_is_remembered_and_bounded(tmp_path: Path) -> None:
    a, b = two_replicas(tmp_path / "p")
    assert b.frame(FORM, ORIGIN, STUDY, SERIES, "1.9.2", 1) is None
    a.put(FORM, ORIGIN, instance("1.9.2", (b"x",)))
    # Within MISS_TTL the miss holds: no file opened per request for what is not prepared.
    assert b.frame(FORM, ORIGIN, STUDY, SERIES, "1.9.2", 1) is None
    for n in range(prepared.MAX_MISSES + 10):
        b.has_instance(FORM, ORIGIN, STUDY, SERIES, f"1.8.{n}")
    assert len(b._misses) <= prepared.MAX_MISSES


@pytest.mark.parametrize("sop_uid", ["../../p/.ledger", "1.2/3", "..", "1." * 40 + "1"])
def test_a_lookup_by_a_name_that_is_no_uid_opens_no_file(tmp_path: Path, sop_uid: str) -> None:
    """The SOP Instance UID of a lookup comes from the request URL: never a path."""
    a, b = two_replicas(tmp_path / "p")
    a.put(FORM, ORIGIN, instance("1.9.3", (b"x",)))
    assert b.frame(FORM, ORIGIN, STUDY, SERIES, sop_uid, 1) is None
    assert b._misses == {}  # refused before any file system look


def test_an_entry_replaced_by_another_replica_is_read_anew(tmp_path: Path) -> None:
    """A KOS published again is prepared anew by one replica: the other, whose index
    holds the old entry, answers the new bytes (the inode changed), never a mix."""
    a, b = two_replicas(tmp_path / "p")
    a.put(FORM, ORIGIN, instance("1.9.4", (b"old",)))
    b._misses.clear()
    old = b.frame(FORM, ORIGIN, STUDY, SERIES, "1.9.4", 1)
    assert old is not None and old.data == b"old"
    a.put(FORM, ORIGIN, instance("1.9.4", (b"the corrected frame", b"and a second")))
    new = b.frame(FORM, ORIGIN, STUDY, SERIES, "1.9.4", 2)
    assert new is not None and new.data == b"and a second"
    assert parsed(new.body, new.media_type)[1] == b"and a second"
    a.drop_series(FORM, ORIGIN, STUDY, SERIES)
    assert b.frame(FORM, ORIGIN, STUDY, SERIES, "1.9.4", 1) is None  # dropped elsewhere


def test_one_size_bound_for_every_replica(tmp_path: Path) -> None:
    """The ledger counts both replicas' writes: together they never pass the bound, and
    a drop by either gives the bytes back to both."""
    a, b = two_replicas(tmp_path / "p", bound=1500)
    a.put(FORM, ORIGIN, instance("1.9.5", (b"a" * 500,)))
    assert a.nbytes == b.nbytes > 500
    with pytest.raises(StoreFull):
        b.put(FORM, ORIGIN, instance("1.9.6", (b"b" * 900,)))
    b.put(FORM, ORIGIN, instance("1.9.5", (b"c" * 500,)))  # a replacement: no growth
    assert a.nbytes == b.nbytes <= 1500
    b.drop_series(FORM, ORIGIN, STUDY, SERIES)
    assert a.nbytes == b.nbytes == 0
    reopened = PreparedStore(tmp_path / "p", 1500)
    reopened.open()  # a replica starting keeps the shared count
    assert reopened.nbytes == 0
