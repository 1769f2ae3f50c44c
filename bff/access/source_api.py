"""The checks of the Source WADO-RS API (this DRIMbox answering Consumer DRIMboxes),
over the Consumer's client certificate, the introspected PSC token, the KOS archive and
the PACS's patient id, before any response header is sent: the certificate is the
operator certificate of an ANS whitelist entry (403 S403L, :func:`check_peer_certificate`);
the token is a ProSantéConnect token issued to an allowed
Consumer client, with the expected scope and assurance level (403, :func:`check_psc_token`);
the KOS named by ``KOS-SOPInstanceUID`` references what is asked and is published
(404 / 410), and the PACS's PatientID is the archive's INS or IPP (406, DB.SO.47).
PACS failures become the statuses of Tableau 2 (:func:`pacs_error`).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from bff.access.patient_id import images_patient_agrees
from bff.archive.store import ArchivedKos
from bff.dicomweb.upstream import DicomwebUpstream
from bff.errors import (
    NotFound,
    SourceGone,
    SourceKosNotFound,
    SourcePacsTimeout,
    SourcePacsUnavailable,
    SourcePatientMismatch,
    SourcePeerRefused,
    SourceTokenInvalid,
    UpstreamError,
    UpstreamTimeout,
    ViewerError,
)
from bff.origins.whitelist import Whitelist, WhitelistEntry

log = logging.getLogger(__name__)

MAX_UID_LENGTH = 64
#: The PSC scope a Consumer asks for the professional (DB.VI-CS.03: openid scope_all).
PSC_SOURCE_SCOPE = "scope_all"
#: Assurance levels, weakest first; the Source API needs eidas1 at least.
ACR_LEVELS = ("eidas1", "eidas2", "eidas3")
MIN_ACR = "eidas1"


@dataclass(frozen=True)
class PscToken:
    """What ProSantéConnect's introspection (RFC 7662) said of an active token; never the
    token itself."""

    issuer: str | None
    client_id: str | None  # ``client_id``, else Keycloak's ``azp``
    scopes: frozenset[str]
    acr: str | None
    subject: str | None  # the professional's pairwise id at PSC
    rpps: str | None  # the national id (RPPS/ADELI), when the introspection gives it

    @classmethod
    def from_introspection(cls, body: Mapping[str, Any]) -> PscToken:
        def text(name: str) -> str | None:
            value = body.get(name)
            return value if isinstance(value, str) and value else None

        scope = body.get("scope")
        return cls(
            issuer=text("iss"),
            client_id=text("client_id") or text("azp"),
            scopes=frozenset(scope.split()) if isinstance(scope, str) else frozenset(),
            acr=text("acr"),
            subject=text("sub"),
            rpps=text("SubjectNameID"),
        )


def check_peer_certificate(
    chain: Sequence[str], whitelist: Whitelist | None
) -> tuple[WhitelistEntry, x509.Name]:
    """Issue 13 item 7: the Consumer's client certificate (``chain``: PEM, the leaf first,
    as the ASGI ``tls`` extension gives it) is the operator certificate of an entry of the
    ANS whitelist (its subject is the entry's ``DNCertificatOperateur``), else S403L.
    Chaining to the configured CA was checked in the handshake; this says which DRIMbox."""
    if whitelist is None:
        raise SourcePeerRefused("no ANS whitelist: every Consumer is refused")
    if not chain:
        raise SourcePeerRefused("no client certificate (not the mutual-TLS listener?)")
    try:
        subject = x509.load_pem_x509_certificate(chain[0].encode("ascii")).subject
    except ValueError:
        raise SourcePeerRefused("unreadable client certificate") from None
    entry = whitelist.entry_for_peer(subject)
    if entry is None:
        raise SourcePeerRefused("the client certificate is not a whitelisted operator certificate")
    return entry, subject


def check_psc_token(token: PscToken, *, issuer: str, allowed_clients: Collection[str]) -> None:
    """The introspected token is acceptable for the Source API (issue 13 item 5), else
    S403 (the refusal says nothing of which check failed; the detail goes to the log and
    the audit): issued by the configured PSC issuer, to a Consumer client of the
    allow-list (``DRIMBOX_SOURCE_API_CLIENTS``), with ``scope_all``, at eidas1 or above."""
    if token.issuer is None or token.issuer.rstrip("/") != issuer.rstrip("/"):
        raise SourceTokenInvalid("token issued by another issuer")
    if token.client_id is None or token.client_id not in allowed_clients:
        raise SourceTokenInvalid("token issued to a client outside DRIMBOX_SOURCE_API_CLIENTS")
    if PSC_SOURCE_SCOPE not in token.scopes:
        raise SourceTokenInvalid(f"token without the {PSC_SOURCE_SCOPE} scope")
    if token.acr not in ACR_LEVELS or ACR_LEVELS.index(token.acr) < ACR_LEVELS.index(MIN_ACR):
        raise SourceTokenInvalid("token assurance level (acr) below eidas1")


def check_kos_uid(kos_uid: str) -> str:
    """The ``KOS-SOPInstanceUID`` header's value, or the refusal (S404)."""
    kos_uid = kos_uid.strip()
    if not kos_uid or len(kos_uid) > MAX_UID_LENGTH:
        raise SourceKosNotFound("KOS-SOPInstanceUID missing or too long")
    return kos_uid


def check_kos(
    kos: ArchivedKos | None,
    kos_uid: str,
    locations: Collection[str],
    study_uid: str,
    series_uid: str,
    sop_uid: str | None,
) -> ArchivedKos:
    """The KOS named by the request (``kos``: what the archive holds under ``kos_uid``)
    references what is asked, and a location of this DRIMbox serves it (the
    DRIMbox-to-DRIMbox API answers for every connected PACS: the KOS archive says which
    PACS holds the exam)."""
    if kos is None or (kos.location not in locations and "*" not in locations):
        raise SourceKosNotFound(f"KOS {kos_uid} unknown here")
    record = kos.record
    if record.study_uid != study_uid:
        raise SourceKosNotFound(f"KOS {kos_uid} is not about the study asked")
    series = next((s for s in record.series if s.series_uid == series_uid), None)
    if series is None:
        raise SourceKosNotFound(f"KOS {kos_uid} does not reference the series asked")
    if sop_uid is not None and sop_uid not in {uid for _, uid in series.instances}:
        raise SourceKosNotFound(f"KOS {kos_uid} does not reference the instance asked")
    if kos.state != "published":
        raise SourceGone(f"KOS {kos_uid} is {kos.state}")
    return kos


def pacs_error(exc: ViewerError, what: str) -> ViewerError:
    """Our upstream errors as the statuses of Tableau 2 (404 upstream = exam/series gone)."""
    if isinstance(exc, NotFound):
        return SourceGone(f"{what}: the PACS no longer has it")
    if isinstance(exc, UpstreamTimeout):
        return SourcePacsTimeout(f"{what}: {exc.detail}")
    if isinstance(exc, UpstreamError):
        return SourcePacsUnavailable(f"{what}: {exc.code} {exc.detail}")
    return exc


async def check_patient_id(upstream: DicomwebUpstream, kos: ArchivedKos, location: str) -> None:
    """Tableau 2 E209: the PACS's PatientID must be the archive's INS or IPP
    (:mod:`bff.access.patient_id`, the rule the Source viewer applies too)."""
    try:
        agrees = await images_patient_agrees(
            upstream, kos, location, event="source_patient_id_mismatch"
        )
    except ViewerError as exc:  # not in the PACS: SourceGone
        raise pacs_error(exc, "patient id check") from exc
    if not agrees:
        raise SourcePatientMismatch(f"patient id in the PACS differs for {kos.record.study_uid}")
