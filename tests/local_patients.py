"""A practice's own patients in a real PACS (DB.VI-CS.32): small instances whose
PatientID is the practice's local id and whose OtherPatientIDsSequence holds the INS
with its issuer OID, as a French practice PACS keeps them (DB.SO.39)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from starlette.applications import Starlette

from bff.access.local_patient_id import LocalPatientIds
from bff.demo.identity import ANS_TEST_PATIENT
from bff.demo.orthanc import OrthancProcess
from bff.demo.practice import (
    DEMO_LOCAL_ID,
    DEMO_LOCAL_ISSUER,
    INS_NIA_TEST,
    INS_NIR_TEST,
    practice_instance,
)
from bff.dicomweb.upstream import DicomwebUpstream
from bff.services import services_of

__all__ = ["INS_NIA_TEST", "INS_NIR_TEST", "practice_instance"]

DEMO_INS = ANS_TEST_PATIENT.ins  # the demo KOS's
LOCAL_ID = DEMO_LOCAL_ID
LOCAL_ISSUER = DEMO_LOCAL_ISSUER
ALL_INS_OIDS = frozenset({"1.2.250.1.213.1.4.8", "1.2.250.1.213.1.4.9", INS_NIR_TEST, INS_NIA_TEST})


@contextmanager
def practice_pacs(work: Path) -> Iterator[OrthancProcess]:
    """A real Orthanc holding the practice's patient CAB-000042, of the demo KOS's INS."""
    path = practice_instance(work / "local.dcm", local_id=LOCAL_ID, ins=DEMO_INS)
    with OrthancProcess(work / "orthanc") as process:
        process.upload([path])
        yield process


@contextmanager
def local_ids_in(app: Starlette, url: str | None) -> Iterator[None]:
    """The running app looks the local patient id up in the PACS at ``url`` (None: off)
    while the block runs. Its client keeps no connection: nothing is left open in the
    app's event loop afterwards."""
    services = services_of(app)
    kept = services.local_patient_ids
    upstream = None
    if url is not None:
        client = httpx.AsyncClient(timeout=5.0, limits=httpx.Limits(max_keepalive_connections=0))
        upstream = DicomwebUpstream(url, origin="practice", client=client)
    object.__setattr__(  # frozen services, test only
        services, "local_patient_ids", LocalPatientIds(upstream, ALL_INS_OIDS, timeout=5.0)
    )
    try:
        yield
    finally:
        object.__setattr__(services, "local_patient_ids", kept)
