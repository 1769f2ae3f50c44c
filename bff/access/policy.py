"""The one access decision (STYLE.md point 9): may this request see this study?

Every DICOMweb route asks :func:`allowed` with the session's grant and the requested
study; a refusal is answered exactly as a study that does not exist (404), before any
byte is fetched upstream. A session is granted the studies whose checks succeeded
(DB.VI-SO.115, .33, .152), each through the location it was opened on (DB.VI-SO.127).
``open_access`` (the facade's own tests only) admits every study to a session without
a grant; it is never on in a deployment.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Grant:
    """What a session may see: (location, study UID) pairs."""

    studies: frozenset[tuple[str, str]]

    def study_uids(self, location: str) -> list[str]:
        return sorted(uid for loc, uid in self.studies if loc == location)


@dataclass(frozen=True)
class Resource:
    location: str
    study_uid: str


def allowed(grant: Grant | None, resource: Resource, *, open_access: bool) -> bool:
    if grant is None:
        return open_access
    return (resource.location, resource.study_uid) in grant.studies
