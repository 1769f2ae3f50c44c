"""DB.VI-CS.32: the matching rule of the practice's local patient id, over DICOM JSON
(bff/access/local_patient_id.py), and where it replaces the Source's PatientID (the
metadata rewrite, bff/dicomweb/series_metadata.py; the identity shown, link.py)."""

from __future__ import annotations

from typing import Any

from bff.access.link import opening_display
from bff.access.local_patient_id import (
    MAX_PATIENTS,
    MAX_ROWS,
    LocalPatient,
    Outcome,
    candidates,
    conclude,
    holds_ins,
    item_issuer,
)
from bff.archive.kos import read_kos
from bff.demo.dataset import DemoStudy
from bff.dicomweb.series_metadata import RewriteContext, rewrite_rows

INS = "279035121518989"
NIR_TEST = "1.2.250.1.213.1.4.10"
OIDS = frozenset({NIR_TEST})


def lo(value: str) -> dict[str, Any]:
    return {"vr": "LO", "Value": [value]}


def ins_item(ins: str = INS, oid: str = NIR_TEST, *, in_issuer: bool = False) -> dict[str, Any]:
    if in_issuer:
        return {"00100020": lo(ins), "00100021": lo(oid)}
    qualifiers = {"vr": "SQ", "Value": [{"00400032": {"vr": "UT", "Value": [oid]}}]}
    return {"00100020": lo(ins), "00100021": lo("ASIP-SANTE-INS-NIR"), "00100024": qualifiers}


def instance(*items: dict[str, Any]) -> dict[str, Any]:
    return {"00100020": lo("CAB-1"), "00101002": {"vr": "SQ", "Value": list(items)}}


def study_row(patient_id: str, study_uid: str, issuer: str = "CAB") -> dict[str, Any]:
    return {
        "00100020": lo(patient_id),
        "00100021": lo(issuer),
        "0020000D": {"vr": "UI", "Value": [study_uid]},
    }


def test_the_ins_must_be_exact_and_under_an_accepted_oid() -> None:
    assert holds_ins(instance(ins_item()), INS, OIDS)
    assert holds_ins(instance(ins_item(in_issuer=True)), INS, OIDS)
    assert item_issuer(ins_item()) == NIR_TEST
    assert not holds_ins(instance(ins_item(oid="1.2.250.1.213.1.4.11")), INS, OIDS)
    assert not holds_ins(instance(ins_item(ins=INS[:-1])), INS, OIDS)
    assert holds_ins(instance(ins_item(ins=INS + " ")), INS, OIDS)  # DICOM padding
    assert not holds_ins({"00100020": lo(INS)}, INS, OIDS)  # PatientID alone proves nothing
    hostile: Any
    for hostile in (None, [], {"00101002": "x"}, {"00101002": {"Value": [1, None, "x"]}}):
        assert not holds_ins(hostile, INS, OIDS)


def test_candidates_are_distinct_local_patients_bounded() -> None:
    rows = [
        study_row("CAB-1", "1.1"),
        study_row("CAB-1", "1.2"),  # a second study of the same patient
        study_row("CAB-1", "1.3", issuer="OTHER"),  # another issuer: another patient
        study_row(INS, "1.4"),  # kept under the INS itself: no local id
        study_row("CAB-2", "../../x"),  # not a UID: never put in a URL
        study_row("C" * 65, "1.5"),  # longer than a DICOM LO: never shown
        study_row("CAB-3", "1.6", issuer="I" * 65),
    ]
    assert candidates(rows, INS) == {("CAB-1", "CAB"): "1.1", ("CAB-1", "OTHER"): "1.3"}
    too_many_rows = [study_row("CAB-1", f"1.{i}") for i in range(MAX_ROWS + 1)]
    assert candidates(too_many_rows, INS) is None
    too_many = [study_row(f"CAB-{i}", f"1.{i}") for i in range(MAX_PATIENTS + 1)]
    assert candidates(too_many, INS) is None
    assert candidates({"not": "a list"}, INS) is None


def test_exactly_one_proven_patient_is_shown_never_one_of_several() -> None:
    assert conclude([]) == LocalPatient("none")
    assert conclude([("CAB-1", "CAB")]) == LocalPatient("found", "CAB-1", "CAB")
    several = conclude([("CAB-1", "CAB"), ("CAB-2", "CAB")])
    assert several.outcome == "several" and not several.found and not several.patient_id


def context(patient_id: str = "", issuer: str = "") -> RewriteContext:
    return RewriteContext(
        root="http://co.localhost/dicomweb",
        study_uid="1.2",
        upstream_base="https://source/api/source",
        serve="browser",
        codec="jpegls",
        institution="",
        patient_id=patient_id,
        patient_issuer=issuer,
    )


def source_row() -> dict[str, Any]:
    return {
        "00100020": lo(INS),
        "00100021": lo("ASIP-SANTE-INS-NIR"),
        "00100024": {"vr": "SQ", "Value": [{"00400032": {"vr": "UT", "Value": [NIR_TEST]}}]},
        "00101002": {"vr": "SQ", "Value": [ins_item()]},
        "0020000E": {"vr": "UI", "Value": ["1.2.3"]},
        "00080018": {"vr": "UI", "Value": ["1.2.3.4"]},
    }


def test_the_rewrite_puts_the_local_id_in_place_of_the_sources() -> None:
    [row] = rewrite_rows([source_row()], context("CAB-1", "CAB"), {})
    assert row["00100020"] == lo("CAB-1")
    assert row["00100021"] == lo("CAB")
    assert "00100024" not in row  # the Source's issuer qualifiers named the INS domain
    assert row["00091010"] == lo("LOCAL") and row["00090010"] == lo("DRIMBOX-VIEWER")
    assert row["00101002"] == source_row()["00101002"]  # the INS stays
    [bare] = rewrite_rows([source_row()], context("CAB-1"), {})
    assert "00100021" not in bare
    # Not found: the Source's id, unmarked, and a different prepared answer.
    [kept] = rewrite_rows([source_row()], context(), {})
    assert kept["00100020"] == lo(INS) and "00091010" not in kept
    assert context().key != context("CAB-1", "CAB").key


def test_the_identity_shows_the_local_id_only_when_found(demo_study: DemoStudy) -> None:
    record = read_kos(demo_study.kos_path)
    shown = opening_display(record, LocalPatient("found", "CAB-1", "CAB"))
    assert (shown["local_patient_id"], shown["local_patient_issuer"]) == ("CAB-1", "CAB")
    assert shown["source_patient_id"] == record.ins == INS
    outcomes: tuple[Outcome, ...] = ("none", "several", "failed", "off", "undecided")
    for outcome in outcomes:
        assert "local_patient_id" not in opening_display(record, LocalPatient(outcome))
    assert opening_display(record) == opening_display(record, LocalPatient("none"))
