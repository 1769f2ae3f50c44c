"""The checks of a report link (spec 4.2.2), made against the KOS archive, never the
images: idCDA (DB.VI-SO.115), accession number + issuer and study (DB.VI-SO.33), the
location (DB.VI-SO.127), and for a patient the identity against the KOS INS traits
(DB.VI-SO.152). Each refusal is an :class:`~bff.errors.AccessRefused` with its code.
"""

from __future__ import annotations

import hmac
from typing import Any

from starlette.concurrency import run_in_threadpool

from bff.access.identity import FcIdentity, KosTraits, match_identity
from bff.access.local_patient_id import LocalPatient
from bff.access.params import ViewerLink
from bff.archive.kos import KosRecord
from bff.archive.store import ArchivedKos, ArchiveStore
from bff.errors import AccessRefused


async def check_link(archive: ArchiveStore, link: ViewerLink, location: str) -> ArchivedKos:
    """DB.VI-SO.115 (idCDA) and DB.VI-SO.33 (accession + issuer / study), on the archive."""
    records = await run_in_threadpool(archive.find_by_study, link.study_uid)
    published = [r for r in records if r.state == "published"]
    if not published:
        raise AccessRefused(f"no published KOS for {link.study_uid}", code="E422")
    here = [r for r in published if r.location in (location, "*")]
    if not here:
        raise AccessRefused(f"{link.study_uid} is not reachable through {location}", code="E424")
    with_cda = [r for r in here if hmac.compare_digest(r.cda_id, link.cda_id)]
    if not with_cda:
        raise AccessRefused("idCDA does not match the KOS", code="E420")
    for kos in with_cda:
        record = kos.record
        if (
            record.accession_number == link.accession.id
            and record.accession_issuer == link.accession.issuer
            and record.study_uid == link.study_uid
        ):
            return kos
    raise AccessRefused("accession number / issuer / study do not match the KOS", code="E421")


def check_patient(kos: ArchivedKos, claims: dict[str, Any]) -> None:
    """DB.VI-SO.152: the FC+ identity against the KOS INS traits (documented normalization)."""
    try:
        identity = FcIdentity.from_claims(claims)
    except ValueError as exc:
        raise AccessRefused(f"identity claims missing: {exc}", code="E423") from exc
    traits = kos.record.traits
    mismatches = match_identity(
        identity,
        KosTraits(
            birth_name=traits.birth_name,
            given_names=tuple(traits.given_names),
            sex=traits.sex,
            birth_date=traits.birth_date,
            birthplace=traits.birthplace,
        ),
    )
    if mismatches:
        raise AccessRefused("identity mismatch: " + ",".join(mismatches), code="E423")


def opening_display(
    record: KosRecord, local: LocalPatient | None = None
) -> dict[str, str | list[str] | None]:
    """What the viewer shows on opening (DB.VI-CS.29): INS traits and institution from the
    KOS; on the Consumer, the practice's local patient id when it was found (``local``,
    DB.VI-CS.32), with the Source's id beside it."""
    traits = record.traits
    shown: dict[str, str | list[str] | None] = {}
    if local is not None and local.found:
        shown = {
            "local_patient_id": local.patient_id,
            "local_patient_issuer": local.issuer or None,
            "source_patient_id": record.ins or record.local_patient_id,
        }
    return shown | {
        "birth_name": traits.birth_name,
        "given_names": list(traits.given_names),
        "sex": traits.sex,
        "birth_date": traits.birth_date,
        "birthplace": traits.birthplace,
        "ins": record.ins,
        "ins_oid": record.ins_oid,
        "institution": record.institution_name,
        "accession_number": record.accession_number,
    }
