"""The KOS archive (DB.SO.22): parser, SQLite store, CLI and admin API.

Every access check of the viewer (idCDA DB.VI-SO.115, accession/study DB.VI-SO.33, INS
traits DB.VI-SO.152) reads this archive, so the parser is tested on the DRIM-M layout and
on the variants real producers write.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import UID
from starlette.applications import Starlette

from bff.archive import cli
from bff.archive.kos import KosError, birth_given_names, parse_kos, read_kos
from bff.archive.store import ArchiveStore
from bff.demo.identity import ANS_TEST_PATIENT, PatientIdentity
from bff.demo.kos import ReferencedSeries, build_kos
from bff.errors import ViewerError
from bff.source.admin import Admin, admin_routes
from bff.web.errors import viewer_error

STUDY = "1.2.250.1.213.4.5.2.1.101"
CT = "1.2.840.10008.5.1.4.1.1.2"
SERIES = (
    ReferencedSeries("1.2.250.1.213.4.5.2.1.101.1", ((CT, "1.2.250.1.213.4.5.2.1.101.1.1"),)),
    ReferencedSeries(
        "1.2.250.1.213.4.5.2.1.101.2",
        ((CT, "1.2.250.1.213.4.5.2.1.101.2.1"), (CT, "1.2.250.1.213.4.5.2.1.101.2.2")),
    ),
)
INSTITUTION = "Centre de radiologie Ambroise^^^^^^^^^101235555"
ACCESSION_ISSUER = "1.2.250.1.213.4.5.2.5"
CDA_ID = "1.2.250.1.213.4.5.9.1.777"
SECRET = "an-admin-secret-of-32-characters"


def make_kos(
    patient: PatientIdentity = ANS_TEST_PATIENT,
    *,
    sop_uid: str = "1.2.250.1.213.4.5.2.1.101.100.1",
    study_uid: str = STUDY,
    accession_number: str = "ACN101",
) -> Dataset:
    return build_kos(
        patient=patient,
        study_uid=study_uid,
        accession_number=accession_number,
        accession_issuer=ACCESSION_ISSUER,
        institution_name=INSTITUTION,
        series=SERIES,
        retrieve_base_url="https://db1.111.mesimagesmedicales.fr/api/source",
        kos_series_uid=f"{study_uid}.100",
        kos_sop_uid=sop_uid,
        study_date="20250314",
        study_time="101500",
        content_date="20250314",
        content_time="103000",
        description="Scanner thoraco-abdomino-pelvien : 2 séries, 3 images.",
    )


def to_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


# -- parser ---------------------------------------------------------------------------------


def test_drim_m_layout() -> None:
    record = read_kos(to_bytes(make_kos()))
    assert record.sop_uid == "1.2.250.1.213.4.5.2.1.101.100.1"
    assert record.study_uid == STUDY
    # DB.VI-SO.33: from the ReferencedRequestSequence item; the top level is empty.
    assert (record.accession_number, record.accession_issuer) == ("ACN101", ACCESSION_ISSUER)
    assert record.accession_issuer_type == "ISO"
    traits = record.traits
    assert traits.birth_name == "PAT-TROIS"
    assert traits.given_names == ("DOMINIQUE",)
    assert (traits.sex, traits.birth_date, traits.birthplace) == ("F", "19790328", "63220")
    assert (record.ins, record.ins_oid) == ("279035121518989", "1.2.250.1.213.1.4.10")
    assert record.local_patient_id == "IPP-0001"
    assert record.institution_name == "Centre de radiologie Ambroise"
    assert record.institution_raw == INSTITUTION
    assert [s.series_uid for s in record.series] == [s.series_uid for s in SERIES]
    assert record.series[1].instances == SERIES[1].instances
    assert record.series[0].retrieve_url == (
        f"https://db1.111.mesimagesmedicales.fr/api/source/studies/{STUDY}"
        f"/series/{SERIES[0].series_uid}"
    )
    assert record.is_key_image_note is False
    assert record.description.startswith("Scanner thoraco")


def test_several_given_names_from_other_patient_names() -> None:
    patient = PatientIdentity(
        "PAT-QUATRE", ("MARIE", "CLAIRE", "JEAN-PIERRE"), "M", "19800101", "75056", "", "IPP-9"
    )
    ds = make_kos(patient)
    assert str(ds.PatientName) == "PAT-QUATRE^MARIE"
    record = parse_kos(ds)
    assert record.traits.given_names == ("MARIE", "CLAIRE", "JEAN-PIERRE")
    assert record.ins is None  # PatientID '' : no INS
    assert record.local_patient_id == "IPP-9"


def test_given_name_rule() -> None:
    # Longest list among PatientName and same-family (or empty-family) other names.
    assert birth_given_names("DUPONT^MARIE", ["^MARIE", "DUPONT^MARIE, CLAIRE"]) == (
        "MARIE",
        "CLAIRE",
    )
    # A used name (another family name) is not a birth name form.
    assert birth_given_names("DUPONT^MARIE", ["MARTIN^MARIE ANNE LOUISE"]) == ("MARIE",)
    # DICOM middle-name component = further given names; hyphenated names stay whole.
    assert birth_given_names("DUPONT^JEAN-PIERRE^PAUL", []) == ("JEAN-PIERRE", "PAUL")
    assert birth_given_names("DUPONT", ["dupont^ANNE SOPHIE"]) == ("ANNE", "SOPHIE")


@pytest.mark.parametrize("charset", ["ISO_IR 100", "ISO_IR 192"])
def test_accented_names_honour_the_character_set(charset: str) -> None:
    patient = PatientIdentity(
        "LÉVÊQUE", ("HÉLÈNE", "FRANÇOISE"), "F", "19650702", "2A004", "", "IPP-7"
    )
    ds = make_kos(patient)
    ds.SpecificCharacterSet = charset
    ds.InstitutionName = "Clinique Sainte-Thérèse^^^^^^^^^123"
    data = to_bytes(ds)
    encoded = "LÉVÊQUE".encode("latin-1" if charset == "ISO_IR 100" else "utf-8")
    assert encoded in data
    record = read_kos(data)
    assert record.traits.birth_name == "LÉVÊQUE"
    assert record.traits.given_names == ("HÉLÈNE", "FRANÇOISE")
    assert record.traits.birthplace == "2A004"
    assert record.institution_name == "Clinique Sainte-Thérèse"


def test_born_abroad_keeps_the_country_code() -> None:
    patient = PatientIdentity("SMITH", ("JOHN",), "M", "19700101", "99132", "", "IPP-3")
    assert parse_kos(make_kos(patient)).traits.birthplace == "99132"
    ds = make_kos(patient)
    ds.PatientComments = "Patient claustrophobe"  # free text is not a birthplace
    assert parse_kos(ds).traits.birthplace == ""


def test_accession_fallbacks_and_request_selection() -> None:
    ds = make_kos()
    del ds.ReferencedRequestSequence
    ds.AccessionNumber = "TOP1"
    issuer = Dataset()
    issuer.UniversalEntityID = "1.2.3.4"
    issuer.UniversalEntityIDType = "ISO"
    ds.IssuerOfAccessionNumberSequence = Sequence([issuer])
    record = parse_kos(ds)
    assert (record.accession_number, record.accession_issuer) == ("TOP1", "1.2.3.4")

    # Several requests: the one of the evidence study wins, whatever its position.
    ds = make_kos()
    other = Dataset()
    other.StudyInstanceUID = "1.2.3.999"
    other.AccessionNumber = "OTHER"
    ds.ReferencedRequestSequence = Sequence([other, ds.ReferencedRequestSequence[0]])
    ds.AccessionNumber = "IGNORED"
    assert parse_kos(ds).accession_number == "ACN101"

    ds.ReferencedRequestSequence = Sequence([other])
    with pytest.raises(KosError, match="no ReferencedRequestSequence item"):
        parse_kos(ds)


def test_ins_in_other_patient_ids_when_the_top_level_is_the_ipp() -> None:
    ds = make_kos()
    ds.PatientID = "IPP-0001"
    ds.IssuerOfPatientID = "HOPITAL"
    del ds.IssuerOfPatientIDQualifiersSequence
    record = parse_kos(ds)
    assert (record.ins, record.local_patient_id) == ("279035121518989", "IPP-0001")
    # Only the ANS label, no OID: still the INS, OID unknown.
    del ds.OtherPatientIDsSequence[0].IssuerOfPatientIDQualifiersSequence
    record = parse_kos(ds)
    assert (record.ins, record.ins_oid, record.local_patient_id) == (
        "279035121518989",
        None,
        "IPP-0001",
    )
    ds.OtherPatientIDsSequence[0].PatientID = "27903512151898"  # 14 digits
    with pytest.raises(KosError, match="INS"):
        parse_kos(ds)


def test_key_image_note_is_detected() -> None:
    ds = make_kos()
    ds.ConceptNameCodeSequence[0].CodeValue = "113000"
    ds.ConceptNameCodeSequence[0].CodeMeaning = "Of Interest"
    assert parse_kos(ds).is_key_image_note is True


def test_refused_objects() -> None:
    ds = make_kos()
    ds.SOPClassUID = CT
    with pytest.raises(KosError, match="not a Key Object Selection"):
        parse_kos(ds)
    ds = make_kos()
    del ds.CurrentRequestedProcedureEvidenceSequence
    with pytest.raises(KosError, match="exactly one study"):
        parse_kos(ds)
    ds = make_kos()
    second = Dataset()
    second.StudyInstanceUID = "1.2.3.4"
    ds.CurrentRequestedProcedureEvidenceSequence.append(second)
    with pytest.raises(KosError, match="exactly one study"):
        parse_kos(ds)
    with pytest.raises(KosError, match="not a readable DICOM"):
        read_kos(b"this is not DICOM at all" * 10)


# -- store ----------------------------------------------------------------------------------


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[ArchiveStore]:
    archive = ArchiveStore(f"sqlite:///{tmp_path / 'sub' / 'archive.db'}")
    archive.create_schema()
    archive.create_schema()  # idempotent
    yield archive
    archive.close()


def test_store_round_trip(store: ArchiveStore) -> None:
    record = parse_kos(make_kos())
    store.publish(record, cda_id=CDA_ID, location="VI1.999.mesimagesmedicales.fr")
    entry = store.get(record.sop_uid)
    assert entry is not None
    assert entry.record == record  # every field, series and instance order included
    assert (entry.cda_id, entry.location, entry.state) == (
        CDA_ID,
        "vi1.999.mesimagesmedicales.fr",
        "published",
    )
    assert entry.published_at.tzinfo is not None
    assert store.get("1.2.3") is None
    with pytest.raises(ValueError, match="OID"):
        store.publish(record, cda_id="not-an-oid", location="*")
    with pytest.raises(ValueError, match="OID"):
        store.publish(record, cda_id="1.2.3\n", location="*")


def test_store_republish_unpublish_and_finders(store: ArchiveStore) -> None:
    first = parse_kos(make_kos())
    other = parse_kos(make_kos(sop_uid="1.2.3.4.5", study_uid="1.2.3.4", accession_number="A2"))
    store.publish(first, cda_id=CDA_ID, location="*")
    store.publish(other, cda_id="1.2.3.9", location="*")
    assert store.unpublish(first.sop_uid) is True
    assert store.unpublish("9.9.9") is False
    assert store.get(first.sop_uid).state == "unpublished"  # type: ignore[union-attr]

    # Published again with fewer series: replaced, state back to 'published'.
    changed = parse_kos(make_kos())
    changed = type(changed)(**{**changed.__dict__, "series": changed.series[:1]})
    store.publish(changed, cda_id="1.2.3.10", location="*")
    entry = store.get(first.sop_uid)
    assert entry is not None
    assert (entry.state, entry.cda_id, len(entry.record.series)) == ("published", "1.2.3.10", 1)
    assert entry.updated_at >= entry.published_at

    assert [e.record.sop_uid for e in store.find_by_cda_id("1.2.3.10")] == [first.sop_uid]
    assert store.find_by_cda_id(CDA_ID) == []
    assert [e.record.sop_uid for e in store.find_by_study("1.2.3.4")] == [other.sop_uid]
    store.unpublish(other.sop_uid)
    assert store.find_by_study("1.2.3.4", state="published") == []
    assert {e.record.sop_uid for e in store.list()} == {first.sop_uid, other.sop_uid}
    assert [e.record.sop_uid for e in store.list(state="unpublished")] == [other.sop_uid]
    assert [e.record.sop_uid for e in store.list(state="published")] == [first.sop_uid]
    assert len(store.list(limit=1)) == 1


# -- CLI ------------------------------------------------------------------------------------


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="drimbox-viewer")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_cli_add_list_remove(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DRIMBOX_ARCHIVE_URL", f"sqlite:///{tmp_path / 'archive.db'}")
    kos_file = tmp_path / "KOS.dcm"
    make_kos().save_as(kos_file, enforce_file_format=True)
    sop_uid = "1.2.250.1.213.4.5.2.1.101.100.1"

    assert run_cli(["kos", "add", str(kos_file), "--cda-id", CDA_ID]) == 0
    assert sop_uid in capsys.readouterr().out

    assert run_cli(["kos", "list"]) == 0
    out = capsys.readouterr().out
    assert f"ACN101^{ACCESSION_ISSUER}" in out and CDA_ID in out and "published" in out
    assert "Centre de radiologie Ambroise" in out
    assert "PAT-TROIS" not in out and "279035121518989" not in out  # identity hidden
    assert run_cli(["kos", "list", "--show-identity"]) == 0
    out = capsys.readouterr().out
    assert "PAT-TROIS" in out and "279035121518989" in out and "63220" in out

    assert run_cli(["kos", "remove", sop_uid]) == 0
    assert f"unpublished {sop_uid}" in capsys.readouterr().out
    assert run_cli(["kos", "list", "--state", "published"]) == 0
    assert sop_uid not in capsys.readouterr().out
    assert run_cli(["kos", "remove", "1.2.3"]) == 1
    assert "unknown" in capsys.readouterr().err

    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"garbage")
    assert run_cli(["kos", "add", str(bad), "--cda-id", CDA_ID]) == 1
    assert run_cli(["kos", "add", str(kos_file), "--cda-id", "x"]) == 1
    assert "OID" in capsys.readouterr().err


# -- admin API ------------------------------------------------------------------------------


@pytest.fixture()
def anyio_backend() -> str:
    return "asyncio"


#: KOS the admin API said changed state (Admin.changed: live grants re-checked at once).
CHANGED: list[str] = []


def admin_app(tmp_path: Path, secret: str) -> Starlette:
    archive = ArchiveStore(f"sqlite:///{tmp_path / 'admin.db'}")
    archive.create_schema()
    CHANGED.clear()
    app = Starlette(
        routes=admin_routes(Admin(secret, archive, CHANGED.append)),
        exception_handlers={ViewerError: viewer_error},
    )
    app.state.archive = archive  # for the test's own checks
    return app


def client_for(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def post_kos(
    client: httpx.AsyncClient, body: bytes, token: str | None, **params: str
) -> httpx.Response:
    headers = {"content-type": "application/dicom"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    return await client.post("/api/admin/kos", content=body, headers=headers, params=params)


@pytest.mark.anyio
async def test_admin_api_disabled_without_secret(tmp_path: Path) -> None:
    app = admin_app(tmp_path, "")
    async with client_for(app) as client:
        for response in (
            await client.get("/api/admin/kos", headers={"authorization": "Bearer x"}),
            await client.delete("/api/admin/kos/1.2.3", headers={"authorization": "Bearer "}),
            await post_kos(client, to_bytes(make_kos()), "", cda_id=CDA_ID),
        ):
            assert response.status_code == 404
            assert response.json()["code"] == "E404"
    assert app.state.archive.list() == []
    app.state.archive.close()


@pytest.mark.anyio
async def test_admin_api_refuses_a_wrong_secret(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    body = to_bytes(make_kos())
    app = admin_app(tmp_path, SECRET)
    archive: ArchiveStore = app.state.archive
    async with client_for(app) as client:
        for token in (None, "", "wrong", SECRET + "x", SECRET[:-1]):
            response = await post_kos(client, body, token, cda_id=CDA_ID)
            assert response.status_code == 403
            assert response.json()["code"] == "E403"
        assert archive.list() == []  # nothing written
        response = await client.get("/api/admin/kos", headers={"authorization": "Basic " + SECRET})
        assert response.status_code == 403
        response = await client.delete("/api/admin/kos/1.2.3")
        assert response.status_code == 403
    denied = [r.audit for r in caplog.records if r.name == "bff.audit"]  # type: ignore[attr-defined]
    assert len(denied) == 7 and all(a["action"].endswith(".denied") for a in denied)
    archive.close()


@pytest.mark.anyio
async def test_admin_api_publish_list_delete(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bff.audit")
    body = to_bytes(make_kos())
    sop_uid = "1.2.250.1.213.4.5.2.1.101.100.1"
    auth = {"authorization": f"Bearer {SECRET}"}
    app = admin_app(tmp_path, SECRET)
    archive: ArchiveStore = app.state.archive
    async with client_for(app) as client:
        response = await post_kos(client, body, SECRET, cda_id=CDA_ID, location="vi1.example.fr")
        assert response.status_code == 201
        assert response.json() == {"sop_uid": sop_uid, "study_uid": STUDY, "state": "published"}
        entry = archive.get(sop_uid)
        assert entry is not None and entry.cda_id == CDA_ID
        assert entry.location == "vi1.example.fr"

        listing = await client.get("/api/admin/kos", headers=auth)
        assert listing.status_code == 200
        [item] = listing.json()
        assert item["accession_number"] == "ACN101" and item["cda_id"] == CDA_ID
        assert item["instance_count"] == 3 and item["state"] == "published"
        text = json.dumps(listing.json())
        assert "PAT-TROIS" not in text and "279035121518989" not in text
        assert "19790328" not in text and "DOMINIQUE" not in text

        not_kos = make_kos()
        not_kos.SOPClassUID = CT
        not_kos.file_meta.MediaStorageSOPClassUID = UID(CT)
        for bad_body, params in (
            (to_bytes(not_kos), {"cda_id": CDA_ID}),
            (b"garbage", {"cda_id": CDA_ID}),
            (body, {"cda_id": "not-an-oid"}),
            (body, {}),
        ):
            response = await post_kos(client, bad_body, SECRET, **params)
            assert response.status_code == 400
            assert response.json()["code"] == "E400"
        response = await client.post(
            "/api/admin/kos?cda_id=1.2.3", content=body, headers={**auth, "content-type": "x/y"}
        )
        assert response.status_code == 400
        response = await client.post(
            "/api/admin/kos?cda_id=1.2.3",
            content=b"x" * (16 * 1024**2 + 1),
            headers={**auth, "content-type": "application/dicom"},
        )
        assert response.status_code == 413 and response.json()["code"] == "E440"

        response = await client.delete(f"/api/admin/kos/{sop_uid}", headers=auth)
        assert response.status_code == 200
        assert response.json() == {"sop_uid": sop_uid, "state": "unpublished"}
        assert archive.get(sop_uid).state == "unpublished"  # type: ignore[union-attr]
        # Told of the publication (its preparation starts, issue 16), then of the
        # unpublication (the grants' check asks the archive again, issue 13).
        assert [sop_uid, sop_uid] == CHANGED
        assert (await client.delete("/api/admin/kos/9.9.9", headers=auth)).status_code == 404
        listing = await client.get("/api/admin/kos?state=unpublished", headers=auth)
        assert [i["sop_uid"] for i in listing.json()] == [sop_uid]
    archive.close()

    audit = [r.audit for r in caplog.records if r.name == "bff.audit"]  # type: ignore[attr-defined]
    actions = [a["action"] for a in audit]
    assert "kos.publish" in actions and "kos.unpublish" in actions
    assert "kos.publish.rejected" in actions
    published = next(a for a in audit if a["action"] == "kos.publish")
    assert published["cda_id"] == CDA_ID and published["study_uid"] == STUDY
    assert published["location"] == "vi1.example.fr"
    assert "PAT-TROIS" not in repr(audit) and "279035121518989" not in repr(audit)


def test_read_kos_from_a_path(tmp_path: Path) -> None:
    path = tmp_path / "kos.dcm"
    make_kos().save_as(path, enforce_file_format=True)
    assert read_kos(path).accession_number == "ACN101"
    assert dcmread(path).AccessionNumber == ""  # FACTS.md 1: empty at the top level


def test_preparation_round_trip(store: ArchiveStore) -> None:
    """Issue 16: how far a KOS's images are prepared, kept beside the archive (replaced,
    dropped; a store past 2 GiB fits) and shown by ``kos list``."""
    from datetime import UTC, datetime

    from bff.archive.cli import format_table
    from bff.archive.store import Preparation

    ds = make_kos()
    store.publish(parse_kos(ds), cda_id=CDA_ID, location="*")
    sop_uid = str(ds.SOPInstanceUID)
    when = datetime(2026, 12, 5, 20, 0, tzinfo=UTC)
    first = Preparation(sop_uid, "p1", "preparing", 25, 1300, 5 * 1024**3, "", when)
    store.set_preparation(first)
    assert store.preparations() == {sop_uid: first}
    done = Preparation(sop_uid, "p1", "prepared", 1300, 1300, 5 * 1024**3 + 1, "", when)
    store.set_preparation(done)
    assert store.preparations() == {sop_uid: done}
    assert "prepared 1300/1300" in format_table(store.list(), preparations=store.preparations())
    with pytest.raises(ValueError):
        store.set_preparation(Preparation(sop_uid, "p1", "bogus", 0, 0, 0, "", when))
    store.drop_preparation(sop_uid)
    assert store.preparations() == {}
    assert "prepared" not in format_table(store.list(), preparations={})
