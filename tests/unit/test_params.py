"""The Source viewer link (DB.VI-SO.07, Tableau 1): parsing, codes, canonical form."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest

from bff.access.params import (
    AccessionNumber,
    ViewerLink,
    is_oid,
    is_uid,
    parse_accession,
    parse_link,
)
from bff.errors import InvalidLink

STUDY = "1.2.250.1.213.4.5.2.1.101"
ACCESSION = "543797436---_1.2.840.113619.6.197_ISO"  # the Tableau 1 example
CDA = "1.2.250.1.213.1.1.9.77"


def link(**overrides: str | None) -> list[tuple[str, str]]:
    """A valid link as query pairs; an override of None drops that parameter."""
    pairs: dict[str, str | None] = {
        "requestType": "STUDY",
        "studyUID": STUDY,
        "accessionNumber": ACCESSION,
        "idCDA": CDA,
    }
    pairs.update(overrides)
    return [(name, value) for name, value in pairs.items() if value is not None]


def refused(pairs: list[tuple[str, str]]) -> InvalidLink:
    with pytest.raises(InvalidLink) as caught:
        parse_link(pairs)
    return caught.value


# --- valid links ----------------------------------------------------------------------


def test_tableau_1_example_parses() -> None:
    parsed = parse_link(link())
    assert parsed == ViewerLink(
        study_uid=STUDY,
        accession=AccessionNumber(id="543797436", issuer="1.2.840.113619.6.197"),
        cda_id=CDA,
    )
    assert parsed.accession.issuer_type == "ISO"
    assert parsed.accession.namespace == ""


def test_accession_to_url_is_the_tableau_1_form() -> None:
    assert parse_accession(ACCESSION).to_url() == ACCESSION


@pytest.mark.parametrize(
    "names",
    [
        ("requestType", "studyUID", "Accessionnumber", "idCDA"),  # CI-SIS CDA profile
        ("REQUESTTYPE", "STUDYUID", "ACCESSIONNUMBER", "IDCDA"),
        ("requesttype", "studyuid", "accessionnumber", "idcda"),
        ("RequestType", "StudyUid", "accessionNumber", "IdCda"),
    ],
)
def test_parameter_names_are_case_insensitive(names: tuple[str, str, str, str]) -> None:
    values = ("STUDY", STUDY, ACCESSION, CDA)
    parsed = parse_link(list(zip(names, values, strict=True)))
    assert parsed.study_uid == STUDY
    assert parsed.accession.id == "543797436"
    assert parsed.cda_id == CDA


def test_order_of_parameters_does_not_matter() -> None:
    assert parse_link(list(reversed(link()))) == parse_link(link())


def test_unknown_parameters_are_ignored_and_kept_out() -> None:
    # IHE IID optional parameters and junk: accepted, and their values go nowhere.
    pairs = [
        *link(),
        ("viewerType", "IHE_BIR"),
        ("diagnosticQuality", "true"),
        ("keyImagesOnly", "<script>alert(1)</script>"),
    ]
    parsed = parse_link(pairs)
    assert parsed == parse_link(link())
    assert "script" not in repr(parsed)
    assert "script" not in parsed.query()


def test_unknown_parameter_values_never_reach_an_error() -> None:
    error = refused([*link(studyUID="1.02"), ("viewerType", "SECRET-VALUE")])
    assert error.code == "E411"
    assert "SECRET-VALUE" not in str(error)
    assert "SECRET-VALUE" not in error.detail


def test_non_ascii_lookalike_name_is_not_ours() -> None:
    # "ſ" (long s) casefolds to "s": it must not count as requestType.
    error = refused([("requeſtType", "STUDY"), *link(requestType=None)])
    assert error.code == "E414"


def test_accession_with_a_namespace_round_trips() -> None:
    accession = parse_accession("ACN101---RIS1_1.2.250.1.213.4.5.2.5_ISO")
    assert accession == AccessionNumber(
        id="ACN101", issuer="1.2.250.1.213.4.5.2.5", issuer_type="ISO", namespace="RIS1"
    )
    assert accession.to_url() == "ACN101---RIS1_1.2.250.1.213.4.5.2.5_ISO"


@pytest.mark.parametrize(
    "accession",
    [
        ACCESSION,
        "ACN101---_1.2.250.1.213.4.5.2.5_ISO",
        "A.B/C+12---NS_2.25.1234_ISO",
        "X" * 16 + "---_1.2.3_ISO",
    ],
)
def test_round_trip_query_to_parse(accession: str) -> None:
    original = parse_link(link(accessionNumber=accession))
    query = original.query()
    assert query.startswith("requestType=STUDY&studyUID=")
    pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    assert [name for name, _ in pairs] == ["requestType", "studyUID", "accessionNumber", "idCDA"]
    assert parse_link(pairs) == original


def test_canonical_query_of_the_example() -> None:
    assert parse_link(link()).query() == (
        f"requestType=STUDY&studyUID={STUDY}&accessionNumber={ACCESSION}&idCDA={CDA}"
    )


def test_plus_in_accession_is_percent_encoded() -> None:
    # A bare '+' would decode to a space in a query string.
    query = parse_link(link(accessionNumber="A+1---_1.2.3_ISO")).query()
    assert "A%2B1---_1.2.3_ISO" in query


# --- E410 requestType -----------------------------------------------------------------


@pytest.mark.parametrize("value", ["SERIES", "PATIENT", "study", "Study", "STUDY ", "", "STUDYX"])
def test_request_type_must_be_study(value: str) -> None:
    assert refused(link(requestType=value)).code == "E410"


# --- E411 studyUID --------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "1.2.03.4",  # leading zero in a component
        "01.2.3",  # leading zero in the first component
        "1.2.3.",  # trailing dot
        ".1.2.3",  # leading dot
        "1..2",  # empty component
        "1.2.a3",  # letters
        "1.2.3\n",  # trailing newline (re $ would accept it)
        " 1.2.3",
        "1.2.３",  # full-width digit: \d would accept it
        "1.2." + "1" * 61,  # 65 characters
        "12345",  # one component: no org root
        "",
        "<script>alert(1)</script>",
    ],
)
def test_bad_study_uids(value: str) -> None:
    assert refused(link(studyUID=value)).code == "E411"


def test_uid_of_exactly_64_characters_is_accepted() -> None:
    uid = "1.2." + "1" * 60
    assert len(uid) == 64
    assert parse_link(link(studyUID=uid)).study_uid == uid


# --- E412 accessionNumber -------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "543797436",  # no components at all
        "543797436--_1.2.840.113619.6.197_ISO",  # 3 CX components
        "543797436----_1.2.840.113619.6.197_ISO",  # 5 CX components
        "---_1.2.840.113619.6.197_ISO",  # empty ID
        "543797436---",  # empty assigning authority
        "543797436---1.2.840.113619.6.197",  # authority without HD structure
        "543797436---_1.2.840.113619.6.197",  # no universal id type
        "543797436---_1.2.840.113619.6.197_ISO_X",  # 4 HD components
        "543797436---_1.2.840.113619.6.197_DNS",  # type not ISO
        "543797436---_1.2.840.113619.6.197_iso",  # type not ISO (case)
        "543797436---_1.2.840.113619.6.197_",  # empty type
        "543797436---_RADIOLOGIE_ISO",  # issuer not an OID
        "543797436---_3.2.1_ISO",  # issuer root arc not 0/1/2
        "543797436---_1.40_ISO",  # second arc > 39 under root 1
        "543797436---__ISO",  # empty issuer
        "12345678901234567---_1.2.3_ISO",  # ID of 17 characters (SH is 16)
        "543-797436---_1.2.3_ISO",  # ID with '-': ambiguous split
        "543_797436---_1.2.3_ISO",  # ID with '_'
        "5437 97436---_1.2.3_ISO",  # space
        "54379*---_1.2.3_ISO",  # DICOM wildcard
        "54379?---_1.2.3_ISO",  # DICOM wildcard
        "ab\\cd---_1.2.3_ISO",  # DICOM value separator
        "ÉCHO1---_1.2.3_ISO",  # non-ASCII
        "543797436-1-M10-_1.2.3_ISO",  # check digit and scheme given
        "543797436---<b>_1.2.3_ISO",  # bad namespace
        "<script>---_1.2.3_ISO",
        "",
    ],
)
def test_bad_accession_numbers(value: str) -> None:
    assert refused(link(accessionNumber=value)).code == "E412"
    with pytest.raises(InvalidLink) as caught:
        parse_accession(value)
    assert caught.value.code == "E412"


def test_accession_id_of_16_characters_is_accepted() -> None:
    assert parse_accession("ABCDEFGHIJ123456---_1.2.3_ISO").id == "ABCDEFGHIJ123456"


# --- E413 idCDA -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "1.2.3^ext",  # OID^Extension: not supported (Tableau 1 note)
        "1.2.250.1.213^123",
        "abc",
        "1.2.abc",
        "3.1.2",  # root arc not 0/1/2
        "1",  # one arc
        "1.2.",
        "1.02",
        "",
        "1.2." + "1" * 61,  # 65 characters
        "<script>alert(1)</script>",
    ],
)
def test_bad_cda_ids(value: str) -> None:
    assert refused(link(idCDA=value)).code == "E413"


# --- E414 missing or repeated ---------------------------------------------------------


@pytest.mark.parametrize("missing", ["requestType", "studyUID", "accessionNumber", "idCDA"])
def test_missing_parameter(missing: str) -> None:
    assert refused(link(**{missing: None})).code == "E414"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("requestType", "STUDY"),
        ("studyUID", STUDY),  # same value twice is still a repetition
        ("studyUID", "1.2.3.4"),
        ("Accessionnumber", ACCESSION),  # same name in another case
        ("IDCDA", CDA),
    ],
)
def test_repeated_parameter(name: str, value: str) -> None:
    assert refused([*link(), (name, value)]).code == "E414"


def test_empty_query() -> None:
    assert refused([]).code == "E414"


def test_too_many_parameters() -> None:
    pairs = [*link(), *((f"x{i}", "1") for i in range(40))]
    assert refused(pairs).code == "E414"


def test_missing_is_reported_before_bad_values() -> None:
    # A link both incomplete and malformed: E414 first (nothing else is trusted).
    assert refused(link(requestType="SERIES", idCDA=None)).code == "E414"


# --- length caps ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "code"),
    [("requestType", "E410"), ("studyUID", "E411"), ("accessionNumber", "E412"), ("idCDA", "E413")],
)
def test_absurdly_long_values_are_refused_early(name: str, code: str) -> None:
    error = refused(link(**{name: "1" * 100_000}))
    assert error.code == code
    assert len(str(error)) < 300  # the detail does not carry the whole value


# --- what the user sees ---------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"requestType": "<script>alert(1)</script>"},
        {"studyUID": "<script>alert(1)</script>"},
        {"accessionNumber": "<script>alert(1)</script>"},
        {"idCDA": "<script>alert(1)</script>"},
        {"accessionNumber": "1---_1.2.3_<script>"},
    ],
)
def test_input_never_reaches_the_user_message(overrides: dict[str, str]) -> None:
    error = refused(link(**overrides))
    assert "<script>" in str(error)  # the log detail may quote it (repr-escaped)
    assert "<script>" not in error.message
    assert "script" not in error.message
    assert error.message == InvalidLink.message
    assert error.status == 400


def test_control_characters_are_escaped_in_the_detail() -> None:
    error = refused(link(studyUID="1.2.3\r\nFAKE LOG LINE"))
    assert error.code == "E411"
    assert "\n" not in error.detail
    assert "\r" not in error.detail


# --- the syntax helpers ---------------------------------------------------------------


def test_is_uid() -> None:
    assert is_uid("1.2.840.10008.1.2.4.50")
    assert is_uid("2.25.329800735698586629295641978511506172918")
    assert is_uid("1.0.2")
    assert not is_uid("1.00.2")
    assert not is_uid("1.2.3.")
    assert not is_uid("1")


def test_is_oid() -> None:
    assert is_oid("1.2.840.113619.6.197")
    assert is_oid("2.999.1")
    assert is_oid("0.4.0")
    assert is_oid("1.39")
    assert is_oid("2.40")
    assert not is_oid("1.40")
    assert not is_oid("3.1")
    assert not is_oid("1")
    assert not is_oid("1.2.840^x")
    assert not is_oid("1.2." + "3" * 61)
