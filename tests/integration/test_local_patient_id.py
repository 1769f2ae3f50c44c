"""DB.VI-CS.32: the practice's local patient id, looked up in a real Orthanc holding the
practice's own patients by the INS of the KOS (bff/access/local_patient_id.py).

Orthanc ignores QIDO's sequence matching (OtherPatientIDsSequence.PatientID), as a
practice PACS may: the candidates then come from the birth date, and each is proven by
one instance's metadata. The doubles (a PACS that answers too much, or nothing) are real
HTTP servers: a real Orthanc cannot be made to misbehave that way.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from bff.access.local_patient_id import LocalPatient, LocalPatientIds
from bff.archive.kos import InsTraits, KosRecord, read_kos
from bff.demo.orthanc import OrthancProcess
from bff.dicomweb.upstream import DicomwebUpstream
from tests.conftest import Pacs
from tests.local_patients import (
    ALL_INS_OIDS,
    DEMO_INS,
    INS_NIA_TEST,
    INS_NIR_TEST,
    practice_instance,
)
from tests.servers import counting_proxy, free_port, live_server

pytestmark = pytest.mark.integration

TWICE_INS = "184127645108946"  # two local patients hold it
ISSUER_INS = "255081416802538"  # its OID written as the item's IssuerOfPatientID
NOWHERE_INS = "190012A00112345"  # in no local patient


@pytest.fixture(scope="module")
def practice(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancProcess]:
    """The practice's PACS: a real Orthanc with the practice's own patients."""
    work = tmp_path_factory.mktemp("practice")

    def one(name: str, **attrs: str | bool) -> Path:
        return practice_instance(work / f"{name}.dcm", **attrs)  # type: ignore[arg-type]

    files = [
        one("found", local_id="CAB-000042", ins=DEMO_INS),
        # The same INS kept as another site sent it (PatientID = the INS): no local id.
        one("imported", local_id=DEMO_INS, ins=DEMO_INS),
        # The same matricule under the NIA OID: another identifier, never a match.
        one("nia", local_id="CAB-NIA", ins=DEMO_INS, ins_oid=INS_NIA_TEST),
        one("twice-1", local_id="CAB-000007", ins=TWICE_INS, birth_date="19841201"),
        one("twice-2", local_id="CAB-000008", ins=TWICE_INS, birth_date="19841201"),
        one(
            "in-issuer",
            local_id="CAB-000099",
            ins=ISSUER_INS,
            birth_date="19550814",
            issuer="",
            oid_in_issuer=True,
        ),
    ]
    with OrthancProcess(work / "orthanc") as process:
        process.upload(files)
        yield process


@pytest.fixture(scope="module")
def kos(pacs: Pacs) -> KosRecord:
    return read_kos(pacs.study.kos_path)


def with_ins(
    record: KosRecord, ins: str, birth_date: str, oid: str | None = INS_NIR_TEST
) -> KosRecord:
    traits = dataclasses.replace(record.traits, birth_date=birth_date)
    return dataclasses.replace(record, ins=ins, ins_oid=oid, traits=traits)


def look_up(
    url: str, record: KosRecord, *, timeout: float = 10.0, issuers: frozenset[str] = ALL_INS_OIDS
) -> LocalPatient:
    async def run() -> LocalPatient:
        ids = LocalPatientIds(DicomwebUpstream(url, origin="practice"), issuers, timeout=timeout)
        try:
            return await ids.find(record)
        finally:
            await ids.aclose()

    return asyncio.run(run())


def test_one_local_patient_holding_the_ins_is_found(
    practice: OrthancProcess, kos: KosRecord
) -> None:
    """The demo KOS's INS: CAB-000042 holds it (NIR test OID, in the qualifiers); the
    patient kept under the INS itself and the one under the NIA OID do not count."""
    found = look_up(practice.dicomweb_url, kos)
    assert found == LocalPatient("found", "CAB-000042", "CABINET-DUPONT")
    assert found.found


def test_the_oid_may_be_the_items_issuer(practice: OrthancProcess, kos: KosRecord) -> None:
    found = look_up(practice.dicomweb_url, with_ins(kos, ISSUER_INS, "19550814"))
    assert found == LocalPatient("found", "CAB-000099", "")


def test_two_local_patients_with_the_ins_are_never_picked(
    practice: OrthancProcess, kos: KosRecord
) -> None:
    found = look_up(practice.dicomweb_url, with_ins(kos, TWICE_INS, "19841201"))
    assert found.outcome == "several"
    assert not found.found and found.patient_id == ""


def test_an_ins_no_local_patient_holds_finds_nothing(
    practice: OrthancProcess, kos: KosRecord
) -> None:
    assert look_up(practice.dicomweb_url, with_ins(kos, NOWHERE_INS, "19790328")).outcome == "none"
    # The same birth date as CAB-000042, another INS: the candidate is not proven.


def test_the_issuer_must_be_the_koss_and_a_configured_one(
    practice: OrthancProcess, kos: KosRecord
) -> None:
    """The KOS names the NIA OID: CAB-000042 holds the matricule under the NIR OID, not a
    match, but CAB-NIA is. Test OIDs not configured (production): nothing matches."""
    nia = with_ins(kos, DEMO_INS, "19790328", oid=INS_NIA_TEST)
    assert look_up(practice.dicomweb_url, nia) == LocalPatient("found", "CAB-NIA", "CABINET-DUPONT")
    production = frozenset({"1.2.250.1.213.1.4.8", "1.2.250.1.213.1.4.9"})
    assert look_up(practice.dicomweb_url, kos, issuers=production).outcome == "none"


def test_a_kos_without_ins_asks_nothing(practice: OrthancProcess, kos: KosRecord) -> None:
    asked: list[str] = []
    with live_server(counting_proxy(practice.base_url, asked), lifespan="off") as proxy:
        no_ins = dataclasses.replace(kos, ins=None, ins_oid=None)
        assert look_up(proxy + "/dicom-web", no_ins).outcome == "none"
    assert asked == []


def test_an_outcome_is_kept_and_a_look_up_shared(practice: OrthancProcess, kos: KosRecord) -> None:
    """Asked ahead at the hand-over, then at the opening: the PACS is asked once."""
    asked: list[str] = []

    async def run(url: str) -> tuple[LocalPatient, LocalPatient]:
        ids = LocalPatientIds(DicomwebUpstream(url, origin="practice"), ALL_INS_OIDS, timeout=10.0)
        try:
            ids.ask_ahead(kos)
            first = await ids.find(kos)
            return first, await ids.find(kos)
        finally:
            await ids.aclose()

    with live_server(counting_proxy(practice.base_url, asked), lifespan="off") as proxy:
        first, second = asyncio.run(run(proxy + "/dicom-web"))
    assert first == second == LocalPatient("found", "CAB-000042", "CABINET-DUPONT")
    searches = [a for a in asked if a.startswith("/dicom-web/studies?")]
    assert len(searches) == 1, asked
    assert "OtherPatientIDsSequence.PatientID=" + DEMO_INS in searches[0]


def test_a_pacs_that_cannot_be_reached_fails_quietly(kos: KosRecord) -> None:
    found = look_up(f"http://127.0.0.1:{free_port()}/dicom-web", kos)
    assert found.outcome == "failed" and not found.found


def huge_pacs() -> Starlette:
    """A PACS answering a search with more than the bounded answer (2 MiB of JSON)."""

    async def studies(request: Request) -> Response:
        async def body() -> AsyncIterator[bytes]:
            yield b"["
            for _ in range(2048):
                yield b'{"00100020":{"vr":"LO","Value":["' + b"X" * 1000 + b'"]}},'
            yield b"{}]"

        return StreamingResponse(body(), media_type="application/dicom+json")

    return Starlette(routes=[Route("/dicom-web/studies", studies)])


def stalled_pacs() -> Starlette:
    """A PACS that never answers a search (a real one cannot be made to on demand)."""

    async def studies(request: Request) -> Response:
        await asyncio.Event().wait()  # never set: the client's bound ends the wait
        return Response(b"[]")

    return Starlette(routes=[Route("/dicom-web/studies", studies)])


def test_an_answer_over_the_bound_is_refused_as_it_streams(kos: KosRecord) -> None:
    with live_server(huge_pacs(), lifespan="off") as url:
        assert look_up(url + "/dicom-web", kos).outcome == "failed"


def test_a_pacs_that_stalls_is_given_up_within_the_timeout(kos: KosRecord) -> None:
    with live_server(stalled_pacs(), lifespan="off") as url:
        assert look_up(url + "/dicom-web", kos, timeout=0.5).outcome == "failed"


def test_off_without_a_pacs(kos: KosRecord) -> None:
    async def run() -> LocalPatient:
        return await LocalPatientIds(None, ALL_INS_OIDS, timeout=1.0).find(kos)

    assert asyncio.run(run()).outcome == "off"


def test_traits_without_birth_date_still_look_up(practice: OrthancProcess, kos: KosRecord) -> None:
    """No birth date in the KOS: the search is by the INS alone (Orthanc then proposes
    every study; each is proven or not)."""
    record = dataclasses.replace(kos, traits=InsTraits(**{**kos.traits.__dict__, "birth_date": ""}))
    assert look_up(practice.dicomweb_url, record).patient_id == "CAB-000042"
