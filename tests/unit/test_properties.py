"""Property-based tests of every parser that takes outside input (issue 13, item 3): the
upstream multipart reader and the upload forms built on it, the KOS reader (the Source's
archive and the Consumer's opening), the IHEInvokeImageDisplay parameters and the Accept
headers. Whatever the input: a result or one of the project's own errors, never another
exception; memory bounded where a length is claimed. (The ANS whitelist's parser is
fuzzed elsewhere.)

Reproducible: ``derandomize=True`` (examples derived from each test, no random seed) and
no example database; a bounded number of examples, no deadline (the machine is shared).
"""

from __future__ import annotations

import asyncio
import io
import tracemalloc
from collections.abc import Callable
from urllib.parse import parse_qsl

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bff.access.params import ViewerLink, parse_accession, parse_link
from bff.archive.kos import KosError, KosRecord, read_kos
from bff.dicomweb.multipart import (
    MultipartError,
    MultipartParser,
    Part,
    closing_delimiter,
    encode_part,
    parse_content_type,
    parse_disposition,
)
from bff.errors import BadRequest, InvalidLink, PayloadTooLarge, UnsupportedTransferSyntax
from bff.facade.routes import _accepts_syntax
from bff.source.accept import ANY, AcceptedSyntaxes, parse_accept
from bff.web.uploads import UploadForm, parse_form_data, parse_urlencoded, read_kos_upload
from tests.unit.test_archive import make_kos, to_bytes


def bounded(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# -- multipart (WADO-RS streams; the Consumer's opening form) -------------------------------

BOUNDARY = "b0undary"
boundaries = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=70)
header_names = st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,20}", fullmatch=True)
header_values = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60).map(
    str.strip
)


def feed_all(parser: MultipartParser, data: bytes, cuts: list[int]) -> list[Part]:
    parts: list[Part] = []
    start = 0
    for cut in [*sorted({c % (len(data) + 1) for c in cuts}), len(data)]:
        parts += parser.feed(data[start:cut])
        start = cut
    parser.finalize()
    return parts


@bounded(300)
@given(
    data=st.binary(max_size=2048),
    boundary=st.sampled_from([BOUNDARY, "x", "--", "a" * 70]),
    cuts=st.lists(st.integers(0, 4096), max_size=6),
    max_part=st.integers(0, 512),
    max_header=st.integers(0, 256),
    max_parts=st.none() | st.integers(0, 4),
)
def test_multipart_random_bytes_give_parts_or_a_multipart_error(
    data: bytes,
    boundary: str,
    cuts: list[int],
    max_part: int,
    max_header: int,
    max_parts: int | None,
) -> None:
    parser = MultipartParser(
        boundary, max_part_bytes=max_part, max_header_bytes=max_header, max_parts=max_parts
    )
    try:
        parts = feed_all(parser, data, cuts)
    except MultipartError:
        return
    assert all(len(p.body) <= max_part for p in parts)
    assert max_parts is None or len(parts) <= max_parts


@bounded(200)
@given(
    boundary=boundaries.filter(lambda b: b.strip() == b),
    bodies=st.lists(st.binary(max_size=300), max_size=5),
    headers=st.dictionaries(header_names, header_values, max_size=3),
    cuts=st.lists(st.integers(0, 4096), max_size=8),
)
def test_multipart_stream_round_trips_however_it_is_split(
    boundary: str, bodies: list[bytes], headers: dict[str, str], cuts: list[int]
) -> None:
    """What the writer makes, the parser gives back, at any chunking (a body that
    happens to hold the delimiter is the writer's caller's problem: skipped)."""
    delimiter = b"\r\n--" + boundary.encode()
    if any(delimiter in b"\r\n" + body + b"\r\n" for body in bodies):
        return
    stream = b"".join(encode_part(body, "application/dicom", boundary, headers) for body in bodies)
    stream += closing_delimiter(boundary)
    parser = MultipartParser(boundary, max_part_bytes=300)
    try:
        parts = feed_all(parser, stream, cuts)
    except MultipartError:
        # A header name the writer allows twice in different case is merged: not a bug;
        # anything else would be.
        assert len({n.lower() for n in headers}) < len(headers)
        return
    assert [p.body for p in parts] == bodies
    assert all(p.headers["content-type"] == "application/dicom" for p in parts)


@bounded(25)
@given(
    chunk=st.integers(1, 64 * 1024),
    filler=st.sampled_from([b"a", b"x: y\r\n", b"\t", b" "]),
    max_header=st.integers(0, 16 * 1024),
)
def test_multipart_headers_never_grow_past_their_limit(
    chunk: int, filler: bytes, max_header: int
) -> None:
    """A part whose header block never ends: refused once over the limit, having held
    no more than the limit and one chunk (8 MiB offered, whatever the chunk size)."""
    parser = MultipartParser(BOUNDARY, max_part_bytes=1 << 20, max_header_bytes=max_header)
    offered = 8 * 1024**2
    block = (filler * (chunk // len(filler) + 1))[:chunk]
    tracemalloc.start()
    try:
        with pytest.raises(MultipartError):
            parser.feed(b"--" + BOUNDARY.encode() + b"\r\n")
            for _ in range(offered // chunk + 1):
                parser.feed(block)
            parser.finalize()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * (max_header + chunk) + 64 * 1024


@bounded(300)
@given(st.text(max_size=200))
def test_content_type_and_disposition_parse_or_refuse(value: str) -> None:
    for parse in (parse_content_type, parse_disposition):
        try:
            kind, params = parse(value)
        except MultipartError:
            continue
        assert kind == kind.lower() and all(name == name.lower() for name in params)


@bounded(300)
@given(
    body=st.binary(max_size=1024)
    | st.lists(
        st.sampled_from(
            [
                b"--b\r\n",
                b'Content-Disposition: form-data; name="kos"; filename="k.dcm"\r\n',
                b'Content-Disposition: form-data; name="csrf"\r\n',
                b"Content-Disposition: attachment\r\n",
                b"\r\n",
                b"DICM\x00\xff",
                b"\r\n--b--\r\n",
                b"\xe9\xff",
            ]
        ),
        max_size=20,
    ).map(b"".join),
    max_file=st.integers(0, 64),
)
def test_upload_forms_parse_or_give_our_errors(body: bytes, max_file: int) -> None:
    parsers: tuple[Callable[[], UploadForm], ...] = (
        lambda: parse_form_data(body, "b", max_file_bytes=max_file),
        lambda: parse_urlencoded(body),
    )
    for parse in parsers:
        try:
            form = parse()
        except (BadRequest, PayloadTooLarge):
            continue
        assert isinstance(form, UploadForm)
        assert all(len(data) <= max_file for data in form.files.values())


# -- KOS (the archive's intake, the Consumer's opening) --------------------------------------

KOS = to_bytes(make_kos())


@st.composite
def mutated_kos(draw: st.DrawFn) -> bytes:
    """The valid KOS with a few bytes changed, cut, inserted or removed."""
    data = bytearray(KOS)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "delete", "length"]))
        at = draw(st.integers(0, len(data) - 1)) if data else 0
        if kind == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        elif kind == "length" and len(data) >= at + 4:  # a claimed length, often huge
            data[at : at + 4] = draw(st.integers(0, 2**32 - 1)).to_bytes(4, "little")
    return bytes(data)


@bounded(400)
@given(mutated_kos())
def test_a_mutated_kos_is_read_or_refused_with_a_kos_error(data: bytes) -> None:
    tracemalloc.start()
    try:
        try:
            record = read_kos(data)
        except KosError:
            record = None
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert record is None or isinstance(record, KosRecord)
    assert peak < 16 * len(KOS) + 4 * 1024**2  # a claimed length is never allocated


@bounded(40)
@given(mutated_kos() | st.binary(max_size=512))
def test_the_consumer_reading_a_kos_gives_only_our_errors(data: bytes) -> None:
    try:
        record = asyncio.run(read_kos_upload(data))
    except (BadRequest, UnsupportedTransferSyntax):
        return
    assert isinstance(record, KosRecord)


# -- IHEInvokeImageDisplay parameters (DB.VI-SO.07) ------------------------------------------

arcs = st.integers(0, 10**12).map(str)
uids = st.lists(arcs, min_size=2, max_size=8).map(".".join).filter(lambda u: len(u) <= 64)
oids = (
    st.tuples(st.sampled_from(["1", "2"]), st.integers(0, 39).map(str), st.lists(arcs, max_size=6))
    .map(lambda t: ".".join([t[0], t[1], *t[2]]))
    .filter(lambda o: len(o) <= 64)
)
names = st.sampled_from(
    [
        "requestType",
        "studyUID",
        "accessionNumber",
        "idCDA",
        "RequestType",
        "IDCDA",
        "viewerType",
        "ſtudyUID",
    ]
) | st.text(max_size=20)


@bounded(400)
@given(st.lists(st.tuples(names, st.text(max_size=300)), max_size=40))
def test_any_link_parses_or_is_an_invalid_link(query: list[tuple[str, str]]) -> None:
    try:
        link = parse_link(query)
    except InvalidLink as exc:
        assert exc.code in {"E410", "E411", "E412", "E413", "E414"}
        assert exc.message == InvalidLink.message  # no input in the user's message
        return
    assert isinstance(link, ViewerLink)


@bounded(300)
@given(st.text(max_size=300))
def test_any_accession_number_parses_or_is_e412(value: str) -> None:
    try:
        accession = parse_accession(value)
    except InvalidLink as exc:
        assert exc.code == "E412"
        return
    assert accession.to_url() == value


@bounded(200)
@given(
    study_uid=uids,
    cda_id=oids,
    accession_id=st.from_regex(r"[A-Za-z0-9./+]{1,16}", fullmatch=True),
    issuer=oids,
)
def test_a_valid_link_round_trips(
    study_uid: str, cda_id: str, accession_id: str, issuer: str
) -> None:
    value = f"{accession_id}---_{issuer}_ISO"
    link = parse_link(
        [
            ("requestType", "STUDY"),
            ("studyUID", study_uid),
            ("accessionNumber", value),
            ("idCDA", cda_id),
        ]
    )
    assert parse_link(parse_qsl(link.query(), keep_blank_values=True)) == link


# -- Accept headers (the Source API's Consumers; OHIF's frame requests) -----------------------

ranges = st.sampled_from(
    [
        'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.80',
        "multipart/related;type=application/dicom;transfer-syntax=*;q=0.5",
        'multipart/related; type="application/dicom"; transfer-syntax="1.2.840.10008.1.2.1"; q=0',
        "*/*",
        "multipart/*;q=0.1",
        'multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2',
        'x;"',
        "q=2",
    ]
) | st.text(max_size=80)
accepts = st.lists(ranges, max_size=12).map(", ".join)


@bounded(400)
@given(st.lists(accepts, max_size=3))
def test_any_accept_header_gives_a_ranked_choice(values: list[str]) -> None:
    accepted = parse_accept(values)
    assert isinstance(accepted, AcceptedSyntaxes)
    qualities = [q for _, q in accepted.ranked]
    assert qualities == sorted(qualities, reverse=True) and all(0 <= q <= 1 for q in qualities)
    chosen = accepted.choose("1.2.840.10008.1.2.4.80", can_decode=True)
    assert chosen in {"1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.1"}
    assert accepted.only is None or accepted.only != ANY


@bounded(400)
@given(accepts, st.sampled_from(["1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.203", "*"]))
def test_the_facades_frame_accept_check_never_fails(accept: str, syntax: str) -> None:
    assert _accepts_syntax(accept, syntax) in (True, False)


@bounded(10)
@given(st.sampled_from([",", ";", '"', "\\", " ", "multipart/related;", "q=0.5,"]))
def test_a_long_accept_header_is_parsed_in_one_pass(piece: str) -> None:
    """64 KiB of the same piece (a server's header limit): parsed, no blow-up."""
    value = piece * (64 * 1024 // len(piece))
    assert isinstance(parse_accept([value]), AcceptedSyntaxes)
    assert _accepts_syntax(value, "1.2.840.10008.1.2.4.81") in (True, False)


def test_the_properties_read_a_real_kos() -> None:
    """The mutations above start from a KOS the reader accepts."""
    assert read_kos(io.BytesIO(KOS).getvalue()).sop_uid == make_kos().SOPInstanceUID
