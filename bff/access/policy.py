"""The one access decision (STYLE.md point 9): may this request see this study?

Every DICOMweb route asks :func:`allowed` with the session's grant and the requested
study; a refusal is answered exactly as a study that does not exist (404), before any
byte is fetched upstream. Until sessions exist (DB.VI-SO.08 and the login flows), the
demo/test mode grants open access; production mode without a grant denies everything.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Grant:
    """What a session may see: some studies, through one location (DB.VI-SO.127)."""

    location: str
    study_uids: frozenset[str]


@dataclass(frozen=True)
class Resource:
    location: str
    study_uid: str


def allowed(grant: Grant | None, resource: Resource, *, open_access: bool) -> bool:
    if grant is None:
        return open_access
    return grant.location == resource.location and resource.study_uid in grant.study_uids
