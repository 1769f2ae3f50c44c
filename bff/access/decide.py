"""The facade's access decision: the one :class:`~bff.origins.base.StudyOrigin` that
answers for a requested study, or a refusal, resolved once per request before anything
is fetched (issue 12). Routes never re-decide: they call the origin they are given.

- outside the grant: :class:`~bff.errors.NotFound` (as a study that does not exist);
- granted from a KOS since unpublished in our archive: NotFound too, within a minute
  (:mod:`bff.access.published`, issue 13);
- granted from a report link: the location's PACS;
- granted from a KOS (Consumer): its remote Source(s) only; a Source we must not contact
  (not on the ANS whitelist: E203; not a DRIMbox series URL: E205) refuses the study on
  every route, nothing sent (DB.VI-CO.27).
"""

from __future__ import annotations

from bff.access.policy import Grant, StudyRef, allowed
from bff.access.published import PublishedKos
from bff.errors import NotFound
from bff.origins.base import StudyOrigin
from bff.origins.factory import OriginFactory


def origin_of(factory: OriginFactory, ref: StudyRef, access_token: str) -> StudyOrigin:
    """The origin of one grant entry (a refused remote Source included: see its refusal)."""
    if (remote := ref.remote) is not None:
        return factory.remote(
            ref.location,
            remote.record,
            access_token,
            remote.kos_bytes,
            patient_id=remote.local_patient_id,
            patient_issuer=remote.local_patient_issuer,
        )
    return factory.local(
        ref.location, ref.study_uid, institution=ref.institution, kos_series=ref.series_uids
    )


async def origin_for(
    factory: OriginFactory,
    grant: Grant | None,
    location: str,
    study_uid: str,
    *,
    open_access: bool,
    published: PublishedKos,
) -> StudyOrigin:
    """What answers for ``study_uid`` requested through ``location``, or the refusal."""
    ref = allowed(grant, location, study_uid, open_access=open_access)
    if ref is None:
        raise NotFound(f"study outside the grant: {study_uid}")
    if ref.remote is None and ref.kos_sop_uid and not await published.published(ref.kos_sop_uid):
        raise NotFound(f"the KOS of {study_uid} is no longer published")
    origin = origin_of(factory, ref, grant.access_token if grant else "")
    refusal = origin.refusal
    if refusal is not None:
        raise refusal
    return origin


def granted_origins(
    factory: OriginFactory, grant: Grant | None, location: str
) -> list[StudyOrigin]:
    """Every study granted through ``location`` (refused ones included: their progress
    shows why)."""
    if grant is None:
        return []
    return [
        origin_of(factory, ref, grant.access_token)
        for ref in grant.studies
        if ref.location == location
    ]
