"""The BFF's error tree, each class with its HTTP status, a stable code and a French message.

    ViewerError                      500 E500  generic (details only in the log)
    ├── BadRequest                   400 E400
    │   ├── InvalidLink              400 E410-E415  IHEInvokeImageDisplay parameters
    │   └── UnknownHost              400 E416  Host header not a configured host name
    ├── AuthenticationRequired       401 E401  no (or an expired) session
    ├── LoginFailed                  401 E430-E434  OIDC round trip refused
    ├── AccessRefused                403 E420  DB.VI-SO.28: checks against the KOS archive
    │                                          (reasons E420-E424 in the audit only)
    ├── PatientIdMismatch            409 E425  the images' patient id is not the archive's
    │                                          (INS/IPP; DB.SO.47), checked before the grant
    ├── Forbidden                    403 E403  admin API without the right secret
    ├── NotFound                     404 E404  unknown, or outside the session's grant
    │   └── ExamNotInPacs            404 E426  a published exam the PACS does not hold
    ├── NotAcceptable                406 E406
    ├── PayloadTooLarge              413 E440  a request body over its route's cap
    ├── UnsupportedTransferSyntax    415 E441  a Deflated DICOM file (never inflated)
    ├── TooManyRequests              429 E429  a per-session / per-client bound reached
    │   └── ExportBusy               429 E461  a PACS export already running (DB.VI-CO.42)
    ├── UnknownDestination           400 E460  a PACS export to no configured destination
    ├── ExportFailed                 502 E462  the export's destination PACS unreachable
    │   ├── DestinationRefused       502 E463  the destination PACS refused the images
    │   └── ExportIncomplete         502 E464  some images sent, others refused
    ├── ServiceBusy                  503 E507  too many sessions at once
    ├── StateUnavailable             503 E508  the shared state's database failed
    └── UpstreamError                502 E502  the PACS / Source failed
        ├── UpstreamUnavailable      502 E503  connection refused / DNS / reset
        ├── UpstreamTimeout          504 E504  no answer within the configured timeout
        ├── UpstreamProtocolError    502 E505  malformed multipart, DICOM or JSON
        └── IncompleteSeries         502 E506  the series stream ended without this frame

Errors are raised anywhere and rendered in exactly one place (:mod:`bff.web.errors`):
JSON ``{"code", "message"}`` for DICOMweb/machines, a French HTML page for people.
Messages are fixed French sentences; raw input never goes into them.

DB.VI-SO.28: a failure that only the site that produced the exam can mend (its PACS down,
slow or answering badly, images missing, patient ids inconsistent) says so: its class has
``contact_site`` (the page adds :data:`CONTACT_SITE`, the JSON says ``"contact_site":
true`` and the viewer names the site from the KOS), or its message asks it already.
``site``, when the raiser knows it (the KOS's Institution Name, after the checks), names
the site on the page. An outage is never an access refusal: the PACS's failures keep
their E50x codes wherever they are met.

Errors of the Source WADO-RS API (this DRIMbox answering Consumer DRIMboxes). The
Consumer maps our HTTP status to its own codes (spec Tableau 2, DB.VI-CO.27), so the
status is the contract; the ``S`` codes name the Source-side cause in our logs, the audit
trail and the JSON body ``{"code", "message"}``::

    ViewerError
    ├── SourcePeerRefused           403 S403L client certificate not a whitelisted
    │                                         operator certificate (DNCertificatOperateur)
    ├── SourceTokenInvalid          403 S403  bearer token missing, inactive, expired -> E204
    ├── SourceKosNotFound           404 S404  KOS unknown or inconsistent             -> E205
    ├── SourceGone                  410 S410  KOS unpublished, exam / series gone     -> E206
    ├── SourcePatientMismatch       406 S406  patient id archive vs PACS mismatch     -> E209
    ├── SourcePacsUnavailable       502 S502  PACS connection problem, bad answer     -> E207
    ├── SourcePacsTimeout           504 S504  PACS timeout                            -> E208
    └── SourceIntrospectionUnavailable 503 S503  PSC introspection unavailable (fail closed)

406 is reserved by DRIM-M for the patient id check: it is never used for content
negotiation here (see :mod:`bff.source.accept`).
"""

from __future__ import annotations

#: DB.VI-SO.28: what the user is asked when the site that produced the exam must act.
CONTACT_SITE = (
    "Veuillez réessayer plus tard. Si le problème persiste, prenez contact avec le site qui "
    "a réalisé l'examen (centre ou service d'imagerie)."
)


class ViewerError(Exception):
    status: int = 500
    code: str = "E500"
    message: str = "Une erreur inattendue est survenue. Veuillez réessayer plus tard."
    #: DB.VI-SO.28: only the producing site can mend it; the user is asked to contact it.
    contact_site: bool = False

    def __init__(self, detail: str = "", *, message: str | None = None) -> None:
        # ``detail`` is for the log only; it never reaches a response body.
        super().__init__(detail or self.code)
        self.detail = detail
        if message is not None:
            self.message = message
        #: The producing site's name (KOS Institution Name), when the raiser knows it
        #: and the user may see it (after the link and identity checks).
        self.site = ""


class BadRequest(ViewerError):
    status = 400
    code = "E400"
    message = "La demande est invalide."


class InvalidLink(BadRequest):
    """The viewer link (IHEInvokeImageDisplay) is malformed. Codes:
    E410 requestType, E411 studyUID, E412 accessionNumber, E413 idCDA,
    E414 missing or repeated parameter, E415 unknown location (host name)."""

    code = "E410"
    message = (
        "Le lien vers l'examen est invalide ou incomplet. Veuillez utiliser le lien "
        "figurant dans votre compte rendu d'imagerie."
    )

    def __init__(self, detail: str = "", *, code: str = "E410") -> None:
        super().__init__(detail)
        self.code = code


class UnknownHost(BadRequest):
    """The Host header names none of the host names this deployment answers on (its
    locations, DRIMBOX_TRUSTED_HOSTS): refused before any route runs (issue 13), since
    the host builds the OIDC redirect URI and the DICOMweb roots."""

    code = "E416"
    message = (
        "Cette adresse n'est pas celle du service de visualisation des examens. Veuillez "
        "utiliser le lien figurant dans votre compte rendu d'imagerie."
    )


class AuthenticationRequired(ViewerError):
    status = 401
    code = "E401"
    message = "Votre session a expiré ou n'existe pas. Veuillez rouvrir le lien de l'examen."


class LoginFailed(ViewerError):
    """The identity provider round trip failed. Codes: E430 state missing, unknown or
    replayed; E431 provider error or refusal; E432 token or signature invalid;
    E433 assurance level (acr) too low; E434 identity claims missing."""

    status = 401
    code = "E430"
    message = (
        "La connexion n'a pas pu aboutir. Veuillez rouvrir le lien de l'examen et "
        "vous identifier à nouveau."
    )

    def __init__(self, detail: str = "", *, code: str = "E430") -> None:
        super().__init__(detail)
        self.code = code


class AccessRefused(ViewerError):
    """DB.VI-SO.28: a check against the KOS archive refused access. The reasons, in the
    log and the audit trail only (``reason``): E420 idCDA does not match the KOS
    (DB.VI-SO.115); E421 accession number, issuer and study do not match (DB.VI-SO.33);
    E422 no published KOS for this exam; E423 patient identity does not match the KOS
    INS traits (DB.VI-SO.152); E424 exam not reachable through this location
    (DB.VI-SO.127). The user always sees the one code E420 and the one message (issue
    13): telling them apart would let a signed-in user test identifiers one at a time."""

    status = 403
    code = "E420"
    message = (
        "Nous ne pouvons pas vous donner accès à cet examen. Veuillez prendre contact "
        "avec le site qui a réalisé l'examen (centre ou service d'imagerie)."
    )

    def __init__(self, detail: str = "", *, code: str = "E420") -> None:
        super().__init__(detail)
        self.reason = code


class PatientIdMismatch(ViewerError):
    """The patient id of the images in the PACS is neither the INS nor the IPP the KOS
    archive holds for the exam (spec note after DB.VI-SO.33, DB.SO.134): refused before
    the grant, nothing of the images served, traced for the administrator (DB.SO.47).
    The Source API refuses the same case with 406 (Consumer E209)."""

    status = 409
    code = "E425"
    message = (
        "Les images de cet examen ne peuvent pas être affichées : l'identifiant du patient "
        "enregistré avec les images ne correspond pas à celui de l'examen publié. Veuillez "
        "prendre contact avec le site qui a réalisé l'examen (centre ou service d'imagerie)."
    )


class Forbidden(ViewerError):
    status = 403
    code = "E403"
    message = "Accès refusé."


class NotFound(ViewerError):
    status = 404
    code = "E404"
    message = "L'élément demandé est introuvable."


class ExamNotInPacs(NotFound):
    """A published exam (its KOS passed the checks) that the location's PACS does not
    hold (any more): found by the patient id check before the grant."""

    code = "E426"
    message = (
        "Les images de cet examen ne sont pas disponibles sur le serveur d'images du site "
        "qui l'a réalisé."
    )
    contact_site = True


class NotAcceptable(ViewerError):
    status = 406
    code = "E406"
    message = "Le format demandé n'est pas disponible."


class PayloadTooLarge(ViewerError):
    """A request body over the cap of its route (issue 13, :mod:`bff.web.limits`):
    refused before it is read whole. (E413 is the link's idCDA code, hence E440.)"""

    status = 413
    code = "E440"
    message = "La demande est trop volumineuse (fichier ou formulaire trop grand)."


class UnsupportedTransferSyntax(ViewerError):
    """A DICOM file in Deflated Explicit VR Little Endian (1.2.840.10008.1.2.1.99): refused
    from its file meta, before anything is inflated (a few hundred kilobytes may inflate
    to gigabytes; issue 13). DRIM-M exchanges KOS uncompressed."""

    status = 415
    code = "E441"
    message = (
        "Ce fichier DICOM est compressé (syntaxe de transfert « Deflated ») : il n'est pas "
        "accepté. Veuillez l'envoyer non compressé."
    )


class UpstreamError(ViewerError):
    status = 502
    code = "E502"
    message = "Le serveur d'images a renvoyé une erreur."
    contact_site = True


class UpstreamUnavailable(UpstreamError):
    code = "E503"
    message = "Le serveur d'images est injoignable."


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "E504"
    message = "Le serveur d'images n'a pas répondu à temps."


class UpstreamProtocolError(UpstreamError):
    code = "E505"
    message = "Le serveur d'images a envoyé une réponse illisible."


class IncompleteSeries(UpstreamError):
    code = "E506"
    message = "La série n'a pas été reçue en entier ; cette image est manquante."


# -- the Source WADO-RS API (DRIMbox to DRIMbox) ----------------------------------------


class SourcePeerRefused(ViewerError):
    """The Consumer's client certificate (mutual TLS) is not the operator certificate of
    any entry of the ANS whitelist (issue 13 item 7); checked before anything else."""

    status = 403
    code = "S403L"
    message = (
        "Le certificat de la DRIMbox consommatrice ne figure pas dans la liste blanche de l'ANS."
    )


class SourceTokenInvalid(ViewerError):
    status = 403
    code = "S403"
    message = "Jeton d'accès invalide ou expiré."


class SourceKosNotFound(ViewerError):
    status = 404
    code = "S404"
    message = "KOS introuvable ou incohérent avec la demande."


class SourceGone(ViewerError):
    status = 410
    code = "S410"
    message = "L'examen n'est plus disponible (KOS dépublié, examen ou série supprimé)."


class SourcePatientMismatch(ViewerError):
    status = 406
    code = "S406"
    message = "Les identifiants patient (INS/IPP) de l'archive et du PACS ne concordent pas."


class SourcePacsUnavailable(ViewerError):
    status = 502
    code = "S502"
    message = "Le PACS de la DRIMbox source est injoignable."


class SourcePacsTimeout(ViewerError):
    status = 504
    code = "S504"
    message = "Le PACS de la DRIMbox source n'a pas répondu à temps."


class SourceIntrospectionUnavailable(ViewerError):
    status = 503
    code = "S503"
    message = "La vérification du jeton d'accès est momentanément impossible."


class TooManyRequests(ViewerError):
    """A per-session or per-client bound was reached (waiting frame requests, link
    checks, logins): the client should slow down (issue 13)."""

    status = 429
    code = "E429"
    message = "Trop de demandes en cours. Veuillez patienter quelques instants puis réessayer."


class ExportBusy(TooManyRequests):
    """DB.VI-CO.42: this user already has a PACS export running, or the server runs as
    many as it allows (DRIMBOX_EXPORT_MAX_JOBS)."""

    code = "E461"
    message = (
        "Un export vers le PACS est déjà en cours. Veuillez attendre qu'il se termine "
        "puis réessayer."
    )


class UnknownDestination(BadRequest):
    """DB.VI-CO.42: the export names no destination this deployment configures."""

    code = "E460"
    message = "La destination d'export demandée n'existe pas."


class ExportFailed(ViewerError):
    """DB.VI-CO.42: an export to the practice's PACS failed. Not raised to a route: the
    export runs in the background and its status carries the code and message. This
    class: the destination could not be reached (connection refused, no answer in time,
    association aborted)."""

    status = 502
    code = "E462"
    message = (
        "Le PACS de destination est injoignable. Vérifiez qu'il est en service, puis "
        "réessayez ; si le problème persiste, prévenez l'administrateur de votre PACS."
    )


class DestinationRefused(ExportFailed):
    """The destination answered but refused the images (association rejected, STOW-RS
    4xx, C-STORE failure status, or no presentation context for their transfer syntax:
    they are never re-encoded)."""

    code = "E463"
    message = (
        "Le PACS de destination a refusé les images. Prévenez l'administrateur de votre "
        "PACS (droits d'accès, titre AE, syntaxes de transfert acceptées)."
    )


class ExportIncomplete(ExportFailed):
    """Some images reached the destination, others were refused."""

    code = "E464"
    message = (
        "L'export est incomplet : une partie des images a été refusée par le PACS de "
        "destination. Prévenez l'administrateur de votre PACS."
    )


class ServiceBusy(ViewerError):
    """Too many sessions at once: new visitors wait until expired ones are purged."""

    status = 503
    code = "E507"
    message = "Le service est momentanément saturé. Veuillez réessayer dans quelques minutes."


class StateUnavailable(ViewerError):
    """The database of the shared state (sessions, logins, hand-overs) failed or did not
    answer within its bound (issue 15): nothing is decided without it."""

    status = 503
    code = "E508"
    message = (
        "Le service est momentanément indisponible. Veuillez réessayer dans quelques instants."
    )
