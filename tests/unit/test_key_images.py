"""Reading Key Image Notes from DICOM JSON (bff/dicomweb/key_images.py; DB.VI-SO.170,
.171, .196): which KOS is a KIN, which references are kept, the virtual series number."""

from __future__ import annotations

from typing import Any

from bff.dicomweb.key_images import (
    KOS_SOP_CLASS_UID,
    build_index,
    is_key_image_note,
    kin_references,
    virtual_series_number,
)

STUDY = "1.2.3"
OTHER_STUDY = "1.2.4"


def seq(*items: dict[str, Any]) -> dict[str, Any]:
    return {"vr": "SQ", "Value": list(items)}


def val(value: Any, vr: str = "UI") -> dict[str, Any]:
    return {"vr": vr, "Value": [value]}


def sop(uid: str) -> dict[str, Any]:
    return {"00081150": val("1.2.840.10008.5.1.4.1.1.2"), "00081155": val(uid)}


def kos(code: str, content: list[str], evidence: dict[str, dict[str, list[str]]]) -> dict[str, Any]:
    return {
        "00080016": val(KOS_SOP_CLASS_UID),
        "0040A043": seq({"00080100": val(code, "SH"), "00080102": val("DCM", "SH")}),
        "0040A375": seq(
            *(
                {
                    "0020000D": val(study),
                    "00081115": seq(
                        *(
                            {"0020000E": val(series), "00081199": seq(*(sop(u) for u in sops))}
                            for series, sops in series_map.items()
                        )
                    ),
                }
                for study, series_map in evidence.items()
            )
        ),
        "0040A730": seq(
            *({"0040A040": val("IMAGE", "CS"), "00081199": seq(sop(u))} for u in content)
        ),
    }


def test_titles_tell_a_kin_from_a_manifest_or_a_rejection_note() -> None:
    evidence = {STUDY: {"1.5": ["1.5.1"]}}
    assert is_key_image_note(kos("113000", ["1.5.1"], evidence))  # Of Interest
    assert is_key_image_note(kos("113004", ["1.5.1"], evidence))  # For Teaching
    assert not is_key_image_note(kos("113030", ["1.5.1"], evidence))  # DRIM-M manifest
    assert not is_key_image_note(kos("113001", ["1.5.1"], evidence))  # Rejected (quality)
    not_kos = kos("113000", ["1.5.1"], evidence) | {"00080016": val("1.2.840.10008.5.1.4.1.1.2")}
    assert not is_key_image_note(not_kos)


def test_references_keep_content_order_and_only_this_study() -> None:
    note = kos(
        "113000",
        ["1.5.3", "1.5.1", "1.5.3", "9.9.9", "1.6.1"],
        {STUDY: {"1.5": ["1.5.1", "1.5.3"]}, OTHER_STUDY: {"1.6": ["1.6.1"]}},
    )
    refs = kin_references(note, STUDY)
    assert [(r.series_uid, r.sop_uid) for r in refs] == [("1.5", "1.5.3"), ("1.5", "1.5.1")]


def test_virtual_series_number_is_below_every_image_series() -> None:
    def row(number: Any, modality: str = "CT") -> dict[str, Any]:
        return {"00200011": val(number, "IS"), "00080060": val(modality, "CS")}

    assert virtual_series_number([row(3), row(7), row(-5, "KO")]) == 0
    assert virtual_series_number([row(0), row(2)]) == -1
    assert virtual_series_number([row("")]) == 0


def test_index_drops_series_the_study_does_not_hold() -> None:
    note = kos("113000", ["1.5.1", "1.7.1"], {STUDY: {"1.5": ["1.5.1"], "1.7": ["1.7.1"]}})
    rows = [
        {"0020000E": val("1.5"), "00080060": val("CT", "CS"), "00200011": val(4, "IS")},
        {"0020000E": val("1.8"), "00080060": val("KO", "CS")},
    ]
    index = build_index(STUDY, rows, {"1.8": [note]})
    assert index.sop_uids == {"1.5.1"}
    virtual = index.virtual("1.8")
    assert virtual is not None and virtual.real_series_of("1.5.1") == "1.5"
    assert virtual.real_series_of("1.7.1") is None
    assert build_index(STUDY, rows, {"1.8": []}).series == ()
