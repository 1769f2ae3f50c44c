"""A prepared frame read back by a BFF that restarted on the store (issue 16 item 2): the
answer is the multipart body as served, not the file's header line. Found by the bench's
prepared rows, whose measured BFF starts on a store an earlier process filled."""

from __future__ import annotations

from pathlib import Path

from bff.dicomweb.prepared import PreparedStore
from bff.transcode.model import TranscodedInstance

FORM = "1|balanced|lossy|jpegls"
ORIGIN = "vi1.localhost"


def _instance() -> TranscodedInstance:
    frames = (b"\xff\xd8first frame\xff\xd9", b"\xff\xd8second\xff\xd9")
    return TranscodedInstance(
        study_uid="1.2.3",
        series_uid="1.2.3.4",
        sop_uid="1.2.3.4.5",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        transfer_syntax_uid="1.2.840.10008.1.2.4.81",
        frames=frames,
        source_transfer_syntax_uid="1.2.840.10008.1.2.4.80",
        source_pixel_bytes=1000,
        served_bytes=sum(len(f) for f in frames),
        lossy=True,
        lossy_method="ISO_14495_1",
        attribute_overrides={},
    )


def test_a_restarted_store_answers_each_frame_as_the_one_that_wrote_it(tmp_path: Path) -> None:
    writer = PreparedStore(tmp_path / "prepared", 10**6)
    writer.open()
    writer.put(FORM, ORIGIN, _instance())
    written = [writer.frame(FORM, ORIGIN, "1.2.3", "1.2.3.4", "1.2.3.4.5", n) for n in (1, 2)]

    reopened = PreparedStore(tmp_path / "prepared", 10**6)
    reopened.open()  # a new BFF process on the same directory
    for number, before in enumerate(written, start=1):
        after = reopened.frame(FORM, ORIGIN, "1.2.3", "1.2.3.4", "1.2.3.4.5", number)
        assert before is not None and after is not None
        assert after.body == before.body
        assert after.media_type == before.media_type
        boundary = after.media_type.rsplit("boundary=", 1)[1]
        assert after.body.startswith(b"--" + boundary.encode())
        assert after.data == _instance().frames[number - 1]
