"""The incremental multipart/related parser and writer (DB.VI-CS.17: frames are handed on
as soon as their instance has arrived, whatever the chunking of the upstream stream)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from bff.dicomweb.multipart import (
    MultipartError,
    MultipartParser,
    Part,
    closing_delimiter,
    encode_part,
    new_boundary,
    parse_content_type,
)

BOUNDARY = "boundary-42"
BIG = 1 << 20

# Bodies chosen to trip a naive parser: a partial delimiter, CRLFs, a delimiter-like line
# missing its CRLF, an empty body.
BODIES = [
    b"DICM\x00\x01 first instance\r\n--bound and more\r\n--boundary-4",
    b"\r\n\r\n--\r\n-- boundary-42 not at line start \r\n--boundary-",
    b"",
]


def make_stream(bodies: list[bytes], *, preamble: bytes = b"", epilogue: bytes = b"") -> bytes:
    chunks = [preamble]
    for index, body in enumerate(bodies, start=1):
        if index == 1 and not preamble:
            chunks.append(f"--{BOUNDARY}\r\n".encode())
        else:
            chunks.append(f"\r\n--{BOUNDARY}\r\n".encode())
        chunks.append(
            f"Content-Type: application/dicom\r\nX-Index:  {index} \r\n\r\n".encode() + body
        )
    chunks.append(f"\r\n--{BOUNDARY}--".encode() + epilogue)
    return b"".join(chunks)


def parse_all(chunks: Sequence[bytes | memoryview], **limits: int) -> list[Part]:
    parser = MultipartParser(BOUNDARY, max_part_bytes=limits.pop("max_part_bytes", BIG), **limits)
    parts: list[Part] = []
    for chunk in chunks:
        parts.extend(parser.feed(chunk))
    parser.finalize()
    assert parser.parts_done == len(parts)
    return parts


def check(parts: list[Part], bodies: list[bytes] = BODIES) -> None:
    assert [part.body for part in parts] == bodies
    for index, part in enumerate(parts, start=1):
        assert part.headers == {"content-type": "application/dicom", "x-index": str(index)}


STREAM = make_stream(BODIES)


def test_whole_stream() -> None:
    check(parse_all([STREAM]))


def test_split_at_every_position() -> None:
    for cut in range(len(STREAM) + 1):
        check(parse_all([STREAM[:cut], STREAM[cut:]]))


def test_one_byte_at_a_time() -> None:
    check(parse_all([STREAM[i : i + 1] for i in range(len(STREAM))]))


def test_memoryview_input() -> None:
    view = memoryview(STREAM)
    check(parse_all([view[:100], view[100:]]))


def test_part_is_emitted_as_soon_as_its_delimiter_is_seen() -> None:
    parser = MultipartParser(BOUNDARY, max_part_bytes=BIG)
    end_of_first = STREAM.index(f"\r\n--{BOUNDARY}".encode(), 10) + len(BOUNDARY) + 4
    assert parser.feed(STREAM[: end_of_first - 1]) == []
    [first] = parser.feed(STREAM[end_of_first - 1 : end_of_first])
    assert first.body == BODIES[0]
    assert parser.parts_done == 1


def test_preamble_and_epilogue_are_ignored() -> None:
    stream = make_stream(
        BODIES,
        preamble=b"This is a preamble\r\n--boundary-4 lookalike\r\nmore preamble",
        epilogue=b"\r\nepilogue --boundary-42\r\n garbage",
    )
    for cut in range(len(stream) + 1):
        check(parse_all([stream[:cut], stream[cut:]]))


def test_leading_crlf_before_first_delimiter() -> None:
    check(parse_all([b"\r\n" + STREAM]))


def test_data_after_close_is_ignored() -> None:
    parser = MultipartParser(BOUNDARY, max_part_bytes=BIG)
    assert len(parser.feed(STREAM)) == 3
    assert parser.feed(b"\r\n--" + BOUNDARY.encode() + b"\r\n\r\nnot a part\r\n") == []
    parser.finalize()
    assert parser.feed(b"after finalize") == []
    assert parser.parts_done == 3


def test_transport_padding_after_boundary() -> None:
    stream = STREAM.replace(f"--{BOUNDARY}\r\n".encode(), f"--{BOUNDARY} \t \r\n".encode())
    assert stream != STREAM
    for cut in range(len(stream) + 1):
        check(parse_all([stream[:cut], stream[cut:]]))


def test_part_without_headers() -> None:
    stream = f"--{BOUNDARY}\r\n\r\nbody\r\n--{BOUNDARY}--\r\n".encode()
    [part] = parse_all([stream])
    assert part == Part({}, b"body")


def test_header_names_lower_cased_and_folded_lines_joined() -> None:
    stream = (
        f"--{BOUNDARY}\r\nCONTENT-TYPE: application/dicom; transfer-syntax=1.2.840.10008.1.2.1"
        f"\r\nX-Long: a\r\n\tb\r\nX-Twice: 1\r\nx-twice: 2\r\n\r\nbody\r\n--{BOUNDARY}--"
    ).encode()
    [part] = parse_all([stream])
    assert part.headers == {
        "content-type": "application/dicom; transfer-syntax=1.2.840.10008.1.2.1",
        "x-long": "a b",
        "x-twice": "1, 2",
    }


def test_missing_closing_delimiter_fails_at_finalize() -> None:
    for truncated in (STREAM[: -len("--")], STREAM[: len(STREAM) // 2], b"", b"preamble only"):
        parser = MultipartParser(BOUNDARY, max_part_bytes=BIG)
        parser.feed(truncated)
        with pytest.raises(MultipartError):
            parser.finalize()


def test_truncated_stream_keeps_the_complete_parts() -> None:
    parser = MultipartParser(BOUNDARY, max_part_bytes=BIG)
    parts = parser.feed(STREAM[:-20])
    assert [part.body for part in parts] == BODIES[:2]
    with pytest.raises(MultipartError):
        parser.finalize()


def test_part_size_limit() -> None:
    size = max(len(body) for body in BODIES)
    check(parse_all([STREAM], max_part_bytes=size))
    with pytest.raises(MultipartError, match="exceeds"):
        parse_all([STREAM], max_part_bytes=size - 1)
    with pytest.raises(MultipartError, match="exceeds"):
        parse_all([STREAM[i : i + 1] for i in range(len(STREAM))], max_part_bytes=size - 1)


def test_part_size_limit_fires_before_the_part_ends() -> None:
    parser = MultipartParser(BOUNDARY, max_part_bytes=1000)
    parser.feed(f"--{BOUNDARY}\r\n\r\n".encode())
    parser.feed(b"x" * 1000)
    with pytest.raises(MultipartError, match="exceeds"):
        for _ in range(100):  # never reaches a delimiter: the limit must stop it early
            parser.feed(b"x" * 100)
    with pytest.raises(MultipartError):  # the parser stays failed
        parser.feed(b"")


def test_header_size_limit() -> None:
    header_section = len("Content-Type: application/dicom\r\nX-Index:  1 \r\n")
    check(parse_all([STREAM], max_header_bytes=header_section))
    with pytest.raises(MultipartError, match="headers"):
        parse_all([STREAM], max_header_bytes=header_section - 1)
    parser = MultipartParser(BOUNDARY, max_part_bytes=BIG, max_header_bytes=100)
    parser.feed(f"--{BOUNDARY}\r\nX-Endless: ".encode())
    with pytest.raises(MultipartError, match="headers"):
        for _ in range(200):
            parser.feed(b"y")


def test_max_parts() -> None:
    check(parse_all([STREAM], max_parts=3))
    with pytest.raises(MultipartError, match="more than 2 parts"):
        parse_all([STREAM], max_parts=2)


@pytest.mark.parametrize(
    "stream",
    [
        f"--{BOUNDARY}X\r\n\r\nbody\r\n--{BOUNDARY}--".encode(),  # garbage after boundary
        f"--{BOUNDARY}\n\nbody\r\n--{BOUNDARY}--".encode(),  # bare LF
        f"--{BOUNDARY}-\r\n\r\nbody\r\n--{BOUNDARY}--".encode(),  # single dash
        f"--{BOUNDARY}\r\nno colon here\r\n\r\nbody\r\n--{BOUNDARY}--".encode(),
    ],
)
def test_malformed_input(stream: bytes) -> None:
    with pytest.raises(MultipartError):
        parse_all([stream])


def test_many_parts_in_small_chunks() -> None:
    bodies = [bytes([i]) * (150_000 + i) for i in range(40)]
    stream = make_stream(bodies)
    chunks = [stream[i : i + 65536] for i in range(0, len(stream), 65536)]
    parts = parse_all(chunks, max_part_bytes=200_000)
    assert [part.body for part in parts] == bodies


@pytest.mark.parametrize("boundary", ["", "a\r\nb", "é", "x" * 201])
def test_invalid_boundary(boundary: str) -> None:
    with pytest.raises(MultipartError):
        MultipartParser(boundary, max_part_bytes=BIG)


# --------------------------------------------------------------------------- writer


def test_round_trip_writer_to_parser() -> None:
    boundary = new_boundary()
    bodies = [b"\x00" * 10, b"\r\n--" + boundary[:-1].encode() + b"\r\n", b"", b"last"]
    stream = b"".join(
        encode_part(body, "application/dicom", boundary, {"Content-Location": f"/i/{n}"})
        for n, body in enumerate(bodies)
    ) + closing_delimiter(boundary)
    media_type, params = parse_content_type(
        f'multipart/related; type="application/dicom"; boundary="{boundary}"'
    )
    assert media_type == "multipart/related"
    parser = MultipartParser(params["boundary"], max_part_bytes=BIG)
    parts = [part for i in range(len(stream)) for part in parser.feed(stream[i : i + 1])]
    parser.finalize()
    assert [part.body for part in parts] == bodies
    assert [part.headers for part in parts] == [
        {"content-type": "application/dicom", "content-location": f"/i/{n}"}
        for n in range(len(bodies))
    ]


def test_writer_format() -> None:
    assert encode_part(b"B", "application/dicom", "b") == (
        b"--b\r\nContent-Type: application/dicom\r\n\r\nB\r\n"
    )
    assert closing_delimiter("b") == b"--b--\r\n"


def test_new_boundary_is_random_and_safe() -> None:
    first, second = new_boundary(), new_boundary()
    assert first != second
    assert 1 <= len(first) <= 70 and first.isalnum() and first.isascii()


@pytest.mark.parametrize(
    ("name", "value"), [("X-Bad", "a\r\nInjected: 1"), ("Bad Name", "v"), ("X", "é")]
)
def test_writer_rejects_header_injection(name: str, value: str) -> None:
    with pytest.raises(ValueError):
        encode_part(b"", "application/dicom", "b", {name: value})
    with pytest.raises(ValueError):
        encode_part(b"", "application/dicom", "b\r\n")


# --------------------------------------------------------------------------- content type


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            'multipart/related; type="application/dicom"; boundary=abc',
            ("multipart/related", {"type": "application/dicom", "boundary": "abc"}),
        ),
        (
            "Multipart/Related;Boundary=AbC;TYPE=application/dicom",
            ("multipart/related", {"boundary": "AbC", "type": "application/dicom"}),
        ),
        (
            '  multipart/related ;  boundary = "a b;c=d" ; ',
            ("multipart/related", {"boundary": "a b;c=d"}),
        ),
        (r'multipart/related; boundary="a\"b\\c"', ("multipart/related", {"boundary": 'a"b\\c'})),
        ("application/dicom", ("application/dicom", {})),
        ("multipart/related;; boundary=x", ("multipart/related", {"boundary": "x"})),
        ('text/plain; charset=""', ("text/plain", {"charset": ""})),
        ("multipart/related; boundary=a:b/c=d", ("multipart/related", {"boundary": "a:b/c=d"})),
    ],
)
def test_parse_content_type(value: str, expected: tuple[str, dict[str, str]]) -> None:
    assert parse_content_type(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "multipart",
        "multipart/",
        "/related",
        "multi part/related",
        "; boundary=x",
        "multipart/related; boundary",
        "multipart/related; boundary=",
        "multipart/related; =x",
        'multipart/related; boundary="unterminated',
        'multipart/related; boundary="x" junk',
        "multipart/related; boundary=a b",
        "multipart/related; boundary=x; boundary=y",
    ],
)
def test_parse_content_type_rejects_garbage(value: str) -> None:
    with pytest.raises(MultipartError):
        parse_content_type(value)
