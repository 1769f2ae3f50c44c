"""Key images through the facade against a real Orthanc (DB.VI-SO.170, .171, .196): the
KIN's virtual "Images clés" series, its metadata and frames, and what it must never open
(instances it does not select, another study's instances, a study outside the grant)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydicom.uid import generate_uid

from bff.app import create_app
from bff.services import services_of
from tests.conftest import Pacs, make_settings
from tests.series_data import MANIFEST, OF_INTEREST, Study, add_kos, add_series
from tests.servers import live_server

pytestmark = pytest.mark.integration

FRAME_ACCEPT = "multipart/related; type=application/octet-stream; transfer-syntax=*"


@pytest.fixture(scope="module")
def studies(pacs: Pacs, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Study]:
    out: Path = tmp_path_factory.mktemp("key-images")
    other = Study(generate_uid())
    other_series = add_series(other, out, 1, "Autre examen", 2)
    kin = Study(generate_uid())
    add_series(kin, out, 2, "Thorax", 3)
    abdomen = add_series(kin, out, 5, "Abdomen", 6)
    everything = [(kin.study_uid, s.series_uid, u) for s in kin.series for u in s.sop_uids]
    add_kos(kin, out, MANIFEST, everything, number=999)  # the DRIM-M manifest: not a KIN
    add_kos(
        kin,
        out,
        OF_INTEREST,
        [
            (kin.study_uid, abdomen.series_uid, abdomen.sop_uids[4]),
            (kin.study_uid, abdomen.series_uid, abdomen.sop_uids[1]),
            # Hostile references: another study's instance, under either study's UID.
            (other.study_uid, other_series.series_uid, other_series.sop_uids[0]),
            (kin.study_uid, other_series.series_uid, other_series.sop_uids[1]),
        ],
    )
    plain = Study(generate_uid())
    add_series(plain, out, 7, "Sept", 1)
    add_series(plain, out, 3, "Trois", 1)
    add_kos(
        plain,
        out,
        MANIFEST,
        [(plain.study_uid, s.series_uid, s.sop_uids[0]) for s in plain.series],
    )
    for study in (other, kin, plain):
        pacs.process.upload(study.files)
    return {"kin": kin, "plain": plain, "other": other}


@pytest.fixture(scope="module")
def client(pacs: Pacs) -> Iterator[httpx.Client]:
    app = create_app(make_settings(pacs.dicomweb_url))
    with live_server(app) as url, httpx.Client(base_url=url, timeout=60) as http:
        yield http


def first(row: dict[str, Any], tag: str) -> Any:
    return (row.get(tag, {}).get("Value") or [None])[0]


def test_kin_is_offered_as_a_key_image_series_numbered_first(
    studies: dict[str, Study], client: httpx.Client
) -> None:
    kin = studies["kin"]
    rows = client.get(f"/dicomweb/studies/{kin.study_uid}/series").json()
    described = sorted(
        (first(r, "00200011"), first(r, "0008103E"), first(r, "00080060")) for r in rows
    )
    # The manifest (KO) is hidden; the KIN becomes "Images clés", numbered below all.
    assert described == [(0, "Images clés", "CT"), (2, "Thorax", "CT"), (5, "Abdomen", "CT")]
    virtual = next(r for r in rows if first(r, "0008103E") == "Images clés")
    assert first(virtual, "00201209") == 2
    assert first(virtual, "0020000E") in kin.kos_series_uids


def test_a_study_without_kin_has_no_virtual_series(
    studies: dict[str, Study], client: httpx.Client
) -> None:
    plain = studies["plain"]
    rows = client.get(f"/dicomweb/studies/{plain.study_uid}/series").json()
    assert sorted(first(r, "00200011") for r in rows) == [3, 7]
    assert client.get(f"/dicomweb/studies/{plain.study_uid}/key-images").json()["sop_uids"] == []


def test_virtual_series_metadata_and_frames_are_the_key_images(
    studies: dict[str, Study], client: httpx.Client
) -> None:
    kin = studies["kin"]
    abdomen = kin.series[1]
    key_series = next(uid for uid in kin.kos_series_uids[1:])
    listed = client.get(f"/dicomweb/studies/{kin.study_uid}/key-images").json()
    assert listed["sop_uids"] == sorted([abdomen.sop_uids[4], abdomen.sop_uids[1]])
    base = f"/dicomweb/studies/{kin.study_uid}/series/{key_series}"
    metadata = client.get(f"{base}/metadata")
    assert metadata.status_code == 200
    rows = metadata.json()
    assert [first(r, "00080018") for r in rows] == [abdomen.sop_uids[4], abdomen.sop_uids[1]]
    for row in rows:
        assert first(row, "0020000E") == key_series
        assert first(row, "0008103E") == "Images clés"
        assert first(row, "00200011") == 0
        assert first(row, "00080016") == "1.2.840.10008.5.1.4.1.1.2"
    key_sop = abdomen.sop_uids[1]
    virtual = client.get(f"{base}/instances/{key_sop}/frames/1", headers={"Accept": FRAME_ACCEPT})
    real = client.get(
        f"/dicomweb/studies/{kin.study_uid}/series/{abdomen.series_uid}"
        f"/instances/{key_sop}/frames/1",
        headers={"Accept": FRAME_ACCEPT},
    )
    assert virtual.status_code == real.status_code == 200
    assert len(virtual.content) > 1000
    one = client.get(f"{base}/instances/{key_sop}/metadata").json()
    assert first(one[0], "0020000E") == key_series
    assert client.get(f"{base}/thumbnail").status_code == 200


def test_virtual_series_opens_nothing_else(studies: dict[str, Study], client: httpx.Client) -> None:
    """Negative: only the KIN's own selection, only inside the requested study."""
    kin, other = studies["kin"], studies["other"]
    key_series = kin.kos_series_uids[1]
    base = f"/dicomweb/studies/{kin.study_uid}/series/{key_series}/instances"
    not_selected = kin.series[1].sop_uids[0]  # in the study, not a key image
    foreign = other.series[0].sop_uids  # referenced by the hostile KIN
    for sop_uid in (not_selected, *foreign):
        for path in (f"{base}/{sop_uid}/frames/1", f"{base}/{sop_uid}/metadata"):
            response = client.get(path, headers={"Accept": FRAME_ACCEPT})
            assert response.status_code == 404, path
            assert response.json()["code"] == "E404"
        assert client.get(f"{base}/{sop_uid}/bulk/7fe00010").status_code == 404
    listed = client.get(f"/dicomweb/studies/{kin.study_uid}/key-images").json()["sop_uids"]
    assert not set(foreign) & set(listed)
    # The virtual series belongs to its study only: asked under another study, it is
    # an unknown series there (the PACS is only asked under that study's path).
    stray = client.get(
        f"/dicomweb/studies/{other.study_uid}/series/{key_series}"
        f"/instances/{kin.series[1].sop_uids[1]}/frames/1",
        headers={"Accept": FRAME_ACCEPT},
    )
    assert stray.status_code != 200


def test_virtual_series_needs_the_grant(pacs: Pacs, studies: dict[str, Study]) -> None:
    """Negative: without a session, the virtual series, its frames and the key-image
    list are refused before anything is looked up (401 E401, as every DICOMweb route
    without a session: issue 14)."""
    kin = studies["kin"]
    key_series = kin.kos_series_uids[1]
    key_sop = kin.series[1].sop_uids[1]
    app = create_app(make_settings(pacs.dicomweb_url, open_access=False))
    with live_server(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        study = f"/dicomweb/studies/{kin.study_uid}"
        for path in (
            f"{study}/key-images",
            f"{study}/series/{key_series}/metadata",
            f"{study}/series/{key_series}/thumbnail",
            f"{study}/series/{key_series}/instances/{key_sop}/frames/1",
        ):
            response = http.get(path, headers={"Accept": FRAME_ACCEPT})
            assert response.status_code == 401 and response.json()["code"] == "E401", path
        assert http.get(f"{study}/series").status_code == 401
        assert not services_of(app).origins.key_images._entries  # nothing was looked up
